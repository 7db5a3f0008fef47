"""INSERT ... ON CONFLICT for both databases: the unique index decides, never a check-then-insert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Any) -> Insert:
    return insert_for_dialect(session.get_bind().dialect.name, table)


def insert_for_dialect(dialect: str, table: Any) -> Insert:
    return pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)


async def upsert(
    session: AsyncSession,
    table: Any,
    values: dict[str, Any],
    *,
    conflict: Sequence[str],
    update: Sequence[str],
) -> None:
    stmt: Any = insert_for(session, table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(conflict), set_={c: stmt.excluded[c] for c in update}
    )
    await session.execute(stmt)
