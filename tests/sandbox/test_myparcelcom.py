"""The MyParcel.com API sandbox (auth server, JSON:API shipments, statuses, files, idempotency) and the platform
simulator that checks an integration against the MyParcel.com integration contract."""

from __future__ import annotations

import asyncio
import io
import json
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pypdf
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crossdock.sandbox.common import FaultSpec, SandboxConfig
from crossdock.sandbox.myparcelcom import MyParcelComState, create_app
from crossdock.sandbox.myparcelcom.platform import ContractViolation, MyParcelComPlatform

JSON_API = "application/vnd.api+json"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "sandbox-client-id",
    "client_secret": "sandbox-client-secret",
    "scope": "*",
}
HOOK_URL = "http://receiver.test/hooks"


def sandbox(app: Starlette) -> MyParcelComState:
    state: MyParcelComState = app.state.sandbox
    return state


def make_app(**extra: str) -> Starlette:
    return create_app(
        SandboxConfig(seed=3, orders=4, webhook_url=HOOK_URL, extra={"processing_s": "0", **extra})
    )


@pytest.fixture
def app() -> Starlette:
    return make_app()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        yield c
    await sandbox(app).webhooks.stop()


async def bearer(client: httpx.AsyncClient) -> dict[str, str]:
    token = (await client.post("/access-token", json=CREDENTIALS)).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": JSON_API, "Accept": JSON_API}


def shipment_body(app: Starlette, **attributes: Any) -> dict[str, Any]:
    address = {
        "street_1": "Baker Street",
        "street_number": 221,
        "postal_code": "NW1 6XE",
        "city": "London",
        "country_code": "GB",
    }
    attrs: dict[str, Any] = {
        "recipient_address": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "street_1": "Main 1",
            "postal_code": "1011 AB",
            "city": "Amsterdam",
            "country_code": "NL",
        },
        "sender_address": address,
        "return_address": address,
        "physical_properties": {"weight": 1500, "length": 300, "width": 200, "height": 100},
        "description": "Books",
        "customer_reference": "#1001",
        "channel": "crossdock",
        "items": [
            {
                "sku": "B-1",
                "description": "Book",
                "quantity": 2,
                "item_value": {"amount": 1250, "currency": "GBP"},
            }
        ],
        **attributes,
    }
    return {
        "data": {
            "type": "shipments",
            "attributes": attrs,
            "relationships": {"shop": {"data": {"type": "shops", "id": sandbox(app).default_shop_id}}},
        },
        "meta": {"service_code": "dpd-classic"},
    }


