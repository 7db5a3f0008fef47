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
    moved, kept = await _reseal_webhook_secrets(db, vault, batch_size)
    return RotationResult(resealed + moved, current + kept, vault.primary.id, [])


async def _reseal_webhook_secrets(db: Database, vault: Vault, batch_size: int) -> tuple[int, int]:
    """Outbound webhook signing secrets (current and, during its day of grace, previous) are vault-sealed too."""
    resealed = current = 0
    last_id = None
    while True:
        async with db.transaction() as session:
            stmt = select(t.WebhookEndpoint).order_by(t.WebhookEndpoint.id).limit(batch_size)
            if last_id is not None:
                stmt = stmt.where(t.WebhookEndpoint.id > last_id)
            if db.dialect == "postgresql":
                stmt = stmt.with_for_update()
            rows = (await session.scalars(stmt)).all()
            if not rows:
                return resealed, current
            for row in rows:
                last_id = row.id
                ids = {"account_id": str(row.account_id), "connection_id": str(row.id)}
                if row.secret_key_id == vault.primary.id:
                    current += 1
                else:
                    plain = vault.open(row.secret_key_id, row.secret_ciphertext, name="webhook_secret", **ids)
                    row.secret_key_id, row.secret_ciphertext = vault.seal(plain, name="webhook_secret", **ids)
                    resealed += 1
                previous_key, previous = row.previous_secret_key_id, row.previous_secret_ciphertext
                if previous_key is not None and previous is not None and previous_key != vault.primary.id:
                    name = "webhook_previous_secret"
                    plain = vault.open(previous_key, previous, name=name, **ids)
                    row.previous_secret_key_id, row.previous_secret_ciphertext = vault.seal(
                        plain, name=name, **ids
                    )
