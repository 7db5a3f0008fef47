"""The MyParcel.com integration contract (PROTOCOLS.md section 9), served under /integrations/myparcelcom.

Here MyParcel.com is the client: its platform pulls the orders of a shop that are ready to ship as JSON:API
`shipments`, and posts each shipment's status back. Sources: MyParcelCOM/marketplace-skeleton (routes/api.php,
app/Authentication/Http/Controllers/AuthenticationController.php, tests/Feature/GetShipmentsTest.php) and
MyParcelCOM/marketplace-commons (Shipment::transformToJsonApiArray, TransformsManyToJsonApi,
MatchingChannelOnly, ShipmentStatusCallbackRequest, ShipmentRequest).

Which account a shop belongs to: a `myparcelcom` connection names the shop in its `shop_id` setting, and the
platform's authorization (init-auth -> the consent page -> authenticate) proves that whoever links the shop
knows that connection's client secret, which the vault holds. A completed authorization is stored as a binding
(the connection, kind `myparcelcom.shop`, the shop's UUID): it is the shop's "token" of the contract. From then
on the shop is served the orders of that connection's account, and only those; deleting the connection
unlinks the shop (its bindings go with it).

Errors are JSON:API error objects (`{"errors": [{status, title, detail, source}]}`), as the platform expects.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import math
import re
import secrets
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crossdock import model as m
from crossdock.engine.connections import ACTIVE
from crossdock.engine.fulfillments import record_fulfillment, update_tracking
from crossdock.hub import Hub
from crossdock.logs import get_logger
from crossdock.model.address import normalise_phone
from crossdock.security.oauth import STATE_TTL, digest
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for, upsert

log = get_logger(__name__)

PREFIX = "/integrations/myparcelcom"
JSON_API = "application/vnd.api+json"
CONNECTOR = "myparcelcom"
# The integration's name on the platform: every shipment served carries it, and a status callback about a
# shipment of another channel is acknowledged with 204 and ignored (marketplace-commons MatchingChannelOnly).
CHANNEL = "crossdock"
SHOP_BINDING = "myparcelcom.shop"
SHIPMENT_BINDING = "myparcelcom.shipment"
# Authorization sessions are OAuthState rows of this "connector"; /oauth/{connector}/callback never claims them.
FLOW = "myparcelcom.platform"
MAX_CONSENT_ATTEMPTS = 5
DEFAULT_PAGE_SIZE = 30  # marketplace-skeleton tests and the API specification's examples page by 30
MAX_PAGE_SIZE = 500
SERVED = (m.OrderStatus.PAID.value, m.OrderStatus.READY_TO_SHIP.value)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# MyParcel.com status code -> (level, name, crossdock shipment status, tracking status). Codes and levels from
# MyParcelCOM/docs content/api/retrieve-shipment-statuses.md (PROTOCOLS.md section 7).
S, TS = m.ShipmentStatus, m.TrackingStatus
STATUSES: dict[str, tuple[str, str, m.ShipmentStatus, m.TrackingStatus]] = {
    "shipment-processing": ("pending", "Processing", S.LABEL_PENDING, TS.PRE_TRANSIT),
    "shipment-concept": ("pending", "Concept", S.LABEL_PENDING, TS.PRE_TRANSIT),
    "shipment-registered": ("in-progress", "Registered", S.LABEL_PURCHASED, TS.PRE_TRANSIT),
    "shipment-received-by-carrier": ("in-progress", "Received by carrier", S.IN_TRANSIT, TS.IN_TRANSIT),
    "shipment-at-sorting": ("in-progress", "At sorting", S.IN_TRANSIT, TS.IN_TRANSIT),
    "shipment-with-courier": ("in-progress", "With courier", S.IN_TRANSIT, TS.OUT_FOR_DELIVERY),
    "shipment-delivered": ("success", "Delivered", S.DELIVERED, TS.DELIVERED),
    "shipment-created-without-tracking": ("success", "Created without tracking", S.LABEL_PURCHASED, TS.UNKNOWN),
    "shipment-registration-failed": ("failed", "Registration failed", S.FAILED, TS.EXCEPTION),
    "shipment-failed": ("failed", "Failed", S.FAILED, TS.EXCEPTION),
    "shipment-returned-to-sender": ("failed", "Returned to sender", S.RETURNED, TS.RETURNED),
    "shipment-voided": ("cancelled", "Voided", S.VOIDED, TS.EXCEPTION),
}  # fmt: skip
# A label exists without a tracking number: the parcel leaves all the same, so the order is fulfilled.
_SHIPPED_WITHOUT_TRACKING = "shipment-created-without-tracking"


# -- JSON:API errors -------------------------------------------------------------------------------------------
class JsonApiError(Exception):
    """A refusal rendered as one JSON:API error object naming the parameter or body pointer at fault."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        parameter: str | None = None,
        pointer: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.parameter = parameter
        self.pointer = pointer

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"status": str(self.status), "title": self.title, "detail": self.detail}
        if self.parameter is not None:
            error["source"] = {"parameter": self.parameter}
        elif self.pointer is not None:
            error["source"] = {"pointer": self.pointer}
        return _document({"errors": [error]}, self.status)