async def create(client: httpx.AsyncClient, app: Starlette, **attributes: Any) -> dict[str, Any]:
    response = await client.post(
        "/shipments", json=shipment_body(app, **attributes), headers=await bearer(client)
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# -- auth server ------------------------------------------------------------------------------------------------
async def test_client_credentials_give_a_bearer_token_for_a_day(client: httpx.AsyncClient) -> None:
    response = await client.post("/access-token", json=CREDENTIALS)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
    assert body["access_token"].count(".") == 2  # a JWT


async def test_wrong_client_secret_is_403_invalid_oauth_client(client: httpx.AsyncClient) -> None:
    response = await client.post("/access-token", json={**CREDENTIALS, "client_secret": "nope"})
    assert response.status_code == 403
    [error] = response.json()["errors"]
    assert (error["status"], error["code"], error["title"]) == ("403", "14000", "Invalid OAuth Client")


async def test_other_grant_type_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/access-token", json={**CREDENTIALS, "grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "14050"


async def test_no_token_is_401_no_access_token_provided(client: httpx.AsyncClient) -> None:
    response = await client.get("/shipments")
    assert response.status_code == 401 and response.headers["content-type"].startswith(JSON_API)
    [error] = response.json()["errors"]
    assert (error["code"], error["title"]) == ("14003", "No Access Token Provided")


async def test_bad_and_expired_tokens_are_401_access_token_is_invalid(client: httpx.AsyncClient) -> None:
    forged = await client.get("/shipments", headers={"Authorization": "Bearer a.b.c"})
    assert forged.status_code == 401
    assert forged.json()["errors"][0]["code"] == "14002"
    headers = await bearer(client)
    await client.post("/_sandbox/clock", json={"advance_s": 86401})
    expired = await client.get("/shipments", headers=headers)
    assert expired.status_code == 401 and expired.json()["errors"][0]["detail"] == "Token expired"


# -- shipments ---------------------------------------------------------------------------------------------------
async def test_missing_required_attributes_are_422_with_pointers(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    body = shipment_body(app)
    attrs = body["data"]["attributes"]
    del (
        attrs["sender_address"],
        attrs["recipient_address"]["first_name"],
        attrs["physical_properties"]["weight"],
    )
    attrs["return_address"]["country_code"] = "gb"
    response = await client.post("/shipments", json=body, headers=await bearer(client))
    assert response.status_code == 422
    pointers = {e["source"]["pointer"] for e in response.json()["errors"]}
    assert pointers == {
        "/data/attributes/recipient_address/first_name",
        "/data/attributes/sender_address",
        "/data/attributes/return_address/country_code",
        "/data/attributes/physical_properties/weight",
    }
    assert all(e["status"] == "422" and e["code"] == "10003" for e in response.json()["errors"])


async def test_unknown_shop_and_wrong_type_are_refused(client: httpx.AsyncClient, app: Starlette) -> None:
    headers = await bearer(client)
    body = shipment_body(app)
    body["data"]["relationships"]["shop"]["data"]["id"] = str(uuid.uuid4())
    unknown = await client.post("/shipments", json=body, headers=headers)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["source"]["pointer"] == "/data/relationships/shop/data/id"
    body = shipment_body(app)
    body["data"]["type"] = "orders"
    assert (await client.post("/shipments", json=body, headers=headers)).status_code == 409


async def test_new_shipment_is_processing_then_concept(client: httpx.AsyncClient) -> None:
    app = make_app(processing_s="30")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        data = await create(c, app)
        headers = await bearer(c)
        url = f"/shipments/{data['id']}?include=shipment_status"
        first = (await c.get(url, headers=headers)).json()
        assert _status_code(first) == "shipment-processing"
        await c.post("/_sandbox/clock", json={"advance_s": 31})
        assert _status_code((await c.get(url, headers=headers)).json()) == "shipment-concept"


def _status_code(document: dict[str, Any]) -> str:
    statuses = [i for i in document["included"] if i["type"] == "statuses"]
    code: str = statuses[0]["attributes"]["code"]
    return code


async def test_get_one_includes_the_shipment_status_and_its_status(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    data = await create(client, app)
    assert data["relationships"]["shipment_status"]["data"]["type"] == "shipment-statuses"
    assert data["links"]["files"].endswith(f"/shipments/{data['id']}/files")
    document = (
        await client.get(f"/shipments/{data['id']}?include=shipment_status", headers=await bearer(client))
    ).json()
    types = {i["type"] for i in document["included"]}
    assert types == {"shipment-statuses", "statuses"}
    status = next(i for i in document["included"] if i["type"] == "statuses")
    assert status["attributes"] == {
        "code": "shipment-concept",
        "resource_type": "shipments",
        "level": "pending",
        "name": "Concept",
        "description": status["attributes"]["description"],
    }
    bad = await client.get(f"/shipments/{data['id']}?include=secrets", headers=await bearer(client))
    assert bad.status_code == 400 and bad.json()["errors"][0]["source"] == {"parameter": "include"}


async def test_statuses_progress_from_concept_to_delivered(client: httpx.AsyncClient, app: Starlette) -> None:
    data = await create(client, app, register_at=0)
    headers = await bearer(client)
    url = f"/shipments/{data['id']}?include=shipment_status"
    assert _status_code((await client.get(url, headers=headers)).json()) == "shipment-registered"
    seen = []
    for _ in range(4):
        advanced = await client.post(f"/_sandbox/shipments/{data['id']}/advance")
        seen.append(advanced.json()["included"][1]["attributes"]["code"])
    assert seen == [
        "shipment-received-by-carrier",
        "shipment-at-sorting",
        "shipment-with-courier",
        "shipment-delivered",
    ]
    assert (await client.post(f"/_sandbox/shipments/{data['id']}/advance")).status_code == 409
    history = (await client.get(f"/shipments/{data['id']}/statuses", headers=headers)).json()
    assert history["meta"]["total_records"] == 7  # processing, concept, registered, and the four above
    shipment = (await client.get(url, headers=headers)).json()["data"]
    assert shipment["attributes"]["tracking_code"].startswith("DPD")


async def test_register_at_in_the_future_waits_for_the_clock(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    later = int(datetime.now(UTC).timestamp()) + 3600
    data = await create(client, app, register_at=later)
    headers = await bearer(client)
    url = f"/shipments/{data['id']}?include=shipment_status"
    assert _status_code((await client.get(url, headers=headers)).json()) == "shipment-concept"
    await client.post("/_sandbox/clock", json={"advance_s": 3601})
    assert _status_code((await client.get(url, headers=headers)).json()) == "shipment-registered"


async def test_registration_without_a_service_fails(client: httpx.AsyncClient, app: Starlette) -> None:
    body = shipment_body(app, register_at=0)
    del body["meta"]
    headers = await bearer(client)
    data = (await client.post("/shipments", json=body, headers=headers)).json()["data"]
    document = (await client.get(f"/shipments/{data['id']}?include=shipment_status", headers=headers)).json()
    assert _status_code(document) == "shipment-registration-failed"
    status = next(i for i in document["included"] if i["type"] == "shipment-statuses")
    assert status["attributes"]["errors"][0]["code"] == "13002"


async def test_registered_shipment_has_a_label_pdf_with_its_tracking_code(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    data = await create(client, app, register_at=0)
    headers = await bearer(client)
    files = (await client.get(f"/shipments/{data['id']}/files", headers=headers)).json()
    [label] = files["data"]
    assert label["attributes"]["document_type"] == "label"
    assert {"extension": "pdf", "mime_type": "application/pdf"} in label["attributes"]["formats"]
    resource = await client.get(f"/files/{label['id']}", headers=headers)
    assert resource.json()["data"]["id"] == label["id"]
    pdf = await client.get(f"/files/{label['id']}", headers={**headers, "Accept": "application/pdf"})
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    page = pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0]
    tracking = (await client.get(f"/shipments/{data['id']}", headers=headers)).json()["data"]["attributes"]
    assert tracking["tracking_code"] in page.extract_text()
    assert round(float(page.mediabox.width)) == 298  # A6: 105 mm
    png = await client.get(f"/files/{label['id']}", headers={**headers, "Accept": "image/png"})
    assert png.content.startswith(b"\x89PNG")


async def test_unknown_shipment_is_404_resource_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/shipments/{uuid.uuid4()}", headers=await bearer(client))
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "10002"


async def test_list_pages_with_links_and_meta(client: httpx.AsyncClient, app: Starlette) -> None:
    headers = await bearer(client)
    first = (await client.get("/shipments?page[size]=3", headers=headers)).json()
    assert first["meta"] == {"total_pages": 2, "total_records": 4}
    assert set(first["links"]) == {"self", "first", "last", "next"}
    assert "page[number]=2" in first["links"]["next"]
    second = (await client.get(first["links"]["next"], headers=headers)).json()
    assert len(second["data"]) == 1 and "prev" in second["links"] and "next" not in second["links"]
    ids = [s["id"] for s in first["data"] + second["data"]]
    assert len(set(ids)) == 4
    bad = await client.get("/shipments?page[size]=1000", headers=headers)
    assert bad.status_code == 422


async def test_one_shop_by_id_is_a_one_item_list_and_an_unknown_one_is_404(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    headers = await bearer(client)
    shop_id = sandbox(app).default_shop_id
    document = (await client.get(f"/shops/{shop_id}", headers=headers)).json()
    [shop] = document["data"]
    assert shop["id"] == shop_id and shop["attributes"]["sender_address"]["street_1"]
    assert document["meta"] == {"total_pages": 1, "total_records": 1}
    missing = await client.get(f"/shops/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "10002"


async def test_a_shipments_service_names_its_carrier(client: httpx.AsyncClient, app: Starlette) -> None:
    data = await create(client, app)
    headers = await bearer(client)
    service_id = data["relationships"]["service"]["data"]["id"]
    service = (await client.get(f"/services/{service_id}", headers=headers)).json()["data"]
    assert service["attributes"]["code"] == "dpd-classic"
    carrier_id = service["relationships"]["carrier"]["data"]["id"]
    carrier = (await client.get(f"/carriers/{carrier_id}", headers=headers)).json()["data"]
    assert carrier["attributes"]["name"] == "DPD"
    assert (await client.get(f"/services/{uuid.uuid4()}", headers=headers)).status_code == 404
    assert (await client.get(f"/carriers/{uuid.uuid4()}", headers=headers)).status_code == 404


async def test_customer_reference_and_tracking_code_filters_match_whole_values(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    data = await create(client, app, customer_reference="crossdock-label-7", register_at=0)
    headers = await bearer(client)
    found = (
        await client.get("/shipments?filter[customer_reference]=crossdock-label-7", headers=headers)
    ).json()
    assert [s["id"] for s in found["data"]] == [data["id"]]
    partial = (
        await client.get("/shipments?filter[customer_reference]=crossdock-label", headers=headers)
    ).json()
    assert partial["data"] == [] and partial["meta"]["total_records"] == 0
    code = sandbox(app).shipments[data["id"]].attributes["tracking_code"]
    by_code = (await client.get(f"/shipments?filter[tracking_code]={code}", headers=headers)).json()
    assert [s["id"] for s in by_code["data"]] == [data["id"]]


async def test_status_history_can_include_the_generic_statuses(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    data = await create(client, app, register_at=0)
    headers = await bearer(client)
    history = (await client.get(f"/shipments/{data['id']}/statuses?include=status", headers=headers)).json()
    codes = {i["id"]: i["attributes"]["code"] for i in history["included"] if i["type"] == "statuses"}
    listed = [codes[s["relationships"]["status"]["data"]["id"]] for s in history["data"]]
    assert listed == ["shipment-registered", "shipment-concept", "shipment-processing"]
    bad = await client.get(f"/shipments/{data['id']}/statuses?include=files", headers=headers)
    assert bad.status_code == 400 and bad.json()["errors"][0]["source"] == {"parameter": "include"}


async def test_void_shipment_voids_a_registered_shipment_and_locks_others(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    headers = await bearer(client)
    registered = await create(client, app, register_at=0)
    state = sandbox(app)
    [label] = state.shipments[registered["id"]].files
    voided = await client.post(
        "/void-shipment", json={"data": {"shipment_id": registered["id"]}}, headers=headers
    )
    assert voided.status_code == 204
    assert state.shipments[registered["id"]].status_code == "shipment-voided"
    # "Voiding a shipment deletes the label" (docs rpc-endpoints/void-shipment.md).
    assert (await client.get(f"/files/{label['id']}", headers=headers)).status_code == 404
    again = await client.post(
        "/void-shipment", json={"data": {"shipment_id": registered["id"]}}, headers=headers
    )
    assert again.status_code == 423 and "shipment-voided" in again.json()["errors"][0]["detail"]
    concept = await create(client, app)
    locked = await client.post(
        "/void-shipment", json={"data": {"shipment_id": concept["id"]}}, headers=headers
    )
    assert locked.status_code == 423
    missing = await client.post("/void-shipment", json={"data": {}}, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["source"]["pointer"] == "/data/shipment_id"


# -- idempotency -------------------------------------------------------------------------------------------------
async def test_idempotency_key_replay_returns_the_original_201(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    headers = {**(await bearer(client)), "Idempotency-Key": "order-1001-parcel-1"}
    body = shipment_body(app)
    first = await client.post("/shipments", json=body, headers=headers)
    again = await client.post("/shipments", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotency-replay"] == "true" and "idempotency-replay" not in first.headers
    assert again.json() == first.json()
    assert len(sandbox(app).shipments) == 5  # 4 seeded + 1


async def test_concurrent_request_with_the_same_key_is_423() -> None:
    app = make_app(create_latency_s="0.2")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        headers = {**(await bearer(c)), "Idempotency-Key": "same-key"}
        body = shipment_body(app)
        first, second = await asyncio.gather(
            c.post("/shipments", json=body, headers=headers),
            c.post("/shipments", json=body, headers=headers),
        )
    assert sorted([first.status_code, second.status_code]) == [201, 423]
    locked = first if first.status_code == 423 else second
    assert locked.json()["errors"][0]["status"] == "423"


async def test_same_key_with_another_body_is_422(client: httpx.AsyncClient, app: Starlette) -> None:
    headers = {**(await bearer(client)), "Idempotency-Key": "k-1"}
    assert (await client.post("/shipments", json=shipment_body(app), headers=headers)).status_code == 201
    other = await client.post("/shipments", json=shipment_body(app, description="Other"), headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["errors"][0]["detail"]


async def test_refused_request_does_not_burn_its_key(client: httpx.AsyncClient, app: Starlette) -> None:
    headers = {**(await bearer(client)), "Idempotency-Key": "k-2"}
    bad = shipment_body(app)
    del bad["data"]["attributes"]["sender_address"]
    assert (await client.post("/shipments", json=bad, headers=headers)).status_code == 422
    assert (await client.post("/shipments", json=shipment_body(app), headers=headers)).status_code == 201


# -- webhooks, faults, admin ---------------------------------------------------------------------------------------
async def test_status_changes_are_posted_as_status_documents(app: Starlette) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response(status_code=204)

    sandbox(app).webhooks.transport = httpx.ASGITransport(
        app=Starlette(routes=[Route("/hooks", hook, methods=["POST"])])
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        data = await create(c, app, register_at=0)
        await sandbox(app).webhooks.drain()
    mine = [d for d in received if d["included"][1]["id"] == data["id"]]
    codes = [d["included"][0]["attributes"]["code"] for d in mine]
    assert codes == ["shipment-processing", "shipment-concept", "shipment-registered"]
    assert mine[-1]["data"]["type"] == "shipment-statuses"
    await sandbox(app).webhooks.stop()


async def test_injected_faults_use_json_api_errors_and_spare_admin() -> None:
    app = create_app(SandboxConfig(faults=FaultSpec(p_5xx=1.0)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        failed = await c.post("/access-token", json=CREDENTIALS)
        assert failed.status_code == 500 and failed.json()["errors"][0]["code"] == "10001"
        assert (await c.get("/_sandbox/")).status_code == 200


async def test_seeded_shipments_are_stable_for_a_seed() -> None:
    a, b = sandbox(make_app()), sandbox(make_app())
    assert list(a.shipments) == list(b.shipments)
    assert [s.status_code for s in a.shipments.values()] == [s.status_code for s in b.shipments.values()]


# -- the platform simulator against a reference integration (PROTOCOLS.md section 9) ---------------------------
@dataclass
class ReferenceIntegration:
    """A minimal integration following the contract, with switches that break it in known ways."""

    channel: str = "reference"
    shipments: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    omit_meta: bool = False
    missing_shop_status: int = 400
    drop_channel: bool = False
    extra_total: int = 0
    ignore_dates: bool = False

    def app(self) -> Starlette:
        async def healthz(_: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def init_auth(request: Request) -> Response:
            data = (await request.json())["data"]
            session = uuid.uuid4().hex
            self.sessions[session] = (data["shop_id"], data["redirect_uri"])
            base = str(request.base_url).rstrip("/")
            callback = f"{base}/public/authenticate?session_token={session}"
            link = f"{base}/remote/oauth/authorize?response_type=code&client_id=ref&redirect_uri={quote(callback)}"
            return JSONResponse({"data": {"authorization_link": link}})

        async def remote_authorize(request: Request) -> Response:
            # Stands in for the remote shop's OAuth server: the merchant approves at once.
            return RedirectResponse(request.query_params["redirect_uri"] + "&code=granted", 302)

        async def authenticate(request: Request) -> Response:
            shop_id, redirect_uri = self.sessions.pop(request.query_params["session_token"])
            self.tokens[shop_id] = request.query_params["code"]
            return RedirectResponse(redirect_uri, 302)

        async def shipments(request: Request) -> Response:
            shop_id = request.query_params.get("shop_id")
            if not shop_id:
                return _errors(self.missing_shop_status, "Bad request", "No shop_id provided")
            try:
                uuid.UUID(shop_id)
            except ValueError:
                return _errors(422, "Unprocessable entity", "shop_id is not a valid UUID")
            if shop_id not in self.tokens:
                return _errors(401, "Unauthorized", f"No access token found for shop {shop_id}")
            start = datetime.fromisoformat(request.query_params["filter[start_date]"]).replace(tzinfo=UTC)
            end = datetime.fromisoformat(request.query_params["filter[end_date]"]).replace(tzinfo=UTC)
            rows = [
                s
                for s in self.shipments
                if self.ignore_dates
                or start.timestamp() <= s["attributes"]["created_at"] < end.timestamp() + 86400
            ]
            rows = [
                {**s, "relationships": {"shop": {"data": {"type": "shops", "id": shop_id}}}} for s in rows
            ]
            if self.drop_channel:
                rows = [
                    {**s, "attributes": {k: v for k, v in s["attributes"].items() if k != "channel"}}
                    for s in rows
                ]
            number = int(request.query_params.get("page[number]", "1"))
            size = int(request.query_params.get("page[size]", "30"))
            total = len(rows) + self.extra_total
            document: dict[str, Any] = {"data": rows[(number - 1) * size : number * size]}
            if not self.omit_meta:
                document["meta"] = {"total_records": total, "total_pages": math.ceil(total / size)}
            return JSONResponse(document)

        async def status_callback(request: Request) -> Response:
            document = await request.json()
            shipment = next(i for i in document["included"] if i["type"] == "shipments")
            if shipment["attributes"].get("channel") != self.channel:
                return Response(status_code=204)
            self.callbacks.append(document)
            return JSONResponse({})

        return Starlette(
            routes=[
                Route("/healthz", healthz),
                Route("/public/init-auth", init_auth, methods=["POST"]),
                Route("/public/authenticate", authenticate),
                Route("/remote/oauth/authorize", remote_authorize),
                Route("/shipments", shipments),
                Route("/callback/shipment-statuses", status_callback, methods=["POST"]),
            ]
        )


def _errors(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"status": str(status), "title": title, "detail": detail}]}, status_code=status
    )


def reference_shipments(n: int, channel: str = "reference") -> list[dict[str, Any]]:
    january = int(datetime(2024, 1, 10, tzinfo=UTC).timestamp())
    return [
        {
            "type": "shipments",
            "attributes": {
                "created_at": january + i * 3600,
                "recipient_address": {
                    "street_1": f"Main {i}",
                    "city": "Leeds",
                    "country_code": "GB",
                    "first_name": "Sam",
                    "last_name": f"Customer {i}",
                },
                "description": f"Order {i}",
                "customer_reference": f"#{2000 + i}",
                "channel": channel,
                "total_value": {"amount": 1999, "currency": "GBP"},
                "physical_properties": {"weight": 500},
                "items": [{"sku": "T-1", "description": "T-shirt", "quantity": 1}],
                "tags": ["web"],
            },
        }
        for i in range(n)
    ]


SHOP = str(uuid.UUID(int=42))
BASE = "http://integration.test"


def platform_for(reference: ReferenceIntegration) -> MyParcelComPlatform:
    return MyParcelComPlatform(BASE, channel="reference", transport=httpx.ASGITransport(app=reference.app()))


async def test_platform_authorizes_and_pulls_every_page() -> None:
    reference = ReferenceIntegration(shipments=reference_shipments(7))
    async with platform_for(reference) as platform:
        await platform.healthz()
        await platform.check_refusals(SHOP)
        landed = await platform.authorize(SHOP, "https://platform.example/shops/done")
        assert str(landed) == "https://platform.example/shops/done" and SHOP in reference.tokens
        pages = [
            page async for page in platform.iter_shipment_pages(SHOP, date(2024, 1, 1), date(2024, 1, 31), 3)
        ]
        assert [len(p) for p in pages] == [3, 3, 1]
        assert await platform.list_shipments(SHOP, date(2024, 2, 1), date(2024, 2, 28)) == []


async def test_platform_detects_missing_meta() -> None:
    reference = ReferenceIntegration(shipments=reference_shipments(2), omit_meta=True)
    async with platform_for(reference) as platform:
        await platform.authorize(SHOP, "https://platform.example/done")
        with pytest.raises(ContractViolation, match="meta with total_records and total_pages is mandatory"):
            await platform.list_shipments(SHOP, date(2024, 1, 1), date(2024, 1, 31))


async def test_platform_detects_wrong_status_code_for_missing_shop_id() -> None:
    reference = ReferenceIntegration(missing_shop_status=422)
    async with platform_for(reference) as platform:
        with pytest.raises(ContractViolation, match="without shop_id must be answered 400") as raised:
            await platform.check_refusals(SHOP)
    assert raised.value.status == 422


async def test_platform_detects_missing_channel() -> None:
    reference = ReferenceIntegration(shipments=reference_shipments(1), drop_channel=True)
    async with platform_for(reference) as platform:
        await platform.authorize(SHOP, "https://platform.example/done")
        with pytest.raises(ContractViolation, match=r"attributes\.channel is required"):
            await platform.list_shipments(SHOP, date(2024, 1, 1), date(2024, 1, 31))


async def test_platform_detects_totals_that_do_not_match_the_pages() -> None:
    reference = ReferenceIntegration(shipments=reference_shipments(4), extra_total=3)
    async with platform_for(reference) as platform:
        await platform.authorize(SHOP, "https://platform.example/done")
        with pytest.raises(ContractViolation, match="must hold"):
            await platform.list_shipments(SHOP, date(2024, 1, 1), date(2024, 1, 31), page_size=3)


async def test_platform_detects_shipments_outside_the_date_filter() -> None:
    reference = ReferenceIntegration(shipments=reference_shipments(3), ignore_dates=True)
    for i, shipment in enumerate(reference.shipments):
        shipment["attributes"]["created_at"] += i * 86400 * 3  # Jan 10, Jan 13, Jan 16
    async with platform_for(reference) as platform:
        await platform.authorize(SHOP, "https://platform.example/done")
        assert len(await platform.list_shipments(SHOP, date(2024, 1, 1), date(2024, 1, 31))) == 3
        with pytest.raises(ContractViolation, match="outside filter"):
            await platform.list_shipments(SHOP, date(2024, 1, 10), date(2024, 1, 11))


async def test_platform_status_callback_document_and_channel_routing() -> None:
    reference = ReferenceIntegration()
    async with platform_for(reference) as platform:
        mine = reference_shipments(1)[0]
        accepted = await platform.post_status_callback(mine, "shipment-delivered")
        assert accepted.status_code == 200
        [document] = reference.callbacks
        assert document["data"]["type"] == "shipment-statuses"
        assert [i["type"] for i in document["included"]] == ["statuses", "shipments"]
        assert document["included"][0]["attributes"]["code"] == "shipment-delivered"
        other = reference_shipments(1, channel="someone-else")[0]
        assert (await platform.post_status_callback(other, "shipment-registered")).status_code == 204
        with pytest.raises(ValueError, match=r"unknown MyParcel\.com status code"):
            platform.status_document(mine, "shipment-teleported")


async def test_platform_detects_an_integration_that_is_not_json_api() -> None:
    async def plain(_: Request) -> Response:
        return Response("nope", status_code=400, media_type="text/plain")

    broken = Starlette(routes=[Route("/shipments", plain)])
    async with MyParcelComPlatform(BASE, transport=httpx.ASGITransport(app=broken)) as platform:
        with pytest.raises(ContractViolation, match="expected a JSON body"):
            await platform.check_refusals(SHOP)


async def test_registry_builds_the_myparcelcom_sandbox_and_its_fixed_token_works() -> None:
    from crossdock.sandbox import create_sandbox_app

    app = create_sandbox_app("myparcelcom", SandboxConfig(token="fixed-token"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        response = await c.get("/shops", headers={"Authorization": "Bearer fixed-token"})
    assert response.status_code == 200 and response.json()["meta"]["total_records"] == 1
