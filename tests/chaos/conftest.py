"""The chaos tests' database: None (a SQLite file in the rig's home) or, for the PostgreSQL variant, a database
of the rig's own on the server of CROSSDOCK_TEST_POSTGRES_URL, made for the test and dropped after it (the
shared test database is left alone: its schema is reset by other tests)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.conftest import BACKENDS, POSTGRES_URL
from tests.rig import postgres_database


@pytest.fixture(params=BACKENDS)
async def rig_database(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    assert POSTGRES_URL
    async with postgres_database(POSTGRES_URL) as url:
        yield url


def report(scenario: str, **figures: object) -> None:
    """One line of figures for RELIABILITY.md, on stdout (pytest -s) and appended to CROSSDOCK_CHAOS_REPORT if
    set."""
    line = f"chaos {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    print(line)
    path = os.environ.get("CROSSDOCK_CHAOS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")
