"""The eBay sandbox behaves like api.ebay.com: OAuth user tokens, getOrders filters and paging, shipping
fulfillments and the errors eBay returns. There is no official eBay Python SDK, so requests follow the
documented examples (developer.ebay.com/api-docs/sell/fulfillment)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from crossdock.sandbox.common import FaultSpec, SandboxConfig
from crossdock.sandbox.ebay import EbayState, create_app

API = "/sell/fulfillment/v1"
TOKEN = "v^1.1#i^1#sandbox-fixed-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCOPE = "https://api.ebay.com/oauth/api_scope/sell.fulfillment"
READONLY = "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly"
CALLBACK = "https://hub.example/oauth/ebay/callback"


def make_app(orders: int = 0, **extra: str) -> Starlette:
    return create_app(SandboxConfig(seed=7, orders=orders, token=TOKEN, extra=dict(extra)))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(make_app(orders=130)) as c:
        yield c


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.ebay.com")


def state_of(c: httpx.AsyncClient) -> EbayState:
    transport = c._transport
    assert isinstance(transport, httpx.ASGITransport)
    state: EbayState = transport.app.state.sandbox  # type: ignore[attr-defined]
    return state


def basic(client_id: str = "sandbox-client-id", secret: str = "sandbox-client-secret") -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}", "Content-Type": "application/x-www-form-urlencoded"}


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


async def new_order(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/_sandbox/orders", json={"count": 1, **body})
    assert r.status_code == 201, r.text
    order: dict[str, Any] = r.json()["orders"][0]
    return order


# -- auth refusals -----------------------------------------------------------------------------------------------
async def test_missing_token_is_401_with_ebay_error(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/order")
    assert r.status_code == 401
    error = r.json()["errors"][0]
    assert error["errorId"] == 1001
    assert error["domain"] == "OAuth"
    assert error["message"] == "Invalid access token"


async def test_wrong_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/order", headers={"Authorization": "Bearer v^1.1#i^1#not-a-token"})
    assert r.status_code == 401
    assert r.json()["errors"][0]["errorId"] == 1001


async def test_expired_access_token_is_401_and_refresh_gives_a_working_one() -> None:
    async with _client(make_app(orders=3, access_token_ttl="60")) as c:
        pair = (await c.post("/_sandbox/tokens", json={"scopes": [SCOPE]})).json()
        assert pair["expires_in"] == 60
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert (await c.get(f"{API}/order", headers=bearer)).status_code == 200
        await c.post("/_sandbox/clock", json={"advance_s": 61})
        expired = await c.get(f"{API}/order", headers=bearer)
        assert expired.status_code == 401
        assert expired.json()["errors"][0]["errorId"] == 1001
        refreshed = await c.post(
            "/identity/v1/oauth2/token",
            headers=basic(),
            data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"], "scope": SCOPE},
        )
        assert refreshed.status_code == 200
        body = refreshed.json()
        assert body["token_type"] == "User Access Token"
        assert "refresh_token" not in body
        ok = await c.get(f"{API}/order", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert ok.status_code == 200


async def test_readonly_token_reads_but_cannot_create_fulfillment() -> None:
    async with _client(make_app()) as c:
        order = await new_order(c)
        pair = (await c.post("/_sandbox/tokens", json={"scopes": [READONLY]})).json()
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert (await c.get(f"{API}/order/{order['orderId']}", headers=bearer)).status_code == 200
        line = order["lineItems"][0]
        r = await c.post(
            f"{API}/order/{order['orderId']}/shipping_fulfillment",
            headers=bearer,
            json={"lineItems": [{"lineItemId": line["lineItemId"], "quantity": line["quantity"]}]},
        )
        assert r.status_code == 403
        assert r.json()["errors"][0]["errorId"] == 1100


# -- OAuth authorization-code grant -----------------------------------------------------------------------------
async def _consent(
    c: httpx.AsyncClient, decision: str = "agree", redirect_uri: str = CALLBACK
) -> httpx.Response:
    page = await c.get(
        "/oauth2/authorize",
        params={
            "client_id": "sandbox-client-id",
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": f"{SCOPE} {READONLY}",
            "state": "xyz-42",
        },
    )
    assert page.status_code == 200
    assert "Agree" in page.text
    return await c.post(
        "/oauth2/authorize",
        data={
            "client_id": "sandbox-client-id",
            "redirect_uri": redirect_uri,
            "scope": f"{SCOPE} {READONLY}",
            "state": "xyz-42",
            "decision": decision,
        },
    )


async def test_consent_code_exchange_refresh_and_single_use_code() -> None:
    async with _client(make_app(orders=5)) as c:
        agreed = await _consent(c)
        assert agreed.status_code == 302
        location = urlsplit(agreed.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
        query = parse_qs(location.query)
        assert query["state"] == ["xyz-42"]
        assert int(query["expires_in"][0]) <= 299
        code = query["code"][0]
        exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
        r = await c.post("/identity/v1/oauth2/token", headers=basic(), data=exchange)
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert tokens["expires_in"] == 7200
        assert tokens["token_type"] == "User Access Token"
        assert tokens["refresh_token_expires_in"] == 47_304_000
        orders = await c.get(f"{API}/order", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert orders.status_code == 200
        assert orders.json()["total"] == 5
        again = await c.post("/identity/v1/oauth2/token", headers=basic(), data=exchange)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        refreshed = await c.post(
            "/identity/v1/oauth2/token",
            headers=basic(),
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert refreshed.status_code == 200
        assert refreshed.json()["access_token"] != tokens["access_token"]


async def test_consent_through_runame_redirects_to_accept_url() -> None:
    async with _client(make_app(ru_name="Crossdock-Hub-SBX-abc", accept_url=CALLBACK)) as c:
        agreed = await _consent(c, redirect_uri="Crossdock-Hub-SBX-abc")
        assert agreed.headers["location"].startswith(CALLBACK + "?")
        code = parse_qs(urlsplit(agreed.headers["location"]).query)["code"][0]
        r = await c.post(
            "/identity/v1/oauth2/token",
            headers=basic(),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": "Crossdock-Hub-SBX-abc"},
        )
        assert r.status_code == 200


async def test_declined_consent_redirects_with_access_denied() -> None:
    async with _client(make_app()) as c:
        declined = await _consent(c, decision="deny")
        query = parse_qs(urlsplit(declined.headers["location"]).query)
        assert query["error"] == ["access_denied"]
        assert query["state"] == ["xyz-42"]
        assert "code" not in query


async def test_code_exchange_with_other_redirect_uri_is_invalid_grant() -> None:
    async with _client(make_app()) as c:
        code = parse_qs(urlsplit((await _consent(c)).headers["location"]).query)["code"][0]
        r = await c.post(
            "/identity/v1/oauth2/token",
            headers=basic(),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "https://evil.example/cb",
            },
        )
        assert r.status_code == 400
        assert r.json() == {
            "error": "invalid_grant",
            "error_description": "the provided authorization grant code is invalid or was issued to another client",
        }


async def test_expired_code_is_invalid_grant() -> None:
    async with _client(make_app()) as c:
        code = parse_qs(urlsplit((await _consent(c)).headers["location"]).query)["code"][0]
        await c.post("/_sandbox/clock", json={"advance_s": 300})
        r = await c.post(
            "/identity/v1/oauth2/token",
            headers=basic(),
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
        )
        assert r.json()["error"] == "invalid_grant"


async def test_wrong_client_secret_is_invalid_client_401(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/identity/v1/oauth2/token",
        headers=basic(secret="wrong"),
        data={"grant_type": "refresh_token", "refresh_token": "x"},
    )
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_client", "error_description": "client authentication failed"}


async def test_unknown_refresh_token_is_invalid_grant(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/identity/v1/oauth2/token",
        headers=basic(),
        data={"grant_type": "refresh_token", "refresh_token": "v^1.1#i^1#r^1#nope"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


async def test_refresh_asking_for_more_scopes_is_invalid_scope() -> None:
    async with _client(make_app()) as c:
        pair = (await c.post("/_sandbox/tokens", json={"scopes": [READONLY]})).json()
        r = await c.post(
            "/identity/v1/oauth2/token",
            headers=basic(),
            data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"], "scope": SCOPE},
        )
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_scope"


async def test_unsupported_grant_type_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post("/identity/v1/oauth2/token", headers=basic(), data={"grant_type": "password"})
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"


async def test_application_token_cannot_read_orders(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/identity/v1/oauth2/token", headers=basic(), data={"grant_type": "client_credentials"}
    )
    assert r.json()["token_type"] == "Application Access Token"
    orders = await client.get(f"{API}/order", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert orders.status_code == 403


# -- getOrders: limits, paging, filters ------------------------------------------------------------------------
async def test_limit_201_is_invalid_limit(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/order", headers=AUTH, params={"limit": 201})
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error == {
        "errorId": 31100,
        "domain": "API_FULFILLMENT",
        "category": "REQUEST",
        "message": "Invalid limit: 201",
        "parameters": [{"name": "limit", "value": "201"}],
    }


@pytest.mark.parametrize("offset", ["-1", "abc"])
async def test_bad_offset_is_invalid_offset(client: httpx.AsyncClient, offset: str) -> None:
    r = await client.get(f"{API}/order", headers=AUTH, params={"offset": offset})
    assert r.status_code == 400
    assert r.json()["errors"][0]["errorId"] == 31000


async def test_default_limit_is_50_and_200_is_allowed(client: httpx.AsyncClient) -> None:
    default = (await client.get(f"{API}/order", headers=AUTH)).json()
    assert default["limit"] == 50
    assert len(default["orders"]) == 50
    biggest = (await client.get(f"{API}/order", headers=AUTH, params={"limit": 200})).json()
    assert len(biggest["orders"]) == 130
    assert "next" not in biggest


async def test_paging_with_next_links_reaches_the_end_with_right_totals(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    url: str | None = f"{API}/order?limit=50"
    pages = 0
    while url:
        body = (await client.get(url, headers=AUTH)).json()
        assert body["total"] == 130
        assert body["href"].startswith("https://api.ebay.com/sell/fulfillment/v1/order?")
        seen.extend(o["orderId"] for o in body["orders"])
        if body["offset"] > 0:
            assert "prev" in body
        url = body.get("next")
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 130
    created = [state_of(client).orders[i].created for i in seen]
    assert created == sorted(created, reverse=True)


async def test_creationdate_range_selects_orders_created_inside_it(client: httpx.AsyncClient) -> None:
    orders = state_of(client).all_orders()
    start, end = orders[40].created, orders[59].created
    r = await client.get(
        f"{API}/order",
        headers=AUTH,
        params={"filter": f"creationdate:[{iso(start)}..{iso(end)}]", "limit": 200},
    )
    body = r.json()
    expected = {o.order_id for o in orders if start <= o.created <= end}
    assert {o["orderId"] for o in body["orders"]} == expected
    assert body["total"] == len(expected) >= 20


async def test_lastmodifieddate_finds_an_order_changed_by_a_fulfillment(client: httpx.AsyncClient) -> None:
    order = await new_order(client, line_items=1)
    since = datetime.now(UTC) - timedelta(seconds=1)
    r = await client.post(
        f"{API}/order/{order['orderId']}/shipping_fulfillment",
        headers=AUTH,
        json={"lineItems": [{"lineItemId": order["lineItems"][0]["lineItemId"], "quantity": 1}]},
    )
    assert r.status_code == 201
    changed = await client.get(
        f"{API}/order", headers=AUTH, params={"filter": f"lastmodifieddate:[{iso(since)}..]"}
    )
    assert [o["orderId"] for o in changed.json()["orders"]] == [order["orderId"]]


async def test_creationdate_wins_when_both_dates_are_given(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    far_past = now - timedelta(days=365)
    both = f"creationdate:[{iso(far_past)}..],lastmodifieddate:[{iso(now - timedelta(seconds=5))}..]"
    r = await client.get(f"{API}/order", headers=AUTH, params={"filter": both, "limit": 200})
    assert r.json()["total"] == 130


async def test_orderfulfillmentstatus_filter(client: httpx.AsyncClient) -> None:
    open_ = await client.get(
        f"{API}/order",
        headers=AUTH,
        params={"filter": "orderfulfillmentstatus:{NOT_STARTED|IN_PROGRESS}", "limit": 200},
    )
    done = await client.get(
        f"{API}/order",
        headers=AUTH,
        params={"filter": "orderfulfillmentstatus:{FULFILLED|IN_PROGRESS}", "limit": 200},
    )
    open_statuses = {o["orderFulfillmentStatus"] for o in open_.json()["orders"]}
    done_statuses = {o["orderFulfillmentStatus"] for o in done.json()["orders"]}
    assert open_statuses <= {"NOT_STARTED", "IN_PROGRESS"}
    assert done_statuses <= {"FULFILLED", "IN_PROGRESS"}
    assert "NOT_STARTED" in open_statuses
    assert "FULFILLED" in done_statuses
    in_progress = sum(1 for o in open_.json()["orders"] if o["orderFulfillmentStatus"] == "IN_PROGRESS")
    assert open_.json()["total"] + done.json()["total"] - in_progress == 130


async def test_documented_example_with_all_three_criteria_percent_encoded(client: httpx.AsyncClient) -> None:
    # The getOrders reference example, with dates moved into the last 90 days.
    now = datetime.now(UTC)
    url = (
        f"{API}/order?filter=creationdate:%5B{iso(now - timedelta(days=80))}..{iso(now)}%5D,"
        f"lastmodifieddate:%5B{iso(now - timedelta(days=1))}..%5D,"
        "orderfulfillmentstatus:%7BNOT_STARTED%7CIN_PROGRESS%7D&limit=200"
    )
    r = await client.get(url, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["total"] > 0


@pytest.mark.parametrize(
    ("filter_text", "error_id"),
    [
        ("shippingdate:[2024-01-01T00:00:00.000Z..]", 30700),
        ("orderfulfillmentstatus:{FULFILLED}", 30800),
        ("creationdate:[yesterday..]", 30810),
        ("creationdate:2024-01-01T00:00:00.000Z", 30810),
        ("creationdate:[..2024-01-01T00:00:00.000Z]", 30820),
        ("creationdate:[2019-01-01T00:00:00.000Z..]", 30830),
        ("creationdate:[2099-01-01T00:00:00.000Z..]", 30850),
    ],
)
async def test_bad_filters_get_ebay_error_ids(
    client: httpx.AsyncClient, filter_text: str, error_id: int
) -> None:
    r = await client.get(f"{API}/order", headers=AUTH, params={"filter": filter_text})
    assert r.status_code == 400
    assert r.json()["errors"][0]["errorId"] == error_id


async def test_start_after_end_is_30840(client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    r = await client.get(
        f"{API}/order",
        headers=AUTH,
        params={"filter": f"creationdate:[{iso(now - timedelta(days=1))}..{iso(now - timedelta(days=2))}]"},
    )
    assert r.json()["errors"][0]["errorId"] == 30840


async def test_order_ids_override_filter_limit_and_offset(client: httpx.AsyncClient) -> None:
    ids = [o.order_id for o in state_of(client).all_orders()[:3]]
    r = await client.get(
        f"{API}/order",
        headers=AUTH,
        params={"orderIds": ",".join(ids), "filter": "orderfulfillmentstatus:{FULFILLED}", "limit": 1},
    )
    assert r.status_code == 200
    assert sorted(o["orderId"] for o in r.json()["orders"]) == sorted(ids)


async def test_more_than_50_order_ids_is_30900(client: httpx.AsyncClient) -> None:
    ids = ",".join(f"01-00000-{i:05d}" for i in range(51))
    r = await client.get(f"{API}/order", headers=AUTH, params={"orderIds": ids})
    assert r.json()["errors"][0]["errorId"] == 30900


# -- getOrder: the order resource ----------------------------------------------------------------------------
async def test_order_carries_ship_to_totals_and_line_items(client: httpx.AsyncClient) -> None:
    order = await new_order(client, country="JP", line_items=2)
    r = await client.get(f"{API}/order/{order['orderId']}", headers=AUTH)
    body = r.json()
    assert body["orderFulfillmentStatus"] == "NOT_STARTED"
    assert body["cancelStatus"]["cancelState"] == "NONE_REQUESTED"
    ship_to = body["fulfillmentStartInstructions"][0]["shippingStep"]["shipTo"]
    assert ship_to["contactAddress"]["countryCode"] == "JP"
    assert {"fullName", "contactAddress"} <= ship_to.keys()
    assert {"addressLine1", "city", "countryCode"} <= ship_to["contactAddress"].keys()
    if "primaryPhone" in ship_to:
        assert ship_to["primaryPhone"]["phoneNumber"].startswith("+81")
    total = body["pricingSummary"]["total"]
    assert total["currency"] == "USD"
    items = body["lineItems"]
    assert len(items) == 2
    for item in items:
        assert {
            "lineItemId",
            "sku",
            "title",
            "quantity",
            "lineItemCost",
            "lineItemFulfillmentStatus",
        } <= item.keys()
    subtotal = sum(float(i["lineItemCost"]["value"]) for i in items)
    delivery = float(body["pricingSummary"]["deliveryCost"]["value"])
    assert float(total["value"]) == pytest.approx(subtotal + delivery)
    assert datetime.fromisoformat(body["creationDate"]).tzinfo is not None


async def test_unknown_order_is_404_and_malformed_id_400(client: httpx.AsyncClient) -> None:
    missing = await client.get(f"{API}/order/01-00000-00000", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["errorId"] == 32100
    malformed = await client.get(f"{API}/order/not-an-id", headers=AUTH)
    assert malformed.status_code == 400


# -- shipping fulfillments ----------------------------------------------------------------------------------
async def test_fulfillments_move_the_order_to_in_progress_then_fulfilled(client: httpx.AsyncClient) -> None:
    order = await new_order(client, line_items=2)
    order_id = order["orderId"]
    first, second = order["lineItems"]
    before = order["lastModifiedDate"]
    created = await client.post(
        f"{API}/order/{order_id}/shipping_fulfillment",
        headers=AUTH,
        json={
            "lineItems": [{"lineItemId": first["lineItemId"], "quantity": first["quantity"]}],
            "shippedDate": iso(datetime.now(UTC)),
            "shippingCarrierCode": "USPS",
            "trackingNumber": "9400111899223344556677",
        },
    )
    assert created.status_code == 201
    assert created.headers["location"] == (
        f"https://api.ebay.com{API}/order/{order_id}/shipping_fulfillment/9400111899223344556677"
    )
    after_first = (await client.get(f"{API}/order/{order_id}", headers=AUTH)).json()
    assert after_first["orderFulfillmentStatus"] == "IN_PROGRESS"
    assert after_first["lastModifiedDate"] > before
    statuses = {li["lineItemId"]: li["lineItemFulfillmentStatus"] for li in after_first["lineItems"]}
    assert statuses == {first["lineItemId"]: "FULFILLED", second["lineItemId"]: "NOT_STARTED"}
    await client.post(
        f"{API}/order/{order_id}/shipping_fulfillment",
        headers=AUTH,
        json={
            "lineItems": [{"lineItemId": second["lineItemId"], "quantity": second["quantity"]}],
            "shippingCarrierCode": "UPS",
            "trackingNumber": "1Z999AA10123456784",
        },
    )
    done = (await client.get(f"{API}/order/{order_id}", headers=AUTH)).json()
    assert done["orderFulfillmentStatus"] == "FULFILLED"
    assert len(done["fulfillmentHrefs"]) == 2
    listed = (await client.get(f"{API}/order/{order_id}/shipping_fulfillment", headers=AUTH)).json()
    assert listed["total"] == 2
    one = await client.get(f"{API}/order/{order_id}/shipping_fulfillment/1Z999AA10123456784", headers=AUTH)
    assert one.json() == {
        "fulfillmentId": "1Z999AA10123456784",
        "lineItems": [{"lineItemId": second["lineItemId"], "quantity": second["quantity"]}],
        "shippedDate": one.json()["shippedDate"],
        "shipmentTrackingNumber": "1Z999AA10123456784",
        "shippingCarrierCode": "UPS",
    }
    admin = (await client.get("/_sandbox/fulfillments")).json()
    assert {f["fulfillmentId"] for f in admin["fulfillments"] if f["orderId"] == order_id} == {
        "9400111899223344556677",
        "1Z999AA10123456784",
    }


async def test_fulfillment_refusals(client: httpx.AsyncClient) -> None:
    order = await new_order(client, line_items=1)
    url = f"{API}/order/{order['orderId']}/shipping_fulfillment"
    line = order["lineItems"][0]

    async def post(body: dict[str, Any]) -> int:
        r = await client.post(url, headers=AUTH, json=body)
        assert r.status_code == 400, r.text
        error_id: int = r.json()["errors"][0]["errorId"]
        return error_id

    assert await post({"lineItems": [{"lineItemId": "999", "quantity": 1}]}) == 32200
    dup = {"lineItemId": line["lineItemId"], "quantity": 1}
    assert await post({"lineItems": [dup, dup]}) == 32210
    assert (
        await post({"lineItems": [{"lineItemId": line["lineItemId"], "quantity": line["quantity"] + 1}]})
        == 32600
    )
    assert await post({"lineItems": [dup], "trackingNumber": "1Z999"}) == 32300
    assert (
        await post({"lineItems": [dup], "trackingNumber": "1Z 999-X", "shippingCarrierCode": "UPS"}) == 32300
    )
    assert await post({"lineItems": [dup], "shippedDate": "soon"}) == 32500
    assert await post({"lineItems": []}) == 32600
    missing = await client.get(f"{url}/nope", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["errorId"] == 32110


async def test_reusing_a_tracking_number_asks_for_put(client: httpx.AsyncClient) -> None:
    order = await new_order(client, line_items=2)
    url = f"{API}/order/{order['orderId']}/shipping_fulfillment"
    a, b = order["lineItems"]
    shipment = {"shippingCarrierCode": "DHL", "trackingNumber": "JJD000390007778"}
    first = await client.post(
        url, headers=AUTH, json={"lineItems": [{"lineItemId": a["lineItemId"]}], **shipment}
    )
    assert first.status_code == 201
    r = await client.post(
        url, headers=AUTH, json={"lineItems": [{"lineItemId": b["lineItemId"]}], **shipment}
    )
    assert r.json()["errors"][0]["errorId"] == 34500


async def test_cancelled_order_cannot_be_fulfilled(client: httpx.AsyncClient) -> None:
    order = await new_order(client, line_items=1)
    cancelled = await client.post(f"/_sandbox/orders/{order['orderId']}/cancel")
    assert cancelled.json()["cancelStatus"]["cancelState"] == "CANCELED"
    r = await client.post(
        f"{API}/order/{order['orderId']}/shipping_fulfillment",
        headers=AUTH,
        json={"lineItems": [{"lineItemId": order["lineItems"][0]["lineItemId"], "quantity": 1}]},
    )
    assert r.status_code == 409


# -- admin API, faults, scale ----------------------------------------------------------------------------------
async def test_admin_update_and_tick_change_orders_and_modified_date(client: httpx.AsyncClient) -> None:
    order = await new_order(client, payment_status="PENDING")
    assert order["orderPaymentStatus"] == "PENDING"
    moved = await client.patch(
        f"/_sandbox/orders/{order['orderId']}",
        json={"shipTo": {"fullName": "Jane Roe", "contactAddress": {"city": "Springfield"}}},
    )
    ship_to = moved.json()["fulfillmentStartInstructions"][0]["shippingStep"]["shipTo"]
    assert ship_to["fullName"] == "Jane Roe"
    assert ship_to["contactAddress"]["city"] == "Springfield"
    assert moved.json()["lastModifiedDate"] > order["lastModifiedDate"]
    tick = (await client.post("/_sandbox/tick", json={"new_orders": 2})).json()
    assert order["orderId"] in tick["paid"]
    assert len(tick["created"]) == 2
    paid = (await client.get(f"{API}/order/{order['orderId']}", headers=AUTH)).json()
    assert paid["orderPaymentStatus"] == "PAID"


async def test_injected_5xx_and_429_use_ebay_error_bodies_and_spare_the_admin_api() -> None:
    app = create_app(SandboxConfig(token=TOKEN, faults=FaultSpec(p_5xx=1.0)))
    async with _client(app) as c:
        r = await c.get(f"{API}/order", headers=AUTH)
        assert r.status_code == 500
        assert r.json()["errors"][0]["errorId"] == 30500
        assert (await c.get("/_sandbox/")).status_code == 200
    app = create_app(SandboxConfig(token=TOKEN, faults=FaultSpec(p_429=1.0)))
    async with _client(app) as c:
        r = await c.get(f"{API}/order", headers=AUTH)
        assert r.status_code == 429
        assert r.json()["errors"][0]["errorId"] == 2001
        assert "retry-after" in r.headers


def test_ten_thousand_orders_seed_quickly_and_deterministically() -> None:
    started = time.perf_counter()
    app = create_app(SandboxConfig(seed=11, orders=10_000))
    assert time.perf_counter() - started < 10
    state: EbayState = app.state.sandbox
    assert len(state.orders) == 10_000
    again: EbayState = create_app(SandboxConfig(seed=11, orders=50)).state.sandbox
    first: EbayState = create_app(SandboxConfig(seed=11, orders=50)).state.sandbox
    assert list(again.orders) == list(first.orders)
