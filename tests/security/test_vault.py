"""The vault: no plaintext at rest, rows bound to their place, rotation without losing a secret."""

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, text

from crossdock.hub import Hub
from crossdock.security.rotation import reseal_all
from crossdock.security.vault import Vault, VaultError, VaultKey
from crossdock.store import repo
from crossdock.store import tables as t
from tests.support import new_account

SECRET = "shpat_PLAINTEXT_MARKER_4242_do_not_leak"


async def make_connection(hub: Hub) -> tuple[uuid.UUID, uuid.UUID]:
    tenant = await new_account(hub, "Acme")
    account_id = uuid.UUID(tenant.id)
    async with hub.db.transaction() as session:
        conn = await repo.Tenant(session, account_id).create_connection(
            connector="shopify",
            name="shop",
            vault=hub.vault,
            settings={"shop": "a.myshopify.com"},
            secrets={"access_token": SECRET},
        )
    return account_id, conn.id


async def read_secret(hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID) -> str:
    async with hub.db.session() as session:
        return (await repo.Tenant(session, account_id).get_secrets(connection_id, hub.vault))["access_token"]


async def database_dump(hub: Hub) -> bytes:
    if hub.db.dialect == "sqlite":
        async with hub.db.engine.connect() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        home = hub.settings.home
        return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("crossdock.db"))
    url = hub.settings.resolved_database_url.replace("postgresql+asyncpg", "postgresql")
    try:
        return subprocess.run(["pg_dump", "--data-only", url], check=True, capture_output=True).stdout
    except FileNotFoundError:
        pytest.skip("pg_dump is not installed")


async def test_no_plaintext_secret_in_the_database(hub: Hub) -> None:
    account_id, connection_id = await make_connection(hub)
    dump = await database_dump(hub)
    assert len(dump) > 1000
    assert SECRET.encode() not in dump
    assert SECRET.encode("utf-16-le") not in dump
    assert await read_secret(hub, account_id, connection_id) == SECRET


async def test_a_sealed_value_does_not_open_in_another_row(hub: Hub) -> None:
    account_id, _connection_id = await make_connection(hub)
    async with hub.db.session() as session:
        row = (await session.scalars(select(t.ConnectionSecret))).one()
    with pytest.raises(VaultError, match="failed authentication"):
        hub.vault.open(
            row.key_id,
            row.ciphertext,
            account_id=str(account_id),
            connection_id=str(uuid.uuid4()),
            name="access_token",
        )


async def test_rotation_keeps_secrets_readable_and_retires_the_old_key(hub: Hub) -> None:
    account_id, connection_id = await make_connection(hub)
    old_key = hub.vault.primary
    hub.vault.add_primary(VaultKey.generate())
    result = await reseal_all(hub.db, hub.vault)
    assert result.resealed == 1
    hub.vault.retire_all_but_primary()

    assert await read_secret(hub, account_id, connection_id) == SECRET
    async with hub.db.session() as session:
        row = (await session.scalars(select(t.ConnectionSecret))).one()
    assert row.key_id == hub.vault.primary.id != old_key.id
    # The old key no longer opens what is stored, and it is gone from the key file.
    with pytest.raises(InvalidTag):
        aad = f"crossdock/v1/{account_id}/{connection_id}/access_token".encode()
        AESGCM(old_key.key).decrypt(row.ciphertext[:12], row.ciphertext[12:], aad)
    reloaded = Vault.load(None, hub.settings.home)
    assert [k.id for k in reloaded.keys] == [hub.vault.primary.id]
    with pytest.raises(VaultError, match="no vault key"):
        Vault([old_key]).open(
            row.key_id,
            row.ciphertext,
            account_id=str(account_id),
            connection_id=str(connection_id),
            name="access_token",
        )
    assert SECRET.encode() not in await database_dump(hub)


async def test_a_reader_with_the_old_keyring_keeps_reading_during_rotation(hub: Hub) -> None:
    account_id, connection_id = await make_connection(hub)
    reader = Vault.load(None, hub.settings.home)  # another process, loaded before the rotation
    hub.vault.add_primary(VaultKey.generate())
    await reseal_all(hub.db, hub.vault)
    async with hub.db.session() as session:
        secrets = await repo.Tenant(session, account_id).get_secrets(connection_id, reader)
    assert secrets["access_token"] == SECRET


def test_key_file_is_created_private(tmp_path: Path) -> None:
    vault = Vault.load(None, tmp_path)
    assert vault.key_file is not None
    assert os.stat(vault.key_file).st_mode & 0o777 == 0o600
    os.chmod(vault.key_file, 0o644)
    with pytest.raises(VaultError, match="chmod 600"):
        Vault.load(None, tmp_path)


def test_keys_from_the_environment(tmp_path: Path) -> None:
    first, second = VaultKey.generate(), VaultKey.generate()
    vault = Vault.load(f"{first.encode()},{second.encode()}", tmp_path)
    assert [k.id for k in vault.keys] == [first.id, second.id]
    assert not (tmp_path / "vault.keys").exists()
    with pytest.raises(VaultError, match="32 bytes"):
        Vault.load("c2hvcnQ", tmp_path)
    assert "key=" not in repr(first) and first.encode() not in repr(first)
