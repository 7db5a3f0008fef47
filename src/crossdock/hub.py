"""The running hub's shared parts: settings, database, vault and blob store."""

from __future__ import annotations

from dataclasses import dataclass

from crossdock.config import Settings
from crossdock.security.vault import Vault
from crossdock.store.blobs import BlobStore
from crossdock.store.db import Database


@dataclass
class Hub:
    settings: Settings
    db: Database
    vault: Vault
    blobs: BlobStore

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
        await self.db.dispose()
