"""Connections: every link of the account to a shop, marketplace or shipping service, with its last pull, and
the ways to add, pause, resume, pull, re-authorise and disconnect one.

The actions go through engine.connect (as `crossdock connections ...` and the OAuth callbacks do) and
engine.sync.request_sync; those open their own transactions, so a handler commits the page's session before it
calls them (on SQLite a second writer would otherwise wait for the page's own transaction).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import FormData

from crossdock.api.routes_oauth import FLOWS, missing_app_settings
from crossdock.connectors.base import Capability, ConnectorSpec
from crossdock.connectors.registry import SPECS
from crossdock.engine import connect as connecting
from crossdock.engine.connections import ACTIVE, NEEDS_REAUTH, PAUSED
from crossdock.engine.sync import SYNC_JOB, pulling_connectors, request_sync, sync_key
from crossdock.security.signatures import is_shop_domain
from crossdock.security.urls import UnsafeURL, check_outbound_url
from crossdock.store import tables as t
from crossdock.store.repo import NotFound
from crossdock.web.context import Panel
from crossdock.web.deps import FormDep, PanelDep, PanelError
from crossdock.web.render import render

router = APIRouter(include_in_schema=False)

NAME_MAX = 200
VALUE_MAX = 4000


@dataclass
class ConnectionView:
    """One row of the list: the connection and what the page says about it."""

    row: t.Connection
    title: str
    base_url: str | None
    run: t.SyncRun | None
    pull_waiting: bool
    can_pull: bool
    oauth: bool
    advice: str


@dataclass
class OAuthOption:
    connector: str
    title: str
    # What the hub's configuration lacks for the flow ("oauth_apps.ebay.ru_name"); empty when it can start.
    missing: list[str]


@dataclass
class TokenForm:
    """A token form's state: the values entered (settings and name only: secrets are never sent back), and the
    problem with the field it concerns."""

    spec: ConnectorSpec
    values: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_field: str | None = None

    @property
    def more_open(self) -> bool:
        """Whether the optional fields are shown unfolded: one of them was filled in or is at fault."""
        optional = {"base_url"} | {f"settings.{f.name}" for f in self.spec.settings if not f.required}
        optional |= {f"secrets.{f.name}" for f in self.spec.secrets if not f.required}
        return self.error_field in optional or any(self.values.get(name) for name in optional)


def _not_found() -> PanelError:
    return PanelError(
        404,
        "Connection not found",
        "This account has no such connection; it may have been disconnected. Go back to Connections.",
    )


async def _connection(panel: Panel, connection_id: str) -> t.Connection:
    try:
        return await panel.tenant.get_connection(uuid.UUID(connection_id))
    except (ValueError, NotFound):
        raise _not_found() from None


def _back(notice: str, connection_id: uuid.UUID | None = None) -> RedirectResponse:
    anchor = f"#c-{connection_id}" if connection_id else ""
    return RedirectResponse(f"/connections?notice={quote(notice)}{anchor}", status_code=303)


def _advice(row: t.Connection, spec: ConnectorSpec | None, oauth: bool) -> str:
    """What to do about a connection that does not work, in the panel's own terms."""
    if row.status == NEEDS_REAUTH:
        if oauth:
            return "Re-authorise it with the button below; scheduled pulls wait until then."
        if row.connector in FLOWS:
            return (
                "Its authorisation no longer works. This hub has no OAuth app set up to re-authorise it "
                f"(see oauth_apps.{row.connector} in the configuration): give it new credentials with "
                f"'crossdock connections update {row.id} --secret NAME=VALUE', or disconnect it and connect "
                "again with a token."
            )
        return (
            "Its credentials no longer work: disconnect it and connect again with new ones, or give it new "
            f"credentials with 'crossdock connections update {row.id} --secret NAME=VALUE'."
        )
    if row.status == PAUSED:
        return "Nothing is pulled or pushed for it until you resume it."
    if spec is None:
        return "Its connector is not installed in this hub; install it or disconnect the connection."
    return ""


async def _views(panel: Panel) -> list[ConnectionView]:
    rows = await panel.tenant.list_connections()
    waiting = set(
        (
            await panel.db.scalars(
                select(t.Job.lock_key).where(
                    t.Job.account_id == panel.account.id,
                    t.Job.kind == SYNC_JOB,
                    t.Job.status.in_(("queued", "running", "failed")),
                )
            )
        ).all()
    )
    pulling = set(pulling_connectors())
    flows = {option.connector for option in _oauth_options(panel) if not option.missing}
    views = []
    for row in rows:
        spec = SPECS.get(row.connector)
        run = (
            await panel.db.scalars(
                panel.tenant.scoped(t.SyncRun)
                .where(t.SyncRun.connection_id == row.id)
                .order_by(t.SyncRun.started_at.desc(), t.SyncRun.id.desc())
                .limit(1)
            )
        ).first()
        oauth = row.connector in flows
        default = spec.default_base_url if spec else ""
        views.append(
            ConnectionView(
                row=row,
                title=spec.title if spec else row.connector,
                base_url=row.base_url if row.base_url and row.base_url != default else None,
                run=run,
                pull_waiting=sync_key(row.id) in waiting,
                can_pull=row.connector in pulling,
                oauth=oauth,
                advice=_advice(row, spec, oauth),
            )
        )
    return views


