"""What an inbound hook needs to know about its connection, kept in memory for a few seconds.

Every delivery to /hooks/{connection_id} needs the connection's connector and account and the secrets that
authenticate it (Shopify's app secret, Shippo's webhook token). Reading two tables and decrypting the secrets
for each delivery cost more than storing it, so they are kept per connection for `ttl_s` seconds.

What keeps the copy honest:
- a change to a connection's secrets, or its removal, committed by this process (the API, the panel, OAuth)
  makes every copy stale at once (store.repo.secrets_generation);
- a change made by another process (`crossdock connections update` from a shell) is seen within `ttl_s`; and
  a delivery that the copy fails to authenticate is checked once more against freshly read secrets (at most
  once a second per connection, so forged deliveries cannot turn every request into reads), so a new secret
  is accepted at once;
- a delivery for a connection removed meanwhile fails on the inbox's foreign key and is answered 404.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t


@dataclass(frozen=True)
class HookKeys:
    connection_id: uuid.UUID
    account_id: uuid.UUID
    connector: str
    secrets: Mapping[str, str] = field(repr=False)
    loaded_at: float = field(repr=False)
    generation: int = field(repr=False)


class HookKeyCache:
    """Connections' hook keys by id, for one server process. `names_for(connector)` names the secrets a
    connector's hooks need; a connector that takes no hooks still gets an entry (with no secrets), so the route
    can say so."""

    def __init__(
        self,
        hub: Hub,
        names_for: Callable[[str], Sequence[str]],
        *,
        ttl_s: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.names_for = names_for
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[uuid.UUID, HookKeys] = OrderedDict()

    async def get(self, connection_id: uuid.UUID) -> HookKeys | None:
        """The connection's keys (None: no such connection), from memory while they are fresh."""
        entry = self._entries.get(connection_id)
        if entry is not None and self._fresh(entry):
            return entry
        return await self._load(connection_id)

    async def recheck(self, keys: HookKeys) -> HookKeys | None:
        """Keys read again after they failed to authenticate a delivery, unless they were read within the last
        second (then None: there is nothing newer to try)."""
        if self.clock() - keys.loaded_at < 1.0:
            return None
        return await self._load(keys.connection_id)

    def _fresh(self, entry: HookKeys) -> bool:
        return entry.generation == repo.secrets_generation() and self.clock() - entry.loaded_at < self.ttl_s

    async def _load(self, connection_id: uuid.UUID) -> HookKeys | None:
        generation, loaded_at = repo.secrets_generation(), self.clock()
        async with self.hub.db.session() as session:
            row = (
                await session.execute(
                    select(t.Connection.account_id, t.Connection.connector).where(
                        t.Connection.id == connection_id
                    )
                )
            ).first()
            if row is None:
                self._entries.pop(connection_id, None)
                return None
            names = list(self.names_for(row.connector))
            secrets = (
                await repo.Tenant(session, row.account_id).get_secrets(connection_id, self.hub.vault, names)
                if names
                else {}
            )
        keys = HookKeys(connection_id, row.account_id, row.connector, secrets, loaded_at, generation)
        if generation == repo.secrets_generation():  # a change committed while reading: not kept
            self._entries[connection_id] = keys
            self._entries.move_to_end(connection_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return keys
