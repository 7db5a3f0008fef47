"""Opening a connection: its row and decrypted secrets in, a ready connector runtime out.

The engine is the only place a connector meets the store: this module reads the connection and its vault
secrets in one short transaction, hands the connector a ConnectionContext (settings, secrets, a factory for the
engine's RemoteClient, a way to keep refreshed credentials), and closes the connector when the caller is done.
No transaction is open while the connector talks to its remote.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from crossdock.connectors.base import ConnectionContext
from crossdock.connectors.registry import get_spec, load_factory
from crossdock.engine.errors import PermanentError
from crossdock.engine.http import RemoteClient
from crossdock.engine.ratelimit import RatePolicy
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.repo import Tenant

# Connection statuses. A connection that needs re-authorisation or is paused is not synced on schedule.
ACTIVE = "active"
NEEDS_REAUTH = "needs_reauth"
PAUSED = "paused"


class ConnectionUnavailable(PermanentError):
    """The connection cannot be used as it is: paused, or waiting for the user to authorise it again. Not a
    configuration error: that would mark a paused connection as needing re-authorisation."""


def unavailable_message(connection: t.Connection) -> str | None:
    """Why this connection cannot be used now, in words that say what to do; None when it can."""
    if connection.status == NEEDS_REAUTH:
        reason = f" ({connection.status_reason})" if connection.status_reason else ""
        return (
            f"connection {connection.id} ({connection.connector}) needs to be authorised again{reason}: "
            f"reconnect it, or give it new credentials with "
            f"`crossdock connections update {connection.id} --secret NAME=VALUE`"
        )
    if connection.status == PAUSED:
        return (
            f"connection {connection.id} ({connection.connector}) is paused: "
            f"resume it with `crossdock connections resume {connection.id}`"
        )
    return None


async def load_context(
    hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID, *, allow_unavailable: bool = False
) -> tuple[t.Connection, ConnectionContext]:
    """The connection row and the context its connector is built from. Raises repo.NotFound for a connection
    of another account, ConnectionUnavailable for a paused or unauthorised one (unless allowed: disconnecting
    still needs the credentials)."""
    # One read, with no transaction around it (a round trip, without a BEGIN and a COMMIT besides): every job
    # that calls a remote starts here.
    async with hub.db.autocommit_session() as session:
        connection, secrets = await Tenant(session, account_id).connection_and_secrets(
            connection_id, hub.vault
        )
        session.expunge(connection)
    problem = unavailable_message(connection)
    if problem is not None and not allow_unavailable:
        raise ConnectionUnavailable(problem)

    def make_client(
        *, default_base_url: str = "", policy: RatePolicy | None = None, **kwargs: Any
    ) -> RemoteClient:
        kwargs.setdefault("secrets", tuple(v for v in secrets.values() if v))
        return RemoteClient.for_connection(
            hub, connection, default_base_url=default_base_url, policy=policy, **kwargs
        )

    async def save_secrets(values: Mapping[str, str]) -> None:
        async with hub.db.transaction() as session:
            tenant = Tenant(session, account_id)
            row = await tenant.get_connection(connection_id)
            for name, value in values.items():
                await tenant.set_secret(row, name, value, hub.vault)
        secrets.update(values)

    ctx = ConnectionContext(
        account_id=account_id,
        connection_id=connection_id,
        connector=connection.connector,
        settings=dict(connection.settings or {}),
        secrets=secrets,
        base_url=connection.base_url,
        public_url=hub.settings.public_url,
        make_client=make_client,
        save_secrets=save_secrets,
    )
    return connection, ctx


@asynccontextmanager
async def open_connector(
    hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID, *, allow_unavailable: bool = False
) -> AsyncIterator[tuple[t.Connection, Any]]:
    """`async with open_connector(hub, account, connection) as (row, connector):` the connector's runtime,
    closed (its HTTP client too) when the block ends."""
    connection, ctx = await load_context(hub, account_id, connection_id, allow_unavailable=allow_unavailable)
    connector = load_factory(get_spec(connection.connector))(ctx)
    try:
        yield connection, connector
    finally:
        await connector.aclose()