def _document(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=JSON_API)


class _JsonApiRoute(APIRoute):
    """Every answer of the contract's routes is JSON:API, failures included: the app's problem+json handlers
    never see their exceptions. (FastAPI docs, "Custom Request and APIRoute class": wrapping
    get_route_handler to catch what the handler raises.)"""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except JsonApiError as exc:
                return exc.response()
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
                return JsonApiError(
                    422, "Unprocessable entity", f"{where}: {first.get('msg', 'invalid')}", parameter=where
                ).response()
            except Exception as exc:
                log.error(
                    "myparcelcom contract error",
                    path=request.url.path,
                    error_type=type(exc).__name__,
                    exc_info=exc,
                )
                return JsonApiError(
                    500,
                    "Internal Server Error",
                    "crossdock hit an unexpected error; nothing was changed. The server log has the details.",
                ).response()

        return route


router = APIRouter(prefix=PREFIX, tags=["myparcelcom"], route_class=_JsonApiRoute)


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _from_platform(request: Request) -> None:
    """The shipment listing and the status callback carry no credential of their own (PROTOCOLS.md section 9):
    where the operator named MyParcel.com's networks, any other client is refused before anything is read."""
    allowed = _hub(request).settings.myparcelcom_allowed_networks
    if not allowed:
        return
    host = request.client.host if request.client is not None else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not any(address in network for network in allowed):
        raise JsonApiError(
            403,
            "Forbidden",
            f"{host or 'this client'} is not one of MyParcel.com's networks that this hub takes integration "
            "calls from; if MyParcel.com calls from this address, add its network to "
            "CROSSDOCK_MYPARCELCOM_ALLOWED_NETWORKS",
        )


def _base(hub: Hub) -> str:
    return hub.settings.public_url.rstrip("/") + PREFIX


def _uuid(value: Any, *, parameter: str | None = None, pointer: str | None = None) -> str:
    """The shop id as stored and compared: a canonical lowercase UUID. 400 when absent, 422 when no UUID
    (marketplace-skeleton GetShipmentsTest; marketplace-commons ShipmentStatusCallbackRequest::shopId)."""
    where = parameter or pointer or "shop_id"
    if value is None or value == "":
        raise JsonApiError(
            400, "Bad request", f"no {where} given: send the MyParcel.com shop's UUID", parameter=parameter,
            pointer=pointer,
        )  # fmt: skip
    if not isinstance(value, str) or not _UUID.match(value):
        raise JsonApiError(
            422,
            "Unprocessable entity",
            f"{where} {str(value)[:64]!r} is not a valid UUID (like 8c6f2b4e-0d3a-4b8e-9d6c-5f1e2a3b4c5d)",
            parameter=parameter,
            pointer=pointer,
        )
    return value.lower()


# -- shops: which account a MyParcel.com shop belongs to --------------------------------------------------------
def _names_shop(connection: t.Connection, shop_id: str) -> bool:
    named = (connection.settings or {}).get("shop_id")
    return isinstance(named, str) and named.strip().lower() == shop_id


async def _connections_naming(session: AsyncSession, shop_id: str) -> list[t.Connection]:
    """Every MyParcel.com connection, of any account, whose shop_id setting is this shop. Like finding the
    account of an API token, this is a lookup that finds the account; what follows is scoped to it."""
    rows = (
        await session.scalars(
            select(t.Connection).where(t.Connection.connector == CONNECTOR).order_by(t.Connection.created_at)
        )
    ).all()
    return [row for row in rows if _names_shop(row, shop_id)]


async def _linked(session: AsyncSession, shop_id: str) -> list[t.Connection]:
    """The connections this shop was authorized for, that still name it."""
    rows = (
        await session.scalars(
            select(t.Connection)
            .join(t.Binding, t.Binding.connection_id == t.Connection.id)
            .where(
                t.Binding.kind == SHOP_BINDING,
                t.Binding.external_id == shop_id,
                t.Connection.connector == CONNECTOR,
            )
            .order_by(t.Binding.synced_at.desc(), t.Connection.id)
        )
    ).all()
    return [row for row in rows if _names_shop(row, shop_id)]


async def _authorized_shop(
    session: AsyncSession, shop_id: str, *, pointer: str | None = None
) -> t.Connection:
    """The connection serving this shop; 401 (the contract's "no token") when the shop is not linked."""
    where = {"pointer": pointer} if pointer else {"parameter": "shop_id"}
    linked = await _linked(session, shop_id)
    if not linked:
        if not await _connections_naming(session, shop_id):
            raise JsonApiError(
                401,
                "Unauthorized",
                f"shop {shop_id} is unknown to crossdock: add a MyParcel.com connection with shop_id {shop_id} "
                "to the crossdock account, then authorize crossdock for the shop from MyParcel.com",
                **where,
            )
        raise JsonApiError(
            401,
            "Unauthorized",
            f"shop {shop_id} has not authorized crossdock yet: start the authorization from MyParcel.com "
            "(it asks for the client secret of the shop's MyParcel.com connection in crossdock)",
            **where,
        )
    if len({row.account_id for row in linked}) > 1:
        # Never guess between accounts: isolation comes before availability.
        raise JsonApiError(
            409,
            "Conflict",
            f"shop {shop_id} is linked to more than one crossdock account; delete the MyParcel.com connection "
            "for it in the accounts that should not receive its shipments",
            **where,
        )
    connection = linked[0]
    if connection.status != ACTIVE:
        raise JsonApiError(
            401,
            "Unauthorized",
            f"the crossdock connection '{connection.name}' for shop {shop_id} is {connection.status}: "
            f"resume it in crossdock (crossdock connections resume {connection.id})",
            **where,
        )
    return connection


