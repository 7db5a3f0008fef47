"""Parcels for an order: what goes in which box, and what each box weighs.

The lines that need shipping are packed into the account's default box; every parcel weighs its contents plus
the packaging weight. When the carrier limits a parcel's weight, units are packed heaviest first into the first
parcel they fit (first-fit decreasing), which keeps the parcel count low without splitting a unit. A line with
no weight takes the account's default item weight; without one, the order cannot be weighed and the error
names the line. A unit heavier than a whole parcel may be is an error too: no split can ship it.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from crossdock.model import Dimensions, OrderLine, Parcel, Weight


class ParcelError(ValueError):
    """The order cannot be packed as configured; the message says which line and what to set."""


class PackingRules(BaseModel):
    """An account's packing settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packaging_weight: Weight = Field(default_factory=lambda: Weight.grams(0))
    default_box: Dimensions | None = None
    default_item_weight: Weight | None = Field(
        default=None,
        description="For lines whose weight the channel does not give (eBay, Amazon) and the catalog lacks.",
    )
    max_weight: Weight | None = Field(
        default=None, description="The most one parcel may weigh, packaging included; none: no limit."
    )


@dataclass(frozen=True)
class ParcelItem:
    line: int  # index into the order's lines
    sku: str | None
    quantity: int


@dataclass
class PlannedParcel:
    weight: Weight
    items: list[ParcelItem]
    dimensions: Dimensions | None = None

    def to_model(self, reference: str | None = None) -> Parcel:
        return Parcel(weight=self.weight, dimensions=self.dimensions, reference=reference)


def _name(index: int, line: OrderLine) -> str:
    return f"line {index + 1} ({line.sku or line.title})"


def plan(lines: list[OrderLine], rules: PackingRules) -> list[PlannedParcel]:
    """The parcels for these order lines (those that need shipping), heaviest units packed first."""
    units: list[tuple[Weight, int]] = []
    for index, line in enumerate(lines):
        if not line.requires_shipping:
            continue
        weight = line.weight if line.weight is not None else rules.default_item_weight
        if weight is None:
            raise ParcelError(
                f"{_name(index, line)} has no weight: give its product a weight, or set the account's default "
                "item weight"
            )
        units.extend((weight, index) for _ in range(line.quantity))
    if not units:
        raise ParcelError("no line of the order needs shipping")
    capacity = None if rules.max_weight is None else _capacity(rules)
    units.sort(key=lambda unit: (-unit[0].exact_grams, unit[1]))
    loads: list[tuple[Weight, dict[int, int]]] = []
    for weight, index in units:
        if capacity is not None and capacity < weight:
            raise ParcelError(
                f"{_name(index, lines[index])} weighs {weight} a unit, more than the {capacity} a parcel may "
                f"hold under the {rules.max_weight} limit with {rules.packaging_weight} of packaging: ship it "
                "with a service that takes heavier parcels"
            )
        for slot, (load, counts) in enumerate(loads):
            if capacity is None or load + weight <= capacity:
                counts[index] = counts.get(index, 0) + 1
                loads[slot] = (load + weight, counts)
                break
        else:
            loads.append((weight, {index: 1}))
    return [
        PlannedParcel(
            weight=load + rules.packaging_weight,
            dimensions=rules.default_box,
            items=[ParcelItem(i, lines[i].sku, n) for i, n in sorted(counts.items())],
        )
        for load, counts in loads
    ]


def _capacity(rules: PackingRules) -> Weight:
    assert rules.max_weight is not None
    if not rules.packaging_weight < rules.max_weight:
        raise ParcelError(
            f"the packaging alone ({rules.packaging_weight}) reaches the {rules.max_weight} parcel limit: "
            "lower the account's packaging weight"
        )
    return Weight.grams(rules.max_weight.in_grams - rules.packaging_weight.in_grams)
