"""The Amazon SP-API sandbox behaves like sellingpartnerapi-*.amazon.com and api.amazon.com/auth/o2/token:
LWA grants, 403 on bad tokens, getOrders validation and NextToken paging, order items paging, Pending orders
without prices, confirmShipment, usage-plan throttling, faults, and the official python-amazon-sp-api SDK
aimed at it unmodified."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sp_api.api import Orders
from sp_api.auth import AccessTokenClient
from sp_api.base import Marketplaces, SellingApiBadRequestException, SellingApiForbiddenException
from starlette.applications import Starlette

from crossdock.sandbox.amazon import AmazonState, create_app
from crossdock.sandbox.common import FaultSpec, SandboxConfig, run_in_thread

ORDERS = "/orders/v0/orders"
US = "ATVPDKIKX0DER"
TOKEN = "Atza|sandbox-fixed-token"
AUTH = {"x-amz-access-token": TOKEN}
LWA = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret"}
CALLBACK = "https://hub.example/oauth/amazon/callback"
LONG_AGO = "2020-01-01T00:00:00Z"

# The model's getOrders 200 example (ordersV0.json), keys of one order: our orders must carry them all.
DOCUMENTED_ORDER_KEYS = {
    "AmazonOrderId", "PurchaseDate", "LastUpdateDate", "OrderStatus", "FulfillmentChannel", "SalesChannel",
    "ShipServiceLevel", "OrderTotal", "NumberOfItemsShipped", "NumberOfItemsUnshipped", "PaymentMethod",
    "PaymentMethodDetails", "IsReplacementOrder", "MarketplaceId", "ShipmentServiceLevelCategory", "OrderType",
    "EarliestShipDate", "LatestShipDate", "EarliestDeliveryDate", "LatestDeliveryDate", "IsBusinessOrder",
    "IsPrime", "IsGlobalExpressEnabled", "IsPremiumOrder", "IsSoldByAB", "IsIBA", "IsISPU", "IsAccessPointOrder",
    "AutomatedShippingSettings",
}  # fmt: skip
# The model's confirmShipment 204 example request body (x-amzn-api-sandbox), ids replaced at use.
DOCUMENTED_CONFIRMATION: dict[str, Any] = {
    "marketplaceId": "ATVPDKIKX0DER",
    "packageDetail": {
        "packageReferenceId": "1",
        "carrierCode": "FedEx",
        "carrierName": "FedEx",
        "shippingMethod": "FedEx Ground",
        "trackingNumber": "112345678",
        "shipDate": "2022-02-11T01:00:00.000Z",
        "shipFromSupplySourceId": "057d3fcc-b750-419f-bbcd-4d340c60c430",
        "orderItems": [
            {"orderItemId": "79039765272157", "quantity": 1, "transparencyCodes": ["09876543211234567890"]}
        ],
    },
}


def make_app(orders: int = 0, *, fast: bool = True, **extra: str) -> Starlette:
    return create_app(SandboxConfig(seed=5, orders=orders, token=TOKEN, fast_limits=fast, extra=dict(extra)))


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://sellingpartnerapi-na.amazon.com"
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(make_app(orders=45, order_items_page_size="3")) as c:
        yield c


def state_of(c: httpx.AsyncClient) -> AmazonState:
    transport = c._transport
    assert isinstance(transport, httpx.ASGITransport)
    state: AmazonState = transport.app.state.sandbox  # type: ignore[attr-defined]
    return state


async def new_order(c: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await c.post("/_sandbox/orders", json={"count": 1, **body})
    assert r.status_code == 201, r.text
    order: dict[str, Any] = r.json()["orders"][0]
    return order


async def items_of(c: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params = {"NextToken": token} if token else {}
        payload = (await c.get(f"{ORDERS}/{order_id}/orderItems", headers=AUTH, params=params)).json()[
            "payload"
        ]
        items.extend(payload["OrderItems"])
        token = payload.get("NextToken")
        if not token:
            return items


def confirmation(order_id: str, items: list[tuple[str, int]], reference: str = "1") -> dict[str, Any]:
    return {
        "marketplaceId": US,
        "packageDetail": {
            "packageReferenceId": reference,
            "carrierCode": "UPS",
            "shippingMethod": "UPS Ground",
            "trackingNumber": f"1Z999AA1{reference}",
            "shipDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "orderItems": [{"orderItemId": i, "quantity": q} for i, q in items],
        },
    }


# -- x-amz-access-token refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"x-amz-access-token": "Atza|not-issued"}])
async def test_missing_or_wrong_token_is_403_unauthorized(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await client.get(ORDERS, headers=headers, params={"MarketplaceIds": US, "CreatedAfter": LONG_AGO})
    assert r.status_code == 403
    error = r.json()["errors"][0]
    assert error["code"] == "Unauthorized"
    assert error["message"] == "Access to requested resource is denied."
    assert r.headers["x-amzn-RequestId"]


async def test_expired_lwa_token_is_403_and_a_refresh_fixes_it() -> None:
    async with _client(make_app(orders=3, refresh_token="Atzr|fixed")) as c:
        grant = {"grant_type": "refresh_token", "refresh_token": "Atzr|fixed", **LWA}
        token = (await c.post("/auth/o2/token", data=grant)).json()
        assert token["token_type"] == "bearer"
        assert token["expires_in"] == 3600
        assert token["access_token"].startswith("Atza|")
        headers = {"x-amz-access-token": token["access_token"]}
        params = {"MarketplaceIds": US, "CreatedAfter": LONG_AGO}
        assert (await c.get(ORDERS, headers=headers, params=params)).status_code == 200
        await c.post("/_sandbox/clock", json={"advance_s": 3601})
        expired = await c.get(ORDERS, headers=headers, params=params)
        assert expired.status_code == 403
        assert expired.json()["errors"][0]["code"] == "Unauthorized"
        fresh = (await c.post("/auth/o2/token", data=grant)).json()
        ok = await c.get(ORDERS, headers={"x-amz-access-token": fresh["access_token"]}, params=params)
        assert ok.status_code == 200


async def test_grantless_token_reaches_no_seller_data(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/auth/o2/token",
        data={"grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications", **LWA},
    )
    assert r.status_code == 200
    orders = await client.get(
        ORDERS,
        headers={"x-amz-access-token": r.json()["access_token"]},
        params={"MarketplaceIds": US, "CreatedAfter": LONG_AGO},
    )
    assert orders.status_code == 403


# -- LWA --------------------------------------------------------------------------------------------------------
async def test_lwa_refusals_use_lwa_error_bodies(client: httpx.AsyncClient) -> None:
    bad_grant = await client.post(
        "/auth/o2/token", data={"grant_type": "refresh_token", "refresh_token": "Atzr|unknown", **LWA}
    )
    assert bad_grant.status_code == 400
    assert bad_grant.json() == {
        "error_description": "The request has an invalid grant parameter : refresh_token",
        "error": "invalid_grant",
    }
    bad_client = await client.post(
        "/auth/o2/token",
        data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "x", "client_secret": "y"},
    )
    assert bad_client.status_code == 401
    assert bad_client.json() == {
        "error_description": "Client authentication failed",
        "error": "invalid_client",
    }
    unsupported = await client.post("/auth/o2/token", data={"grant_type": "password", **LWA})
    assert unsupported.json()["error"] == "unsupported_grant_type"


async def test_seller_consent_code_exchange_is_single_use() -> None:
    async with _client(make_app(orders=2)) as c:
        page = await c.get(
            "/apps/authorize/consent",
            params={"application_id": "amzn1.sp.solution.sandbox", "state": "s-1", "redirect_uri": CALLBACK},
        )
        assert page.status_code == 200
        assert "Confirm" in page.text
        confirmed = await c.post(
            "/apps/authorize/consent",
            data={
                "application_id": "amzn1.sp.solution.sandbox",
                "state": "s-1",
                "redirect_uri": CALLBACK,
                "decision": "confirm",
            },
        )
        assert confirmed.status_code == 302
        query = parse_qs(urlsplit(confirmed.headers["location"]).query)
        assert query["state"] == ["s-1"]
        assert query["selling_partner_id"] == ["A3SANDBOXSELLER"]
        exchange = {"grant_type": "authorization_code", "code": query["spapi_oauth_code"][0], **LWA}
        tokens = await c.post("/auth/o2/token", data=exchange)
        assert tokens.status_code == 200
        refresh = tokens.json()["refresh_token"]
        assert refresh.startswith("Atzr|")
        again = await c.post("/auth/o2/token", data=exchange)
        assert again.json() == {
            "error_description": "The request has an invalid grant parameter : code",
            "error": "invalid_grant",
        }
        renewed = await c.post(
            "/auth/o2/token", data={"grant_type": "refresh_token", "refresh_token": refresh, **LWA}
        )
        assert renewed.status_code == 200


# -- getOrders validation ---------------------------------------------------------------------------------------
def _assert_invalid_input(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["errors"][0]
    assert error["code"] == "InvalidInput"
    assert {"code", "message", "details"} <= error.keys()
    assert r.headers["x-amzn-RequestId"]
    assert r.headers["x-amzn-RateLimit-Limit"]


async def test_missing_marketplace_ids_is_400(client: httpx.AsyncClient) -> None:
    _assert_invalid_input(await client.get(ORDERS, headers=AUTH, params={"CreatedAfter": LONG_AGO}))


async def test_created_after_and_last_updated_after_together_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get(
        ORDERS,
        headers=AUTH,
        params={"MarketplaceIds": US, "CreatedAfter": LONG_AGO, "LastUpdatedAfter": LONG_AGO},
    )
    _assert_invalid_input(r)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"CreatedAfter": LONG_AGO, "LastUpdatedBefore": "2021-01-01T00:00:00Z"},
        {"LastUpdatedAfter": LONG_AGO, "CreatedBefore": "2021-01-01T00:00:00Z"},
        {"CreatedAfter": "2020-12-02"},
        {"CreatedAfter": "2021-01-01T00:00:00Z", "CreatedBefore": "2020-01-01T00:00:00Z"},
        {"CreatedAfter": LONG_AGO, "MaxResultsPerPage": "0"},
        {"CreatedAfter": LONG_AGO, "MaxResultsPerPage": "101"},
        {"CreatedAfter": LONG_AGO, "OrderStatuses": "Unshipped,Lost"},
        {"CreatedAfter": LONG_AGO, "FulfillmentChannels": "FBA"},
        {"NextToken": "not-a-token"},
    ],
)
async def test_invalid_get_orders_requests_are_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    _assert_invalid_input(await client.get(ORDERS, headers=AUTH, params={"MarketplaceIds": US, **params}))


async def test_created_before_must_be_two_minutes_in_the_past(client: httpx.AsyncClient) -> None:
    just_now = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = await client.get(
        ORDERS,
        headers=AUTH,
        params={"MarketplaceIds": US, "CreatedAfter": LONG_AGO, "CreatedBefore": just_now},
    )
    _assert_invalid_input(r)


# -- getOrders paging and filters -------------------------------------------------------------------------------
async def test_next_token_pages_to_the_end_and_carries_the_filters(client: httpx.AsyncClient) -> None:
    params = {"MarketplaceIds": US, "CreatedAfter": LONG_AGO, "MaxResultsPerPage": "10"}
    first = (await client.get(ORDERS, headers=AUTH, params=params)).json()["payload"]
    seen = [o["AmazonOrderId"] for o in first["Orders"]]
    assert "CreatedBefore" in first
    token = first.get("NextToken")
    pages = 1
    while token:
        # Other filters next to NextToken are ignored: the token carries the original criteria.
        page = await client.get(ORDERS, headers=AUTH, params={"MarketplaceIds": US, "NextToken": token})
        payload = page.json()["payload"]
        seen.extend(o["AmazonOrderId"] for o in payload["Orders"])
        token = payload.get("NextToken")
        pages += 1
    assert pages == 5
    assert len(seen) == len(set(seen)) == 45
    purchased = [state_of(client).orders[i].purchase_date for i in seen]
    assert purchased == sorted(purchased)


async def test_last_updated_after_finds_a_confirmed_order(client: httpx.AsyncClient) -> None:
    order = await new_order(client, status="Unshipped", items=1)
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    items = await items_of(client, order["AmazonOrderId"])
    body = confirmation(order["AmazonOrderId"], [(items[0]["OrderItemId"], items[0]["QuantityOrdered"])])
    r = await client.post(f"{ORDERS}/{order['AmazonOrderId']}/shipmentConfirmation", headers=AUTH, json=body)
    assert r.status_code == 204
    found = await client.get(
        ORDERS,
        headers=AUTH,
        params={"MarketplaceIds": US, "LastUpdatedAfter": since.strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    payload = found.json()["payload"]
    assert "LastUpdatedBefore" in payload
    assert order["AmazonOrderId"] in [o["AmazonOrderId"] for o in payload["Orders"]]


async def test_order_status_and_channel_filters(client: httpx.AsyncClient) -> None:
    r = await client.get(
        ORDERS,
        headers=AUTH,
        params={
            "MarketplaceIds": US,
            "CreatedAfter": LONG_AGO,
            "OrderStatuses": "Unshipped,PartiallyShipped",
            "FulfillmentChannels": "MFN",
        },
    )
    orders = r.json()["payload"]["Orders"]
    expected = [
        o
        for o in state_of(client).all_orders()
        if o.status in ("Unshipped", "PartiallyShipped") and o.fulfillment_channel == "MFN"
    ]
    assert len(orders) == len(expected) > 0
    assert {o["OrderStatus"] for o in orders} <= {"Unshipped", "PartiallyShipped"}


async def test_orders_carry_the_documented_fields_and_3_7_7_ids(client: httpx.AsyncClient) -> None:
    await new_order(client, status="Unshipped")
    r = await client.get(ORDERS, headers=AUTH, params={"MarketplaceIds": US, "CreatedAfter": LONG_AGO})
    unshipped = [o for o in r.json()["payload"]["Orders"] if o["OrderStatus"] == "Unshipped"]
    assert unshipped
    for order in unshipped:
        assert order.keys() >= DOCUMENTED_ORDER_KEYS
        assert len(order["AmazonOrderId"].split("-")) == 3
        assert [len(p) for p in order["AmazonOrderId"].split("-")] == [3, 7, 7]
        assert {"Name", "City", "CountryCode"} <= order["ShippingAddress"].keys()
        assert order["PurchaseDate"].endswith("Z")


# -- Pending orders, order items -----------------------------------------------------------------------------
async def test_pending_orders_have_no_prices_until_payment_is_authorised(client: httpx.AsyncClient) -> None:
    order = await new_order(client, status="Pending", items=2)
    order_id = order["AmazonOrderId"]
    pending = (await client.get(f"{ORDERS}/{order_id}", headers=AUTH)).json()["payload"]
    assert pending["OrderStatus"] == "Pending"
    assert "OrderTotal" not in pending
    assert "ShippingAddress" not in pending
    for item in await items_of(client, order_id):
        assert "ItemPrice" not in item
        assert "ItemTax" not in item
    tick = (await client.post("/_sandbox/tick", json={})).json()
    assert order_id in tick["unshipped"]
    paid = (await client.get(f"{ORDERS}/{order_id}", headers=AUTH)).json()["payload"]
    assert paid["OrderStatus"] == "Unshipped"
    assert paid["OrderTotal"]["CurrencyCode"] == "USD"
    assert paid["LastUpdateDate"] >= pending["LastUpdateDate"]
    assert "ShippingAddress" in paid
    items = await items_of(client, order_id)
    assert all(i["ItemPrice"]["CurrencyCode"] == "USD" for i in items)


async def test_order_items_have_their_own_next_token_paging(client: httpx.AsyncClient) -> None:
    order = await new_order(client, status="Unshipped", items=8)
    order_id = order["AmazonOrderId"]
    first = (await client.get(f"{ORDERS}/{order_id}/orderItems", headers=AUTH)).json()["payload"]
    assert first["AmazonOrderId"] == order_id
    assert len(first["OrderItems"]) == 3
    assert first["NextToken"]
    items = await items_of(client, order_id)
    assert len(items) == len({i["OrderItemId"] for i in items}) == 8
    other = await new_order(client, status="Unshipped", items=1)
    crossed = await client.get(
        f"{ORDERS}/{other['AmazonOrderId']}/orderItems",
        headers=AUTH,
        params={"NextToken": first["NextToken"]},
    )
    _assert_invalid_input(crossed)


async def test_unknown_order_is_404_and_malformed_id_400(client: httpx.AsyncClient) -> None:
    missing = await client.get(f"{ORDERS}/111-0000000-0000000", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "NotFound"
    _assert_invalid_input(await client.get(f"{ORDERS}/12345", headers=AUTH))


# -- confirmShipment --------------------------------------------------------------------------------------------
async def test_confirm_shipment_partially_then_fully_ships_the_order(client: httpx.AsyncClient) -> None:
    order = await new_order(client, status="Unshipped", items=2)
    order_id = order["AmazonOrderId"]
    first, second = await items_of(client, order_id)
    url = f"{ORDERS}/{order_id}/shipmentConfirmation"
    before = order["LastUpdateDate"]
    await client.post("/_sandbox/clock", json={"advance_s": 2})
    r = await client.post(
        url, headers=AUTH, json=confirmation(order_id, [(first["OrderItemId"], first["QuantityOrdered"])])
    )
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["x-amzn-RateLimit-Limit"] == "200"
    partial = (await client.get(f"{ORDERS}/{order_id}", headers=AUTH)).json()["payload"]
    assert partial["OrderStatus"] == "PartiallyShipped"
    assert partial["NumberOfItemsShipped"] == first["QuantityOrdered"]
    assert partial["LastUpdateDate"] > before
    body = confirmation(order_id, [(second["OrderItemId"], second["QuantityOrdered"])], reference="2")
    assert (await client.post(url, headers=AUTH, json=body)).status_code == 204
    shipped = (await client.get(f"{ORDERS}/{order_id}", headers=AUTH)).json()["payload"]
    assert shipped["OrderStatus"] == "Shipped"
    assert shipped["NumberOfItemsUnshipped"] == 0
    items = await items_of(client, order_id)
    assert all(i["QuantityShipped"] == i["QuantityOrdered"] for i in items)
    recorded = (await client.get("/_sandbox/confirmations")).json()["confirmations"]
    assert [c["packageReferenceId"] for c in recorded if c["amazonOrderId"] == order_id] == ["1", "2"]


async def test_documented_confirm_shipment_example_is_accepted(client: httpx.AsyncClient) -> None:
    order = await new_order(client, status="Unshipped", items=1)
    item = (await items_of(client, order["AmazonOrderId"]))[0]
    body = {**DOCUMENTED_CONFIRMATION, "packageDetail": dict(DOCUMENTED_CONFIRMATION["packageDetail"])}
    body["packageDetail"]["orderItems"] = [
        {**body["packageDetail"]["orderItems"][0], "orderItemId": item["OrderItemId"], "quantity": 1}
    ]
    r = await client.post(f"{ORDERS}/{order['AmazonOrderId']}/shipmentConfirmation", headers=AUTH, json=body)
    assert r.status_code == 204


async def test_confirm_shipment_refusals(client: httpx.AsyncClient) -> None:
    order = await new_order(client, status="Unshipped", items=1)
    order_id = order["AmazonOrderId"]
    item = (await items_of(client, order_id))[0]
    url = f"{ORDERS}/{order_id}/shipmentConfirmation"
    good = confirmation(order_id, [(item["OrderItemId"], 1)])

    def variant(**detail: Any) -> dict[str, Any]:
        return {**good, "packageDetail": {**good["packageDetail"], **detail}}

    bad_bodies: list[Any] = [
        {"packageDetail": good["packageDetail"]},
        {**good, "marketplaceId": "A1PA6795UKMFR9"},
        {"marketplaceId": US},
        variant(trackingNumber=None),
        variant(packageReferenceId="PKG-1"),
        variant(carrierCode="Others"),
        variant(shipDate="02/21/2022"),
        variant(orderItems=[{"orderItemId": "00000000000000", "quantity": 1}]),
        variant(orderItems=[{"orderItemId": item["OrderItemId"], "quantity": item["QuantityOrdered"] + 1}]),
        variant(orderItems=[{"orderItemId": item["OrderItemId"], "quantity": 0}]),
        [good],
    ]
    for body in bad_bodies:
        # confirmShipment's burst is 10: pace the requests as a client honouring the usage plan would.
        await asyncio.sleep(0.02)
        _assert_invalid_input(await client.post(url, headers=AUTH, json=body))
    _assert_invalid_input(await client.post(url, headers=AUTH, content=b"{not json"))
    pending = await new_order(client, status="Pending", items=1)
    pending_item = (await items_of(client, pending["AmazonOrderId"]))[0]
    r = await client.post(
        f"{ORDERS}/{pending['AmazonOrderId']}/shipmentConfirmation",
        headers=AUTH,
        json=confirmation(pending["AmazonOrderId"], [(pending_item["OrderItemId"], 1)]),
    )
    _assert_invalid_input(r)
    assert (await client.get(f"{ORDERS}/{order_id}", headers=AUTH)).json()["payload"][
        "OrderStatus"
    ] == "Unshipped"


async def test_same_package_reference_again_edits_the_package(client: httpx.AsyncClient) -> None:
    # "If you need to make an edit to the shipment, submit another confirmShipment operation with the same
    # packageReferenceID" (developer-docs.amazon.com/sp-api/docs/confirm-the-shipment-status).
    order = await new_order(client, status="Unshipped", items=2)
    order_id = order["AmazonOrderId"]
    first, second = await items_of(client, order_id)
    url = f"{ORDERS}/{order_id}/shipmentConfirmation"
    assert (
        await client.post(url, headers=AUTH, json=confirmation("", [(first["OrderItemId"], 1)]))
    ).status_code == 204
    edit = confirmation("", [(second["OrderItemId"], 1)])
    edit["packageDetail"]["trackingNumber"] = "1Z999AA1EDITED"
    assert (await client.post(url, headers=AUTH, json=edit)).status_code == 204
    recorded = [
        c for c in (await client.get("/_sandbox/confirmations")).json()["confirmations"]
        if c["amazonOrderId"] == order_id
    ]  # fmt: skip
    assert [(c["packageReferenceId"], c["trackingNumber"], c["edits"]) for c in recorded] == [
        ("1", "1Z999AA1EDITED", 1)
    ]
    shipped = {i["OrderItemId"]: i["QuantityShipped"] for i in await items_of(client, order_id)}
    assert shipped == {first["OrderItemId"]: 0, second["OrderItemId"]: 1}


# -- usage plans, faults, scale ---------------------------------------------------------------------------------
async def test_get_orders_burst_of_20_then_429_quota_exceeded() -> None:
    async with _client(make_app(orders=3, fast=False)) as c:
        params = {"MarketplaceIds": US, "CreatedAfter": LONG_AGO}
        for _ in range(20):
            ok = await c.get(ORDERS, headers=AUTH, params=params)
            assert ok.status_code == 200
            assert ok.headers["x-amzn-RateLimit-Limit"] == "0.0167"
        throttled = await c.get(ORDERS, headers=AUTH, params=params)
        assert throttled.status_code == 429
        assert throttled.json() == {
            "errors": [
                {
                    "code": "QuotaExceeded",
                    "message": "You exceeded your quota for the requested resource.",
                    "details": "",
                }
            ]
        }
        assert throttled.headers["x-amzn-RequestId"]
        # Buckets are per operation: getOrder still has its own burst.
        order_id = next(iter(state_of(c).orders))
        assert (await c.get(f"{ORDERS}/{order_id}", headers=AUTH)).headers["x-amzn-RateLimit-Limit"] == "0.5"


async def test_fast_limits_scale_rates_by_100(client: httpx.AsyncClient) -> None:
    summary = (await client.get("/_sandbox/")).json()
    assert summary["usage_plans"]["getOrders"] == {"rate": "1.67", "burst": 20}
    assert summary["usage_plans"]["confirmShipment"] == {"rate": "200", "burst": 10}


async def test_injected_faults_use_sp_api_error_bodies() -> None:
    app = create_app(SandboxConfig(token=TOKEN, faults=FaultSpec(p_5xx=1.0)))
    async with _client(app) as c:
        r = await c.get(ORDERS, headers=AUTH, params={"MarketplaceIds": US, "CreatedAfter": LONG_AGO})
        assert r.status_code == 500
        assert r.json()["errors"][0]["code"] == "InternalFailure"
        assert r.headers["x-amzn-RequestId"]
        assert (await c.get("/_sandbox/")).status_code == 200
    app = create_app(SandboxConfig(token=TOKEN, faults=FaultSpec(p_429=1.0)))
    async with _client(app) as c:
        r = await c.get(ORDERS, headers=AUTH, params={"MarketplaceIds": US, "CreatedAfter": LONG_AGO})
        assert r.status_code == 429
        assert r.json()["errors"][0]["code"] == "QuotaExceeded"


def test_ten_thousand_orders_seed_quickly_and_deterministically() -> None:
    started = time.perf_counter()
    app = create_app(SandboxConfig(seed=9, orders=10_000))
    assert time.perf_counter() - started < 10
    state: AmazonState = app.state.sandbox
    assert len(state.orders) == 10_000
    # Some seeded orders are large enough that getOrderItems pages with the default page size.
    assert any(len(o.items) > state.items_page_size for o in state.orders.values())
    a: AmazonState = create_app(SandboxConfig(seed=9, orders=40)).state.sandbox
    b: AmazonState = create_app(SandboxConfig(seed=9, orders=40)).state.sandbox
    assert list(a.orders) == list(b.orders)


# -- the official SDK (python-amazon-sp-api), aimed at the sandbox without patching ----------------------------
def _sdk_client(base_url: str, refresh_token: str) -> Any:
    """Orders v0 client for the sandbox: LWA host via the documented `auth_token_client_class` hook, API host via
    the client's `endpoint` attribute (the SDK takes its host from a Marketplaces enum and has no URL argument)."""
    lwa = type(
        "SandboxLwa", (AccessTokenClient,), {"scheme": "http://", "host": base_url.removeprefix("http://")}
    )
    credentials = {
        "refresh_token": refresh_token,
        "lwa_app_id": "sandbox-client-id",
        "lwa_client_secret": "sandbox-client-secret",
    }
    client = Orders(credentials=credentials, marketplace=Marketplaces.US, auth_token_client_class=lwa)
    client.endpoint = base_url
    return client


