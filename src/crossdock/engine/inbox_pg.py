"""The inbox writer's batch on PostgreSQL: one statement, one round trip.

A batch's whole work (its originals inserted where the unique index lets them in, its redeliveries and twins
inserted as duplicates of their originals, the originals' processing jobs, and the workers' NOTIFY) is one
INSERT with data-modifying WITH queries, sent on a connection in autocommit mode. PostgreSQL runs a statement
sent outside a transaction block as a transaction of its own, committed when it succeeds and rolled back
otherwise (postgresql.org/docs/15/sql-begin.html), so a batch needs neither BEGIN nor COMMIT and still commits
all or nothing; its answer comes back only once that commit is done. The WITH queries all run, whether the main
query reads them or not, and see one snapshot: none sees the rows another inserts
(postgresql.org/docs/15/queries-with.html, 7.8.4), which is why an original inserted by this same statement is
found through `stored` rather than in the table. A NOTIFY is delivered when its transaction commits and never
if it rolls back (postgresql.org/docs/15/sql-notify.html).

Each column travels as one array, unnested on the server, or as one value where every row of the batch has the
same: the statement's text does not depend on the batch's size, only on which columns are shared, so each text
is parsed and planned once per connection (asyncpg's prepared statement cache) and compiled once by SQLAlchemy.
The rows' values come from the same functions as the session path's (`inbox._row_values`, `jobs.job_values`),
so a column added there is added here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Dialect, String, Table, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

from crossdock.engine.jobs import JOBS_CHANNEL
from crossdock.store import tables as t

if TYPE_CHECKING:
    import asyncpg

# The job row's own delivery, carried beside the job's columns to keep only the jobs of stored originals.
_JOB_INBOX_ID = "inbox_id"


class BatchStatement:
    """The one statement that stores a batch, for rows with these inbox and job columns (their names as in the
    tables; the inbox rows' `status` and `duplicate_of` are the statement's own).

    A column whose value is the same in every row of a batch (the account, the connection, the kind, the time,
    and most of a job's columns) is sent once, as a value, rather than as an array of copies: each array element
    costs the driver and SQLAlchemy's type processing as much as a whole value, and a webhook's batch is a few
    rows. The statement's text depends only on which columns are shared, so a handful of texts are prepared, each
    once per connection; the ids are always per row, so every batch unnests at least one array."""

    # Statements kept, by the columns their batches share; a batch whose shared columns are new past this many
    # starts the collection again (in practice there are a few).
    MAX_STATEMENTS = 32

    def __init__(self, dialect: Dialect, inbox_columns: Sequence[str], job_columns: Sequence[str]) -> None:
        self.dialect = dialect
        self.inbox_columns = tuple(inbox_columns)
        self.job_columns = tuple(job_columns)
        self._statements: dict[tuple[frozenset[str], frozenset[str]], _Prepared] = {}

    def statement(self, shared_inbox: frozenset[str], shared_jobs: frozenset[str]) -> _Prepared:
        """The statement for batches whose rows share the values of these inbox and job columns."""
        key = (shared_inbox, shared_jobs)
        found = self._statements.get(key)
        if found is None:
            if len(self._statements) >= self.MAX_STATEMENTS:
                self._statements.clear()
            found = self._statements[key] = _Prepared.of(self._build(shared_inbox, shared_jobs), self.dialect)
        return found

    def _build(self, shared_inbox: frozenset[str], shared_jobs: frozenset[str]) -> TextClause:
        dialect = self.dialect
        inbox: Table = t.InboxMessage.__table__  # type: ignore[assignment]
        jobs: Table = t.Job.__table__  # type: ignore[assignment]
        params: list[Any] = [bindparam("channel", type_=String())]

        def rows(
            prefix: str, table: Table, names: Sequence[str], shared: frozenset[str], extra: str = ""
        ) -> str:
            """A SELECT of one row per array element: the per-row columns unnested, the shared ones as values."""
            per_row, arrays, values = [], [], []
            for name in names:
                type_ = table.c[name].type
                sql_type = type_.compile(dialect=dialect)
                if name in shared:
                    params.append(bindparam(f"{prefix}{name}", type_=type_))
                    values.append(f", CAST(:{prefix}{name} AS {sql_type}) AS {name}")
                else:
                    params.append(bindparam(f"{prefix}{name}", type_=ARRAY(type_)))
                    arrays.append(f"CAST(:{prefix}{name} AS {sql_type}[])")
                    per_row.append(name)
            if extra:
                params.append(bindparam(f"{prefix}{extra}", type_=ARRAY(inbox.c.id.type)))
                arrays.append(f"CAST(:{prefix}{extra} AS {inbox.c.id.type.compile(dialect=dialect)}[])")
                per_row.append(extra)
            return f"SELECT u.*{''.join(values)} FROM unnest({', '.join(arrays)}) AS u({', '.join(per_row)})"  # noqa: S608 - names and types only

        cols = ", ".join(self.inbox_columns)
        d_cols = ", ".join(f"d.{name}" for name in self.inbox_columns)
        job_cols = ", ".join(self.job_columns)
        delivered = rows("d_", inbox, self.inbox_columns, shared_inbox)
        queued = rows("j_", jobs, self.job_columns, shared_jobs, extra=_JOB_INBOX_ID)
        # Only the tables' own names and types are formatted in; every value is a bound parameter.
        return text(
            f"""
            WITH delivered AS (
                {delivered}
            ), stored AS (
                INSERT INTO {inbox.name} ({cols}, status)
                SELECT {cols}, 'received' FROM delivered
                ON CONFLICT DO NOTHING
                RETURNING id, connection_id, kind, dedup_key
            ), queued AS (
                INSERT INTO {jobs.name} ({job_cols})
                SELECT {job_cols} FROM ({queued}) AS j
                WHERE j.{_JOB_INBOX_ID} IN (SELECT id FROM stored)
                ON CONFLICT DO NOTHING
                RETURNING id
            ), refused AS (
                SELECT * FROM delivered WHERE id NOT IN (SELECT id FROM stored)
            ), originals AS (
                SELECT id, connection_id, kind, dedup_key FROM stored
                UNION ALL
                SELECT i.id, i.connection_id, i.kind, i.dedup_key
                FROM {inbox.name} AS i
                JOIN (SELECT DISTINCT connection_id, kind, dedup_key FROM refused) AS k
                    USING (connection_id, kind, dedup_key)
                WHERE i.duplicate_of IS NULL
            ), duplicates AS (
                INSERT INTO {inbox.name} ({cols}, status, duplicate_of)
                SELECT {d_cols}, 'duplicate', o.id
                FROM refused AS d JOIN originals AS o USING (connection_id, kind, dedup_key)
                RETURNING id, duplicate_of
            )
            SELECT id, id AS original_id FROM stored
            UNION ALL
            SELECT id, duplicate_of FROM duplicates
            UNION ALL
            SELECT NULL, NULL FROM (SELECT pg_notify(:channel, '')) AS notified
            WHERE EXISTS (SELECT FROM queued)
            """  # noqa: S608
        ).bindparams(*params)

    async def execute(
        self, driver: asyncpg.Connection, rows: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]]
    ) -> dict[uuid.UUID, uuid.UUID]:
        """Store `rows` (inbox rows, each with its `id`) and `jobs` (one per row, in the same order) on asyncpg's
        connection (`store.db.driver_connection`), outside a transaction block. Returns each stored row's
        original (itself for an original); a row it does not name was left out (its original was neither stored
        nor found) and nothing of it is stored."""
        values: dict[str, Any] = {"channel": JOBS_CHANNEL}
        shared_inbox = split_columns("d_", self.inbox_columns, rows, values)
        shared_jobs = split_columns("j_", self.job_columns, jobs, values)
        values[f"j_{_JOB_INBOX_ID}"] = [row["id"] for row in rows]
        statement = self.statement(shared_inbox, shared_jobs)
        # The driver's own call: the statement compiled once by SQLAlchemy, its values processed by the columns'
        # types as SQLAlchemy would, sent by asyncpg (which prepares it once per connection). SQLAlchemy's
        # execute around it cost a batch of a few webhooks about a fifth of its CPU (bench/webhook_ingest.py).
        # An error is asyncpg's own, not wrapped: the writer gives up the connection on any error.
        records = await driver.fetch(statement.sql, *statement.arguments(values))
        return {row_id: original for row_id, original in records if row_id is not None}


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled for the driver: its text with positional parameters, and for each parameter in order
    its name and its type's bind processor (None where the driver takes the value as it is)."""

    sql: str
    parameters: tuple[tuple[str, Callable[[Any], Any] | None], ...]

    @classmethod
    def of(cls, statement: TextClause, dialect: Dialect) -> _Prepared:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name} takes named parameters; this statement is for positional ones")
        parameters = tuple(
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup
        )
        return cls(compiled.string, parameters)

    def arguments(self, values: dict[str, Any]) -> list[Any]:
        return [
            values[name] if process is None else process(values[name]) for name, process in self.parameters
        ]


def split_columns(
    prefix: str, names: Sequence[str], rows: Sequence[dict[str, Any]], values: dict[str, Any]
) -> frozenset[str]:
    """Puts each column's values into `values` (one value where every row has the same, else the list of them)
    and returns the names of the shared ones. Ids are per row whatever the batch."""
    shared = []
    for name in names:
        column = [row[name] for row in rows]
        first = column[0]
        if name != "id" and all(value == first for value in column):
            shared.append(name)
            values[prefix + name] = first
        else:
            values[prefix + name] = column
    return frozenset(shared)
