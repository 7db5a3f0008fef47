"""Connecting and disconnecting: what happens around a connection's row.

`connect` stores the connection with its credentials in the vault, proves the credentials with one call to the
remote, and subscribes the remote's order webhooks to `/hooks/{connection_id}` when the connector takes them.
`disconnect` removes those subscriptions (best effort: a shop that uninstalled the app can no longer be asked)
and deletes the connection. The CLI, the REST API and the OAuth callbacks all go through here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.connectors.base import Capability, ConnectorSpec, WebhookSubscriptions
from crossdock.connectors.base import Field as SpecField
from crossdock.connectors.registry import get_spec
from crossdock.engine.connections import ACTIVE, open_connector
from crossdock.engine.errors import JobError
from crossdock.engine.inventory import request_push
from crossdock.engine.jobs import JobContext, RetryPolicy, job
from crossdock.engine.periodic import periodic
from crossdock.hub import Hub
from crossdock.logs import get_logger
from crossdock.security.urls import UnsafeURL, check_outbound_url
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow

log = get_logger(__name__)


class ConnectionRefused(ValueError):
    """The settings or credentials given for a new connection are incomplete or do not work."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class Connected:
    connection: t.Connection
    # What check() reached ("Shopify shop Acme (acme.myshopify.com)"), or why it could not be checked.
    reached: str = ""
    subscriptions: list[str] = field(default_factory=list)


