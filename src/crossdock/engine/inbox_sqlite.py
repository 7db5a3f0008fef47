"""The inbox writer's batch on SQLite: one transaction of a few statements, each one call into the driver.

aiosqlite runs every call on the database in a thread of its own and hands the answer back to the event loop:
each call is two thread switches. Through SQLAlchemy a statement is several calls (a cursor made, the statement
run, its rows fetched, the cursor closed), and a batch of eight webhooks took nine calls, whose switches and
Python cost the server more than SQLite's own work did (bench/webhook_ingest.py; perf put 4 % of the server's
CPU in SQLite itself). Here each statement, its rows in one multi-row VALUES list, is one `execute_fetchall`,
and the commit one more; a batch of originals is three calls and the pool's reset of the connection a fourth:

1. the rows, inserted where the unique index lets them in (`ON CONFLICT DO NOTHING ... RETURNING id`);
2. only if some were refused (redeliveries, twins in the batch): their originals, read in the same transaction,
   which sees the rows it has just inserted, and the refused rows inserted as duplicates of them;
3. the processing jobs of the rows stored as originals;

then the commit. The driver begins the transaction before the first INSERT (the sqlite3 module's implicit
BEGIN, docs.python.org/3.11/library/sqlite3.html, "Transaction control"); on a connection left in autocommit
mode the batch begins it itself. Values go through the columns' own bind processors, as SQLAlchemy would send
them; the rows' values come from the same functions as the session path's (`inbox._row_values`,
`jobs.job_values`), so a column added there is added here.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Dialect, Table

from crossdock.store import tables as t

if TYPE_CHECKING:
    import aiosqlite

_INBOX: Table = t.InboxMessage.__table__  # type: ignore[assignment]
_JOBS: Table = t.Job.__table__  # type: ignore[assignment]

# SQLite takes 32,766 values in a statement by default since 3.32.0 (sqlite.org/limits.html,
# SQLITE_MAX_VARIABLE_NUMBER; a build may allow more, Debian's 250,000), and the batch needs 3.35.0 anyway for
# RETURNING (sqlite.org/lang_returning.html). A batch is cut into statements of at most this many values.
_MAX_VALUES = 32_000
# The inbox's unique index (uq_inbox_dedup), which decides which delivery is an original.
_KEY = ("connection_id", "kind", "dedup_key")


class SqliteBatch:
    """The statements that store a batch, for rows with these inbox and job columns (their names as in the
    tables; the inbox rows' `status` and `duplicate_of` are the batch's own)."""

    def __init__(self, dialect: Dialect, inbox_columns: Sequence[str], job_columns: Sequence[str]) -> None:
        self.inbox_columns = tuple(inbox_columns)
        self.job_columns = tuple(job_columns)
        self._inbox_binds = _processors(_INBOX, self.inbox_columns, dialect)
        self._job_binds = _processors(_JOBS, self.job_columns, dialect)
        self._key_binds = _processors(_INBOX, _KEY, dialect)
        id_type = _INBOX.c.id.type.dialect_impl(dialect)
        self._id_bind: Callable[[Any], Any] = id_type.bind_processor(dialect) or _same
        self._id_result: Callable[[Any], Any] = id_type.result_processor(dialect, None) or _same

    async def execute(
        self, driver: aiosqlite.Connection, rows: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]]
    ) -> dict[uuid.UUID, uuid.UUID]:
        """As `inbox_pg.BatchStatement.execute` (the same arguments and answer), on aiosqlite's connection
        (`store.db.driver_connection`), in a transaction committed when this returns."""
        try:
            if driver.isolation_level is None:  # autocommit: no implicit BEGIN before the first INSERT
                await driver.execute_fetchall("BEGIN")
            originals = await self._store(driver, rows, jobs)
            await driver.commit()
        except BaseException:
            if driver.in_transaction:
                await driver.rollback()
            raise
        return originals

    async def _store(
        self, driver: aiosqlite.Connection, rows: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]]
    ) -> dict[uuid.UUID, uuid.UUID]:
        ids = [self._id_bind(row["id"]) for row in rows]
        values = [_values(row, self.inbox_columns, self._inbox_binds) for row in rows]
        inserted: set[Any] = set()
        tail = "ON CONFLICT DO NOTHING RETURNING id"
        for chunk in _chunks(values, len(self.inbox_columns)):
            sql = _insert_sql(_INBOX.name, self.inbox_columns, "'received'", len(chunk), tail)
            inserted.update(found for (found,) in await driver.execute_fetchall(sql, _flat(chunk)))
        originals = {
            row["id"]: row["id"] for row, row_id in zip(rows, ids, strict=True) if row_id in inserted
        }

        refused = [
            (row, row_values)
            for row, row_id, row_values in zip(rows, ids, values, strict=True)
            if row_id not in inserted
        ]
        if refused:
            found = await self._originals(driver, [self._key(row) for row, _ in refused])
            duplicates = []
            for row, row_values in refused:
                original = found.get(self._key(row))
                if original is not None:
                    duplicates.append([*row_values, self._id_bind(original)])
                    originals[row["id"]] = original
            columns = (*self.inbox_columns, "duplicate_of")
            for chunk in _chunks(duplicates, len(columns)):
                sql = _insert_sql(_INBOX.name, columns, "'duplicate'", len(chunk), "")
                await driver.execute_fetchall(sql, _flat(chunk))

        queued = [
            _values(job, self.job_columns, self._job_binds)
            for row, job in zip(rows, jobs, strict=True)
            if originals.get(row["id"]) == row["id"]
        ]
        for chunk in _chunks(queued, len(self.job_columns)):
            sql = _insert_sql(_JOBS.name, self.job_columns, None, len(chunk), "ON CONFLICT DO NOTHING")
            await driver.execute_fetchall(sql, _flat(chunk))
        return originals

    def _key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """A row's (connection, kind, dedup key), its unique index's key, as stored."""
        return tuple(bind(row[name]) for name, bind in zip(_KEY, self._key_binds, strict=True))

    async def _originals(
        self, driver: aiosqlite.Connection, keys: list[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], uuid.UUID]:
        """The stored originals of these keys (as stored), which this transaction's own inserts are among."""
        found: dict[tuple[Any, ...], uuid.UUID] = {}
        for chunk in _chunks(list(set(keys)), len(_KEY)):
            for row_id, *key in await driver.execute_fetchall(_originals_sql(len(chunk)), _flat(chunk)):
                found[tuple(key)] = self._id_result(row_id)
        return found


