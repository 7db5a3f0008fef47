"""The running hub's shared parts: settings, database, vault, blob store and connections to remotes."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from crossdock.config import Settings
from crossdock.engine.http_pools import RemotePools
from crossdock.security.vault import Vault
from crossdock.store.blobs import BlobStore
from crossdock.store.db import Database

FLOW_MODULES = ("crossdock.flows.labels", "crossdock.flows.order_push")


@dataclass
class Hub:
    settings: Settings
    db: Database
    vault: Vault
    blobs: BlobStore
    # Keep-alive connections to remotes, shared by the process's RemoteClients (engine/http_pools.py).
    remote_pools: RemotePools = field(default_factory=RemotePools)

    def __post_init__(self) -> None:
        # The flows react to orders wherever orders change (the API, a worker, `crossdock sync`): importing them
        # registers their order-status hooks with the store. Imported here, where the hub is put together,
        # because the flows themselves import the engine, which imports this module.
        for name in FLOW_MODULES:
            importlib.import_module(name)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Hub:
        settings = settings or Settings()
        settings.ensure_home()
        key_text = settings.secret_key.get_secret_value() if settings.secret_key else None
        return cls(
            settings=settings,
            db=Database(settings),
            vault=Vault.load(key_text, settings.home),
            blobs=BlobStore(settings.resolved_blob_dir),
        )

    async def close(self) -> None:
        await self.remote_pools.aclose()
        await self.db.dispose()
