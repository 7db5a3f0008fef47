"""Key rotation: re-seal every stored secret under the vault's primary key, in small transactions.

Reads keep working throughout: a row names the key that sealed it, and both keys stay in the keyring until
every row has moved.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from crossdock.security.vault import Vault
from crossdock.store import tables as t
from crossdock.store.db import Database


@dataclass
class RotationResult:
    resealed: int
    already_current: int
    primary_key_id: str
    retired_key_ids: list[str]


async def reseal_all(db: Database, vault: Vault, batch_size: int = 200) -> RotationResult:
    """Operator task across all accounts (not tenant-facing): move every secret to the primary key."""
    resealed = current = 0
    last_id = None
    while True:
        async with db.transaction() as session:
            stmt = select(t.ConnectionSecret).order_by(t.ConnectionSecret.id).limit(batch_size)
            if last_id is not None:
                stmt = stmt.where(t.ConnectionSecret.id > last_id)
            rows = (
                (await session.scalars(stmt.with_for_update())).all()
                if db.dialect == "postgresql"
                else (await session.scalars(stmt)).all()
            )
            if not rows:
                break
            for row in rows:
                last_id = row.id
                if row.key_id == vault.primary.id:
                    current += 1
                    continue
                ids = {
                    "account_id": str(row.account_id),
                    "connection_id": str(row.connection_id),
                    "name": row.name,
                }
                plaintext = vault.open(row.key_id, row.ciphertext, **ids)
                row.key_id, row.ciphertext = vault.seal(plaintext, **ids)
                resealed += 1
    return RotationResult(resealed, current, vault.primary.id, [])
