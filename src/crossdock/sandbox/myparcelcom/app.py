"""The MyParcel.com API sandbox as an ASGI app: the auth server's /access-token, the JSON:API shipments, shops,
statuses and files, and the /_sandbox admin API.

Shapes follow MyParcelCOM/api-specification (specification/paths/Shipments.json, schemas/shipments/*.json,
schemas/Error.json, includes/pagination-meta.json) and the errors MyParcelCOM/json-api raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from crossdock.sandbox.common import FaultMiddleware, Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.labels import LabelData, render_pdf, render_png
from crossdock.sandbox.myparcelcom import resources as r
from crossdock.sandbox.myparcelcom.resources import JSON, JSON_API
from crossdock.sandbox.myparcelcom.state import IdempotencyEntry, MyParcelComState, ShipmentRecord

Handler = Callable[[Request], Awaitable[Response]]

DEFAULT_PAGE_SIZE = 30  # the page[size] in every example of the specification
MAX_PAGE_SIZE = 100
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Required address properties per role (specification/paths/Shipments.json, POST requestBody).
_ADDRESS_REQUIRED = {
    "recipient_address": ("first_name", "last_name", "street_1", "city", "country_code"),
    "sender_address": ("street_1", "city", "country_code"),
    "return_address": ("street_1", "city", "country_code"),
}
_INCLUDES = {"shipment_status", "shipment_status.status", "files", "shop"}


class MyParcelComError(Exception):
    def __init__(self, status: int, errors: list[JSON], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {errors}")
        self.status = status
        self.errors = errors
        self.headers = headers or {}


def api_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers, media_type=JSON_API)


def create_app(config: SandboxConfig) -> Starlette:
    faults = Faults(config.faults)
    state = MyParcelComState(config=config, faults=faults, webhooks=WebhookSender(faults))
    api = _MyParcelComApi(state)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await state.webhooks.start()
        try:
            yield
        finally:
            await state.webhooks.stop()

    app = Starlette(
        routes=api.routes(),
        lifespan=lifespan,
        exception_handlers={MyParcelComError: _api_error, HTTPException: _http_error},
    )
    app.state.sandbox = state
    app.add_middleware(
        FaultMiddleware,
        faults=faults,
        error_5xx=lambda: api_json(
            {
                "errors": [
                    r.error(
                        500,
                        r.INTERNAL_SERVER_ERROR,
                        "Something went wrong. Please try again. If the problem persists, contact support.",
                    )
                ]
            },
            500,
        ),
        error_429=lambda: api_json(
            {"errors": [r.error(429, r.TOO_MANY_REQUESTS, "Too many requests, please try again later.")]},
            429,
            {"Retry-After": "1"},
        ),
    )
    return app


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, MyParcelComError)
    return api_json({"errors": exc.errors}, exc.status, exc.headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = r.error(405, r.METHOD_NOT_ALLOWED, "The method is not allowed for this endpoint.")
    elif exc.status_code == 404:
        # json-api Handler: NotFoundHttpException -> "The endpoint could not be found."
        error = r.error(404, r.NOT_FOUND, "The endpoint could not be found.")
    else:
        error = r.error(exc.status_code, r.INTERNAL_SERVER_ERROR, str(exc.detail))
    return api_json({"errors": [error]}, exc.status_code)


def _schema_error(detail: str, pointer: str) -> JSON:
    return r.error(422, r.INVALID_JSON_SCHEMA, detail, pointer)


class _MyParcelComApi:
    def __init__(self, state: MyParcelComState) -> None:
        self.state = state

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.root, methods=["GET"]),
            Route("/access-token", self.access_token, methods=["POST"]),
            Route("/shops", self._auth(self.list_shops), methods=["GET"]),
            Route("/shops/{shop_ids}", self._auth(self.get_shops), methods=["GET"]),
            Route("/services/{service_id}", self._auth(self.get_service), methods=["GET"]),
            Route("/carriers/{carrier_id}", self._auth(self.get_carrier), methods=["GET"]),
            Route("/void-shipment", self._auth(self.void_shipment), methods=["POST"]),
            Route("/shipments", self._auth(self.shipments), methods=["GET", "POST"]),
            Route("/shipments/{shipment_id}", self._auth(self.get_shipment), methods=["GET"]),
            Route("/shipments/{shipment_id}/statuses", self._auth(self.list_statuses), methods=["GET"]),
            Route(
                "/shipments/{shipment_id}/statuses/{status_id}", self._auth(self.get_status), methods=["GET"]
            ),
            Route("/shipments/{shipment_id}/files", self._auth(self.list_files), methods=["GET"]),
            Route("/files/{file_id}", self._auth(self.get_file), methods=["GET"]),
            Route("/_sandbox/", self.admin_index, methods=["GET"]),
            Route("/_sandbox/shipments", self.admin_shipments, methods=["GET", "POST"]),
            Route("/_sandbox/shipments/{shipment_id}/advance", self.admin_advance, methods=["POST"]),
            Route("/_sandbox/clock", self.admin_clock, methods=["POST"]),
            Route("/_sandbox/webhooks", self.admin_webhooks, methods=["GET"]),
            Route("/_sandbox/idempotency", self.admin_idempotency, methods=["GET"]),
        ]

    def _auth(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization")
            if not header:
                raise MyParcelComError(
                    401,
                    [
                        r.error(
                            401,
                            r.AUTH_MISSING_TOKEN,
                            "No access token was provided for the request. Please add this to the 'Authorization: Bearer' "
                            "header.",
                        )
                    ],
                )
            if not header.startswith("Bearer "):
                raise MyParcelComError(
                    401, [r.error(401, r.AUTH_INVALID_TOKEN, "Invalid Authorization header supplied")]
                )
            problem = self.state.check_token(header.removeprefix("Bearer ").strip())
            if problem is not None:
                raise MyParcelComError(401, [r.error(401, r.AUTH_INVALID_TOKEN, problem)])
            self.state.tick()
            return await handler(request)

        return endpoint

    def base(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    # -- root and auth server --------------------------------------------------------------------------------
    async def root(self, _: Request) -> Response:
        return api_json(
            {
                "meta": {"title": "MyParcel.com API", "status": "OK"},
                "links": {"specification": "https://api-specification.myparcel.com"},
            }
        )

    async def access_token(self, request: Request) -> Response:
        """The auth server's client-credentials grant (docs: authentication/client-credentials-grant.md)."""
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise MyParcelComError(
                400, [r.error(400, r.AUTH_SERVER_EXCEPTION, "The request body must be JSON.")]
            )
        if body.get("grant_type") != "client_credentials":
            raise MyParcelComError(
                400,
                [
                    r.error(
                        400,
                        r.AUTH_SERVER_EXCEPTION,
                        "The authorization grant type is not supported by the authorization server.",
                    )
                ],
            )
        config = self.state.config
        if body.get("client_id") != config.client_id or body.get("client_secret") != config.client_secret:
            # json-api InvalidClientException: 403 with this detail.
            raise MyParcelComError(
                403,
                [
                    r.error(
                        403,
                        r.AUTH_INVALID_CLIENT,
                        "The supplied client credentials are invalid or the client does not have access to this grant "
                        "type.",
                    )
                ],
            )
        scope = str(body.get("scope") or "*")
        return JSONResponse(
            {"token_type": "Bearer", "expires_in": 86400, "access_token": self.state.issue_token(scope)}
        )

    # -- shops ---------------------------------------------------------------------------------------------------
    async def list_shops(self, request: Request) -> Response:
        shops = list(self.state.shops.values())
        return api_json(self._page(request, shops, "/shops"))

    async def get_shops(self, request: Request) -> Response:
        """GET /shops/{shop_id}: "a comma separated list of ids can be supplied"; the answer is a list
        (api-specification paths/Shops-shop_id.json)."""
        wanted = [i for i in request.path_params["shop_ids"].split(",") if i]
        shops = [self.state.shops[i] for i in wanted if i in self.state.shops]
        if not shops:
            raise MyParcelComError(
                404,
                [r.error(404, r.RESOURCE_NOT_FOUND, "One or more of the shops resource could not be found.")],
            )
        return api_json(self._page(request, shops, f"/shops/{request.path_params['shop_ids']}"))

    # -- services and carriers -----------------------------------------------------------------------------
    async def get_service(self, request: Request) -> Response:
        resource = self.state.service_resource(request.path_params["service_id"])
        if resource is None:
            raise MyParcelComError(
                404,
                [
                    r.error(
                        404, r.RESOURCE_NOT_FOUND, "One or more of the services resource could not be found."
                    )
                ],
            )
        return api_json({"data": resource})

    async def get_carrier(self, request: Request) -> Response:
        resource = self.state.carrier_resource(request.path_params["carrier_id"])
        if resource is None:
            raise MyParcelComError(
                404,
                [
                    r.error(
                        404, r.RESOURCE_NOT_FOUND, "One or more of the carriers resource could not be found."
                    )
                ],
            )
        return api_json({"data": resource})

    # -- void ------------------------------------------------------------------------------------------------
    async def void_shipment(self, request: Request) -> Response:
        """POST /void-shipment {"data": {"shipment_id"}}: 204 and a `shipment-voided` status, or 423 when the
        shipment is not voidable (docs content/api/rpc-endpoints/void-shipment.md: registered shipments are)."""
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        data = body.get("data") if isinstance(body, dict) else None
        shipment_id = data.get("shipment_id") if isinstance(data, dict) else None
        if not isinstance(shipment_id, str) or not shipment_id:
            raise MyParcelComError(
                422, [_schema_error("The property shipment_id is required.", "/data/shipment_id")]
            )
        record = self.state.shipments.get(shipment_id)
        if record is None:
            raise MyParcelComError(
                404,
                [
                    r.error(
                        404, r.RESOURCE_NOT_FOUND, "One or more of the shipments resource could not be found."
                    )
                ],
            )
        if not self.state.void(record):
            raise MyParcelComError(
                423,
                [
                    r.error(
                        423,
                        r.RESOURCE_CONFLICT,
                        f"The shipment cannot be voided: its status is {record.status_code}. Only a registered "
                        "shipment whose label the carrier has not scanned can be voided.",
                    )
                ],
            )
        return Response(status_code=204)

    # -- shipments -------------------------------------------------------------------------------------------
    async def shipments(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.create_shipment(request)
        return await self.list_shipments(request)

    async def create_shipment(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise MyParcelComError(
                400, [r.error(400, r.INVALID_JSON_SCHEMA, "The request body is not valid JSON.")]
            ) from None
        key = request.headers.get("idempotency-key")
        if key is None:
            return await self._create(request, body)
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        entry = self.state.idempotency.get(key)
        if entry is not None:
            if entry.state == "in_progress":
                # PROTOCOLS.md 7: 423 while the first request with this key is still being processed.
                raise MyParcelComError(
                    423,
                    [
                        r.error(
                            423,
                            r.RESOURCE_CONFLICT,
                            "A request with this Idempotency-Key is still being processed. Retry once it has finished.",
                        )
                    ],
                )
            if entry.fingerprint != fingerprint:
                # (verify) What MyParcel.com answers when a key is reused with another body is not captured.
                raise MyParcelComError(
                    422,
                    [
                        r.error(
                            422,
                            r.UNPROCESSABLE_ENTITY,
                            "This Idempotency-Key was already used for a request with a different body; use a new key "
                            "for a new shipment.",
                        )
                    ],
                )
            return api_json(entry.body, entry.status, {**entry.headers, "Idempotency-Replay": "true"})
        self.state.idempotency[key] = IdempotencyEntry(fingerprint, "in_progress")
        try:
            response = await self._create(request, body)
        except BaseException:
            # A refused request is not remembered: fixing the body and retrying with the same key is allowed.
            del self.state.idempotency[key]
            raise
        self.state.idempotency[key] = IdempotencyEntry(
            fingerprint,
            "done",
            response.status_code,
            json.loads(bytes(response.body)),
            {"Location": response.headers["location"]},
        )
        return response

    async def _create(self, request: Request, body: Any) -> JSONResponse:
        if self.state.create_latency_s > 0:
            await asyncio.sleep(self.state.create_latency_s)
        attributes, shop_id, service_code = self._validate_shipment(body)
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else None
        label = meta.get("label") if meta is not None else None
        size = label.get("size") if isinstance(label, dict) else None
        record = self.state.create_shipment(attributes, shop_id, service_code, str(size or "A6"))
        self.state.tick()
        base = self.base(request)
        document = {"data": self._public(self.state.shipment_resource(record, base))}
        return api_json(document, 201, {"Location": f"{base}/shipments/{record.id}"})

    def _validate_shipment(self, body: Any) -> tuple[JSON, str, str | None]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise MyParcelComError(422, [_schema_error("The property data is required.", "/data")])
        data = body["data"]
        if data.get("type") != "shipments":
            raise MyParcelComError(
                409,
                [r.error(409, r.RESOURCE_CONFLICT, "The supplied resource `type` is invalid.", "/data/type")],
            )
        errors: list[JSON] = []
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            raise MyParcelComError(
                422, [_schema_error("The property attributes is required.", "/data/attributes")]
            )
        for role, required in _ADDRESS_REQUIRED.items():
            pointer = f"/data/attributes/{role}"
            address = attributes.get(role)
            if not isinstance(address, dict):
                errors.append(_schema_error(f"The property {role} is required.", pointer))
                continue
            for prop in required:
                value = address.get(prop)
                if not isinstance(value, str) or not value.strip():
                    errors.append(_schema_error(f"The property {prop} is required.", f"{pointer}/{prop}"))
            country = address.get("country_code")
            if isinstance(country, str) and country.strip() and not _COUNTRY.match(country):
                errors.append(
                    _schema_error("Does not match the regex pattern ^[A-Z]{2}$", f"{pointer}/country_code")
                )
        physical = attributes.get("physical_properties")
        if not isinstance(physical, dict):
            errors.append(
                _schema_error(
                    "The property physical_properties is required.", "/data/attributes/physical_properties"
                )
            )
        else:
            weight = physical.get("weight")
            if weight is None:
                errors.append(
                    _schema_error(
                        "The property weight is required.", "/data/attributes/physical_properties/weight"
                    )
                )
            elif isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                errors.append(
                    _schema_error(
                        "The weight must be a non-negative integer (grams).",
                        "/data/attributes/physical_properties/weight",
                    )
                )
        items = attributes.get("items")
        if items is not None:
            if not isinstance(items, list):
                errors.append(_schema_error("The property items must be an array.", "/data/attributes/items"))
            else:
                for i, item in enumerate(items):
                    pointer = f"/data/attributes/items/{i}"
                    if not isinstance(item, dict):
                        errors.append(_schema_error("An item must be an object.", pointer))
                        continue
                    if not isinstance(item.get("description"), str) or not item["description"]:
                        errors.append(
                            _schema_error("The property description is required.", f"{pointer}/description")
                        )
                    quantity = item.get("quantity")
                    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                        errors.append(
                            _schema_error(
                                "The property quantity must be an integer of at least 1.",
                                f"{pointer}/quantity",
                            )
                        )
        register_at = attributes.get("register_at")
        if register_at is not None and (isinstance(register_at, bool) or not isinstance(register_at, int)):
            errors.append(
                _schema_error(
                    "The property register_at must be a unix timestamp or null.",
                    "/data/attributes/register_at",
                )
            )
        description = attributes.get("description")
        if isinstance(description, str) and len(description) > 255:
            errors.append(
                _schema_error("Must be at most 255 characters long", "/data/attributes/description")
            )
        shop_data = ((data.get("relationships") or {}).get("shop") or {}).get("data")
        if not isinstance(shop_data, dict) or not shop_data.get("id"):
            errors.append(_schema_error("The property shop is required.", "/data/relationships/shop"))
        if errors:
            raise MyParcelComError(422, errors)
        assert isinstance(shop_data, dict)
        shop_id = str(shop_data["id"])
        if shop_id not in self.state.shops:
            raise MyParcelComError(
                422,
                [
                    r.error(
                        422,
                        r.UNPROCESSABLE_ENTITY,
                        "The shop could not be found.",
                        "/data/relationships/shop/data/id",
                    )
                ],
            )
        meta = body.get("meta")
        service_code = meta.get("service_code") if isinstance(meta, dict) else None
        if not isinstance(service_code, str) or not service_code:
            service_code = None
        allowed = {
            "recipient_address",
            "sender_address",
            "return_address",
            "pickup_location",
            "description",
            "customer_reference",
            "channel",
            "total_value",
            "physical_properties",
            "items",
            "customs",
            "register_at",
            "tags",
            "recipient_tax_identification_numbers",
            "sender_tax_identification_numbers",
        }
        kept = {k: v for k, v in attributes.items() if k in allowed}
        return json.loads(json.dumps(kept)), shop_id, service_code

    async def list_shipments(self, request: Request) -> Response:
        records = sorted(
            self.state.shipments.values(), key=lambda s: s.attributes["created_at"], reverse=True
        )
        if shops := request.query_params.get("filter[shop]"):
            wanted = set(shops.split(","))
            records = [s for s in records if s.shop_id in wanted]
        # Strict (whole value) searches: api-specification parameters/query-shipments-filter-customer_reference
        # .json and query-shipments-filter-tracking_code.json.
        for attribute in ("customer_reference", "tracking_code"):
            value = request.query_params.get(f"filter[{attribute}]")
            if value is not None:
                records = [s for s in records if s.attributes.get(attribute) == value]
        base = self.base(request)
        includes = self._includes(request)
        resources = [self._public(self.state.shipment_resource(s, base)) for s in records]
        document = self._page(request, resources, "/shipments")
        shown = {d["id"] for d in document["data"]}
        included = self._included([s for s in records if s.id in shown], includes, base)
        if included:
            document["included"] = included
        return api_json(document)

    async def get_shipment(self, request: Request) -> Response:
        record = self._record(request)
        base = self.base(request)
        document: JSON = {"data": self._public(self.state.shipment_resource(record, base))}
        included = self._included([record], self._includes(request), base)
        if included:
            document["included"] = included
        return api_json(document)

    async def list_statuses(self, request: Request) -> Response:
        record = self._record(request)
        indexes = list(range(len(record.statuses)))[::-1]
        statuses = [self.state.shipment_status(record, i) for i in indexes]
        document = self._page(request, statuses, f"/shipments/{record.id}/statuses")
        # "The relationships that can be included are status and shipment" (paths/Shipments-shipment_id-
        # Statuses.json).
        raw = request.query_params.get("include") or ""
        wanted = {part.strip() for part in raw.split(",") if part.strip()}
        unknown = wanted - {"status", "shipment"}
        if unknown:
            error = r.error(
                400,
                r.INVALID_JSON_SCHEMA,
                f"Cannot include {', '.join(sorted(unknown))}; allowed: shipment, status.",
            )
            error["source"] = {"parameter": "include"}
            raise MyParcelComError(400, [error])
        included: list[JSON] = []
        if "status" in wanted:
            shown = {s["id"] for s in document["data"]}
            codes: list[str] = []
            for i in indexes:
                status = record.statuses[i]
                if status["id"] in shown and status["_code"] not in codes:
                    codes.append(str(status["_code"]))
            included += [r.status_resource(code) for code in codes]
        if "shipment" in wanted:
            included.append(self._public(self.state.shipment_resource(record, self.base(request))))
        if included:
            document["included"] = included
        return api_json(document)

    async def get_status(self, request: Request) -> Response:
        record = self._record(request)
        for i, status in enumerate(record.statuses):
            if status["id"] == request.path_params["status_id"]:
                return api_json({"data": self.state.shipment_status(record, i)})
        raise MyParcelComError(
            404,
            [
                r.error(
                    404,
                    r.RESOURCE_NOT_FOUND,
                    "One or more of the shipment-statuses resource could not be found.",
                )
            ],
        )

    async def list_files(self, request: Request) -> Response:
        record = self._record(request)
        base = self.base(request)
        files = [self.state.file_resource(f, base) for f in record.files]
        return api_json(self._page(request, files, f"/shipments/{record.id}/files"))

    async def get_file(self, request: Request) -> Response:
        found = self.state.files.get(request.path_params["file_id"])
        if found is None:
            raise MyParcelComError(
                404,
                [r.error(404, r.RESOURCE_NOT_FOUND, "One or more of the files resource could not be found.")],
            )
        shipment_id, file_resource = found
        accept = request.headers.get("accept", JSON_API)
        # docs resources/files.md: Accept application/pdf or image/png returns the file itself.
        if "application/pdf" in accept or "image/png" in accept:
            record = self.state.shipments[shipment_id]
            label = self._label(record)
            if "application/pdf" in accept:
                return Response(render_pdf(label, record.label_size), media_type="application/pdf")
            return Response(render_png(label), media_type="image/png")
        if JSON_API in accept or "application/json" in accept or "*/*" in accept:
            return api_json({"data": self.state.file_resource(file_resource, self.base(request))})
        raise MyParcelComError(
            406,
            [
                r.error(
                    406,
                    r.INVALID_REQUEST_HEADER,
                    "The Accept header must be application/vnd.api+json, application/pdf or image/png.",
                )
            ],
        )

    def _label(self, record: ShipmentRecord) -> LabelData:
        def lines(a: JSON) -> list[str]:
            name = " ".join(x for x in (a.get("first_name"), a.get("last_name")) if x)
            city = " ".join(x for x in (a.get("postal_code"), a.get("city")) if x)
            parts = [
                name,
                a.get("company"),
                a.get("street_1"),
                a.get("street_2"),
                city,
                a.get("country_code"),
            ]
            return [str(p) for p in parts if p]

        attributes = record.attributes
        return LabelData(
            carrier=self.state.carrier(record),
            service=record.service_code or "",
            tracking_number=str(attributes["tracking_code"]),
            sender=lines(attributes["sender_address"]),
            recipient=lines(attributes["recipient_address"]),
            created_at=record.created,
            weight=f"{attributes['physical_properties']['weight']} g",
            reference=str(attributes.get("customer_reference") or record.id),
        )

    # -- JSON:API helpers ----------------------------------------------------------------------------------------
    def _record(self, request: Request) -> ShipmentRecord:
        record = self.state.shipments.get(request.path_params["shipment_id"])
        if record is None:
            raise MyParcelComError(
                404,
                [
                    r.error(
                        404, r.RESOURCE_NOT_FOUND, "One or more of the shipments resource could not be found."
                    )
                ],
            )
        return record

    @staticmethod
    def _public(resource: JSON) -> JSON:
        attributes = {k: v for k, v in resource["attributes"].items() if not k.startswith("_")}
        return {**resource, "attributes": attributes}

    def _includes(self, request: Request) -> set[str]:
        raw = request.query_params.get("include")
        if not raw:
            return set()
        wanted = {part.strip() for part in raw.split(",") if part.strip()}
        unknown = wanted - _INCLUDES
        if unknown:
            allowed = ", ".join(sorted(_INCLUDES))
            detail = f"Cannot include {', '.join(sorted(unknown))}; allowed: {allowed}."
            error = r.error(400, r.INVALID_JSON_SCHEMA, detail)
            error["source"] = {"parameter": "include"}
            raise MyParcelComError(400, [error])
        return wanted

    def _included(self, records: list[ShipmentRecord], includes: set[str], base: str) -> list[JSON]:
        included: list[JSON] = []
        seen: set[tuple[str, str]] = set()

        def add(resource: JSON) -> None:
            key = (resource["type"], resource["id"])
            if key not in seen:
                seen.add(key)
                included.append(resource)

        for record in records:
            if includes & {"shipment_status", "shipment_status.status"}:
                add(self.state.shipment_status(record))
                add(r.status_resource(record.status_code))
            if "files" in includes:
                for f in record.files:
                    add(self.state.file_resource(f, base))
            if "shop" in includes:
                add(self.state.shops[record.shop_id])
        return included

    def _page(self, request: Request, items: list[JSON], path: str) -> JSON:
        params = request.query_params
        try:
            number = int(params.get("page[number]", "1"))
            size = int(params.get("page[size]", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            raise MyParcelComError(
                422,
                [
                    {
                        **r.error(
                            422, r.INVALID_JSON_SCHEMA, "page[number] and page[size] must be integers."
                        ),
                        "source": {"parameter": "page"},
                    }
                ],
            ) from None
        if number < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            raise MyParcelComError(
                422,
                [
                    {
                        **r.error(
                            422,
                            r.INVALID_JSON_SCHEMA,
                            f"page[number] must be at least 1 and page[size] between 1 and {MAX_PAGE_SIZE}.",
                        ),
                        "source": {"parameter": "page"},
                    }
                ],
            )
        total = len(items)
        pages = max(1, math.ceil(total / size))
        others = [(k, v) for k, v in params.multi_items() if k not in ("page[number]", "page[size]")]
        base = self.base(request)

        def link(n: int) -> str:
            return (
                f"{base}{path}?{urlencode([*others, ('page[number]', n), ('page[size]', size)], safe='[]')}"
            )

        links = {"self": link(number), "first": link(1), "last": link(pages)}
        if number > 1:
            links["prev"] = link(min(number - 1, pages))
        if number < pages:
            links["next"] = link(number + 1)
        return {
            "data": items[(number - 1) * size : number * size],
            "meta": {"total_pages": pages, "total_records": total},
            "links": links,
        }

    # -- admin API -------------------------------------------------------------------------------------------
    async def admin_index(self, request: Request) -> Response:
        s = self.state
        s.tick()
        return JSONResponse(
            {
                "sandbox": "myparcelcom",
                "token": s.token,
                "client_id": s.config.client_id,
                "client_secret": s.config.client_secret,
                "shops": list(s.shops),
                "counts": {"shipments": len(s.shipments), "webhook_deliveries": len(s.webhooks.deliveries)},
                "clock_offset_s": s.clock_offset.total_seconds(),
                "endpoints": [
                    "GET|POST /_sandbox/shipments",
                    "POST /_sandbox/shipments/{shipment_id}/advance",
                    "POST /_sandbox/clock",
                    "GET /_sandbox/webhooks",
                    "GET /_sandbox/idempotency",
                ],
            }
        )

    async def admin_shipments(self, request: Request) -> Response:
        self.state.tick()
        base = self.base(request)
        if request.method == "POST":
            body = await _admin_json(request)
            count = body.get("count", 1)
            if not isinstance(count, int) or not 1 <= count <= 1000:
                return JSONResponse({"error": "count must be an integer from 1 to 1000"}, status_code=400)
            made = [self.state.seed_shipment() for _ in range(count)]
            return JSONResponse(
                [self._public(self.state.shipment_resource(s, base)) for s in made], status_code=201
            )
        return JSONResponse(
            [
                {**self._public(self.state.shipment_resource(s, base)), "status": s.status_code}
                for s in self.state.shipments.values()
            ]
        )

    async def admin_advance(self, request: Request) -> Response:
        record = self.state.shipments.get(request.path_params["shipment_id"])
        if record is None:
            return JSONResponse({"error": "no such shipment"}, status_code=404)
        body = await _admin_json(request)
        try:
            self.state.advance(record, body.get("status"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        base = self.base(request)
        return JSONResponse(
            {
                "data": self._public(self.state.shipment_resource(record, base)),
                "included": [self.state.shipment_status(record), r.status_resource(record.status_code)],
            }
        )

    async def admin_clock(self, request: Request) -> Response:
        body = await _admin_json(request)
        try:
            seconds = Decimal(str(body.get("advance_s")))
        except InvalidOperation:
            return JSONResponse({"error": "advance_s (seconds) is required"}, status_code=400)
        if not seconds.is_finite():
            return JSONResponse({"error": "advance_s (seconds) is required"}, status_code=400)
        self.state.clock_offset += timedelta(seconds=float(seconds))
        self.state.tick()
        return JSONResponse(
            {"now": self.state.now().isoformat(), "offset_s": self.state.clock_offset.total_seconds()}
        )

    async def admin_webhooks(self, _: Request) -> Response:
        deliveries = [
            {
                "url": d.url,
                "status": d.status,
                "error": d.error,
                "attempt": d.attempt,
                "duplicate": d.duplicate,
                "at": d.at.isoformat(),
                "body": json.loads(d.body),
            }
            for d in self.state.webhooks.deliveries
        ]
        return JSONResponse({"deliveries": deliveries, "events": self.state.events})

    async def admin_idempotency(self, _: Request) -> Response:
        return JSONResponse(
            {k: {"state": e.state, "status": e.status} for k, e in self.state.idempotency.items()}
        )


async def _admin_json(request: Request) -> JSON:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}
