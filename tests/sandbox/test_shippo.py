"""The Shippo sandbox behaves like api.goshippo.com: auth, DRF error shapes, pagination, async labels, webhooks,
tracking, refunds, partner OAuth, rate limits, faults, and the official `shippo` SDK pointed at it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pypdf
import pytest
import shippo
from PIL import Image
from shippo.models import components, operations
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crossdock.sandbox.common import FaultSpec, SandboxConfig, run_in_thread
from crossdock.sandbox.shippo import ShippoState, create_app

TOKEN = "shippo_test_0123456789abcdef"
AUTH = {"Authorization": f"ShippoToken {TOKEN}"}
HOOK_URL = "http://receiver.test/shippo-hooks"

SF = {"name": "Shawn Ippotle", "street1": "215 Clayton St.", "city": "San Francisco", "state": "CA",
      "zip": "94117", "country": "US", "email": "shippotle@example.com"}  # fmt: skip
NYC = {"name": "Mr Hippo", "street1": "350 5th Ave", "city": "New York", "state": "NY", "zip": "10118",
       "country": "US"}  # fmt: skip
BERLIN = {"name": "Erika Mustermann", "street1": "Unter den Linden 1", "city": "Berlin", "zip": "10117",
          "country": "DE"}  # fmt: skip
PARCEL = {
    "length": "10",
    "width": "8",
    "height": "4",
    "distance_unit": "in",
    "weight": "2",
    "mass_unit": "lb",
}


class Receiver:
    """An in-process webhook endpoint that records what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=200)

        self.app = Starlette(routes=[Route("/shippo-hooks", hook, methods=["POST"])])

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


def make_app(**extra: str) -> Starlette:
    knobs = {"async_delay_s": "0.05", **extra}
    return create_app(SandboxConfig(seed=7, orders=3, token=TOKEN, webhook_url=HOOK_URL, extra=knobs))


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def app(receiver: Receiver) -> AsyncIterator[Starlette]:
    application = make_app()
    sandbox(application).webhooks.transport = httpx.ASGITransport(app=receiver.app)
    yield application
    await sandbox(application).stop()
    await sandbox(application).webhooks.stop()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as c:
        yield c


def sandbox(app: Starlette) -> ShippoState:
    state: ShippoState = app.state.sandbox
    return state