def _oauth_options(panel: Panel) -> list[OAuthOption]:
    return [
        OAuthOption(
            name, SPECS[name].title, [f"oauth_apps.{name}.{m}" for m in missing_app_settings(panel.hub, name)]
        )
        for name in FLOWS
        if name in SPECS
    ]


def _notice(request: Request) -> str | None:
    """The OAuth callback comes back with ?connected=CONNECTOR&connection_id=ID rather than a notice."""
    connector = request.query_params.get("connected")
    if connector and connector in SPECS:
        return f"{SPECS[connector].title} is connected."
    return None


@router.get("/connections")
async def connections_page(request: Request, panel: PanelDep) -> Response:
    return render(
        request,
        "connections/list.html",
        panel=panel,
        active="connections",
        connections=await _views(panel),
        oauth_options=_oauth_options(panel),
        token_forms=[TokenForm(spec) for spec in SPECS.values()],
        notice=request.query_params.get("notice") or _notice(request),
    )


# Pause, resume, pull now -----------------------------------------------------------------------------------
@router.post("/connections/{connection_id}/pause")
async def pause(connection_id: str, panel: PanelDep, _form: FormDep) -> Response:
    row = await _connection(panel, connection_id)
    if row.status != ACTIVE:
        raise PanelError(
            409,
            "Cannot pause",
            f"{row.name} is {row.status.replace('_', ' ')}, not active, so nothing runs for it already: resume or "
            "re-authorise it on Connections when it should run again.",
        )
    await panel.db.commit()
    await connecting.set_status(panel.hub, panel.account.id, row.id, PAUSED)
    return _back(f"{row.name} is paused: nothing is pulled or pushed until you resume it.", row.id)


@router.post("/connections/{connection_id}/resume")
async def resume(connection_id: str, panel: PanelDep, _form: FormDep) -> Response:
    row = await _connection(panel, connection_id)
    if row.status != PAUSED:
        detail = f"{row.name} is {row.status.replace('_', ' ')}, not paused."
        if row.status == NEEDS_REAUTH:
            detail += " It needs to be authorised again first; see what its row on Connections says."
        raise PanelError(409, "Cannot resume", detail)
    await panel.db.commit()
    await connecting.set_status(panel.hub, panel.account.id, row.id, ACTIVE)
    return _back(f"{row.name} is active again.", row.id)


@router.post("/connections/{connection_id}/sync")
async def sync_now(connection_id: str, panel: PanelDep, _form: FormDep) -> Response:
    row = await _connection(panel, connection_id)
    if row.connector not in pulling_connectors():
        raise PanelError(
            409, "Nothing to pull", f"{row.name} is a {row.connector} connection; it has no orders to pull."
        )
    if row.status != ACTIVE:
        raise PanelError(
            409,
            "Cannot pull now",
            f"{row.name} is {row.status.replace('_', ' ')}: resume or re-authorise it first, then pull.",
        )
    queued = await request_sync(panel.db, account_id=panel.account.id, connection_id=row.id, trigger="manual")
    if queued is None:
        return _back(f"A pull of {row.name} is already waiting; it starts shortly.", row.id)
    return _back(f"A pull of {row.name} is queued; its counts appear here when it has run.", row.id)


# Disconnect ------------------------------------------------------------------------------------------------
@router.get("/connections/{connection_id}/disconnect")
async def disconnect_page(connection_id: str, request: Request, panel: PanelDep) -> Response:
    row = await _connection(panel, connection_id)
    spec = SPECS.get(row.connector)
    return render(
        request,
        "connections/disconnect.html",
        panel=panel,
        active="connections",
        connection=row,
        title=spec.title if spec else row.connector,
        webhooks=bool(spec and Capability.ORDERS_WEBHOOK in spec.capabilities),
    )


@router.post("/connections/{connection_id}/disconnect")
async def disconnect(connection_id: str, panel: PanelDep, _form: FormDep) -> Response:
    row = await _connection(panel, connection_id)
    name = row.name
    await panel.db.commit()
    try:
        note = await connecting.disconnect(panel.hub, panel.account.id, row.id)
    except NotFound:
        raise _not_found() from None
    return _back(f"{name} is disconnected" + (f"; {note}." if note else "."))


