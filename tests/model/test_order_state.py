import itertools

import pytest

from crossdock.model import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    check_transition,
    path_to,
)

ALL = list(OrderStatus)
LEGAL = [(a, b) for a in ALL for b in sorted(TRANSITIONS[a])]
ILLEGAL = [(a, b) for a, b in itertools.product(ALL, ALL) if b not in TRANSITIONS[a]]


def order(status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(
        currency="EUR",
        status=status,
        lines=[OrderLine(title="Mug", quantity=1, unit_price=Money.of("3.50", "EUR"))],
    )


def test_the_documented_happy_path_is_legal() -> None:
    o = order()
    for step in ["paid", "ready_to_ship", "partially_shipped", "shipped", "delivered", "refunded"]:
        o.transition(OrderStatus(step))
    assert o.status is OrderStatus.REFUNDED


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_every_legal_transition_is_allowed(current: OrderStatus, target: OrderStatus) -> None:
    o = order(current)
    o.transition(target)
    assert o.status is target


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_every_illegal_transition_is_refused_with_a_clear_error(
    current: OrderStatus, target: OrderStatus
) -> None:
    o = order(current)
    with pytest.raises(IllegalTransition) as info:
        o.transition(target)
    assert o.status is current
    assert f"cannot go from {current} to {target}" in str(info.value)
    assert ("it is final" in str(info.value)) == (current in TERMINAL)


def test_there_are_many_illegal_moves_and_terminal_states_are_final() -> None:
    assert len(ILLEGAL) > 40
    assert {OrderStatus.CANCELLED, OrderStatus.REFUNDED} == TERMINAL
    for state in TERMINAL:
        with pytest.raises(IllegalTransition):
            check_transition(state, OrderStatus.PAID)


def test_status_cannot_be_assigned_around_the_state_machine_by_validation() -> None:
    with pytest.raises(ValueError):
        order().status = "teleported"  # type: ignore[assignment]


def test_path_to_walks_legal_steps_only() -> None:
    assert path_to(OrderStatus.PENDING, OrderStatus.SHIPPED) == [
        OrderStatus.PAID,
        OrderStatus.READY_TO_SHIP,
        OrderStatus.SHIPPED,
    ]
    assert path_to(OrderStatus.PAID, OrderStatus.PAID) == []
    with pytest.raises(IllegalTransition):
        path_to(OrderStatus.SHIPPED, OrderStatus.PENDING)


def test_order_line_quantity_must_be_positive() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError):
            OrderLine(title="Mug", quantity=bad)


def test_line_prices_must_be_in_the_order_currency() -> None:
    with pytest.raises(ValueError, match=r"lines\[0\].unit_price is in USD but the order is in EUR"):
        Order(currency="EUR", lines=[OrderLine(title="Mug", quantity=1, unit_price=Money.of("1", "USD"))])
