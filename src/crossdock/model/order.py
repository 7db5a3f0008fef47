"""Orders, their lines and the order state machine."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from crossdock.model.address import Address, check_email
from crossdock.model.money import Money
from crossdock.model.units import Weight


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    READY_TO_SHIP = "ready_to_ship"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


S = OrderStatus
# Every legal move. A channel that reports a later state (an order paid and shipped elsewhere) is walked
# there through path_to(), so each step is still a legal one and lands on the timeline.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.PAID, S.CANCELLED}),
    S.PAID: frozenset({S.READY_TO_SHIP, S.CANCELLED, S.REFUNDED}),
    S.READY_TO_SHIP: frozenset({S.PARTIALLY_SHIPPED, S.SHIPPED, S.CANCELLED, S.REFUNDED}),
    S.PARTIALLY_SHIPPED: frozenset({S.SHIPPED, S.REFUNDED}),
    S.SHIPPED: frozenset({S.DELIVERED, S.REFUNDED}),
    S.DELIVERED: frozenset({S.REFUNDED}),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


class IllegalTransition(ValueError):
    def __init__(self, current: OrderStatus, target: OrderStatus) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        super().__init__(
            f"an order cannot go from {current} to {target}; from {current} it can go to {allowed}"
        )
        self.current = current
        self.target = target


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: OrderStatus, target: OrderStatus) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(current, target)


def path_to(current: OrderStatus, target: OrderStatus) -> list[OrderStatus]:
    """The shortest chain of legal steps from current to target (empty if equal); IllegalTransition if none."""
    if current == target:
        return []
    frontier: list[list[OrderStatus]] = [[current]]
    seen = {current}
    while frontier:
        nxt: list[list[OrderStatus]] = []
        for path in frontier:
            for step in sorted(TRANSITIONS[path[-1]]):
                if step in seen:
                    continue
                if step == target:
                    return [*path[1:], step]
                seen.add(step)
                nxt.append([*path, step])
        frontier = nxt
    raise IllegalTransition(current, target)


class Customer(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str | None = None
    email: str | None = None
    phone: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else check_email(value)


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str | None = None
    title: str = Field(min_length=1)
    quantity: int = Field(gt=0)
    unit_price: Money | None = None  # None while a channel withholds prices (Amazon Pending orders)
    weight: Weight | None = None  # per unit
    requires_shipping: bool = True
    external_id: str | None = None

    @field_validator("quantity", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("quantity must be a whole number")
        return value

    @property
    def total(self) -> Money | None:
        return None if self.unit_price is None else self.unit_price * self.quantity

    @property
    def total_weight(self) -> Weight | None:
        return None if self.weight is None else self.weight * self.quantity


class Totals(BaseModel):
    model_config = ConfigDict(frozen=True)

    subtotal: Money | None = None
    shipping: Money | None = None
    tax: Money | None = None
    discount: Money | None = None
    total: Money | None = None


class Order(BaseModel):
    """The canonical order. Its status changes only through transition()."""

    model_config = ConfigDict(validate_assignment=True)

    id: UUID | None = None
    status: OrderStatus = OrderStatus.PENDING
    currency: str
    customer: Customer = Field(default_factory=Customer)
    shipping_address: Address | None = None
    billing_address: Address | None = None
    lines: list[OrderLine] = Field(min_length=1)
    totals: Totals = Field(default_factory=Totals)
    connection_id: UUID | None = None
    external_id: str | None = None
    external_number: str | None = None
    placed_at: AwareDatetime | None = None
    notes: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        from crossdock.model.money import check_currency

        return check_currency(value)

    @model_validator(mode="after")
    def _one_currency(self) -> Order:
        for i, line in enumerate(self.lines):
            if line.unit_price is not None and line.unit_price.currency != self.currency:
                raise ValueError(
                    f"lines[{i}].unit_price is in {line.unit_price.currency} but the order is in {self.currency}"
                )
        for name in ("subtotal", "shipping", "tax", "discount", "total"):
            money = getattr(self.totals, name)
            if money is not None and money.currency != self.currency:
                raise ValueError(f"totals.{name} is in {money.currency} but the order is in {self.currency}")
        return self

    def transition(self, target: OrderStatus) -> None:
        check_transition(self.status, target)
        self.status = target

    @property
    def needs_shipping(self) -> bool:
        return any(line.requires_shipping for line in self.lines)

    @property
    def lines_total(self) -> Money | None:
        total = Money.zero(self.currency)
        for line in self.lines:
            if line.total is None:
                return None
            total = total + line.total
        return total

    @property
    def weight(self) -> Weight | None:
        total = Weight.grams(0)
        for line in self.lines:
            if not line.requires_shipping:
                continue
            if line.total_weight is None:
                return None
            total = total + line.total_weight
        return total


def utc_now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
