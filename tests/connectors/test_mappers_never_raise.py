"""No JSON a remote can send makes a channel mapper raise: it maps, or it reports problems.

Three kinds of input: arbitrary JSON, dictionaries built from the remote's own field names, and real payloads
(the documented fixtures) with one value somewhere replaced or removed. A mapper's own bugs would surface as
the INTERNAL problem of the `guarded` safety net, so the tests also require that it never fires.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossdock.connectors import amazon, ebay, shopify
from crossdock.connectors.base import Mapped
from crossdock.connectors.remote_json import INTERNAL
from crossdock.model import Order
from tests.connectors import test_amazon_mapping as amazon_fixtures
from tests.connectors import test_ebay_mapping as ebay_fixtures
from tests.connectors import test_shopify_mapping as shopify_fixtures

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "12.345",
            "1e400",
            "NaN",
            "JPY",
            "KWD",
            "XX",
            "US",
            "2024-03-14T09:27:10-04:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "paid",
            "Pending",
            "FULFILLED",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=12,
)


def shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dictionaries using the remote's own field names, so the mapper gets past its first checks."""
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=10)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += paths(child, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, fixtures: list[Any]) -> Any:
    """A real payload with one value replaced by arbitrary JSON, or removed."""
    payload = copy.deepcopy(draw(st.sampled_from(fixtures)))
    path = draw(st.sampled_from(paths(payload)))
    parent: Any = payload
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return payload


def check(mapped: Mapped) -> None:
    assert isinstance(mapped, Mapped)
    assert all(problem.field != INTERNAL for problem in mapped.problems), mapped.problems
    assert all(problem.field and problem.reason for problem in mapped.problems)
    if mapped.value is not None:
        assert isinstance(mapped.value, Order) and mapped.problems == []
    else:
        assert mapped.problems


SHOPIFY_ORDERS = [
    shopify_fixtures.ORDER,
    shopify_fixtures.ORDER_JPY,
    shopify_fixtures.ORDER_KWD,
    shopify_fixtures.ORDER_EDITED,
    shopify_fixtures.ORDER_MINIMAL,
]
EBAY_ORDERS = [ebay_fixtures.ORDER, ebay_fixtures.ORDER_EUR_CYRILLIC, ebay_fixtures.ORDER_MINIMAL]
AMAZON_ORDERS = [
    (amazon_fixtures.ORDER, amazon_fixtures.ITEMS),
    (amazon_fixtures.ORDER_PENDING, amazon_fixtures.ITEMS_PENDING),
    (amazon_fixtures.ORDER_JP, amazon_fixtures.ITEMS_JP),
    (amazon_fixtures.ORDER_CANCELED, amazon_fixtures.ITEMS_CANCELED),
]


@SETTINGS
@given(json_values)
def test_shopify_mapper_never_raises_on_arbitrary_json(payload: Any) -> None:
    check(shopify.map_order(payload))


@SETTINGS
@given(shaped(sorted(shopify_fixtures.ORDER)))
def test_shopify_mapper_never_raises_on_shopify_shaped_json(payload: dict[str, Any]) -> None:
    check(shopify.map_order(payload))


@SETTINGS
@given(mutated(SHOPIFY_ORDERS))
def test_shopify_mapper_never_raises_on_damaged_orders(payload: Any) -> None:
    check(shopify.map_order(payload))


@SETTINGS
@given(json_values)
def test_ebay_mapper_never_raises_on_arbitrary_json(payload: Any) -> None:
    check(ebay.map_order(payload))


@SETTINGS
@given(shaped(sorted(ebay_fixtures.ORDER)))
def test_ebay_mapper_never_raises_on_ebay_shaped_json(payload: dict[str, Any]) -> None:
    check(ebay.map_order(payload))


@SETTINGS
@given(mutated(EBAY_ORDERS))
def test_ebay_mapper_never_raises_on_damaged_orders(payload: Any) -> None:
    check(ebay.map_order(payload))


@SETTINGS
@given(json_values, json_values)
def test_amazon_mapper_never_raises_on_arbitrary_json(order: Any, items: Any) -> None:
    check(amazon.map_order(order, items))


@SETTINGS
@given(shaped(sorted(amazon_fixtures.ORDER)), st.lists(shaped(sorted(amazon_fixtures.ITEMS[0])), max_size=2))
def test_amazon_mapper_never_raises_on_amazon_shaped_json(order: dict[str, Any], items: list[Any]) -> None:
    check(amazon.map_order(order, items))


@SETTINGS
@given(mutated([[order, items] for order, items in AMAZON_ORDERS]))
def test_amazon_mapper_never_raises_on_damaged_orders(pair: list[Any]) -> None:
    check(amazon.map_order(pair[0], pair[1]))
