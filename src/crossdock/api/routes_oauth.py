"""OAuth authorisation flows: `/oauth/{connector}/start` sends the browser to the remote's consent page,
`/oauth/{connector}/callback` takes it back, exchanges the code and stores the connection.

Start is authenticated (the caller's account is the connection's); the callback is not (the remote's redirect
carries no token), so it is trusted only with a state this hub made, unused and unexpired, and the cookie of the
browser that started it (security/oauth.py). Codes and tokens are never logged, stored outside the vault or
answered.
"""

from __future__ import annotations

import html
import uuid
from types import ModuleType
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.api.deps import Caller, HubDep, bearer, get_caller, get_session
from crossdock.api.problems import Problem, invalid
from crossdock.connectors.amazon import oauth as amazon_oauth
from crossdock.connectors.ebay import oauth as ebay_oauth
from crossdock.connectors.registry import get_spec
from crossdock.connectors.shippo import oauth as shippo_oauth
from crossdock.connectors.shopify import oauth as shopify_oauth
from crossdock.engine import connect as connecting
from crossdock.engine.errors import JobError, RetryableError
from crossdock.engine.http import RemoteClient, Target
from crossdock.hub import Hub
from crossdock.logs import get_logger
from crossdock.security.oauth import (
    STATE_TTL,
    ClaimedFlow,
    FlowRefused,
    Grant,
    OAuthApp,
    StateRefused,
    claim_flow,
    cookie_name,
    start_flow,
)
from crossdock.store.repo import Tenant
from crossdock.web.deps import SignInRequired, is_own_path
from crossdock.web.render import error_page
from crossdock.web.sessions import COOKIE as PANEL_COOKIE
from crossdock.web.sessions import load_session

log = get_logger(__name__)
router = APIRouter(tags=["oauth"])

# The connectors that connect through an authorisation flow, each with its flow module (connectors/X/oauth.py).
FLOWS: dict[str, ModuleType] = {
    "shopify": shopify_oauth,
    "ebay": ebay_oauth,
    "amazon": amazon_oauth,
    "shippo": shippo_oauth,
}


