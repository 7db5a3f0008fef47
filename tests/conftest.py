"""Shared fixtures: a hub on real SQLite and, when CROSSDOCK_TEST_POSTGRES_URL is set, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from crossdock.api.app import create_app
from crossdock.config import Settings
from crossdock.hub import Hub
from crossdock.store.db import Database
from crossdock.store.migrate import upgrade
from crossdock.store.tables import Base
from tests.support import Tenant, new_account

POSTGRES_URL = os.environ.get("CROSSDOCK_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run long tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="set CROSSDOCK_TEST_POSTGRES_URL to run the PostgreSQL variant")
    skip_slow = pytest.mark.skip(reason="long test: run with --runslow")
    for item in items:
        if "postgres" in item.keywords and not POSTGRES_URL:
            item.add_marker(skip_pg)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CROSSDOCK_HOME for commands run in-process (SQLite, key file), with no outside settings."""
    monkeypatch.setenv("CROSSDOCK_HOME", str(tmp_path))
    monkeypatch.delenv("CROSSDOCK_DATABASE_URL", raising=False)
    monkeypatch.delenv("CROSSDOCK_SECRET_KEY", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file made once; each test gets a copy, which is much faster than migrating again."""
    home = tmp_path_factory.mktemp("template")

    async def make() -> None:
        db = Database(Settings(home=home))
        await upgrade(db)
        async with db.engine.connect() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        await db.dispose()

    asyncio.run(make())
    return home / "crossdock.db"


@pytest.fixture(scope="session")
def postgres_migrated() -> str | None:
    if not POSTGRES_URL:
        return None

    async def make() -> None:
        db = Database(Settings(database_url=POSTGRES_URL))
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await upgrade(db)
        await db.dispose()

    asyncio.run(make())
    return POSTGRES_URL


async def _truncate(db: Database) -> None:
    names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_settings(backend: str, home: Path, template: Path, pg_url: str | None) -> Settings:
    if backend == "sqlite":
        shutil.copy(template, home / "crossdock.db")
        return Settings(home=home, allow_private_urls=True, sync_schedule=False)
    assert pg_url
    return Settings(home=home, database_url=pg_url, allow_private_urls=True, sync_schedule=False)


@pytest.fixture
async def hub(
    backend: str, tmp_path: Path, sqlite_template: Path, postgres_migrated: str | None
) -> AsyncIterator[Hub]:
    home = tmp_path / "home"
    home.mkdir()
    hub = Hub.from_settings(make_settings(backend, home, sqlite_template, postgres_migrated))
    if backend == "postgres":
        await _truncate(hub.db)
    try:
        yield hub
    finally:
        await hub.close()


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(hub)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        yield c


@pytest.fixture
async def acme(hub: Hub) -> Tenant:
    return await new_account(hub, "Acme")


@pytest.fixture
async def globex(hub: Hub) -> Tenant:
    return await new_account(hub, "Globex")