# -- health ----------------------------------------------------------------------------------------------------
@router.get("/healthz")
async def healthz() -> Response:
    return _document({"meta": {"status": "OK"}})


@router.get("/")
async def root() -> Response:
    # marketplace-skeleton routes/api.php: the root answers the integration's title and status.
    return _document({"meta": {"title": f"MyParcel.com crossdock ({CHANNEL})", "status": "OK"}})


# -- authorization: init-auth -> consent page -> authenticate ---------------------------------------------------
async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise JsonApiError(400, "Bad request", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise JsonApiError(400, "Bad request", "the request body must be a JSON object (a JSON:API document)")
    return body


def _absolute_url(value: Any, pointer: str) -> str:
    if value is None or value == "":
        raise JsonApiError(
            400, "Bad request", f"no {pointer} given: send where to return to", pointer=pointer
        )
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise JsonApiError(
            422, "Unprocessable entity", f"{pointer} must be an absolute http(s) URL", pointer=pointer
        )
    assert isinstance(value, str)
    return value


@router.post("/public/init-auth")
async def init_auth(request: Request) -> Response:
    """Start linking a shop: answers data.authorization_link, crossdock's consent page for this shop."""
    hub = _hub(request)
    body = await _json_object(request)
    data = body.get("data")
    if not isinstance(data, dict):
        raise JsonApiError(
            400, "Bad request", "data must be an object with shop_id and redirect_uri", pointer="/data"
        )
    shop_id = _uuid(data.get("shop_id"), pointer="/data/shop_id")
    redirect_uri = _absolute_url(data.get("redirect_uri"), "/data/redirect_uri")
    session_token = secrets.token_urlsafe(32)
    async with hub.db.transaction() as session:
        named = await _connections_naming(session, shop_id)
        if not named:
            raise JsonApiError(
                404,
                "Not Found",
                f"no crossdock account has a MyParcel.com connection for shop {shop_id}: add one with "
                f"shop_id {shop_id} (crossdock connections add myparcelcom --setting shop_id={shop_id} ...), then "
                "start again",
                pointer="/data/shop_id",
            )
        if len({row.account_id for row in named}) > 1:
            raise JsonApiError(
                409,
                "Conflict",
                f"MyParcel.com connections of more than one crossdock account name shop {shop_id}; a shop "
                "serves one account: delete the connection in the accounts that should not receive its shipments",
                pointer="/data/shop_id",
            )
        session.add(
            t.OAuthState(
                account_id=named[0].account_id,
                connector=FLOW,
                state_hash=digest(session_token),
                # No browser is known yet (the platform asks, server to server): the session token is the
                # secret, single-use and short-lived, and consent needs the connection's client secret besides.
                browser_hash=digest("unbound:" + secrets.token_urlsafe(32)),
                details={"shop_id": shop_id, "redirect_uri": redirect_uri, "failures": 0},
                expires_at=utcnow() + STATE_TTL,
            )
        )
    link = f"{_base(hub)}/public/authorize?{urlencode({'session_token': session_token})}"
    return _document({"data": {"authorization_link": link}})


_AGAIN = "start the authorization again from MyParcel.com"


async def _open_session(session: AsyncSession, session_token: str | None) -> t.OAuthState:
    """An authorization session that can still be consented to, locked for this transaction."""
    if not session_token:
        raise JsonApiError(400, "Bad request", f"no session_token given; {_AGAIN}", parameter="session_token")
    row = (
        await session.scalars(
            select(t.OAuthState)
            .where(t.OAuthState.state_hash == digest(session_token), t.OAuthState.connector == FLOW)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise JsonApiError(
            400, "Bad request", f"this authorization session is unknown; {_AGAIN}", parameter="session_token"
        )
    if row.used_at is not None:
        raise JsonApiError(
            400, "Bad request", f"this authorization session is used up; {_AGAIN}", parameter="session_token"
        )
    if row.expires_at <= utcnow():
        minutes = int(STATE_TTL.total_seconds() // 60)
        raise JsonApiError(
            400,
            "Bad request",
            f"this authorization session expired (it must finish within {minutes} minutes); {_AGAIN}",
            parameter="session_token",
        )
    return row


def _consent_page(row: t.OAuthState, session_token: str, problem: str | None = None) -> str:
    shop_id = html.escape(str(row.details.get("shop_id")))
    back_to = html.escape(urlsplit(str(row.details.get("redirect_uri"))).netloc)
    token = html.escape(session_token, quote=True)
    warning = f'<p role="alert"><strong>{html.escape(problem)}</strong></p>' if problem else ""
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Link MyParcel.com to crossdock</title>"
        f"<h1>Link MyParcel.com shop {shop_id} to crossdock</h1>"
        "<p>MyParcel.com will read the orders that are ready to ship and tell crossdock their tracking. "
        "To confirm, enter the client secret of this shop's MyParcel.com connection in crossdock.</p>"
        f"{warning}"
        f'<form method="post"><input type="hidden" name="session_token" value="{token}">'
        '<label>Client secret <input type="password" name="client_secret" autocomplete="off" required></label>'
        f"<button type=submit>Link</button></form><p>Afterwards you return to {back_to}.</p></html>"
    )


@router.get("/public/authorize")
async def consent_page(request: Request) -> Response:
    hub = _hub(request)
    session_token = request.query_params.get("session_token")
    async with hub.db.transaction() as session:
        row = await _open_session(session, session_token)
        assert session_token is not None
        page = _consent_page(row, session_token)
    return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def _same_secret(stored: str, presented: str) -> bool:
    # Digests first, so the comparison's time does not even reveal the stored secret's length.
    return hmac.compare_digest(
        hashlib.sha256(stored.encode()).digest(), hashlib.sha256(presented.encode()).digest()
    )


@router.post("/public/authorize")
async def consent(request: Request) -> Response:
    """The merchant proves the shop is theirs with the connection's client secret (from the vault, compared in
    constant time); a code for /public/authenticate follows. Five wrong secrets use the session up."""
    hub = _hub(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    session_token = (form.get("session_token") or [""])[0]
    presented = (form.get("client_secret") or [""])[0]
    code = secrets.token_urlsafe(32)
    async with hub.db.transaction() as session:
        row = await _open_session(session, session_token)
        assert session_token is not None
        details = dict(row.details or {})
        tenant = Tenant(session, row.account_id)
        candidates = [c for c in await tenant.list_connections() if c.connector == CONNECTOR]
        candidates = [c for c in candidates if _names_shop(c, str(details.get("shop_id")))]
        matched: t.Connection | None = None
        for candidate in candidates:  # every candidate is compared, whichever matches
            stored = (await tenant.get_secrets(candidate.id, hub.vault, ["client_secret"])).get(
                "client_secret"
            )
            if stored and presented and _same_secret(stored, presented) and matched is None:
                matched = candidate
        if matched is None:
            details["failures"] = int(details.get("failures", 0)) + 1
            row.details = details
            left = MAX_CONSENT_ATTEMPTS - details["failures"]
            if left <= 0:
                row.used_at = utcnow()
                problem = f"That is not the client secret; this session is used up: {_AGAIN}."
            else:
                problem = f"That is not the client secret of this shop's connection ({left} attempt(s) left)."
            page = _consent_page(row, session_token, problem)
            # Returned, not raised: the failed attempt is counted (the transaction commits).
            return HTMLResponse(page, status_code=401, headers={"Cache-Control": "no-store"})
        details.update(code_hash=digest(code), connection_id=str(matched.id))
        row.details = details
    query = urlencode({"session_token": session_token, "code": code})
    return RedirectResponse(f"{_base(hub)}/public/authenticate?{query}", status_code=303)


@dataclass(frozen=True)
class _Refusal:
    error: JsonApiError


@router.get("/public/authenticate")
async def authenticate(request: Request) -> Response:
    """The callback: claims the session once, checks the code, links the shop to the connection (a binding)
    and redirects to the platform's redirect_uri. A refused attempt still uses the session up."""
    hub = _hub(request)
    session_token = request.query_params.get("session_token") or ""
    code = request.query_params.get("code") or ""
    if not session_token or not code:
        missing = "session_token" if not session_token else "code"
        raise JsonApiError(400, "Bad request", f"no {missing} given; {_AGAIN}", parameter=missing)
    outcome: _Refusal | str
    async with hub.db.transaction() as session:
        now = utcnow()
        claimed = await session.execute(
            update(t.OAuthState)
            .where(
                t.OAuthState.state_hash == digest(session_token),
                t.OAuthState.connector == FLOW,
                t.OAuthState.used_at.is_(None),
                t.OAuthState.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            await _open_session(session, session_token)  # raises, saying why
            raise JsonApiError(400, "Bad request", f"this authorization session cannot be used; {_AGAIN}")
        row = (
            await session.scalars(
                select(t.OAuthState).where(t.OAuthState.state_hash == digest(session_token))
            )
        ).one()
        outcome = await _link(session, row, code)
    if isinstance(outcome, _Refusal):
        raise outcome.error
    return RedirectResponse(outcome, status_code=302, headers={"Cache-Control": "no-store"})


async def _link(session: AsyncSession, row: t.OAuthState, code: str) -> _Refusal | str:
    details = dict(row.details or {})
    shop_id = str(details.get("shop_id"))
    expected = details.get("code_hash")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, digest(code)):
        return _Refusal(
            JsonApiError(
                400, "Bad request", f"this code was not issued for this session; {_AGAIN}", parameter="code"
            )
        )
    tenant = Tenant(session, row.account_id)
    connection = (
        await session.scalars(
            tenant.scoped(t.Connection).where(t.Connection.id == uuid.UUID(str(details.get("connection_id"))))
        )
    ).first()
    if connection is None or connection.connector != CONNECTOR or not _names_shop(connection, shop_id):
        return _Refusal(
            JsonApiError(
                400,
                "Bad request",
                f"the MyParcel.com connection for shop {shop_id} was removed or changed meanwhile; {_AGAIN}",
            )
        )
    if any(other.account_id != tenant.account_id for other in await _linked(session, shop_id)):
        return _Refusal(
            JsonApiError(
                409,
                "Conflict",
                f"shop {shop_id} is already linked to another crossdock account; delete that account's "
                "MyParcel.com connection for it first",
            )
        )
    now = utcnow()
    await upsert(
        session,
        t.Binding,
        {
            "id": uuid.uuid4(),
            "account_id": tenant.account_id,
            "connection_id": connection.id,
            "kind": SHOP_BINDING,
            "external_id": shop_id,
            "canonical_id": connection.id,
            "synced_at": now,
        },
        conflict=["connection_id", "kind", "external_id"],
        update=["canonical_id", "synced_at"],
    )
    # Within the account the latest authorization decides which connection serves the shop.
    stale = (
        await session.scalars(
            tenant.scoped(t.Binding).where(
                t.Binding.kind == SHOP_BINDING,
                t.Binding.external_id == shop_id,
                t.Binding.connection_id != connection.id,
            )
        )
    ).all()
    for binding in stale:
        await session.delete(binding)
    log.info("myparcelcom shop linked", shop_id=shop_id, connection_id=str(connection.id))
    return str(details["redirect_uri"])


# -- GET /shipments --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Listing:
    start: datetime | None
    end: datetime | None  # exclusive
    number: int
    size: int


def _day(params: Any, name: str) -> date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        if not _DATE.match(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise JsonApiError(
            422, "Unprocessable entity", f"{name} must be a date as Y-m-d, e.g. 2024-01-31", parameter=name
        ) from None


def _positive(params: Any, name: str, default: int, most: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise JsonApiError(
            422, "Unprocessable entity", f"{name} must be a whole number of at least 1", parameter=name
        )
    if most is not None and int(raw) > most:
        raise JsonApiError(
            422, "Unprocessable entity", f"{name} may be at most {most}; ask for more pages", parameter=name
        )
    return int(raw)


def _listing(params: Any) -> _Listing:
    start = _day(params, "filter[start_date]")
    end = _day(params, "filter[end_date]")
    if start and end and end < start:
        raise JsonApiError(
            422,
            "Unprocessable entity",
            "filter[end_date] is before filter[start_date]",
            parameter="filter[end_date]",
        )
    # Whole days in UTC, the end day included (marketplace-commons ShipmentRequest: start 00:00:00, end
    # 23:59:59).
    return _Listing(
        start=datetime.combine(start, time.min, UTC) if start else None,
        end=datetime.combine(end + timedelta(days=1), time.min, UTC) if end else None,
        number=_positive(params, "page[number]", 1),
        size=_positive(params, "page[size]", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    )


def _has_address(session: AsyncSession) -> ColumnElement[bool]:
    # An order without a shipping address cannot become a shipment; a missing address is stored as JSON null.
    if session.get_bind().dialect.name == "postgresql":
        return func.jsonb_typeof(t.Order.shipping_address) == "object"
    return func.json_type(t.Order.shipping_address) == "object"


def _placed() -> ColumnElement[datetime]:
    """When the order was placed (when it was stored, if the channel did not say): the date filters' field."""
    return func.coalesce(t.Order.placed_at, t.Order.created_at)


@router.get("/shipments")
async def list_shipments(request: Request) -> Response:
    """The shop's orders that are ready to ship (paid or ready_to_ship, with a shipping address), placed inside
    the date filter, oldest first, as JSON:API shipments with meta.total_records/total_pages and page links."""
    _from_platform(request)
    hub = _hub(request)
    params = request.query_params
    shop_id = _uuid(params.get("shop_id"), parameter="shop_id")
    async with hub.db.transaction() as session:
        connection = await _authorized_shop(session, shop_id)
        listing = _listing(params)
        tenant = Tenant(session, connection.account_id)
        stmt = tenant.scoped(t.Order).where(t.Order.status.in_(SERVED), _has_address(session))
        if listing.start is not None:
            stmt = stmt.where(_placed() >= listing.start)
        if listing.end is not None:
            stmt = stmt.where(_placed() < listing.end)
        total = int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
        rows = (
            await session.scalars(
                stmt.options(selectinload(t.Order.lines))
                .order_by(_placed(), t.Order.id)
                .offset((listing.number - 1) * listing.size)
                .limit(listing.size)
            )
        ).all()
        data = [shipment_resource(row, shop_id) for row in rows]
    pages = math.ceil(total / listing.size)
    return _document(
        {
            "data": data,
            "meta": {"total_records": total, "total_pages": pages},
            "links": _links(request, listing.number, pages),
        }
    )


def _links(request: Request, number: int, pages: int) -> dict[str, str]:
    def at(page: int) -> str:
        return str(request.url.include_query_params(**{"page[number]": str(page)}))

    links = {"self": at(number), "first": at(1), "last": at(max(pages, 1))}
    if number > 1:
        links["prev"] = at(min(number - 1, max(pages, 1)))
    if number < pages:
        links["next"] = at(number + 1)
    return links


# -- mapping an order to the contract's shipment -------------------------------------------------------------
def _grams(value: Decimal) -> int:
    """Whole grams, rounded up: a carrier weighs the parcel, and a declared weight under it costs a surcharge."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _money(minor: int | None, currency: str) -> dict[str, Any] | None:
    # Amounts in cents (the currency's minor unit) with an ISO 4217 currency (PROTOCOLS.md section 9).
    return None if minor is None else {"amount": int(minor), "currency": currency}


def _state_code(doc: dict[str, Any]) -> str | None:
    subdivision = doc.get("subdivision")
    if not subdivision:
        return None
    try:
        iso = m.Address.model_validate(doc).subdivision_iso
    except ValueError:
        iso = None
    if iso:
        return iso.split("-", 1)[1]
    text = str(subdivision).strip()
    return text.upper() if len(text) <= 3 and text.isalnum() else None


def _phone(raw: str | None, country: Any) -> str | None:
    # The address's own phone is normalised on the way in; the customer's is kept as the channel gave it.
    return None if not raw else normalise_phone(raw, country if isinstance(country, str) else None)


def _recipient(order: t.Order) -> dict[str, Any]:
    doc = dict(order.shipping_address or {})
    first, last = doc.get("first_name"), doc.get("last_name")
    if not first and not last and order.customer_name:
        first, _, last = order.customer_name.strip().partition(" ")
    street_2 = ", ".join(part for part in (doc.get("line2"), doc.get("line3")) if part) or None
    address = {
        "street_1": doc.get("line1"),
        "street_2": street_2,
        "postal_code": doc.get("postal_code"),
        "city": doc.get("city"),
        "state_code": _state_code(doc),
        "country_code": doc.get("country"),
        "first_name": first or None,
        "last_name": last or None,
        "company": doc.get("company"),
        "email": doc.get("email") or order.customer_email,
        "phone_number": doc.get("phone") or _phone(order.customer_phone, doc.get("country")),
    }
    # Like marketplace-commons Address::toArray: properties without a value are left out.
    return {key: value for key, value in address.items() if value}


def customer_reference(order: t.Order) -> str:
    """The order number the platform shows and sends back in status callbacks; the order id without one."""
    return order.external_number or str(order.id)


def shipment_resource(order: t.Order, shop_id: str) -> dict[str, Any]:
    """One order as the contract's shipment (marketplace-commons Shipment::transformToJsonApiArray): no id (the
    platform gives its own), empty attributes left out."""
    lines = [line for line in order.lines if line.requires_shipping and line.quantity > line.shipped_quantity]
    items = []
    for line in lines:
        item: dict[str, Any] = {
            "sku": line.sku,
            "description": line.title,
            "quantity": line.quantity - line.shipped_quantity,
            "item_value": _money(line.unit_price_minor, order.currency),
            "item_weight": None if line.weight_g is None else _grams(line.weight_g),
        }
        items.append({key: value for key, value in item.items() if value is not None})
    # A total only when every line's weight is known: a partial sum would under-declare the parcel.
    weights = [
        line.weight_g * (line.quantity - line.shipped_quantity) for line in lines if line.weight_g is not None
    ]
    weight = _grams(sum(weights, Decimal(0))) if lines and len(weights) == len(lines) else None
    placed = order.placed_at or order.created_at
    total = _money(order.total_minor, order.currency)
    description = ", ".join(f"{item['quantity']} x {item['description']}" for item in items)
    attributes: dict[str, Any] = {
        "created_at": int(placed.timestamp()),
        "recipient_address": _recipient(order),
        "description": description[:255] or f"Order {customer_reference(order)}",
        "customer_reference": customer_reference(order),
        "channel": CHANNEL,
        "total_value": total,
        # marketplace-skeleton ShipmentController's example sends the order's price as `price` too.
        "price": total,
        "physical_properties": {"weight": weight} if weight else None,
        "items": items or None,
        "tags": [str(tag) for tag in order.tags or []] or None,
    }
    return {
        "type": "shipments",
        "attributes": {key: value for key, value in attributes.items() if value is not None},
        "relationships": {"shop": {"data": {"type": "shops", "id": shop_id}}},
    }


# -- POST /callback/shipment-statuses --------------------------------------------------------------------------
@dataclass(frozen=True)
class _StatusReport:
    shop_id: str
    shipment_id: str  # MyParcel.com's
    reference: str | None
    code: str
    occurred_at: datetime
    tracking_code: str | None
    tracking_url: str | None


def _included(document: dict[str, Any], kind: str) -> tuple[int, dict[str, Any]]:
    included = document.get("included")
    if not isinstance(included, list):
        raise JsonApiError(
            422,
            "Unprocessable entity",
            "included must hold the statuses and the shipments resource",
            pointer="/included",
        )
    for index, resource in enumerate(included):
        if isinstance(resource, dict) and resource.get("type") == kind:
            return index, resource
    raise JsonApiError(
        422, "Unprocessable entity", f'included has no resource of type "{kind}"', pointer="/included"
    )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _status_report(document: dict[str, Any], at: int, shipment: dict[str, Any]) -> _StatusReport:
    attributes = shipment.get("attributes") if isinstance(shipment.get("attributes"), dict) else {}
    assert isinstance(attributes, dict)
    shop = ((shipment.get("relationships") or {}).get("shop") or {}).get("data") or {}
    shop_id = _uuid(
        shop.get("id") if isinstance(shop, dict) else None,
        pointer=f"/included/{at}/relationships/shop/data/id",
    )
    status_at, status = _included(document, "statuses")
    code = (
        (status.get("attributes") or {}).get("code") if isinstance(status.get("attributes"), dict) else None
    )
    if code not in STATUSES:
        raise JsonApiError(
            422,
            "Unprocessable entity",
            f"status code {str(code)[:64]!r} is not a MyParcel.com shipment status",
            pointer=f"/included/{status_at}/attributes/code",
        )
    data = document.get("data") if isinstance(document.get("data"), dict) else {}
    assert isinstance(data, dict)
    shipment_id = _text(shipment.get("id")) or _text(
        (((data.get("relationships") or {}).get("shipment") or {}).get("data") or {}).get("id")
    )
    if shipment_id is None:
        raise JsonApiError(
            422, "Unprocessable entity", "the shipment has no id", pointer=f"/included/{at}/id"
        )
    created = (
        (data.get("attributes") or {}).get("created_at") if isinstance(data.get("attributes"), dict) else None
    )
    occurred = (
        datetime.fromtimestamp(created, UTC)
        if isinstance(created, int) and not isinstance(created, bool) and created > 0
        else utcnow()
    )
    return _StatusReport(
        shop_id=shop_id,
        shipment_id=shipment_id,
        reference=_text(attributes.get("customer_reference")),
        code=str(code),
        occurred_at=occurred,
        tracking_code=_text(attributes.get("tracking_code")),
        tracking_url=_text(attributes.get("tracking_url")),
    )


@router.post("/callback/shipment-statuses")
async def status_callback(request: Request) -> Response:
    """A shipment's new status: on the order's timeline once, and with a tracking number or a label, a
    fulfillment for the order (pushed to its channel exactly once by engine.fulfillments)."""
    _from_platform(request)
    hub = _hub(request)
    document = await _json_object(request)
    at, shipment = _included(document, "shipments")
    attributes = shipment.get("attributes")
    channel = attributes.get("channel") if isinstance(attributes, dict) else None
    if channel != CHANNEL:
        # Another integration's shipment (marketplace-commons MatchingChannelOnly): acknowledged, ignored.
        return Response(status_code=204)
    report = _status_report(document, at, shipment)
    async with hub.db.transaction() as session:
        connection = await _authorized_shop(
            session, report.shop_id, pointer=f"/included/{at}/relationships/shop/data/id"
        )
        result = await _apply(session, Tenant(session, connection.account_id), connection, report, at)
    return _document({"meta": result})


async def _order_for(tenant: Tenant, reference: str | None, at: int) -> t.Order:
    pointer = f"/included/{at}/attributes/customer_reference"
    if reference is None:
        raise JsonApiError(
            422,
            "Unprocessable entity",
            "the shipment has no customer_reference; crossdock serves it as the order number",
            pointer=pointer,
        )
    matches: list[ColumnElement[bool]] = [t.Order.external_number == reference]
    try:
        matches.append(t.Order.id == uuid.UUID(reference))
    except ValueError:
        pass
    rows = (await tenant.session.scalars(tenant.scoped(t.Order).where(or_(*matches)).limit(2))).all()
    if not rows:
        raise JsonApiError(
            404,
            "Not Found",
            f"no order of this shop's crossdock account has the number {reference!r}; the shipment was not "
            "imported from crossdock, or its order was deleted",
            pointer=pointer,
        )
    if len(rows) > 1:
        raise JsonApiError(
            409,
            "Conflict",
            f"several orders of this shop's crossdock account have the number {reference!r}; record this "
            "shipment's tracking on the right order in crossdock",
            pointer=pointer,
        )
    return rows[0]


async def _shipment_for(
    session: AsyncSession, tenant: Tenant, connection: t.Connection, report: _StatusReport, at: int
) -> t.Shipment:
    """crossdock's shipment for MyParcel.com's, made on its first status. The binding (connection, kind, the
    MyParcel.com id) is unique, so a redelivery racing the first makes no second shipment."""

    async def bound() -> uuid.UUID | None:
        return await session.scalar(
            select(t.Binding.canonical_id).where(
                t.Binding.account_id == tenant.account_id,
                t.Binding.connection_id == connection.id,
                t.Binding.kind == SHIPMENT_BINDING,
                t.Binding.external_id == report.shipment_id,
            )
        )

    shipment_id = await bound()
    if shipment_id is None:
        order = await _order_for(tenant, report.reference, at)
        new_id = uuid.uuid4()
        stmt: Any = insert_for(session, t.Binding).values(
            id=uuid.uuid4(),
            account_id=tenant.account_id,
            connection_id=connection.id,
            kind=SHIPMENT_BINDING,
            external_id=report.shipment_id,
            canonical_id=new_id,
            synced_at=utcnow(),
        )
        inserted = (await session.execute(stmt.on_conflict_do_nothing().returning(t.Binding.id))).scalar()
        if inserted is not None:
            session.add(
                t.Shipment(
                    id=new_id,
                    account_id=tenant.account_id,
                    order_id=order.id,
                    connection_id=connection.id,
                    status=STATUSES[report.code][2].value,
                    external_id=report.shipment_id,
                )
            )
            await session.flush()
            shipment_id = new_id
        else:
            shipment_id = await bound()
    row = (
        await session.scalars(tenant.scoped(t.Shipment).where(t.Shipment.id == shipment_id).with_for_update())
    ).first()
    if row is None:
        raise JsonApiError(
            404,
            "Not Found",
            f"crossdock's record of MyParcel.com shipment {report.shipment_id} was deleted with its order",
            pointer=f"/included/{at}/id",
        )
    return row


async def _apply(
    session: AsyncSession, tenant: Tenant, connection: t.Connection, report: _StatusReport, at: int
) -> dict[str, Any]:
    shipment = await _shipment_for(session, tenant, connection, report, at)
    level, name, shipment_status, tracking_status = STATUSES[report.code]
    meta: dict[str, Any] = {"status": report.code, "order_id": str(shipment.order_id)}
    seen = await session.scalar(
        select(t.TrackingEvent.id)
        .where(
            t.TrackingEvent.account_id == tenant.account_id,
            t.TrackingEvent.shipment_id == shipment.id,
            t.TrackingEvent.raw_status == report.code,
        )
        .limit(1)
    )
    if seen is not None:
        return {**meta, "result": "already recorded"}
    event: Any = insert_for(session, t.TrackingEvent).values(
        id=uuid.uuid4(),
        account_id=tenant.account_id,
        shipment_id=shipment.id,
        status=tracking_status.value,
        occurred_at=report.occurred_at,
        description=name,
        raw_status=report.code,
    )
    await session.execute(event.on_conflict_do_nothing())
    shipment.status = shipment_status.value
    if report.tracking_code:
        shipment.tracking_number = report.tracking_code[:100]
        shipment.tracking_url = report.tracking_url[:2000] if report.tracking_url else shipment.tracking_url
    shipment.updated_at = utcnow()
    tracking = f", tracking {report.tracking_code}" if report.tracking_code else ""
    await tenant.add_event(
        shipment.order_id,
        "myparcelcom.status",
        f"MyParcel.com shipment {name} ({report.code}){tracking}",
        {"myparcelcom_shipment_id": report.shipment_id, "code": report.code, "level": level},
        severity="warning" if level in ("failed", "cancelled") else "info",
    )
    meta["result"] = "recorded"
    if report.tracking_code or report.code == _SHIPPED_WITHOUT_TRACKING:
        meta["fulfillment"] = await _fulfil(session, tenant, shipment, report)
    if report.code == "shipment-delivered":
        order = await tenant.get_order(shipment.order_id)
        if order.status == m.OrderStatus.SHIPPED.value:
            await tenant.transition_order(order, m.OrderStatus.DELIVERED, reason="MyParcel.com: delivered")
    return meta


async def _fulfil(session: AsyncSession, tenant: Tenant, shipment: t.Shipment, report: _StatusReport) -> str:
    """Record the shipment as the order's fulfillment (once: one fulfillment per shipment); a changed tracking
    number updates it. An order that cannot ship any more (cancelled, shipped elsewhere) gets a warning."""
    try:
        recorded = await record_fulfillment(
            session,
            tenant,
            shipment.order_id,
            tracking_number=shipment.tracking_number,
            tracking_url=shipment.tracking_url,
            shipment_id=shipment.id,
        )
    except Conflict as exc:
        await tenant.add_event(
            shipment.order_id,
            "myparcelcom.not_fulfilled",
            f"MyParcel.com shipment {report.shipment_id} was not recorded as shipped: {exc}",
            {"myparcelcom_shipment_id": report.shipment_id, "code": report.code},
            severity="warning",
        )
        return "refused"
    fulfillment = recorded.fulfillment
    if recorded.created:
        return "recorded"
    if shipment.tracking_number and fulfillment.tracking_number != shipment.tracking_number:
        await update_tracking(
            session,
            tenant,
            fulfillment.id,
            tracking_number=shipment.tracking_number,
            tracking_url=shipment.tracking_url,
        )
        return "tracking updated"
    return "unchanged"