def _same(value: Any) -> Any:
    return value


def _processors(table: Table, names: Sequence[str], dialect: Dialect) -> tuple[Callable[[Any], Any], ...]:
    return tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) or _same for name in names)


def _values(row: dict[str, Any], names: Sequence[str], binds: Sequence[Callable[[Any], Any]]) -> list[Any]:
    return [bind(row[name]) for name, bind in zip(names, binds, strict=True)]


def _chunks(items: list[Any], width: int) -> list[list[Any]]:
    size = max(1, _MAX_VALUES // width)
    return [items[start : start + size] for start in range(0, len(items), size)]


def _flat(rows: list[list[Any]] | list[tuple[Any, ...]]) -> list[Any]:
    return [value for row in rows for value in row]


@functools.lru_cache(maxsize=64)
def _insert_sql(table: str, names: tuple[str, ...], status: str | None, count: int, tail: str) -> str:
    """INSERT of `count` rows of these columns (and `status`, a literal, where given)."""
    placeholders = ", ".join(["?"] * len(names))
    row = f"({placeholders}, {status})" if status else f"({placeholders})"
    columns = ", ".join((*names, "status") if status else names)
    return f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * count)} {tail}"  # noqa: S608 - names only


@functools.lru_cache(maxsize=64)
def _originals_sql(count: int) -> str:
    keys = ", ".join(["(?, ?, ?)"] * count)
    return (
        f"SELECT id, connection_id, kind, dedup_key FROM {_INBOX.name} "  # noqa: S608 - names only
        f"WHERE duplicate_of IS NULL AND (connection_id, kind, dedup_key) IN (VALUES {keys})"
    )
