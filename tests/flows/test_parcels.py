"""Parcels: contents plus packaging, the default box, heaviest units first into the first parcel they fit
under the carrier's limit, and errors that name the line and what to set."""

from __future__ import annotations

import pytest

from crossdock.flows.parcels import PackingRules, ParcelError, ParcelItem, plan
from crossdock.model import Dimensions, Length, OrderLine, Weight


def line(sku: str, grams: int | None, quantity: int = 1, *, ships: bool = True) -> OrderLine:
    return OrderLine(
        sku=sku,
        title=sku.title(),
        quantity=quantity,
        weight=Weight.grams(grams) if grams is not None else None,
        requires_shipping=ships,
    )


BOX = Dimensions(length=Length.mm(400), width=Length.mm(300), height=Length.mm(200))


def test_one_parcel_weighs_its_contents_and_packaging_in_the_default_box() -> None:
    lines = [line("mug", 350, 2), line("gift-card", 5, ships=False), line("tee", 180)]
    (parcel,) = plan(lines, PackingRules(packaging_weight=Weight.grams(120), default_box=BOX))
    assert parcel.weight == Weight.grams(350 * 2 + 180 + 120)
    assert parcel.dimensions == BOX
    assert parcel.items == [ParcelItem(0, "mug", 2), ParcelItem(2, "tee", 1)]


def test_units_in_pounds_and_kilograms_add_up_exactly() -> None:
    lines = [
        OrderLine(sku="a", title="A", quantity=1, weight=Weight(value="1", unit="lb")),
        OrderLine(sku="b", title="B", quantity=1, weight=Weight(value="0.5", unit="kg")),
    ]
    (parcel,) = plan(lines, PackingRules())
    assert parcel.weight == Weight.grams("953.59237")


def test_over_the_limit_the_heaviest_units_go_first_into_the_first_parcel_they_fit() -> None:
    lines = [line("anvil", 12000), line("brick", 4000, 3), line("feather", 10, 2)]
    parcels = plan(lines, PackingRules(packaging_weight=Weight.grams(500), max_weight=Weight.grams(20000)))
    # capacity 19.5 kg: [anvil 12 + brick 4 + feathers] then [brick 4 + brick 4]
    assert [p.weight for p in parcels] == [Weight.grams(12000 + 4000 + 20 + 500), Weight.grams(8000 + 500)]
    assert parcels[0].items == [
        ParcelItem(0, "anvil", 1),
        ParcelItem(1, "brick", 1),
        ParcelItem(2, "feather", 2),
    ]
    assert parcels[1].items == [ParcelItem(1, "brick", 2)]
    shipped = sum(item.quantity for p in parcels for item in p.items)
    assert shipped == 1 + 3 + 2  # every unit in exactly one parcel
    assert all(p.weight <= Weight.grams(20000) for p in parcels)


def test_many_units_split_evenly_enough() -> None:
    parcels = plan([line("tile", 1000, 95)], PackingRules(max_weight=Weight(value="31.5", unit="kg")))
    assert [sum(i.quantity for i in p.items) for p in parcels] == [31, 31, 31, 2]


def test_the_default_item_weight_stands_in_for_missing_weights() -> None:
    (parcel,) = plan([line("ebay-item", None, 2)], PackingRules(default_item_weight=Weight.grams(250)))
    assert parcel.weight == Weight.grams(500)


@pytest.mark.parametrize(
    ("lines", "rules", "message"),
    [
        ([line("mug", 300), line("ebay-item", None)], PackingRules(), "line 2 (ebay-item) has no weight"),
        ([line("gift-card", 5, ships=False)], PackingRules(), "no line of the order needs shipping"),
        (
            [line("piano", 40000)],
            PackingRules(packaging_weight=Weight.grams(500), max_weight=Weight.grams(31500)),
            "line 1 (piano) weighs 40000 g a unit, more than the 31000 g a parcel may hold",
        ),
        (
            [line("mug", 300)],
            PackingRules(packaging_weight=Weight.grams(2000), max_weight=Weight.grams(2000)),
            "lower the account's packaging weight",
        ),
    ],
)
def test_what_cannot_be_packed_is_explained(
    lines: list[OrderLine], rules: PackingRules, message: str
) -> None:
    with pytest.raises(ParcelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(lines, rules)
