"""The Shippo sandbox as an ASGI app: the REST API, partner OAuth, label files and the /_sandbox admin API.

Shippo's API is built on Django REST framework, and it shows: 401 details are DRF's stock sentences, 400 bodies
map each field to a list of messages (goshippo/shippo-ruby-client#28 shows `{"address_from": [...]}`), lists
page as {next, previous, results} (docs.goshippo.com api-reference transactions). The sandbox answers the same
way so a client's error handling is exercised for real.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from crossdock.sandbox.common import FaultMiddleware, Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.labels import LabelData, render_pdf, render_png, render_zpl
from crossdock.sandbox.shippo import rates as rating
from crossdock.sandbox.shippo.state import (
    JSON,
    LABEL_FILE_TYPES,
    ORDER_STATUSES,
    TRACKING_STATUSES,
    TRANSACTION_STATUSES,
    ShippoError,
    ShippoState,
    decimal_field,
    label_page_size,
    not_found,
    parse_instant,
    throttled_detail,
)

Handler = Callable[[Request], Awaitable[Response]]
AuthedHandler = Callable[[Request, str], Awaitable[Response]]

REQUIRED = "This field is required."
BLANK = "This field may not be blank."
DATETIME_FORMAT = "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
DEFAULT_PAGE_SIZE = 25  # docs.goshippo.com api_concepts/filtering: "many resources ... return 25 by default"
MAX_PAGE_SIZE = 100  # "The number of results to return per page (max 100)"


def create_app(config: SandboxConfig) -> Starlette:
    faults = Faults(config.faults)
    state = ShippoState(config=config, faults=faults, webhooks=WebhookSender(faults))
    api = _ShippoApi(state)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await state.webhooks.start()
        try:
            yield
        finally:
            await state.stop()
            await state.webhooks.stop()

    app = Starlette(
        routes=api.routes(),
        lifespan=lifespan,
        exception_handlers={ShippoError: _shippo_error, HTTPException: _http_error},
    )
    app.state.sandbox = state
    app.add_middleware(
        FaultMiddleware,
        faults=faults,
        # Django's stock production 500 page: a client must not assume every error body is JSON.
        error_5xx=lambda: HTMLResponse("<h1>Server Error (500)</h1>", status_code=500),
        error_429=lambda: JSONResponse(
            {"detail": throttled_detail(1)}, status_code=429, headers={"Retry-After": "1"}
        ),
        # Labels come from a file host (S3), not the API; the admin API is never faulted.
        exempt_prefixes=("/_sandbox", "/labels"),
    )
    return app


async def _shippo_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShippoError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        body = {"detail": f'Method "{request.method}" not allowed.'}
    elif exc.status_code == 404:
        body = {"detail": "Not found."}
    else:
        body = {"detail": exc.detail}
    return JSONResponse(body, status_code=exc.status_code)


async def _json_body(request: Request) -> JSON:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ShippoError(400, {"detail": f"JSON parse error - {exc}"}) from None
    if not isinstance(body, dict):
        raise ShippoError(
            400,
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(body).__name__}."]},
        )
    return body


def _choice_error(value: Any) -> list[str]:
    return [f'"{value}" is not a valid choice.']


class _ShippoApi:
    def __init__(self, state: ShippoState) -> None:
        self.state = state

    # -- plumbing --------------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        api: list[tuple[str, str, str, str, AuthedHandler]] = [
            # path, method, rate-limit resource, rate-limit kind, handler
            ("/orders", "POST", "default", "post", self.create_order),
            ("/orders", "GET", "default", "get_list", self.list_orders),
            ("/orders/{object_id}", "GET", "default", "get_one", self.get_order),
            ("/shipments", "POST", "default", "post", self.create_shipment),
            ("/shipments", "GET", "default", "get_list", self.list_shipments),
            ("/shipments/{object_id}", "GET", "default", "get_one", self.get_shipment),
            ("/shipments/{object_id}/rates", "GET", "default", "get_list", self.list_shipment_rates),
            (
                "/shipments/{object_id}/rates/{currency}",
                "GET",
                "default",
                "get_list",
                self.list_shipment_rates,
            ),
            ("/rates/{object_id}", "GET", "default", "get_one", self.get_rate),
            ("/transactions", "POST", "default", "post", self.create_transaction),
            ("/transactions", "GET", "default", "get_list", self.list_transactions),
            ("/transactions/{object_id}", "GET", "default", "get_one", self.get_transaction),
            ("/refunds", "POST", "default", "post", self.create_refund),
            ("/refunds", "GET", "default", "get_list", self.list_refunds),
            ("/refunds/{object_id}", "GET", "default", "get_one", self.get_refund),
            ("/tracks", "POST", "tracks", "post", self.register_track),
            ("/tracks/{carrier}/{tracking_number}", "GET", "tracks", "get_one", self.get_track),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for path, method, resource, kind, handler in api:
            by_path.setdefault(path, {})[method] = self._guarded(resource, kind, handler)
        routes: list[BaseRoute] = []
        for path, methods in by_path.items():
            endpoint = self._dispatch(methods)
            # Shippo's documented URLs end in "/" (https://api.goshippo.com/orders/); the SDK omits it.
            routes.append(Route(path, endpoint, methods=list(methods)))
            routes.append(Route(path + "/", endpoint, methods=list(methods)))
        routes += [
            Route("/oauth/authorize", self.oauth_authorize, methods=["GET", "POST"]),
            Route("/oauth/access_token", self.oauth_access_token, methods=["POST"]),
            Route("/labels/{name}", self.label_file, methods=["GET"]),
            Route("/_sandbox/", self.admin_index, methods=["GET"]),
            Route("/_sandbox/orders", self.admin_orders, methods=["GET", "POST"]),
            Route("/_sandbox/shipments", self.admin_list("shipments"), methods=["GET"]),
            Route("/_sandbox/transactions", self.admin_list("transactions"), methods=["GET"]),
            Route("/_sandbox/refunds", self.admin_list("refunds"), methods=["GET"]),
            Route("/_sandbox/tracks", self.admin_list("tracks"), methods=["GET"]),
            Route("/_sandbox/tracks/{tracking_number}/advance", self.admin_advance_track, methods=["POST"]),
            Route(
                "/_sandbox/transactions/{object_id}/advance", self.admin_advance_transaction, methods=["POST"]
            ),
            Route("/_sandbox/clock", self.admin_clock, methods=["POST"]),
            Route("/_sandbox/settings", self.admin_settings, methods=["POST"]),
            Route("/_sandbox/webhooks", self.admin_webhooks, methods=["GET"]),
        ]
        return routes

    @staticmethod
    def _dispatch(methods: dict[str, Handler]) -> Handler:
        async def endpoint(request: Request) -> Response:
            return await methods[request.method](request)

        return endpoint

    def _guarded(self, resource: str, kind: str, handler: AuthedHandler) -> Handler:
        async def endpoint(request: Request) -> Response:
            token = self.authenticate(request)
            self.state.check_rate_limit(token, resource, kind)
            return await handler(request, token)

        return endpoint

    def authenticate(self, request: Request) -> str:
        """`ShippoToken <token>` (API tokens) or `Bearer oauth.<token>` (partner OAuth), per PROTOCOLS.md 5."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() not in ("shippotoken", "bearer") or not credential:
            # DRF: a missing or foreign scheme means no credentials reached an authenticator.
            raise ShippoError(401, {"detail": "Authentication credentials were not provided."})
        valid = (
            credential == self.state.token
            if scheme.lower() == "shippotoken"
            else credential in self.state.oauth_tokens
        )
        if not valid:
            raise ShippoError(401, {"detail": "Token does not exist"})
        return credential

    def page(self, request: Request, items: list[JSON]) -> JSON:
        """DRF page-number pagination: ?page=N&results=M -> {next, previous, results} with absolute URLs."""
        params = request.query_params
        try:
            number = int(params.get("page", "1"))
            size = int(params.get("results", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            raise ShippoError(404, {"detail": "Invalid page."}) from None
        size = max(1, min(size, MAX_PAGE_SIZE))
        pages = max(1, -(-len(items) // size))
        if number < 1 or number > pages:
            raise ShippoError(404, {"detail": "Invalid page."})
        base = str(request.url.replace(query=""))
        others = [(k, v) for k, v in params.multi_items() if k not in ("page", "results")]

        def link(n: int) -> str:
            return f"{base}?{urlencode([*others, ('page', n), ('results', size)])}"

        return {
            "next": link(number + 1) if number < pages else None,
            "previous": link(number - 1) if number > 1 else None,
            "results": items[(number - 1) * size : number * size],
        }

    def _newest_first(self, objects: dict[str, JSON]) -> list[JSON]:
        return list(reversed(objects.values()))

    # -- orders --------------------------------------------------------------------------------------------
    async def create_order(self, request: Request, _: str) -> Response:
        body = await _json_body(request)
        errors: JSON = {}
        if body.get("placed_at") in (None, ""):
            errors["placed_at"] = [REQUIRED if body.get("placed_at") is None else BLANK]
        elif not isinstance(body["placed_at"], str) or parse_instant(body["placed_at"]) is None:
            errors["placed_at"] = [DATETIME_FORMAT]
        for key, required in (("to_address", True), ("from_address", False)):
            address_errors = self._address_errors(body, key, required)
            if address_errors:
                errors[key] = address_errors
        if body.get("order_status") is not None and body["order_status"] not in ORDER_STATUSES:
            errors["order_status"] = _choice_error(body["order_status"])
        if body.get("weight_unit") is not None and body["weight_unit"] not in rating.MASS_UNITS:
            errors["weight_unit"] = _choice_error(body["weight_unit"])
        items = body.get("line_items")
        if items is not None and not isinstance(items, list):
            errors["line_items"] = [f'Expected a list of items but got type "{type(items).__name__}".']
        if errors:
            raise ShippoError(400, errors)
        body["to_address"] = self._resolve_address(body["to_address"])
        if body.get("from_address"):
            body["from_address"] = self._resolve_address(body["from_address"])
        return JSONResponse(self.state.create_order(body), status_code=201)

    async def list_orders(self, request: Request, _: str) -> Response:
        orders = sorted(self.state.orders.values(), key=lambda o: o["placed_at"], reverse=True)
        statuses = request.query_params.getlist("order_status[]") or request.query_params.getlist(
            "order_status"
        )
        if statuses:
            orders = [o for o in orders if o["order_status"] in statuses]
        if shop_app := request.query_params.get("shop_app"):
            orders = [o for o in orders if o["shop_app"] == shop_app]
        start = parse_instant(request.query_params.get("start_date", ""))
        end = parse_instant(request.query_params.get("end_date", ""))
        if start is not None:
            orders = [o for o in orders if (parse_instant(o["placed_at"]) or start) >= start]
        if end is not None:
            orders = [o for o in orders if (parse_instant(o["placed_at"]) or end) < end]
        return JSONResponse(self.page(request, orders))

    async def get_order(self, request: Request, _: str) -> Response:
        return JSONResponse(self._get(self.state.orders, request.path_params["object_id"]))

    # -- shipments and rates -------------------------------------------------------------------------------
    async def create_shipment(self, request: Request, _: str) -> Response:
        body = await _json_body(request)
        errors: JSON = {}
        for key, required in (("address_from", True), ("address_to", True), ("address_return", False)):
            address_errors = self._address_errors(body, key, required)
            if address_errors:
                errors[key] = address_errors
        parcel_specs: list[rating.ParcelSpec] = []
        parcels = body.get("parcels")
        if parcels is None:
            errors["parcels"] = [REQUIRED]
        elif not isinstance(parcels, list):
            errors["parcels"] = [f'Expected a list of items but got type "{type(parcels).__name__}".']
        elif not parcels:
            errors["parcels"] = ["This list may not be empty."]
        else:
            resolved, per_parcel = [], []
            for raw in parcels:
                parcel = self.state.parcels.get(raw, raw) if isinstance(raw, str) else raw
                problems, spec = _parcel_errors(parcel)
                per_parcel.append(problems)
                resolved.append(parcel)
                if spec is not None:
                    parcel_specs.append(spec)
            if any(per_parcel):
                errors["parcels"] = per_parcel
            body["parcels"] = resolved
        if "async" in body and not isinstance(body["async"], bool):
            errors["async"] = ["Must be a valid boolean."]
        if errors:
            raise ShippoError(400, errors)
        for key in ("address_from", "address_to", "address_return"):
            if body.get(key):
                body[key] = self._resolve_address(body[key])
        shipment = self.state.create_shipment(body, parcel_specs)
        # docs.goshippo.com api_concepts/asynchronusapicall: rates are asynchronous unless "async": false.
        if body.get("async", True):
            self.state.spawn(self.state.rate_later(shipment["object_id"]))
        else:
            shipment = self.state.rate_shipment(shipment["object_id"])
        return JSONResponse(shipment, status_code=201)

    async def list_shipments(self, request: Request, _: str) -> Response:
        shipments = self._newest_first(self.state.shipments)
        # docs.goshippo.com api_concepts/filtering: object_created_gt/gte/lt/lte on shipments.
        for param, keep in (
            ("object_created_gt", lambda a, b: a > b),
            ("object_created_gte", lambda a, b: a >= b),
            ("object_created_lt", lambda a, b: a < b),
            ("object_created_lte", lambda a, b: a <= b),
        ):
            bound = parse_instant(request.query_params.get(param, ""))
            if bound is not None:
                shipments = [s for s in shipments if keep(parse_instant(s["object_created"]) or bound, bound)]
        return JSONResponse(self.page(request, shipments))

    async def get_shipment(self, request: Request, _: str) -> Response:
        return JSONResponse(self._get(self.state.shipments, request.path_params["object_id"]))

    async def list_shipment_rates(self, request: Request, _: str) -> Response:
        shipment = self._get(self.state.shipments, request.path_params["object_id"])
        rates = [dict(r) for r in shipment["rates"]]
        currency = request.path_params.get("currency")
        if currency is not None:
            currency = currency.upper()
            if currency not in rating.FX_PER_USD:
                raise ShippoError(400, {"currency": [f'"{currency}" is not a supported currency.']})
            for rate in rates:
                rate["amount"] = str(rating.convert(rating.Decimal(rate["amount"]), currency))
                rate["currency"] = currency
        return JSONResponse(self.page(request, rates))

    async def get_rate(self, request: Request, _: str) -> Response:
        return JSONResponse(self._get(self.state.rates, request.path_params["object_id"]))

    # -- transactions ----------------------------------------------------------------------------------------
    async def create_transaction(self, request: Request, _: str) -> Response:
        body = await _json_body(request)
        errors: JSON = {}
        rate_id = body.get("rate")
        if rate_id in (None, ""):
            errors["rate"] = [REQUIRED]
        elif not isinstance(rate_id, str) or rate_id not in self.state.rates:
            # DRF PrimaryKeyRelatedField's message for an unknown id.
            errors["rate"] = [f'Invalid pk "{rate_id}" - object does not exist.']
        label_type = body.get("label_file_type")
        if label_type is not None and label_type not in LABEL_FILE_TYPES:
            errors["label_file_type"] = _choice_error(label_type)
        if "async" in body and not isinstance(body["async"], bool):
            errors["async"] = ["Must be a valid boolean."]
        order_id = body.get("order")
        if order_id is not None and order_id not in self.state.orders:
            errors["order"] = [f'Invalid pk "{order_id}" - object does not exist.']
        if errors:
            raise ShippoError(400, errors)
        base = str(request.base_url).rstrip("/")
        transaction = self.state.create_transaction(str(rate_id), body, base)
        # TransactionCreateRequest.async_ defaults to True (SDK); a label then arrives as an update.
        if body.get("async", True):
            self.state.emit("transaction_created", dict(transaction))
            self.state.spawn(self.state.finish_later(transaction["object_id"]))
        else:
            transaction = self.state.finish_transaction(transaction["object_id"])
            self.state.emit("transaction_created", dict(transaction))
        return JSONResponse(transaction, status_code=201)

    async def list_transactions(self, request: Request, _: str) -> Response:
        transactions = self._newest_first(self.state.transactions)
        params = request.query_params
        if rate := params.get("rate"):
            transactions = [t for t in transactions if t["rate"]["object_id"] == rate]
        if status := params.get("object_status"):
            if status not in TRANSACTION_STATUSES:
                raise ShippoError(400, {"object_status": _choice_error(status)})
            transactions = [t for t in transactions if t["status"] == status]
        if tracking := params.get("tracking_status"):
            if tracking not in TRACKING_STATUSES:
                raise ShippoError(400, {"tracking_status": _choice_error(tracking)})
            transactions = [t for t in transactions if t["tracking_status"] == tracking]
        return JSONResponse(self.page(request, transactions))

    async def get_transaction(self, request: Request, _: str) -> Response:
        return JSONResponse(self._get(self.state.transactions, request.path_params["object_id"]))

    # -- refunds ---------------------------------------------------------------------------------------------
    async def create_refund(self, request: Request, _: str) -> Response:
        body = await _json_body(request)
        transaction_id = body.get("transaction")
        if transaction_id in (None, ""):
            raise ShippoError(400, {"transaction": [REQUIRED]})
        transaction = self.state.transactions.get(transaction_id) if isinstance(transaction_id, str) else None
        if transaction is None:
            raise ShippoError(
                400, {"transaction": [f'Invalid pk "{transaction_id}" - object does not exist.']}
            )
        if transaction["status"] in ("REFUNDPENDING", "REFUNDED"):
            raise ShippoError(400, {"transaction": ["A refund for this transaction already exists."]})
        if transaction["status"] != "SUCCESS":
            raise ShippoError(
                400, {"transaction": ["Only labels that were purchased successfully can be refunded."]}
            )
        if transaction["tracking_status"] not in (None, "UNKNOWN", "PRE_TRANSIT"):
            # A carrier does not void a label it has already scanned.
            raise ShippoError(
                400, {"transaction": ["This label has already been used and can no longer be refunded."]}
            )
        refund = self.state.create_refund(transaction_id)
        if body.get("async", True) is False:
            refund = self.state.finish_refund(refund["object_id"])
            self.state.emit("transaction_updated", dict(transaction))
        else:
            self.state.spawn(self.state.refund_later(refund["object_id"]))
        return JSONResponse(refund, status_code=201)

    async def list_refunds(self, request: Request, _: str) -> Response:
        return JSONResponse(self.page(request, self._newest_first(self.state.refunds)))

    async def get_refund(self, request: Request, _: str) -> Response:
        return JSONResponse(self._get(self.state.refunds, request.path_params["object_id"]))

    # -- tracking --------------------------------------------------------------------------------------------
    async def get_track(self, request: Request, _: str) -> Response:
        carrier = request.path_params["carrier"]
        number = request.path_params["tracking_number"]
        track = self.state.tracks.get(number)
        if track is None or track["carrier"] != carrier:
            track = self.state.test_track(carrier, number)
        return JSONResponse(track)

    async def register_track(self, request: Request, _: str) -> Response:
        body = await _json_body(request)
        errors = {k: [REQUIRED] for k in ("carrier", "tracking_number") if not body.get(k)}
        if errors:
            raise ShippoError(400, errors)
        number = str(body["tracking_number"])
        track = self.state.tracks.get(number)
        if track is None:
            track = self.state.test_track(str(body["carrier"]), number)
        if body.get("metadata") is not None:
            track["metadata"] = str(body["metadata"])
        return JSONResponse(track, status_code=201)

    # -- partner OAuth (served on goshippo.com in production) -----------------------------------------------
    async def oauth_authorize(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri") or self.state.config.extra.get("oauth_redirect_uri", "")
        if client_id != self.state.config.client_id:
            return HTMLResponse(
                _page("Invalid client", "The client_id is not a registered Shippo partner."), 400
            )
        if not redirect_uri:
            return HTMLResponse(
                _page("Missing redirect", "No redirect_uri is registered for this partner."), 400
            )
        state_param = params.get("state", "")

        def back(**query: str) -> RedirectResponse:
            sep = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{sep}{urlencode({**query, 'state': state_param})}", 302)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if request.method == "GET":
            return HTMLResponse(_consent_page(params, redirect_uri))
        if params.get("decision") != "allow":
            return back(error="access_denied")
        return back(code=self.state.grant_code(client_id, redirect_uri))

    async def oauth_access_token(self, request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            form: dict[str, str] = {k: str(v) for k, v in (await _json_body(request)).items()}
        else:
            form = {k: str(v) for k, v in (await request.form()).items()}
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        config = self.state.config
        if form.get("client_id") != config.client_id or form.get("client_secret") != config.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = self.state.redeem_code(form.get("code", ""), form["client_id"])
        if token is None:
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "The code is unknown, expired or already used.",
                },
                status_code=400,
            )
        # goshippo.com/docs/oauth: the token never expires and there is no refresh token.
        return JSONResponse({"access_token": token, "token_type": "bearer", "scope": "*"})

    # -- label files -----------------------------------------------------------------------------------------
    async def label_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        stem, _, ext = name.rpartition(".")
        invoice = stem.endswith("-invoice")
        transaction = self.state.transactions.get(stem.removesuffix("-invoice"))
        if transaction is None or transaction["label_url"] is None or ext not in ("pdf", "png", "zpl"):
            # What S3 answers for a key that does not exist.
            return Response(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                "<Message>The specified key does not exist.</Message></Error>",
                status_code=404,
                media_type="application/xml",
            )
        label = self._label_data(transaction, invoice)
        if ext == "png":
            return Response(render_png(label), media_type="image/png")
        if ext == "zpl":
            return Response(render_zpl(label), media_type="application/zpl")
        size = "A4" if invoice else label_page_size(transaction["label_file_type"])
        return Response(render_pdf(label, size), media_type="application/pdf")

    def _label_data(self, transaction: JSON, invoice: bool) -> LabelData:
        rate = self.state.rates[transaction["rate"]["object_id"]]
        shipment = self.state.shipments[rate["shipment"]]
        parcel = shipment["parcels"][0]

        def lines(a: JSON) -> list[str]:
            city = " ".join(x for x in (a.get("city"), a.get("state"), a.get("zip")) if x)
            parts = [
                a.get("name"),
                a.get("company"),
                a.get("street1"),
                a.get("street2"),
                city,
                a.get("country"),
            ]
            return [str(p) for p in parts if p]

        return LabelData(
            carrier="Commercial invoice" if invoice else rate["provider"],
            service=rate["servicelevel"]["name"],
            tracking_number=transaction["tracking_number"],
            sender=lines(shipment["address_from"]),
            recipient=lines(shipment["address_to"]),
            created_at=parse_instant(transaction["object_created"]) or self.state.now(),
            weight=f"{parcel['weight']} {parcel['mass_unit']}",
            reference=transaction["metadata"] or transaction["object_id"],
        )

    # -- admin API -------------------------------------------------------------------------------------------
    async def admin_index(self, _: Request) -> Response:
        s = self.state
        return JSONResponse(
            {
                "sandbox": "shippo",
                "token": s.token,
                "counts": {
                    "orders": len(s.orders),
                    "shipments": len(s.shipments),
                    "transactions": len(s.transactions),
                    "refunds": len(s.refunds),
                    "tracks": len(s.tracks),
                    "webhook_deliveries": len(s.webhooks.deliveries),
                },
                "clock_offset_s": s.clock_offset.total_seconds(),
                "endpoints": [
                    "GET|POST /_sandbox/orders",
                    "GET /_sandbox/shipments",
                    "GET /_sandbox/transactions",
                    "GET /_sandbox/refunds",
                    "GET /_sandbox/tracks",
                    "POST /_sandbox/tracks/{tracking_number}/advance",
                    "POST /_sandbox/transactions/{object_id}/advance",
                    "POST /_sandbox/clock",
                    "GET /_sandbox/webhooks",
                ],
            }
        )

    async def admin_orders(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(list(self.state.orders.values()))
        body = await _json_body(request)
        count = body.get("count", 1)
        if not isinstance(count, int) or not 1 <= count <= 1000:
            return JSONResponse({"error": "count must be an integer from 1 to 1000"}, status_code=400)
        return JSONResponse([self.state.seed_order() for _ in range(count)], status_code=201)

    def admin_list(self, name: str) -> Handler:
        async def endpoint(_: Request) -> Response:
            objects: dict[str, JSON] = getattr(self.state, name)
            return JSONResponse(list(objects.values()))

        return endpoint

    async def admin_advance_track(self, request: Request) -> Response:
        number = request.path_params["tracking_number"]
        return await self._advance(request, number)

    async def admin_advance_transaction(self, request: Request) -> Response:
        transaction = self.state.transactions.get(request.path_params["object_id"])
        if transaction is None or not transaction["tracking_number"]:
            return JSONResponse({"error": "no such transaction with a label"}, status_code=404)
        return await self._advance(request, transaction["tracking_number"])

    async def _advance(self, request: Request, number: str) -> Response:
        if number not in self.state.tracks:
            return JSONResponse({"error": f"no label with tracking number {number}"}, status_code=404)
        body = await _json_body(request)
        try:
            track = self.state.advance_track(number, body.get("status"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(track)

    async def admin_settings(self, request: Request) -> Response:
        """Change a knob while running: {"fail_labels": true} makes every label purchase from now on end ERROR
        (a carrier that does not answer), false restores them; a demo or a test makes a purchase fail and then
        retries it."""
        body = await _json_body(request)
        value = body.get("fail_labels")
        if not isinstance(value, bool):
            return JSONResponse({"error": "fail_labels (true or false) is required"}, status_code=400)
        self.state.config.extra["fail_labels"] = "1" if value else "0"
        return JSONResponse({"fail_labels": value})

    async def admin_clock(self, request: Request) -> Response:
        body = await _json_body(request)
        seconds = decimal_field(body.get("advance_s"))
        if seconds is None:
            return JSONResponse(
                {"error": "advance_s (seconds, may be fractional) is required"}, status_code=400
            )
        self.state.clock_offset += timedelta(seconds=float(seconds))
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
                "headers": d.headers,
                "body": json.loads(d.body),
            }
            for d in self.state.webhooks.deliveries
        ]
        events = [{"event": e, "data": d} for e, d in self.state.events]
        return JSONResponse({"deliveries": deliveries, "events": events})

    # -- helpers -----------------------------------------------------------------------------------------------
    def _get(self, objects: dict[str, JSON], object_id: str) -> JSON:
        found = objects.get(object_id)
        if found is None:
            raise not_found()
        return found

    def _address_errors(self, body: JSON, key: str, required: bool) -> Any:
        value = body.get(key)
        if value is None:
            return [REQUIRED] if required else None
        if isinstance(value, str):
            return (
                None if value in self.state.addresses else [f'Invalid pk "{value}" - object does not exist.']
            )
        if not isinstance(value, dict):
            return {
                "non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(value).__name__}."]
            }
        country = value.get("country")
        if country is None:
            return {"country": [REQUIRED]}
        if not isinstance(country, str) or not country.strip():
            return {"country": [BLANK]}
        return None

    def _resolve_address(self, value: Any) -> JSON:
        if isinstance(value, str):
            return self.state.addresses[value]
        address = dict(value)
        address["country"] = str(address["country"]).strip().upper()
        return address


def _parcel_errors(parcel: Any) -> tuple[JSON, rating.ParcelSpec | None]:
    if isinstance(parcel, str):
        return {"non_field_errors": [f'Invalid pk "{parcel}" - object does not exist.']}, None
    if not isinstance(parcel, dict):
        return {
            "non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(parcel).__name__}."]
        }, None
    errors: JSON = {}
    numbers: dict[str, rating.Decimal] = {}
    for key in ("length", "width", "height", "weight"):
        if parcel.get(key) in (None, ""):
            errors[key] = [REQUIRED]
            continue
        value = decimal_field(parcel[key])
        if value is None:
            errors[key] = ["A valid number is required."]
        elif value <= 0:
            errors[key] = ["Ensure this value is greater than 0."]
        else:
            numbers[key] = value
    for key, allowed in (("distance_unit", rating.DISTANCE_UNITS), ("mass_unit", rating.MASS_UNITS)):
        if parcel.get(key) in (None, ""):
            errors[key] = [REQUIRED]
        elif parcel[key] not in allowed:
            errors[key] = _choice_error(parcel[key])
    if errors:
        return errors, None
    spec = rating.ParcelSpec(
        numbers["length"], numbers["width"], numbers["height"], parcel["distance_unit"], numbers["weight"],
        parcel["mass_unit"],
    )  # fmt: skip
    return {}, spec


def _page(title: str, text: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )


def _consent_page(params: dict[str, str], redirect_uri: str) -> str:
    hidden = "".join(
        f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
        for k, v in {**params, "redirect_uri": redirect_uri}.items()
        if k != "decision"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Authorize app - Shippo sandbox</title></head><body>"
        "<h1>Connect your Shippo account</h1>"
        f"<p>The app <b>{html.escape(params.get('client_id', ''))}</b> asks for access to your Shippo account "
        f"(scope <code>{html.escape(params.get('scope', '*'))}</code>).</p>"
        f"<form method='post' action='/oauth/authorize'>{hidden}"
        "<button name='decision' value='allow'>Allow</button> "
        "<button name='decision' value='deny'>Deny</button></form></body></html>"
    )