async def make_shipment(client: httpx.AsyncClient, to: dict[str, Any] = NYC, **body: Any) -> dict[str, Any]:
    payload = {"address_from": SF, "address_to": to, "parcels": [PARCEL], "async": False, **body}
    response = await client.post("/shipments", json=payload, headers=AUTH)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def buy_label(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    shipment = await make_shipment(client)
    payload = {"rate": shipment["rates"][0]["object_id"], "async": False, **body}
    response = await client.post("/transactions", json=payload, headers=AUTH)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


# -- authentication ----------------------------------------------------------------------------------------------
async def test_missing_authorization_is_401_credentials_not_provided(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


async def test_unknown_shippo_token_is_401_token_does_not_exist(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders", headers={"Authorization": "ShippoToken shippo_test_nope"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Token does not exist"}


async def test_unknown_oauth_bearer_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/shipments", headers={"Authorization": "Bearer oauth.not-issued"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Token does not exist"}


async def test_foreign_auth_scheme_is_401_credentials_not_provided(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders", headers={"Authorization": f"Basic {TOKEN}"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


# -- orders --------------------------------------------------------------------------------------------------------
async def test_order_without_placed_at_and_to_address_is_400_with_field_errors(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/orders", json={"order_number": "#1"}, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {
        "placed_at": ["This field is required."],
        "to_address": ["This field is required."],
    }


async def test_order_with_bad_values_is_400_naming_each_field(client: httpx.AsyncClient) -> None:
    body = {"placed_at": "yesterday", "to_address": {"name": "X"}, "order_status": "LOST"}
    response = await client.post("/orders/", json=body, headers=AUTH)
    assert response.status_code == 400
    errors = response.json()
    assert errors["placed_at"][0].startswith("Datetime has wrong format.")
    assert errors["to_address"] == {"country": ["This field is required."]}
    assert errors["order_status"] == ['"LOST" is not a valid choice.']


async def test_order_is_created_and_read_back(client: httpx.AsyncClient) -> None:
    body = {"placed_at": "2024-05-01T10:00:00Z", "to_address": NYC, "order_number": "#1068", "order_status": "PAID",
            "line_items": [{"title": "Hippo Magazines", "sku": "HM-123", "quantity": 1, "total_price": "12.10",
                            "currency": "USD", "weight": "0.40", "weight_unit": "lb"}]}  # fmt: skip
    created = await client.post("/orders", json=body, headers=AUTH)
    assert created.status_code == 201
    order = created.json()
    assert order["shop_app"] == "Shippo" and order["transactions"] == []
    assert order["to_address"]["object_id"] and order["line_items"][0]["object_id"]
    fetched = await client.get(f"/orders/{order['object_id']}", headers=AUTH)
    assert fetched.json() == order


async def test_orders_list_pages_with_next_previous_and_results(client: httpx.AsyncClient) -> None:
    first = (await client.get("/orders?results=2", headers=AUTH)).json()
    assert set(first) == {"next", "previous", "results"}
    assert len(first["results"]) == 2 and first["previous"] is None
    assert first["next"].startswith("http://sandbox.test/orders?") and "page=2" in first["next"]
    second = (await client.get(first["next"], headers=AUTH)).json()
    assert len(second["results"]) == 1 and second["next"] is None and "page=1" in second["previous"]
    ids = [o["object_id"] for o in first["results"] + second["results"]]
    assert len(set(ids)) == 3


async def test_unknown_order_is_404_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/orders/0123456789abcdef0123456789abcdef", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


async def test_seeded_orders_are_the_same_for_the_same_seed() -> None:
    a, b = sandbox(make_app()), sandbox(make_app())
    assert list(a.orders) == list(b.orders)
    assert [o["to_address"]["name"] for o in a.orders.values()] == [
        o["to_address"]["name"] for o in b.orders.values()
    ]


# -- shipments and rates --------------------------------------------------------------------------------------------
async def test_shipment_without_parcels_or_country_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/shipments", json={"address_from": {"name": "A"}, "address_to": NYC, "parcels": []}, headers=AUTH
    )
    assert response.status_code == 400
    assert response.json() == {"address_from": {"country": ["This field is required."]},
                               "parcels": ["This list may not be empty."]}  # fmt: skip


async def test_parcel_errors_are_reported_per_parcel(client: httpx.AsyncClient) -> None:
    bad = {"length": "x", "width": "8", "height": "4", "distance_unit": "parsec", "mass_unit": "lb"}
    body = {"address_from": SF, "address_to": NYC, "parcels": [PARCEL, bad]}
    response = await client.post("/shipments", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"parcels": [{}, {"length": ["A valid number is required."],
                                                "weight": ["This field is required."],
                                                "distance_unit": ['"parsec" is not a valid choice.']}]}  # fmt: skip


async def test_sync_shipment_returns_rates_inline_with_service_levels(client: httpx.AsyncClient) -> None:
    shipment = await make_shipment(client)
    assert shipment["status"] == "SUCCESS"
    tokens = {r["servicelevel"]["token"] for r in shipment["rates"]}
    assert {"usps_priority", "ups_ground"} <= tokens
    for rate in shipment["rates"]:
        assert rate["shipment"] == shipment["object_id"] and rate["currency"] == "USD"
        assert rate["estimated_days"] >= 1 and rate["duration_terms"]
    attributes = [a for r in shipment["rates"] for a in r["attributes"]]
    assert sorted(attributes) == ["BESTVALUE", "CHEAPEST", "FASTEST"]


async def test_rates_grow_with_weight_and_distance_and_repeat_exactly(client: httpx.AsyncClient) -> None:
    def priority(shipment: dict[str, Any]) -> float:
        return next(
            float(r["amount"]) for r in shipment["rates"] if r["servicelevel"]["token"] == "usps_priority"
        )

    light = await make_shipment(client)
    again = await make_shipment(client)
    heavy = await make_shipment(client, parcels=[dict(PARCEL, weight="20")])
    near = await make_shipment(client, to=dict(NYC, zip="94105"))
    assert priority(light) == priority(again)
    assert priority(heavy) > priority(light)
    assert priority(near) < priority(light)


async def test_international_shipment_gets_dhl_express_and_no_domestic_services(
    client: httpx.AsyncClient,
) -> None:
    shipment = await make_shipment(client, to=BERLIN)
    tokens = {r["servicelevel"]["token"] for r in shipment["rates"]}
    assert "dhl_express_worldwide" in tokens and "usps_priority_mail_international" in tokens
    assert "ups_ground" not in tokens


async def test_async_shipment_is_queued_then_success(client: httpx.AsyncClient, app: Starlette) -> None:
    body = {"address_from": SF, "address_to": NYC, "parcels": [PARCEL]}
    created = (await client.post("/shipments", json=body, headers=AUTH)).json()
    assert created["status"] == "QUEUED" and created["rates"] == []
    await sandbox(app).settle()
    done = (await client.get(f"/shipments/{created['object_id']}", headers=AUTH)).json()
    assert done["status"] == "SUCCESS" and done["rates"]


async def test_shipment_rates_list_and_currency_conversion(client: httpx.AsyncClient) -> None:
    shipment = await make_shipment(client)
    listed = (await client.get(f"/shipments/{shipment['object_id']}/rates", headers=AUTH)).json()
    assert [r["object_id"] for r in listed["results"]] == [r["object_id"] for r in shipment["rates"]]
    in_eur = (await client.get(f"/shipments/{shipment['object_id']}/rates/EUR", headers=AUTH)).json()
    assert {r["currency"] for r in in_eur["results"]} == {"EUR"}
    assert float(in_eur["results"][0]["amount"]) < float(listed["results"][0]["amount"])
    one = (await client.get(f"/rates/{shipment['rates'][0]['object_id']}", headers=AUTH)).json()
    assert one == shipment["rates"][0]


# -- transactions, labels, webhooks -------------------------------------------------------------------------------
async def test_transaction_with_unknown_rate_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/transactions", json={"rate": "f" * 32}, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"rate": [f'Invalid pk "{"f" * 32}" - object does not exist.']}
    missing = await client.post("/transactions", json={"label_file_type": "GIF"}, headers=AUTH)
    assert missing.json() == {
        "rate": ["This field is required."],
        "label_file_type": ['"GIF" is not a valid choice.'],
    }


async def test_async_transaction_goes_queued_to_success_with_webhooks(
    client: httpx.AsyncClient, app: Starlette, receiver: Receiver
) -> None:
    shipment = await make_shipment(client)
    response = await client.post(
        "/transactions", json={"rate": shipment["rates"][0]["object_id"]}, headers=AUTH
    )
    queued = response.json()
    assert response.status_code == 201 and queued["status"] == "QUEUED" and queued["tracking_number"] is None
    await sandbox(app).settle()
    await sandbox(app).webhooks.drain()
    done = (await client.get(f"/transactions/{queued['object_id']}", headers=AUTH)).json()
    assert done["status"] == "SUCCESS" and done["object_state"] == "VALID"
    assert done["tracking_number"] and done["label_url"] and done["tracking_url_provider"]
    assert done["rate"]["object_id"] == shipment["rates"][0]["object_id"]
    events = receiver.events()
    assert [e["event"] for e in events] == ["transaction_created", "transaction_updated"]
    assert all(e["test"] is True for e in events)
    assert events[0]["data"]["status"] == "QUEUED"
    assert events[1]["data"]["status"] == "SUCCESS"
    assert events[1]["data"]["tracking_number"] == done["tracking_number"]
    headers = receiver.received[0][0]
    assert headers["content-type"] == "application/json" and "shippo-auth-signature" not in headers


async def test_webhooks_carry_hmac_signature_when_a_secret_is_set(receiver: Receiver) -> None:
    app = make_app(hmac_secret="whsec-test")
    sandbox(app).webhooks.transport = httpx.ASGITransport(app=receiver.app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as c:
        await buy_label(c)
        await sandbox(app).webhooks.drain()
    headers, body = receiver.received[0]
    parts = dict(p.split("=", 1) for p in headers["shippo-auth-signature"].split(","))
    expected = hmac.new(b"whsec-test", parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    await sandbox(app).webhooks.stop()


async def test_sync_transaction_is_success_at_once(client: httpx.AsyncClient) -> None:
    transaction = await buy_label(client, metadata="order 42")
    assert transaction["status"] == "SUCCESS" and transaction["tracking_status"] == "PRE_TRANSIT"
    assert transaction["label_file_type"] == "PDF_4x6" and transaction["metadata"] == "order 42"
    listed = (await client.get("/transactions?object_status=SUCCESS", headers=AUTH)).json()
    assert [t["object_id"] for t in listed["results"]] == [transaction["object_id"]]


async def test_rate_older_than_seven_days_gives_an_error_transaction(client: httpx.AsyncClient) -> None:
    shipment = await make_shipment(client)
    await client.post("/_sandbox/clock", json={"advance_s": 8 * 86400})
    body = {"rate": shipment["rates"][0]["object_id"], "async": False}
    transaction = (await client.post("/transactions", json=body, headers=AUTH)).json()
    assert transaction["status"] == "ERROR" and transaction["object_state"] == "INVALID"
    assert transaction["label_url"] is None and transaction["tracking_number"] is None
    assert transaction["messages"][0]["code"] == "rate_expired"


async def test_incomplete_recipient_address_gives_an_error_transaction(client: httpx.AsyncClient) -> None:
    shipment = await make_shipment(client, to={"country": "US", "zip": "10118", "state": "NY"})
    body = {"rate": shipment["rates"][0]["object_id"], "async": False}
    transaction = (await client.post("/transactions", json=body, headers=AUTH)).json()
    assert transaction["status"] == "ERROR"
    assert transaction["messages"][0]["code"] == "address_incomplete"


async def test_failing_labels_can_be_switched_on_and_off_while_running(client: httpx.AsyncClient) -> None:
    assert (await client.post("/_sandbox/settings", json={"fail_labels": "yes"})).status_code == 400
    assert (await client.post("/_sandbox/settings", json={"fail_labels": True})).json() == {
        "fail_labels": True
    }
    shipment = await make_shipment(client)
    body = {"rate": shipment["rates"][0]["object_id"], "async": False}
    failed = (await client.post("/transactions", json=body, headers=AUTH)).json()
    assert failed["status"] == "ERROR" and failed["messages"][0]["code"] == "carrier_timeout"
    await client.post("/_sandbox/settings", json={"fail_labels": False})
    bought = await buy_label(client)
    assert bought["status"] == "SUCCESS" and bought["tracking_number"]


async def test_label_pdf_parses_and_shows_the_tracking_number(client: httpx.AsyncClient) -> None:
    transaction = await buy_label(client)
    response = await client.get(transaction["label_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(response.content))
    page = reader.pages[0]
    assert round(float(page.mediabox.width)) == 288 and round(float(page.mediabox.height)) == 432  # 4x6 in
    text = page.extract_text()
    assert transaction["tracking_number"] in text and "Mr Hippo" in text


async def test_png_and_zpl_labels_when_asked(client: httpx.AsyncClient) -> None:
    png = await buy_label(client, label_file_type="PNG")
    assert png["label_url"].endswith(".png")
    image = Image.open(io.BytesIO((await client.get(png["label_url"])).content))
    assert image.format == "PNG" and image.size == (812, 1218)
    zpl = await buy_label(client, label_file_type="ZPLII")
    text = (await client.get(zpl["label_url"])).text
    assert text.startswith("^XA") and text.rstrip().endswith("^XZ") and zpl["tracking_number"] in text


async def test_unknown_label_file_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/labels/" + "0" * 32 + ".pdf")
    assert response.status_code == 404 and "NoSuchKey" in response.text


# -- tracking --------------------------------------------------------------------------------------------------------
async def test_tracking_advances_pre_transit_transit_delivered_with_webhooks(
    client: httpx.AsyncClient, app: Starlette, receiver: Receiver
) -> None:
    transaction = await buy_label(client)
    number = transaction["tracking_number"]
    track = (await client.get(f"/tracks/usps/{number}", headers=AUTH)).json()
    assert (
        track["tracking_status"]["status"] == "PRE_TRANSIT"
        and track["transaction"] == transaction["object_id"]
    )
    for expected in ("TRANSIT", "DELIVERED"):
        advanced = await client.post(f"/_sandbox/tracks/{number}/advance")
        assert advanced.json()["tracking_status"]["status"] == expected
    assert (await client.post(f"/_sandbox/tracks/{number}/advance")).status_code == 409
    track = (await client.get(f"/tracks/usps/{number}", headers=AUTH)).json()
    assert [h["status"] for h in track["tracking_history"]] == ["PRE_TRANSIT", "TRANSIT", "DELIVERED"]
    assert (await client.get(f"/transactions/{transaction['object_id']}", headers=AUTH)).json()[
        "tracking_status"
    ] == "DELIVERED"
    await sandbox(app).webhooks.drain()
    track_events = [e for e in receiver.events() if e["event"] == "track_updated"]
    assert [e["data"]["tracking_status"]["status"] for e in track_events] == ["TRANSIT", "DELIVERED"]
    assert track_events[0]["data"]["tracking_number"] == number


async def test_shippo_test_tracking_numbers_give_fixed_statuses(client: httpx.AsyncClient) -> None:
    delivered = (await client.get("/tracks/shippo/SHIPPO_DELIVERED", headers=AUTH)).json()
    assert delivered["tracking_status"]["status"] == "DELIVERED"
    unknown = (await client.get("/tracks/usps/9400000000000000000000", headers=AUTH)).json()
    assert unknown["tracking_status"]["status"] == "UNKNOWN" and unknown["tracking_history"] == []


# -- refunds ---------------------------------------------------------------------------------------------------------
async def test_refund_voids_an_unused_label(
    client: httpx.AsyncClient, app: Starlette, receiver: Receiver
) -> None:
    transaction = await buy_label(client)
    refund = (
        await client.post("/refunds", json={"transaction": transaction["object_id"]}, headers=AUTH)
    ).json()
    assert refund["status"] == "QUEUED"
    pending = (await client.get(f"/transactions/{transaction['object_id']}", headers=AUTH)).json()
    assert pending["status"] == "REFUNDPENDING"
    await sandbox(app).settle()
    assert (await client.get(f"/refunds/{refund['object_id']}", headers=AUTH)).json()["status"] == "SUCCESS"
    refunded = (await client.get(f"/transactions/{transaction['object_id']}", headers=AUTH)).json()
    assert refunded["status"] == "REFUNDED"
    again = await client.post("/refunds", json={"transaction": transaction["object_id"]}, headers=AUTH)
    assert again.status_code == 400 and "transaction" in again.json()


async def test_refund_of_a_scanned_label_is_400(client: httpx.AsyncClient) -> None:
    transaction = await buy_label(client)
    await client.post(f"/_sandbox/transactions/{transaction['object_id']}/advance")
    response = await client.post("/refunds", json={"transaction": transaction["object_id"]}, headers=AUTH)
    assert response.status_code == 400
    assert list(response.json()) == ["transaction"]


# -- partner OAuth -------------------------------------------------------------------------------------------------
async def test_partner_oauth_consent_code_and_token_then_bearer_works(client: httpx.AsyncClient) -> None:
    query = {"response_type": "code", "client_id": "sandbox-client-id", "scope": "*", "state": "xyz",
             "redirect_uri": "https://hub.example/oauth/shippo/callback"}  # fmt: skip
    page = await client.get("/oauth/authorize", params=query)
    assert page.status_code == 200 and "<form" in page.text and "Allow" in page.text
    approved = await client.post("/oauth/authorize", data={**query, "decision": "allow"})
    assert approved.status_code == 302
    location = httpx.URL(approved.headers["location"])
    assert str(location).startswith(query["redirect_uri"]) and location.params["state"] == "xyz"
    form = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
            "code": location.params["code"], "grant_type": "authorization_code"}  # fmt: skip
    token = (await client.post("/oauth/access_token", data=form)).json()
    assert token["token_type"] == "bearer" and token["scope"] == "*"
    assert token["access_token"].startswith("oauth.")
    listed = await client.get("/orders", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert listed.status_code == 200
    reused = await client.post("/oauth/access_token", data=form)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


async def test_oauth_refusals_deny_bad_client_and_bad_secret(client: httpx.AsyncClient) -> None:
    query = {"response_type": "code", "client_id": "sandbox-client-id", "state": "s1",
             "redirect_uri": "https://hub.example/cb"}  # fmt: skip
    denied = await client.post("/oauth/authorize", data={**query, "decision": "deny"})
    assert httpx.URL(denied.headers["location"]).params["error"] == "access_denied"
    bad_client = await client.get("/oauth/authorize", params={**query, "client_id": "someone-else"})
    assert bad_client.status_code == 400
    form = {"client_id": "sandbox-client-id", "client_secret": "wrong", "code": "x",
            "grant_type": "authorization_code"}  # fmt: skip
    assert (await client.post("/oauth/access_token", data=form)).json() == {"error": "invalid_client"}


# -- limits and faults -------------------------------------------------------------------------------------------
async def test_list_rate_limit_is_429_after_ten_a_minute_with_test_token(client: httpx.AsyncClient) -> None:
    statuses = [(await client.get("/orders", headers=AUTH)).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    limited = await client.get("/orders", headers=AUTH)
    assert limited.json()["detail"].startswith("Request was throttled. Expected available in")
    assert int(limited.headers["retry-after"]) >= 1
    # Single-object GETs have their own, larger budget.
    assert (await client.get("/tracks/shippo/SHIPPO_TRANSIT", headers=AUTH)).status_code == 200


async def test_fast_limits_scale_the_budget() -> None:
    app = create_app(SandboxConfig(token=TOKEN, fast_limits=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as c:
        statuses = {(await c.get("/orders", headers=AUTH)).status_code for _ in range(15)}
    assert statuses == {200}


async def test_injected_5xx_is_djangos_error_page_and_admin_is_spared() -> None:
    app = create_app(SandboxConfig(token=TOKEN, faults=FaultSpec(p_5xx=1.0)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as c:
        failed = await c.get("/orders", headers=AUTH)
        assert failed.status_code == 500 and "Server Error (500)" in failed.text
        assert (await c.get("/_sandbox/")).status_code == 200


async def test_injected_429_uses_shippos_throttle_body() -> None:
    app = create_app(SandboxConfig(token=TOKEN, faults=FaultSpec(p_429=1.0)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as c:
        response = await c.get("/orders", headers=AUTH)
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json() == {"detail": "Request was throttled. Expected available in 1 second."}


# -- admin API -------------------------------------------------------------------------------------------------------
async def test_admin_lists_objects_and_seeds_orders(client: httpx.AsyncClient) -> None:
    await buy_label(client)
    assert len((await client.get("/_sandbox/transactions")).json()) == 1
    assert len((await client.get("/_sandbox/shipments")).json()) == 1
    created = await client.post("/_sandbox/orders", json={"count": 2})
    assert created.status_code == 201 and len(created.json()) == 2
    assert len((await client.get("/_sandbox/orders")).json()) == 5
    hooks = (await client.get("/_sandbox/webhooks")).json()
    assert [e["event"] for e in hooks["events"]] == ["transaction_created"]


# -- the official SDK ------------------------------------------------------------------------------------------
def test_official_sdk_creates_shipment_lists_rates_and_buys_a_label() -> None:
    app = make_app()
    with run_in_thread(app) as base_url:
        sdk = shippo.Shippo(api_key_header=f"ShippoToken {TOKEN}", server_url=base_url)
        shipment = sdk.shipments.create(
            components.ShipmentCreateRequest(
                address_from=components.AddressCreateRequest(**SF),
                address_to=components.AddressCreateRequest(**NYC),
                parcels=[
                    components.ParcelCreateRequest(
                        length="10", width="8", height="4", distance_unit=components.DistanceUnitEnum.IN,
                        weight="2", mass_unit=components.WeightUnitEnum.LB,
                    )
                ],
                async_=False,
            )
        )  # fmt: skip
        assert shipment.status == components.ShipmentStatus.SUCCESS and shipment.rates
        rates = sdk.rates.list_shipment_rates(shipment.object_id)
        assert rates.results is not None and len(rates.results) == len(shipment.rates)
        cheapest = next(r for r in rates.results if components.Attributes.CHEAPEST in r.attributes)
        transaction = sdk.transactions.create(
            components.TransactionCreateRequest(
                rate=cheapest.object_id, label_file_type=components.LabelFileTypeEnum.PDF_4X6, async_=False
            )
        )
        assert transaction.status == components.TransactionStatusEnum.SUCCESS
        assert transaction.tracking_number and transaction.label_url
        fetched = sdk.transactions.get(transaction.object_id or "")
        assert fetched.tracking_number == transaction.tracking_number
        listed = sdk.transactions.list(operations.ListTransactionsRequest())
        assert listed.results is not None and len(listed.results) == 1
        track = sdk.tracking_status.get(transaction.tracking_number, "usps")
        assert track.tracking_status is not None
        assert track.tracking_status.status == components.TrackingStatusEnum.PRE_TRANSIT
        with pytest.raises(shippo.models.errors.SDKError) as refused:
            shippo.Shippo(api_key_header="ShippoToken wrong", server_url=base_url).orders.list(
                operations.ListOrdersRequest()
            )
        assert refused.value.status_code == 401


async def test_sandbox_settles_background_work_quickly(app: Starlette) -> None:
    # Guard against the async delay knob being ignored: queued work must finish well under a second.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as c:
        shipment = await make_shipment(c)
        await c.post("/transactions", json={"rate": shipment["rates"][0]["object_id"]}, headers=AUTH)
    await asyncio.wait_for(sandbox(app).settle(), 1.0)


def test_registry_builds_the_shippo_sandbox() -> None:
    from crossdock.sandbox import create_sandbox_app

    app = create_sandbox_app("shippo", SandboxConfig(seed=7))
    assert sandbox(app).token.startswith("shippo_test_")
    assert sandbox(app).token == sandbox(create_sandbox_app("shippo", SandboxConfig(seed=7))).token