def test_official_sdk_pages_orders_and_items_and_confirms_a_shipment() -> None:
    # The SDK caches access tokens per refresh token process-wide: a fresh refresh token per test.
    refresh = f"Atzr|sdk-{uuid.uuid4().hex}"
    app = create_app(
        SandboxConfig(
            seed=21,
            orders=25,
            fast_limits=True,
            extra={"refresh_token": refresh, "order_items_page_size": "2"},
        )
    )
    state: AmazonState = app.state.sandbox
    big = state.create_order(status="Unshipped", n_items=5)
    with run_in_thread(app) as base_url:
        client = _sdk_client(base_url, refresh)
        first = client.get_orders(CreatedAfter=LONG_AGO, MaxResultsPerPage=10)
        assert first.rate_limit == "1.67"
        seen = [o["AmazonOrderId"] for o in first.payload["Orders"]]
        token = first.next_token
        while token:
            page = client.get_orders(NextToken=token)
            seen.extend(o["AmazonOrderId"] for o in page.payload["Orders"])
            token = page.next_token
        assert len(seen) == len(set(seen)) == 26
        items: list[dict[str, Any]] = []
        response = client.get_order_items(big.amazon_order_id)
        items.extend(response.payload["OrderItems"])
        while response.next_token:
            response = client.get_order_items(big.amazon_order_id, NextToken=response.next_token)
            items.extend(response.payload["OrderItems"])
        assert len(items) == 5
        result = client.confirm_shipment(
            big.amazon_order_id,
            marketplaceId=US,
            packageDetail={
                "packageReferenceId": "1",
                "carrierCode": "UPS",
                "trackingNumber": "1Z999AA10123456784",
                "shipDate": "2024-01-01T00:00:00Z",
                "orderItems": [
                    {"orderItemId": i["OrderItemId"], "quantity": i["QuantityOrdered"]} for i in items
                ],
            },
        )
        assert result.payload == {"status_code": 204}
        assert client.get_order(big.amazon_order_id).payload["OrderStatus"] == "Shipped"
        with pytest.raises(SellingApiBadRequestException):
            client.get_orders(CreatedAfter=LONG_AGO, LastUpdatedAfter=LONG_AGO)


def test_official_sdk_sees_403_for_a_revoked_refresh_tokens_access_token() -> None:
    refresh = f"Atzr|sdk-{uuid.uuid4().hex}"
    app = create_app(SandboxConfig(seed=22, orders=2, fast_limits=True, extra={"refresh_token": refresh}))
    with run_in_thread(app) as base_url:
        client = _sdk_client(base_url, refresh)
        client.get_orders(CreatedAfter=LONG_AGO)
        # Forget every issued access token, as if LWA had revoked them; the SDK's cached token is now refused.
        state: AmazonState = app.state.sandbox
        state.access_tokens.clear()
        with pytest.raises(SellingApiForbiddenException) as raised:
            client.get_orders(CreatedAfter=LONG_AGO)
        assert raised.value.amzn_code == "Unauthorized"