async def get_oauth_caller(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """Who starts a flow: a bearer API token, or else the control panel's signed-in browser (its Connect
    buttons are links here)."""
    if credentials is None:
        signed = await load_session(session, request.cookies.get(PANEL_COOKIE))
        if signed is not None:
            return Caller(account=signed.account, tenant=Tenant(session, signed.account.id))
        if "text/html" in request.headers.get("accept", ""):
            # A browser whose panel session ended: sign in, then start again.
            raise SignInRequired(
                f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path
            )
    return await get_caller(session, credentials)


OAuthCallerDep = Annotated[Caller, Depends(get_oauth_caller)]


def _flow(connector: str) -> ModuleType:
    flow = FLOWS.get(connector)
    if flow is None:
        known = ", ".join(sorted(FLOWS))
        raise Problem(
            404,
            "Not found",
            f"connector '{connector}' has no OAuth flow; connectors with one: {known} "
            "(connect the others with POST /api/v1/connections)",
            kind="not-found",
        )
    return flow


def missing_app_settings(hub: Hub, connector: str) -> list[str]:
    """What the hub's configuration lacks for the connector's OAuth flow (empty: the flow can start)."""
    app = hub.settings.oauth_apps.get(connector)
    if app is None:
        return ["client_id", "client_secret"]
    missing: list[str] = _flow(connector).missing_app_settings(app)
    return missing


def _app(hub: Hub, connector: str) -> OAuthApp:
    app = hub.settings.oauth_apps.get(connector)
    missing = missing_app_settings(hub, connector)
    if app is None or missing:
        names = ", ".join(f"oauth_apps.{connector}.{name}" for name in missing)
        raise Problem(
            409,
            "OAuth app not configured",
            f"this hub has no {get_spec(connector).title} OAuth app configured: set {names} in the "
            f'configuration file ([oauth_apps.{connector}]) or in CROSSDOCK_OAUTH_APPS=\'{{"{connector}": '
            '{"client_id": "...", "client_secret": "..."}}\', then restart crossdock',
            kind="oauth-app-missing",
            errors=[{"field": f"oauth_apps.{connector}.{name}", "message": "not set"} for name in missing],
        )
    return app


def _callback_url(hub: Hub, app: OAuthApp, connector: str) -> str:
    base = (app.redirect_base or hub.settings.public_url).rstrip("/")
    return f"{base}/oauth/{connector}/callback"


def _own_path(return_to: str) -> str:
    """Only a path of this hub (is_own_path): anything else could send the browser, and the connection id, to
    another site after the flow."""
    if not is_own_path(return_to):
        raise invalid("return_to", "must be a path of this hub starting with /, e.g. /connections")
    return return_to


def _refused(exc: FlowRefused | StateRefused, connector: str) -> Problem:
    if isinstance(exc, StateRefused):
        return Problem(exc.status, "Authorisation refused", str(exc), kind="oauth-refused")
    detail = exc.message
    if exc.status < 500 and "start" not in detail:
        detail += f"; start the connection again from /oauth/{connector}/start"
    errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
    kind = "validation" if exc.status == 422 else "oauth-refused"
    title = "Invalid request" if exc.status == 422 else "Authorisation refused"
    return Problem(exc.status, title, detail, kind=kind, errors=errors)


def _wants_json(request: Request, format: str | None) -> bool:
    if format is not None:
        return format == "json"
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@router.get("/oauth/{connector}/start", response_model=None)
async def start(
    connector: str,
    request: Request,
    caller: OAuthCallerDep,
    hub: HubDep,
    shop: Annotated[str | None, Query(description="Shopify: the shop, your-shop.myshopify.com")] = None,
    name: Annotated[str | None, Query(max_length=200, description="The new connection's name")] = None,
    return_to: Annotated[
        str | None, Query(max_length=2000, description="A path of this hub to go to when connected")
    ] = None,
    connection_id: Annotated[
        uuid.UUID | None, Query(description="Re-authorise this connection instead of making a new one")
    ] = None,
    format: Annotated[
        str | None,
        Query(pattern="^(json|redirect)$", description="json: answer the URL instead of redirecting"),
    ] = None,
) -> Response:
    """Start connecting: redirect (302) to the remote's consent page, or answer {"authorization_url"} with
    `format=json` or `Accept: application/json`. Either way a cookie binds the flow to this browser (or
    script): the callback must come back with it within 10 minutes."""
    try:
        return await _start(connector, request, caller, hub, name, return_to, connection_id, format)
    except Problem as exc:
        if not _from_panel(request, format):
            raise
        # A person who pressed Connect in the panel gets a page that says what to do, not a JSON document.
        back = return_to if return_to and is_own_path(return_to) else "/connections"
        return error_page(request, exc.status, exc.title, exc.detail, back=(back, "Back to Connections"))


def _from_panel(request: Request, format: str | None) -> bool:
    return (
        not _wants_json(request, format)
        and "text/html" in request.headers.get("accept", "")
        and "authorization" not in request.headers
    )


async def _start(
    connector: str,
    request: Request,
    caller: Caller,
    hub: Hub,
    name: str | None,
    return_to: str | None,
    connection_id: uuid.UUID | None,
    format: str | None,
) -> Response:
    flow = _flow(connector)
    app = _app(hub, connector)
    if return_to is not None:
        return_to = _own_path(return_to)
    settings: dict[str, Any] = {}
    if connection_id is not None:
        row = await caller.tenant.get_connection(connection_id)
        if row.connector != connector:
            raise invalid("connection_id", f"this is a {row.connector} connection, not {connector}")
        settings = dict(row.settings or {})
    query = dict(request.query_params)
    try:
        details = flow.start_details(app, query, settings)
    except FlowRefused as exc:
        raise _refused(exc, connector) from None
    redirect_uri = flow.redirect_uri(app, _callback_url(hub, app, connector))
    details.update({"redirect_uri": redirect_uri, "name": name, "return_to": return_to})
    if connection_id is not None:
        details["connection_id"] = str(connection_id)
    started = await start_flow(caller.tenant.session, caller.account.id, connector, details)
    url = flow.authorization_url(app, redirect_uri=redirect_uri, state=started.state, details=details)
    response: Response
    if _wants_json(request, format):
        response = JSONResponse({"authorization_url": url, "expires_at": started.expires_at.isoformat()})
    else:
        response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        started.cookie_name,
        started.browser_secret,
        max_age=int(STATE_TTL.total_seconds()),
        path=f"/oauth/{connector}/callback",
        secure=hub.settings.public_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/oauth/{connector}/callback", response_model=None)
async def callback(connector: str, request: Request, hub: HubDep) -> Response:
    """Where the remote sends the browser back. Refused (nothing stored) unless the state is this hub's,
    unused, unexpired and comes with the cookie of the browser that started it; for Shopify the query's hmac
    and age are checked first."""
    flow = _flow(connector)
    app = _app(hub, connector)
    pairs = list(request.query_params.multi_items())
    params = dict(request.query_params)
    state = params.get("state")
    try:
        flow.verify_callback(app, pairs)
        async with hub.db.transaction() as session:
            claimed = await claim_flow(session, connector, state, _browser_secret(request, state))
    except (FlowRefused, StateRefused) as exc:
        log.info("oauth callback refused", connector=connector, reason=str(exc))
        raise _refused(exc, connector) from None
    error = params.get("error")
    if error:
        raise _declined(connector, error)
    try:
        code = flow.callback_code(params, claimed.details)
        grant = await _exchange(hub, claimed, flow, app, code, params)
        connection_id, reached = await _store(hub, claimed, grant)
    except (FlowRefused, StateRefused) as exc:
        log.info("oauth callback refused", connector=connector, reason=str(exc))
        raise _refused(exc, connector) from None
    log.info("oauth connected", connector=connector, connection_id=str(connection_id))
    response = _connected(request, claimed, connector, connection_id, reached)
    if state:
        response.delete_cookie(cookie_name(state), path=f"/oauth/{connector}/callback")
    response.headers["Cache-Control"] = "no-store"
    return response


def _browser_secret(request: Request, state: str | None) -> str | None:
    return request.cookies.get(cookie_name(state)) if state else None


def _declined(connector: str, error: str) -> Problem:
    title = get_spec(connector).title
    again = f"start again from /oauth/{connector}/start to connect"
    if error == "access_denied":
        detail = f"the authorisation was declined at {title}, so nothing was connected; {again}"
        return Problem(400, "Authorisation declined", detail, kind="oauth-declined")
    # Other RFC 6749 4.1.2.1 codes (invalid_scope, unsupported_response_type, server_error...).
    shown = "".join(ch for ch in error[:64] if ch.isalnum() or ch in "_-.")
    detail = f"{title} did not authorise the connection (error {shown}); nothing was connected; {again}"
    return Problem(400, "Authorisation failed", detail, kind="oauth-refused")


async def _exchange(
    hub: Hub, claimed: ClaimedFlow, flow: ModuleType, app: OAuthApp, code: str, params: dict[str, str]
) -> Grant:
    redirect_uri = str(claimed.details["redirect_uri"])
    title = get_spec(claimed.connector).title
    # The code and the app's secret are scrubbed from anything the client records or raises.
    async with RemoteClient(
        hub, Target(claimed.account_id, claimed.connector), secrets=(code, app.secret()), attempts=1
    ) as client:
        try:
            grant: Grant = await flow.exchange(
                client, app, code=code, redirect_uri=redirect_uri, params=params, details=claimed.details
            )
        except RetryableError as exc:
            raise FlowRefused(
                f"{title} could not be reached to finish the authorisation ({exc.message}); "
                f"start again from /oauth/{claimed.connector}/start",
                status=502,
            ) from None
        except JobError as exc:
            raise FlowRefused(
                f"{title} refused the authorisation code ({exc.message}); codes are single-use and expire "
                f"within minutes: start again from /oauth/{claimed.connector}/start",
                status=400,
            ) from None
    return grant


def _known(names: list[str], values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k in names}


async def _store(hub: Hub, claimed: ClaimedFlow, grant: Grant) -> tuple[uuid.UUID, str]:
    """A new connection through engine.connect (it proves the credentials and subscribes webhooks), or new
    credentials for the re-authorised one."""
    spec = get_spec(claimed.connector)
    # What a grant yields beyond the connector's declared fields (an access token cached for the runtime, the
    # seller's id) is kept only once the connector's spec declares it: connect() refuses unknown names.
    secrets = _known([f.name for f in spec.secrets], grant.secrets)
    settings = _known([f.name for f in spec.settings], grant.settings)
    existing = claimed.details.get("connection_id")
    try:
        if existing:
            connection_id = uuid.UUID(str(existing))
            await connecting.update_secrets(hub, claimed.account_id, connection_id, secrets)
            return connection_id, "re-authorised"
        connected = await connecting.connect(
            hub,
            claimed.account_id,
            connector=claimed.connector,
            name=str(claimed.details.get("name") or grant.name),
            settings=settings,
            secrets=secrets,
            base_url=grant.base_url,
        )
    except connecting.ConnectionRefused as exc:
        raise FlowRefused(exc.message, exc.field) from None
    return connected.connection.id, connected.reached


def _connected(
    request: Request, claimed: ClaimedFlow, connector: str, connection_id: uuid.UUID, reached: str
) -> Response:
    return_to = claimed.details.get("return_to")
    if return_to:
        separator = "&" if urlsplit(str(return_to)).query else "?"
        query = urlencode({"connection_id": str(connection_id), "connected": connector})
        return RedirectResponse(f"{return_to}{separator}{query}", status_code=303)
    body = {
        "status": "connected",
        "connector": connector,
        "connection_id": str(connection_id),
        "reached": reached,
    }
    if "text/html" in request.headers.get("accept", ""):
        title = html.escape(get_spec(connector).title)
        return HTMLResponse(
            f"<!doctype html><html lang=en><meta charset=utf-8><title>Connected</title>"
            f"<h1>{title} connected</h1><p>Connection <code>{connection_id}</code> is ready"
            f"{' (' + html.escape(reached) + ')' if reached else ''}. You can close this page.</p></html>"
        )
    return JSONResponse(body)
