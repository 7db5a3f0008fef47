"""The Shopify sandbox behaves like Shopify's REST Admin API, OAuth install and webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import FaultSpec, SandboxConfig, run_in_thread
from crossdock.sandbox.shopify import ShopState, create_app

TOKEN = "shpat_test_token"
API = "/admin/api/2025-01"
HEADERS = {"X-Shopify-Access-Token": TOKEN}
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


def make_app(orders: int = 0, **kwargs: Any) -> Starlette:
    kwargs.setdefault("fast_limits", True)
    return create_app(SandboxConfig(orders=orders, token=TOKEN, **kwargs))


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://crossdock-demo.myshopify.com"
    )


def state_of(app: Starlette) -> ShopState:
    state: ShopState = app.state.sandbox
    return state


class Receiver:
    """Captures webhook deliveries in-process (the sandbox's sender posts to it through a mock transport)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def attach(self, app: Starlette) -> Receiver:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(200)

        state_of(app).sender.transport = httpx.MockTransport(handle)
        return self

    def topics(self) -> list[str]:
        return [r.headers["X-Shopify-Topic"] for r in self.requests]


def next_link(response: httpx.Response, rel: str = "next") -> str | None:
    header = response.headers.get("Link")
    if not header:
        return None
    for part in header.split(", "):
        url, rel_part = part.split("; ")
        if rel_part == f'rel="{rel}"':
            return url[1:-1]
    return None


# -- pagination and filters ----------------------------------------------------------------------------------


async def test_orders_paginate_across_pages_with_link_headers() -> None:
    app = make_app(orders=120)
    async with client(app) as c:
        first = await c.get(f"{API}/orders.json", params={"status": "any", "limit": 50}, headers=HEADERS)
        assert first.status_code == 200
        assert next_link(first, "previous") is None
        link = next_link(first)
        assert link is not None
        assert link.startswith("https://crossdock-demo.myshopify.com/admin/api/2025-01/orders.json?")
        assert set(dict(parse_qsl(urlsplit(link).query))) == {"limit", "page_info"}
        second = await c.get(link, headers=HEADERS)
        third = await c.get(next_link(second) or "", headers=HEADERS)
        assert next_link(third) is None and next_link(third, "previous") is not None
        back = await c.get(next_link(third, "previous") or "", headers=HEADERS)
    pages = [[o["id"] for o in r.json()["orders"]] for r in (first, second, third)]
    assert [len(p) for p in pages] == [50, 50, 20]
    ids = [i for page in pages for i in page]
    assert len(set(ids)) == 120
    # Newest first, and stable: the previous page of page 3 is page 2 again.
    assert ids == sorted(ids, reverse=True)
    assert [o["id"] for o in back.json()["orders"]] == pages[1]


async def test_single_page_has_no_link_header() -> None:
    app = make_app(orders=5)
    async with client(app) as c:
        response = await c.get(f"{API}/orders.json", params={"status": "any"}, headers=HEADERS)
    assert len(response.json()["orders"]) == 5
    assert "Link" not in response.headers


async def test_page_info_with_other_filters_is_400() -> None:
    app = make_app(orders=30)
    async with client(app) as c:
        first = await c.get(f"{API}/orders.json", params={"status": "any", "limit": 10}, headers=HEADERS)
        page_info = dict(parse_qsl(urlsplit(next_link(first) or "").query))["page_info"]
        refused = await c.get(
            f"{API}/orders.json", params={"page_info": page_info, "status": "any"}, headers=HEADERS
        )
        allowed = await c.get(
            f"{API}/orders.json", params={"page_info": page_info, "limit": 5, "fields": "id"}, headers=HEADERS
        )
    assert refused.status_code == 400
    assert "status cannot be passed when page_info is present" in refused.json()["errors"]["status"]
    assert allowed.status_code == 200
    assert all(set(o) == {"id"} for o in allowed.json()["orders"]) and len(allowed.json()["orders"]) == 5


async def test_tampered_page_info_is_400() -> None:
    app = make_app(orders=3)
    async with client(app) as c:
        response = await c.get(f"{API}/orders.json", params={"page_info": "not-a-cursor"}, headers=HEADERS)
    assert response.status_code == 400
    assert response.json() == {"errors": {"page_info": "Invalid value."}}


async def test_page_info_carries_the_filters() -> None:
    app = make_app(orders=200)
    state = state_of(app)
    async with client(app) as c:
        first = await c.get(f"{API}/orders.json", params={"status": "closed", "limit": 10}, headers=HEADERS)
        second = await c.get(next_link(first) or "", headers=HEADERS)
    for order in first.json()["orders"] + second.json()["orders"]:
        assert order["closed_at"] is not None
    assert state.count_closed() if hasattr(state, "count_closed") else True


@pytest.mark.parametrize(("limit", "status"), [(250, 200), (251, 400), (0, 400), ("abc", 400)])
async def test_limit_above_250_is_400(limit: object, status: int) -> None:
    app = make_app(orders=3)
    async with client(app) as c:
        response = await c.get(f"{API}/orders.json", params={"limit": limit}, headers=HEADERS)
    assert response.status_code == status
    if status == 400:
        assert "limit" in response.json()["errors"]


async def test_status_filter_defaults_to_open() -> None:
    app = make_app(orders=300)
    async with client(app) as c:
        default = await c.get(f"{API}/orders.json", params={"limit": 250}, headers=HEADERS)
        cancelled = await c.get(
            f"{API}/orders.json", params={"status": "cancelled", "limit": 250}, headers=HEADERS
        )
        counts = {
            s: (await c.get(f"{API}/orders/count.json", params={"status": s}, headers=HEADERS)).json()[
                "count"
            ]
            for s in ("open", "closed", "cancelled", "any")
        }
    assert all(o["closed_at"] is None and o["cancelled_at"] is None for o in default.json()["orders"])
    assert all(o["cancelled_at"] is not None for o in cancelled.json()["orders"])
    assert counts["any"] == 300 and counts["open"] + counts["closed"] == 300
    assert 0 < counts["cancelled"] < counts["closed"]
    assert len(default.json()["orders"]) == counts["open"]


async def test_updated_at_min_returns_only_recent_changes() -> None:
    app = make_app(orders=200, extra={"now": "2025-03-01T12:00:00+00:00"})
    state = state_of(app)
    async with client(app) as c:
        since = state.now().isoformat()
        state.advance(60)
        touched = list(state.orders())[10]
        await c.post(f"/_sandbox/orders/{touched.id}/update", json={"note": "changed"})
        response = await c.get(
            f"{API}/orders.json", params={"status": "any", "updated_at_min": since}, headers=HEADERS
        )
        count = await c.get(
            f"{API}/orders/count.json", params={"status": "any", "updated_at_min": since}, headers=HEADERS
        )
    assert [o["id"] for o in response.json()["orders"]] == [touched.id]
    assert response.json()["orders"][0]["note"] == "changed"
    assert count.json() == {"count": 1}


async def test_created_at_range_ids_since_id_and_fields() -> None:
    app = make_app(orders=100)
    state = state_of(app)
    orders = list(state.orders())
    lo, hi = orders[20], orders[29]
    async with client(app) as c:
        ranged = await c.get(
            f"{API}/orders.json",
            params={
                "status": "any",
                "created_at_min": state.renderer.ts(lo.created_ts),
                "created_at_max": state.renderer.ts(hi.created_ts),
                "fields": "id,created_at",
            },
            headers=HEADERS,
        )
        by_ids = await c.get(
            f"{API}/orders.json",
            params={"status": "any", "ids": f"{orders[3].id},{orders[7].id}"},
            headers=HEADERS,
        )
        since = await c.get(
            f"{API}/orders.json", params={"status": "any", "since_id": orders[94].id}, headers=HEADERS
        )
    assert {o["id"] for o in ranged.json()["orders"]} == {o.id for o in orders[20:30]}
    assert all(set(o) == {"id", "created_at"} for o in ranged.json()["orders"])
    assert {o["id"] for o in by_ids.json()["orders"]} == {orders[3].id, orders[7].id}
    # since_id pages ascend by id.
    assert [o["id"] for o in since.json()["orders"]] == [o.id for o in orders[95:]]


async def test_get_single_order_wrapped_and_404() -> None:
    app = make_app(orders=3)
    order_id = next(state_of(app).orders()).id
    async with client(app) as c:
        found = await c.get(f"{API}/orders/{order_id}.json", headers=HEADERS)
        missing = await c.get(f"{API}/orders/1.json", headers=HEADERS)
    assert found.json()["order"]["id"] == order_id
    assert missing.status_code == 404 and missing.json() == {"errors": "Not Found"}


# -- order JSON ----------------------------------------------------------------------------------------------


async def test_order_json_carries_protocol_fields() -> None:
    app = make_app(orders=40)
    async with client(app) as c:
        response = await c.get(f"{API}/orders.json", params={"status": "any", "limit": 40}, headers=HEADERS)
    orders = response.json()["orders"]
    for order in orders:
        assert isinstance(order["id"], int) and order["id"] > 2**32
        assert re.fullmatch(r"#\d{4,}", order["name"]) and order["order_number"] == int(order["name"][1:])
        assert order["admin_graphql_api_id"] == f"gid://shopify/Order/{order['id']}"
        for key in (
            "email",
            "created_at",
            "updated_at",
            "cancelled_at",
            "cancel_reason",
            "financial_status",
            "fulfillment_status",
            "currency",
            "total_price",
            "total_weight",
            "line_items",
            "shipping_address",
            "fulfillments",
        ):
            assert key in order
        assert datetime.fromisoformat(order["created_at"]).utcoffset() is not None
        assert isinstance(order["total_price"], str)
        for item in order["line_items"]:
            assert {
                "id",
                "variant_id",
                "product_id",
                "sku",
                "title",
                "quantity",
                "grams",
                "price",
                "requires_shipping",
                "fulfillment_status",
                "fulfillable_quantity",
            } <= set(item)
            assert isinstance(item["price"], str) and isinstance(item["grams"], int)
        address = order["shipping_address"]
        if address is not None:
            assert {
                "first_name",
                "last_name",
                "name",
                "company",
                "address1",
                "address2",
                "city",
                "province",
                "province_code",
                "zip",
                "country",
                "country_code",
                "phone",
                "latitude",
                "longitude",
            } <= set(address)
        total = Decimal(order["total_line_items_price"]) - Decimal(order["total_discounts"])
        assert Decimal(order["subtotal_price"]) == total
    assert {o["financial_status"] for o in orders} >= {"paid"}
    # Many countries and scripts appear among 40 orders.
    assert len({o["shipping_address"]["country_code"] for o in orders if o["shipping_address"]}) >= 5


async def test_zero_and_three_decimal_currencies_render_right() -> None:
    app = make_app()
    async with client(app) as c:
        jpy = await c.post("/_sandbox/orders", json={"currency": "JPY"})
        kwd = await c.post("/_sandbox/orders", json={"currency": "KWD"})
    for response, decimals in ((jpy, 0), (kwd, 3)):
        order = response.json()["order"]
        for amount in [order["total_price"], order["subtotal_price"]] + [
            i["price"] for i in order["line_items"]
        ]:
            assert ("." in amount) == (decimals > 0)
            if decimals:
                assert len(amount.split(".")[1]) == decimals


async def test_seeded_orders_are_deterministic_per_seed() -> None:
    async def first_page(seed: int) -> list[dict[str, Any]]:
        app = create_app(
            SandboxConfig(orders=20, seed=seed, token=TOKEN, extra={"now": "2025-01-01T00:00:00Z"})
        )
        async with client(app) as c:
            response = await c.get(f"{API}/orders.json", params={"status": "any"}, headers=HEADERS)
        return list(response.json()["orders"])

    assert await first_page(3) == await first_page(3)
    assert await first_page(3) != await first_page(4)


async def test_100k_orders_seed_and_page_quickly() -> None:
    import time

    started = time.perf_counter()
    app = make_app(orders=100_000)
    async with client(app) as c:
        response = await c.get(f"{API}/orders.json", params={"status": "any", "limit": 250}, headers=HEADERS)
        link = next_link(response)
        deep = await c.get(link or "", headers=HEADERS)
    assert len(deep.json()["orders"]) == 250
    assert time.perf_counter() - started < 10


# -- auth and limits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{"X-Shopify-Access-Token": "shpat_wrong"}, {}])
async def test_wrong_or_missing_token_is_401(headers: dict[str, str]) -> None:
    app = make_app(orders=1)
    async with client(app) as c:
        response = await c.get(f"{API}/orders.json", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"errors": INVALID_TOKEN}


async def test_version_must_be_yyyy_mm() -> None:
    app = make_app()
    async with client(app) as c:
        bad = await c.get("/admin/api/latest/orders.json", headers=HEADERS)
        odd = await c.get("/admin/api/2025-02/orders.json", headers=HEADERS)
    assert bad.status_code == 404
    # A month that is not a release falls forward to the next quarterly release.
    assert odd.status_code == 200 and odd.headers["X-Shopify-API-Version"] == "2025-04"


async def test_leaky_bucket_gives_429_with_retry_after_and_call_limit() -> None:
    app = make_app(fast_limits=False)
    async with client(app) as c:
        responses = [await c.get(f"{API}/orders/count.json", headers=HEADERS) for _ in range(41)]
    assert [r.status_code for r in responses[:40]] == [200] * 40
    assert responses[0].headers["X-Shopify-Shop-Api-Call-Limit"] == "1/40"
    assert responses[39].headers["X-Shopify-Shop-Api-Call-Limit"] == "40/40"
    throttled = responses[40]
    assert throttled.status_code == 429
    assert float(throttled.headers["Retry-After"]) > 0
    assert throttled.headers["X-Shopify-Shop-Api-Call-Limit"] == "40/40"
    assert "Exceeded 2 calls per second" in throttled.json()["errors"]


async def test_fast_limits_leak_quickly() -> None:
    app = make_app(fast_limits=True)
    state_of(app).bucket.level = 40.0
    async with client(app) as c:
        import asyncio

        await asyncio.sleep(0.05)
        response = await c.get(f"{API}/orders/count.json", headers=HEADERS)
    assert response.status_code == 200


async def test_fault_5xx_uses_shopify_error_shape_and_spares_admin() -> None:
    app = make_app(faults=FaultSpec(p_5xx=1.0))
    async with client(app) as c:
        failed = await c.get(f"{API}/orders.json", headers=HEADERS)
        admin = await c.get("/_sandbox/")
    assert failed.status_code in (500, 503)
    assert set(failed.json()) == {"errors"}
    assert admin.status_code == 200


# -- OAuth ----------------------------------------------------------------------------------------------------


def shopify_hmac(params: dict[str, str], secret: str) -> str:
    """Shopify's documented OAuth check: drop hmac, sort k=v pairs, join with &, hex HMAC-SHA256."""
    pairs = []
    for key, value in params.items():
        if key == "hmac":
            continue
        key = key.replace("%", "%25").replace("=", "%3D")
        pairs.append(f"{key}={value.replace('%', '%25')}".replace("&", "%26"))
    return hmac.new(secret.encode(), "&".join(sorted(pairs)).encode(), hashlib.sha256).hexdigest()


async def _install(c: httpx.AsyncClient, scope: str = "read_orders,write_fulfillments") -> dict[str, str]:
    page = await c.get(
        "/admin/oauth/authorize",
        params={
            "client_id": "sandbox-client-id",
            "scope": scope,
            "redirect_uri": "https://hub.test/oauth/cb",
            "state": "nonce-123",
        },
    )
    assert page.status_code == 200 and "Install app" in page.text
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    decision = await c.post("/admin/oauth/authorize", data={**form, "decision": "install"})
    assert decision.status_code == 302
    location = decision.headers["location"]
    assert location.startswith("https://hub.test/oauth/cb?")
    return dict(parse_qsl(urlsplit(location).query))


async def test_oauth_consent_callback_hmac_verifies_and_code_exchanges_once() -> None:
    app = make_app()
    async with client(app) as c:
        params = await _install(c)
        assert set(params) == {"code", "hmac", "host", "shop", "state", "timestamp"}
        assert params["state"] == "nonce-123" and params["shop"] == "crossdock-demo.myshopify.com"
        assert hmac.compare_digest(params["hmac"], shopify_hmac(params, "sandbox-client-secret"))
        assert params["hmac"] != shopify_hmac(params, "another-secret")
        exchange = {
            "client_id": "sandbox-client-id",
            "client_secret": "sandbox-client-secret",
            "code": params["code"],
        }
        first = await c.post("/admin/oauth/access_token", data=exchange)
        again = await c.post("/admin/oauth/access_token", json=exchange)
        token = first.json()["access_token"]
        orders = await c.get(f"{API}/orders.json", headers={"X-Shopify-Access-Token": token})
    assert first.status_code == 200 and first.json()["scope"] == "read_orders,write_fulfillments"
    assert again.status_code == 400 and again.json()["error"] == "invalid_request"
    assert orders.status_code == 200


async def test_oauth_code_exchange_accepts_json_and_refuses_wrong_secret() -> None:
    app = make_app()
    async with client(app) as c:
        params = await _install(c)
        wrong = await c.post(
            "/admin/oauth/access_token",
            json={"client_id": "sandbox-client-id", "client_secret": "nope", "code": params["code"]},
        )
        right = await c.post(
            "/admin/oauth/access_token",
            json={
                "client_id": "sandbox-client-id",
                "client_secret": "sandbox-client-secret",
                "code": params["code"],
            },
        )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    assert right.status_code == 200 and right.json()["access_token"].startswith("shpua_")


async def test_oauth_authorize_refuses_unknown_client() -> None:
    app = make_app()
    async with client(app) as c:
        response = await c.get(
            "/admin/oauth/authorize",
            params={"client_id": "who", "scope": "read_orders", "redirect_uri": "https://hub.test/cb"},
        )
    assert response.status_code == 400


async def test_oauth_cancel_does_not_redirect_with_code() -> None:
    app = make_app()
    async with client(app) as c:
        response = await c.post(
            "/admin/oauth/authorize",
            data={
                "client_id": "sandbox-client-id",
                "scope": "read_orders",
                "redirect_uri": "https://hub.test/cb",
                "decision": "cancel",
            },
        )
    assert response.status_code == 200 and "not installed" in response.text
    assert state_of(app).oauth_codes == {}


# -- webhooks ---------------------------------------------------------------------------------------------------


async def test_webhooks_are_signed_with_base64_hmac_and_full_headers() -> None:
    app = make_app(webhook_url="https://hub.test/hooks/1")
    receiver = Receiver().attach(app)
    async with client(app) as c:
        created = await c.post("/_sandbox/orders", json={})
    await state_of(app).sender.drain()
    assert receiver.topics() == ["orders/create", "orders/paid"]
    request = receiver.requests[0]
    expected = base64.b64encode(
        hmac.new(b"sandbox-client-secret", request.content, hashlib.sha256).digest()
    ).decode()
    assert request.headers["X-Shopify-Hmac-Sha256"] == expected
    assert request.headers["X-Shopify-Shop-Domain"] == "crossdock-demo.myshopify.com"
    assert re.fullmatch(r"\d{4}-\d{2}", request.headers["X-Shopify-API-Version"])
    for header in ("X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Triggered-At"):
        assert request.headers[header]
    # The payload is the bare order, not wrapped.
    assert json.loads(request.content)["id"] == created.json()["order"]["id"]
    await state_of(app).sender.stop()


async def test_dup_fault_doubles_deliveries() -> None:
    app = make_app(webhook_url="https://hub.test/hooks/1", faults=FaultSpec(p_dup_webhooks=1.0))
    receiver = Receiver().attach(app)
    async with client(app) as c:
        await c.post("/_sandbox/orders", json={"financial_status": "pending"})
    await state_of(app).sender.drain()
    assert receiver.topics() == ["orders/create", "orders/create"]
    ids = {r.headers["X-Shopify-Webhook-Id"] for r in receiver.requests}
    assert len(ids) == 1  # a duplicate is the same delivery, so dedupe on the id works
    await state_of(app).sender.stop()


async def test_webhook_subscriptions_create_list_deliver_delete() -> None:
    app = make_app()
    receiver = Receiver().attach(app)
    async with client(app) as c:
        created = await c.post(
            f"{API}/webhooks.json",
            headers=HEADERS,
            json={
                "webhook": {
                    "topic": "orders/cancelled",
                    "address": "https://hub.test/hooks/c",
                    "format": "json",
                }
            },
        )
        duplicate = await c.post(
            f"{API}/webhooks.json",
            headers=HEADERS,
            json={
                "webhook": {
                    "topic": "orders/cancelled",
                    "address": "https://hub.test/hooks/c",
                    "format": "json",
                }
            },
        )
        bad_topic = await c.post(
            f"{API}/webhooks.json",
            headers=HEADERS,
            json={"webhook": {"topic": "orders/exploded", "address": "https://hub.test/x"}},
        )
        missing_root = await c.post(f"{API}/webhooks.json", headers=HEADERS, json={"topic": "orders/create"})
        listed = await c.get(f"{API}/webhooks.json", headers=HEADERS)
        order = (await c.post("/_sandbox/orders", json={})).json()["order"]
        await c.post(f"/_sandbox/orders/{order['id']}/cancel", json={"reason": "customer"})
        await state_of(app).sender.drain()
        sub_id = created.json()["webhook"]["id"]
        deleted = await c.delete(f"{API}/webhooks/{sub_id}.json", headers=HEADERS)
        gone = await c.get(f"{API}/webhooks/{sub_id}.json", headers=HEADERS)
    assert created.status_code == 201 and created.json()["webhook"]["topic"] == "orders/cancelled"
    assert duplicate.status_code == 422 and "address" in duplicate.json()["errors"]
    assert bad_topic.status_code == 422 and "topic" in bad_topic.json()["errors"]
    assert missing_root.status_code == 400
    assert missing_root.json() == {"errors": {"webhook": "Required parameter missing or invalid"}}
    assert [w["id"] for w in listed.json()["webhooks"]] == [sub_id]
    # Only the subscribed topic reaches the subscription's address.
    assert receiver.topics() == ["orders/cancelled"]
    cancelled = json.loads(receiver.requests[0].content)
    assert cancelled["cancel_reason"] == "customer" and cancelled["cancelled_at"] is not None
    assert deleted.status_code == 200 and gone.status_code == 404
    await state_of(app).sender.stop()


# -- fulfillment ------------------------------------------------------------------------------------------------


async def _fulfillment_orders(c: httpx.AsyncClient, order_id: int) -> list[dict[str, Any]]:
    response = await c.get(f"{API}/orders/{order_id}/fulfillment_orders.json", headers=HEADERS)
    assert response.status_code == 200
    return list(response.json()["fulfillment_orders"])


async def test_fulfillment_flow_closes_fulfillment_orders() -> None:
    app = make_app(webhook_url="https://hub.test/hooks/1")
    receiver = Receiver().attach(app)
    async with client(app) as c:
        order = (
            await c.post(
                "/_sandbox/orders",
                json={
                    "line_items": [
                        {"sku": "MUG-CERAMIC", "quantity": 2},
                        {"sku": "TSHIRT-BLK-M", "quantity": 1},
                    ]
                },
            )
        ).json()["order"]
        [fo] = await _fulfillment_orders(c, order["id"])
        assert fo["status"] == "open" and fo["order_id"] == order["id"]
        mug, _shirt = fo["line_items"]
        partial = await c.post(
            f"{API}/fulfillments.json",
            headers=HEADERS,
            json={
                "fulfillment": {
                    "line_items_by_fulfillment_order": [
                        {
                            "fulfillment_order_id": fo["id"],
                            "fulfillment_order_line_items": [{"id": mug["id"], "quantity": 1}],
                        }
                    ],
                    "tracking_info": {
                        "number": "1Z999AA10123456784",
                        "company": "UPS",
                        "url": "https://ups.test/1Z",
                    },
                    "notify_customer": False,
                }
            },
        )
        assert partial.status_code == 201
        assert partial.json()["fulfillment"]["tracking_number"] == "1Z999AA10123456784"
        assert partial.json()["fulfillment"]["status"] == "success"
        after_partial = (await c.get(f"{API}/orders/{order['id']}.json", headers=HEADERS)).json()["order"]
        [fo_partial] = await _fulfillment_orders(c, order["id"])
        too_many = await c.post(
            f"{API}/fulfillments.json",
            headers=HEADERS,
            json={
                "fulfillment": {
                    "line_items_by_fulfillment_order": [
                        {
                            "fulfillment_order_id": fo["id"],
                            "fulfillment_order_line_items": [{"id": mug["id"], "quantity": 2}],
                        }
                    ]
                }
            },
        )
        unknown_fo = await c.post(
            f"{API}/fulfillments.json",
            headers=HEADERS,
            json={"fulfillment": {"line_items_by_fulfillment_order": [{"fulfillment_order_id": 42}]}},
        )
        rest = await c.post(
            f"{API}/fulfillments.json",
            headers=HEADERS,
            json={
                "fulfillment": {
                    "line_items_by_fulfillment_order": [{"fulfillment_order_id": fo["id"]}],
                    "tracking_info": {"number": "JD014600006281234567", "company": "DHL Express"},
                }
            },
        )
        [fo_closed] = await _fulfillment_orders(c, order["id"])
        again = await c.post(
            f"{API}/fulfillments.json",
            headers=HEADERS,
            json={"fulfillment": {"line_items_by_fulfillment_order": [{"fulfillment_order_id": fo["id"]}]}},
        )
        final = (await c.get(f"{API}/orders/{order['id']}.json", headers=HEADERS)).json()["order"]
        fulfillments = (await c.get(f"{API}/orders/{order['id']}/fulfillments.json", headers=HEADERS)).json()
        tracked = await c.post(
            f"{API}/fulfillments/{rest.json()['fulfillment']['id']}/update_tracking.json",
            headers=HEADERS,
            json={
                "fulfillment": {
                    "tracking_info": {"number": "JD0199", "url": "https://dhl.test/JD0199"},
                    "notify_customer": False,
                }
            },
        )
    assert after_partial["fulfillment_status"] == "partial"
    assert after_partial["updated_at"] >= order["updated_at"]
    assert fo_partial["status"] == "in_progress"
    assert [li["fulfillable_quantity"] for li in fo_partial["line_items"]] == [1, 1]
    assert too_many.status_code == 422
    assert unknown_fo.status_code == 404
    assert rest.status_code == 201
    assert fo_closed["status"] == "closed" and fo_closed["supported_actions"] == []
    assert again.status_code == 422
    assert final["fulfillment_status"] == "fulfilled" and final["closed_at"] is not None
    assert all(
        li["fulfillment_status"] == "fulfilled" and li["fulfillable_quantity"] == 0
        for li in final["line_items"]
    )
    assert [f["tracking_company"] for f in fulfillments["fulfillments"]] == ["UPS", "DHL Express"]
    assert tracked.status_code == 200 and tracked.json()["fulfillment"]["tracking_number"] == "JD0199"
    await state_of(app).sender.drain()
    topics = receiver.topics()
    assert topics.count("orders/partially_fulfilled") == 1 and topics.count("orders/fulfilled") == 1
    assert topics.count("orders/updated") == 3
    await state_of(app).sender.stop()


async def test_fulfillment_without_root_is_400() -> None:
    app = make_app()
    async with client(app) as c:
        response = await c.post(f"{API}/fulfillments.json", headers=HEADERS, json={"tracking_info": {}})
    assert response.status_code == 400
    assert response.json() == {"errors": {"fulfillment": "Required parameter missing or invalid"}}


async def test_seeded_fulfilled_orders_have_closed_fulfillment_orders() -> None:
    app = make_app(orders=80)
    async with client(app) as c:
        shipped = await c.get(
            f"{API}/orders.json", params={"status": "any", "fulfillment_status": "shipped"}, headers=HEADERS
        )
        order = shipped.json()["orders"][0]
        fos = await _fulfillment_orders(c, order["id"])
    assert order["fulfillments"] and order["fulfillments"][0]["tracking_number"]
    assert all(fo["status"] == "closed" for fo in fos)


# -- inventory ---------------------------------------------------------------------------------------------------


async def test_inventory_set_and_list() -> None:
    app = make_app()
    async with client(app) as c:
        catalog = (await c.get("/_sandbox/inventory")).json()
        item = catalog["items"][0]["inventory_item_id"]
        location = catalog["locations"][0]["id"]
        response = await c.post(
            f"{API}/inventory_levels/set.json",
            headers=HEADERS,
            json={"location_id": location, "inventory_item_id": item, "available": 17},
        )
        adjusted = await c.post(
            f"{API}/inventory_levels/adjust.json",
            headers=HEADERS,
            json={"location_id": location, "inventory_item_id": item, "available_adjustment": -2},
        )
        listed = await c.get(
            f"{API}/inventory_levels.json",
            headers=HEADERS,
            params={"inventory_item_ids": str(item), "location_ids": str(location)},
        )
        unknown = await c.post(
            f"{API}/inventory_levels/set.json",
            headers=HEADERS,
            json={"location_id": 1, "inventory_item_id": item, "available": 1},
        )
        no_filter = await c.get(f"{API}/inventory_levels.json", headers=HEADERS)
        locations = await c.get(f"{API}/locations.json", headers=HEADERS)
    assert response.status_code == 200
    level = response.json()["inventory_level"]
    assert (
        level["available"] == 17 and level["inventory_item_id"] == item and level["location_id"] == location
    )
    assert adjusted.json()["inventory_level"]["available"] == 15
    assert [lv["available"] for lv in listed.json()["inventory_levels"]] == [15]
    assert unknown.status_code == 404
    assert no_filter.status_code == 422
    assert location in [loc["id"] for loc in locations.json()["locations"]]


# -- admin API -------------------------------------------------------------------------------------------------


async def test_admin_create_update_cancel_emit_webhooks() -> None:
    app = make_app(webhook_url="https://hub.test/hooks/1")
    receiver = Receiver().attach(app)
    async with client(app) as c:
        order = (
            await c.post(
                "/_sandbox/orders",
                json={
                    "email": "ана@example.com",
                    "financial_status": "pending",
                    "shipping_address": {"country_code": "JP"},
                    "line_items": [{"title": "Custom print", "price": "1200", "quantity": 1, "grams": 300}],
                },
            )
        ).json()["order"]
        paid = (
            await c.post(f"/_sandbox/orders/{order['id']}/update", json={"financial_status": "paid"})
        ).json()
        cancelled = (
            await c.post(f"/_sandbox/orders/{order['id']}/cancel", json={"reason": "inventory"})
        ).json()
        twice = await c.post(f"/_sandbox/orders/{order['id']}/cancel", json={})
        deliveries = (await c.post("/_sandbox/webhooks/drain"), await c.get("/_sandbox/webhooks"))[1].json()
    assert order["currency"] == "JPY" and order["line_items"][0]["price"] == "1200"
    assert order["line_items"][0]["product_id"] is None
    assert paid["order"]["financial_status"] == "paid"
    assert cancelled["order"]["cancel_reason"] == "inventory" and cancelled["order"]["closed_at"]
    assert twice.status_code == 422
    assert receiver.topics() == [
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/updated",
    ]
    assert [d["topic"] for d in deliveries["deliveries"]] == receiver.topics()
    await state_of(app).sender.stop()


async def test_admin_tick_changes_orders_and_clock_advances() -> None:
    app = make_app(orders=50, extra={"now": "2025-06-01T00:00:00Z"})
    state = state_of(app)
    async with client(app) as c:
        before = (await c.get("/_sandbox/clock")).json()["now"]
        after = (await c.post("/_sandbox/clock/advance", json={"seconds": 3600})).json()["now"]
        ticked = (await c.post("/_sandbox/tick", json={"changes": 10})).json()["changes"]
        recent = await c.get(
            f"{API}/orders/count.json", headers=HEADERS, params={"status": "any", "updated_at_min": after}
        )
    assert datetime.fromisoformat(after) - datetime.fromisoformat(before) >= timedelta(seconds=3600)
    assert len(ticked) == 10
    changed = {change["order_id"] for change in ticked}
    assert recent.json()["count"] == len(changed)
    assert len(state) >= 50


def test_registry_builds_the_shopify_sandbox() -> None:
    app = create_sandbox_app("shopify", SandboxConfig(token=TOKEN))
    assert isinstance(app.state.sandbox, ShopState)


# -- the official ShopifyAPI SDK against the running sandbox ------------------------------------------------------


@pytest.fixture
def sdk_site() -> Iterator[tuple[str, ShopState]]:
    import shopify

    app = make_app(orders=23)
    with run_in_thread(app) as base_url:
        # The SDK builds https://{name}.myshopify.com from a shop URL, so it cannot reach a local http host on
        # its own. Its supported override is the resource site: activate a normal session (token header,
        # version), then point ShopifyResource.site at the sandbox. No SDK code is patched.
        session = shopify.Session("crossdock-demo.myshopify.com", "2025-01", TOKEN)
        shopify.ShopifyResource.activate_session(session)
        shopify.ShopifyResource.site = f"{base_url}/admin/api/2025-01"
        try:
            yield base_url, state_of(app)
        finally:
            shopify.ShopifyResource.clear_session()


def test_sdk_lists_orders_across_pages(sdk_site: tuple[str, ShopState]) -> None:
    import shopify

    _, state = sdk_site
    page = shopify.Order.find(limit=10, status="any")
    seen = [o.id for o in page]
    pages = 1
    while page.has_next_page():
        page = page.next_page()
        seen.extend(o.id for o in page)
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(o.id for o in state.orders())
    assert page.has_previous_page()
    assert shopify.Order.count(status="any") == 23


def test_sdk_creates_a_fulfillment_from_fulfillment_orders(sdk_site: tuple[str, ShopState]) -> None:
    import shopify

    _, state = sdk_site
    order = next(o for o in shopify.Order.find(limit=50, status="open", fulfillment_status="unshipped"))
    [fo] = shopify.FulfillmentOrders.find(order_id=order.id)
    assert fo.status == "open"
    # FulfillmentV2 is the SDK's resource for POST /fulfillments.json (the fulfillment-orders model);
    # shopify.Fulfillment posts to the order-scoped legacy path that Shopify retired.
    fulfillment = shopify.FulfillmentV2(
        {
            "line_items_by_fulfillment_order": [{"fulfillment_order_id": fo.id}],
            "tracking_info": {"number": "1Z999AA10123456784", "company": "UPS"},
            "notify_customer": False,
        }
    )
    assert fulfillment.save(), fulfillment.errors.full_messages()
    assert fulfillment.status == "success" and fulfillment.tracking_number == "1Z999AA10123456784"
    read_back = shopify.Fulfillment.find(fulfillment.id, order_id=order.id)
    read_back.update_tracking({"number": "1Z999AA10123456785", "company": "UPS"}, False)
    assert read_back.tracking_number == "1Z999AA10123456785"
    assert shopify.Order.find(order.id).fulfillment_status == "fulfilled"
    [closed] = shopify.FulfillmentOrders.find(order_id=order.id)
    assert closed.status == "closed"
    assert state.get(order.id) is not None


def test_sdk_validates_the_sandbox_oauth_callback_hmac() -> None:
    import shopify

    app = make_app()

    async def install() -> dict[str, str]:
        async with client(app) as c:
            return await _install(c)

    import asyncio

    params = asyncio.run(install())
    shopify.Session.setup(api_key="sandbox-client-id", secret="sandbox-client-secret")
    try:
        assert shopify.Session.validate_params(params)
        assert not shopify.Session.validate_params({**params, "shop": "evil.myshopify.com"})
    finally:
        shopify.Session.setup(api_key=None, secret=None)


async def test_token_without_scope_is_403() -> None:
    app = make_app()
    async with client(app) as c:
        params = await _install(c, scope="read_orders")
        token = (
            await c.post(
                "/admin/oauth/access_token",
                data={
                    "client_id": "sandbox-client-id",
                    "client_secret": "sandbox-client-secret",
                    "code": params["code"],
                },
            )
        ).json()["access_token"]
        headers = {"X-Shopify-Access-Token": token}
        listed = await c.get(f"{API}/orders.json", headers=headers)
        refused = await c.post(
            f"{API}/inventory_levels/set.json",
            headers=headers,
            json={"location_id": 1, "inventory_item_id": 1, "available": 1},
        )
    assert listed.status_code == 200
    assert refused.status_code == 403
    assert refused.json() == {
        "errors": "[API] This action requires merchant approval for write_inventory scope."
    }


def test_admin_install_link_is_signed_like_shopify() -> None:
    import asyncio

    import shopify

    app = make_app()

    async def install_link() -> dict[str, Any]:
        async with client(app) as c:
            response = await c.get(
                "/_sandbox/install", params={"app_url": "https://hub.test/oauth/shopify/start"}
            )
            return dict(response.json())

    link = asyncio.run(install_link())
    params = dict(parse_qsl(urlsplit(link["url"]).query))
    assert link["url"].startswith("https://hub.test/oauth/shopify/start?")
    assert set(params) == {"host", "shop", "timestamp", "hmac"}
    shopify.Session.setup(api_key="sandbox-client-id", secret="sandbox-client-secret")
    try:
        assert shopify.Session.validate_params(params)
    finally:
        shopify.Session.setup(api_key=None, secret=None)