# Connect with a token --------------------------------------------------------------------------------------
def _spec_of(connector: str) -> ConnectorSpec:
    spec = SPECS.get(connector)
    if spec is None:
        raise PanelError(
            404, "Unknown connector", f"This hub has no connector '{connector}'. Go back to Connections."
        )
    return spec


def _token_page(request: Request, panel: Panel, form: TokenForm, *, status_code: int = 200) -> Response:
    return render(
        request,
        "connections/new.html",
        panel=panel,
        active="connections",
        form=form,
        status_code=status_code,
    )


@router.get("/connections/new/{connector}")
async def token_form(connector: str, request: Request, panel: PanelDep) -> Response:
    return _token_page(request, panel, TokenForm(_spec_of(connector)))


class _Refused(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _entered(spec: ConnectorSpec, form: FormData) -> dict[str, str]:
    """The values to show again on the form: name, base URL and settings, never the secrets."""
    values = {"name": _text(form, "name"), "base_url": _text(form, "base_url")}
    for f in spec.settings:
        values[f"settings.{f.name}"] = _text(form, f"settings.{f.name}")
    return values


def _read_token_form(
    spec: ConnectorSpec, form: FormData, panel: Panel
) -> tuple[dict[str, str], dict[str, Any], dict[str, str], str | None]:
    """The entered values to show again, and the connection's settings, secrets and base URL. Empty optional
    fields are left out; the required ones engine.connect checks and names itself."""
    values = _entered(spec, form)
    settings: dict[str, Any] = {
        f.name: values[f"settings.{f.name}"] for f in spec.settings if values[f"settings.{f.name}"]
    }
    secrets: dict[str, str] = {}
    for f in spec.secrets:
        value = _text(form, f"secrets.{f.name}")
        if value:
            secrets[f.name] = value
    for name, value in [("name", values["name"]), *[(f"settings.{k}", v) for k, v in settings.items()]]:
        if len(value) > (NAME_MAX if name == "name" else VALUE_MAX):
            raise _Refused(name, "is too long")
    for name, value in secrets.items():
        if len(value) > VALUE_MAX:
            raise _Refused(f"secrets.{name}", "is too long")
    if "shop" in settings and spec.name == "shopify":
        shop = settings["shop"].lower().removeprefix("https://").removeprefix("http://").rstrip("/")
        if not is_shop_domain(shop):
            raise _Refused(
                "settings.shop", "must be the shop's myshopify.com domain, e.g. acme.myshopify.com"
            )
        settings["shop"] = values["settings.shop"] = shop
    base_url = values["base_url"] or None
    if base_url is not None:
        try:
            check_outbound_url(base_url, allow_private=panel.hub.settings.allow_private_urls)
        except UnsafeURL as exc:
            raise _Refused("base_url", str(exc)) from None
    return values, settings, secrets, base_url


def _field_title(spec: ConnectorSpec, name: str | None) -> str:
    if not name:
        return ""
    if name == "name":
        return "Name"
    if name == "base_url":
        return "Base URL"
    kind, _, key = name.partition(".")
    fields = spec.settings if kind == "settings" else spec.secrets
    return next((f.title for f in fields if f.name == key), key)


@router.post("/connections/new/{connector}")
async def connect_with_token(connector: str, request: Request, panel: PanelDep, form: FormDep) -> Response:
    spec = _spec_of(connector)
    state = TokenForm(spec)
    try:
        state.values, settings, secrets, base_url = _read_token_form(spec, form, panel)
    except _Refused as exc:
        state.values = _entered(spec, form)
        state.error_field = exc.field
        state.error = f"{_field_title(spec, exc.field)}: {exc.message}"
        return _token_page(request, panel, state, status_code=422)
    await panel.db.commit()
    try:
        connected = await connecting.connect(
            panel.hub,
            panel.account.id,
            connector=spec.name,
            name=state.values["name"] or spec.title,
            settings=settings,
            secrets=secrets,
            base_url=base_url,
        )
    except connecting.ConnectionRefused as exc:
        state.error_field = exc.field
        title = _field_title(spec, exc.field)
        state.error = (
            f"{title}: {exc.message}"
            if title
            else f"{exc.message} Check the credentials and the base URL, then try again."
        )
        return _token_page(request, panel, state, status_code=422)
    row = connected.connection
    notice = f"{row.name} is connected"
    if connected.reached and connected.reached != "not checked":
        notice += f" ({connected.reached})"
    if connected.subscriptions:
        notice += f"; {len(connected.subscriptions)} webhook subscription(s) send its orders here"
    return _back(notice + ".", row.id)
