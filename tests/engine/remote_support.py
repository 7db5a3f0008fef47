"""Helpers for the remote-call, rate-limit and outbound-webhook tests: an account with a connection, and a
local HTTP server on 127.0.0.1 (ephemeral port) for tests that need real sockets."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossdock.config import Settings
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


def strict_hub(hub: Hub, home: Path, **parts: Any) -> Hub:
    """The same hub as an operator who did not set CROSSDOCK_ALLOW_PRIVATE_URLS would run it: outbound URLs are
    checked and pinned. `parts` replaces other parts of the hub (its remote pools, say)."""
    settings = Settings(home=home, database_url=hub.settings.resolved_database_url, allow_private_urls=False)
    return dataclasses.replace(hub, settings=settings, **parts)


@contextmanager
def local_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 with an ephemeral port; yields its base URL."""
    with run_in_thread(app, host="127.0.0.1", port=0) as url:
        yield url