def validate(connector: str, settings: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
    """Refuse unknown connectors, missing or unknown settings and secrets, naming the field."""
    try:
        spec = get_spec(connector)
    except KeyError as exc:
        raise ConnectionRefused(str(exc.args[0]), "connector") from None
    _refuse(spec, "setting", spec.settings, spec.missing_settings(settings), spec.unknown_settings(settings))
    _refuse(spec, "secret", spec.secrets, spec.missing_secrets(secrets), spec.unknown_secrets(secrets))


def _refuse(
    spec: ConnectorSpec, kind: str, fields: Sequence[SpecField], missing: list[str], unknown: list[str]
) -> None:
    """Refuse the first missing or unknown setting or secret, naming it and the ones the connector knows."""
    for name in missing:
        raise ConnectionRefused(f"{kind} '{name}' is required for {spec.title}", f"{kind}s.{name}")
    for name in unknown:
        listed = ", ".join(f.name for f in fields) or "none"
        raise ConnectionRefused(
            f"unknown {kind} '{name}' for {spec.title}; known {kind}s: {listed}", f"{kind}s.{name}"
        )


async def connect(
    hub: Hub,
    account_id: uuid.UUID,
    *,
    connector: str,
    name: str,
    settings: Mapping[str, Any],
    secrets: Mapping[str, str],
    base_url: str | None = None,
    check: bool = True,
) -> Connected:
    """Store a new connection and make it work. When the remote refuses the credentials the connection is not
    kept (ConnectionRefused says what the remote said); `check=False` stores it without calling the remote."""
    validate(connector, settings, secrets)
    if base_url is not None:
        # Checked here, not only at the first call: a connection stored unchecked would otherwise keep a URL
        # into the hub's own network until something uses it.
        try:
            await asyncio.to_thread(
                check_outbound_url, base_url, allow_private=hub.settings.allow_private_urls
            )
        except UnsafeURL as exc:
            raise ConnectionRefused(f"the base URL is refused: {exc}", "base_url") from None
    spec = get_spec(connector)
    async with hub.db.transaction() as session:
        row = await Tenant(session, account_id).create_connection(
            connector=connector,
            name=name,
            vault=hub.vault,
            settings=dict(settings),
            base_url=base_url,
            secrets=dict(secrets),
        )
        session.expunge(row)
    if not check or not spec.factory:
        return Connected(row, reached="not checked")
    try:
        reached, subscriptions = await check_and_subscribe(hub, account_id, row.id)
    except JobError as exc:
        await _forget(hub, account_id, row.id)
        raise ConnectionRefused(f"{spec.title} refused the connection: {exc.message}") from None
    return Connected(row, reached=reached, subscriptions=subscriptions)


async def check_and_subscribe(
    hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID
) -> tuple[str, list[str]]:
    """Prove a stored connection's credentials with one call to the remote, and subscribe the remote's order
    webhooks to its hook when the connector takes them; returns what the check reached and the subscriptions.
    Raises JobError when the remote refuses."""
    async with open_connector(hub, account_id, connection_id) as (row, runtime):
        reached = await runtime.check()
        subscriptions: list[str] = []
        takes_webhooks = Capability.ORDERS_WEBHOOK in get_spec(row.connector).capabilities
        if takes_webhooks and isinstance(runtime, WebhookSubscriptions):
            subscriptions = await runtime.subscribe(hook_address(hub, connection_id))
    return reached, subscriptions


def hook_address(hub: Hub, connection_id: uuid.UUID) -> str:
    return f"{hub.settings.public_url.rstrip('/')}/hooks/{connection_id}"


async def disconnect(hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID) -> str:
    """Remove the remote's webhook subscriptions to us, then the connection (its secrets, bindings and cursors
    go with it; orders stay). Returns a note on the subscriptions for the user."""
    note = ""
    async with hub.db.transaction() as session:
        row = await Tenant(session, account_id).get_connection(connection_id)
        spec = get_spec(row.connector)
    if Capability.ORDERS_WEBHOOK in spec.capabilities and spec.factory:
        try:
            async with open_connector(hub, account_id, connection_id, allow_unavailable=True) as (_, runtime):
                if isinstance(runtime, WebhookSubscriptions):
                    removed = await runtime.unsubscribe(hook_address(hub, connection_id))
                    note = f"removed {removed} webhook subscription(s) at {spec.title}"
        except JobError as exc:
            # The shop may have uninstalled the app already; its subscriptions went with it. Say so, go on.
            note = f"could not remove webhook subscriptions at {spec.title} ({exc.message}); they may be gone already"
            log.warning("webhook unsubscribe failed", connection_id=str(connection_id), error=exc.message)
    await _forget(hub, account_id, connection_id)
    return note


async def _forget(hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID) -> None:
    async with hub.db.transaction() as session:
        await Tenant(session, account_id).delete_connection(connection_id)


async def set_status(
    hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID, status: str, reason: str | None = None
) -> t.Connection:
    async with hub.db.transaction() as session:
        row = await Tenant(session, account_id).get_connection(connection_id)
        row.status, row.status_reason = status, reason
        await session.flush()
        if status == ACTIVE:
            await _catch_up(session, row)
        session.expunge(row)
    return row


async def update_secrets(
    hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID, secrets: Mapping[str, str]
) -> t.Connection:
    """Replace some of a connection's credentials (a rotated api_secret, a new access token); an empty value
    removes an optional one (the previous secret once a rotation is over). A connection that needed
    re-authorisation becomes active again: the new credentials are the user's answer to it."""
    async with hub.db.transaction() as session:
        tenant = Tenant(session, account_id)
        row = await tenant.get_connection(connection_id)
        spec = get_spec(row.connector)
        _refuse(spec, "secret", spec.secrets, [], spec.unknown_secrets(secrets))
        required = {f.name for f in spec.secrets if f.required}
        for name, value in secrets.items():
            if value:
                await tenant.set_secret(row, name, value, hub.vault)
            elif name in required:
                raise ConnectionRefused(
                    f"{spec.title} needs '{name}'; it cannot be removed", f"secrets.{name}"
                )
            else:
                await tenant.delete_secret(row, name)
        if row.status == "needs_reauth":
            row.status, row.status_reason = "active", None
            await session.flush()
            await _catch_up(session, row)
        await session.flush()
        session.expunge(row)
    return row


async def _catch_up(session: AsyncSession, row: t.Connection) -> None:
    """A connection back in service gets what waited while it was paused or unauthorised: stock levels changed
    meanwhile (scheduled pulls and waiting jobs find it active by themselves)."""
    await request_push(session, row.account_id, row.id)


# OAuth states ----------------------------------------------------------------------------------------------
OAUTH_PURGE_JOB = "oauth.purge"
# A used or expired state is kept this long after it expired, so a replayed callback is told "already used"
# rather than "unknown"; after that nobody is still waiting on it.
OAUTH_STATE_KEEP = timedelta(days=1)


async def purge_oauth_states(session: AsyncSession, *, now: datetime | None = None) -> int:
    cutoff = (now or utcnow()) - OAUTH_STATE_KEEP
    result = await session.execute(delete(t.OAuthState).where(t.OAuthState.expires_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


@job(OAUTH_PURGE_JOB, retry=RetryPolicy(max_attempts=3), timeout_s=120)
async def purge_oauth_states_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    async with ctx.session() as session:
        removed = await purge_oauth_states(session)
    if removed:
        log.info("purged old OAuth states", removed=removed)


periodic(OAUTH_PURGE_JOB, every_s=3600)
