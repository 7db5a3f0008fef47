"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from crossdock.hub import Hub
from crossdock.store.migrate import head_revision
from crossdock.store.tables import Base


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(hub: Hub) -> None:
    async with hub.db.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == [], "a model changed without a migration (or the other way round)"


async def test_the_database_is_at_the_newest_revision(hub: Hub) -> None:
    async with hub.db.engine.connect() as connection:
        current = await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    assert current == head_revision()
