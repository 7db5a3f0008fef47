"""Helpers for the remote-call, rate-limit and outbound-webhook tests: an account with a connection, and a
local HTTP server on 127.0.0.1 (ephemeral port) for tests that need real sockets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from crossdock.hub import Hub
from crossdock.sandbox.common.server import run_in_thread
from crossdock.store import repo


@dataclass
class Owner:
    account_id: uuid.UUID
    connection_id: uuid.UUID


async def new_owner(hub: Hub, name: str = "Acme", connector: str = "shopify") -> Owner:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, name)
        connection = await repo.Tenant(session, account.id).create_connection(
            connector=connector, name=f"{name}'s {connector}", vault=hub.vault
        )
    return Owner(account.id, connection.id)


@contextmanager
def local_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 with an ephemeral port; yields its base URL."""
    with run_in_thread(app, host="127.0.0.1", port=0) as url:
        yield url
