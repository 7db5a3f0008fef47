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

Each column travels as one array, unnested on the server: the statement's text does not depend on the batch's
size, so it is parsed and planned once per connection (asyncpg's prepared statement cache) and compiled once by
SQLAlchemy. The rows' values come from the same functions as the session path's (`inbox._row_values`,
`jobs.job_values`), so a column added there is added here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Dialect, String, Table, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from crossdock.engine.jobs import JOBS_CHANNEL
from crossdock.store import tables as t

# The job row's own delivery, carried beside the job's columns to keep only the jobs of stored originals.
_JOB_INBOX_ID = "inbox_id"


class BatchStatement:
    """The one statement that stores a batch, for rows with these inbox and job columns (their names as in the
    tables; the inbox rows' `status` and `duplicate_of` are the statement's own)."""

    def __init__(self, dialect: Dialect, inbox_columns: Sequence[str], job_columns: Sequence[str]) -> None:
        self.inbox_columns = tuple(inbox_columns)
        self.job_columns = tuple(job_columns)
        inbox: Table = t.InboxMessage.__table__  # type: ignore[assignment]
        jobs: Table = t.Job.__table__  # type: ignore[assignment]
        params = [
            *(_array_param(f"d_{name}", inbox, name) for name in self.inbox_columns),
            *(_array_param(f"j_{name}", jobs, name) for name in self.job_columns),
            bindparam(f"j_{_JOB_INBOX_ID}", type_=ARRAY(inbox.c.id.type)),
            bindparam("channel", type_=String()),
        ]

        def unnest(prefix: str, table: Table, names: Sequence[str]) -> str:
            return ", ".join(
                f"CAST(:{prefix}{name} AS {table.c[name].type.compile(dialect=dialect)}[])" for name in names
            )

        cols = ", ".join(self.inbox_columns)
        d_cols = ", ".join(f"d.{name}" for name in self.inbox_columns)
        job_cols = ", ".join(self.job_columns)
        id_type = inbox.c.id.type.compile(dialect=dialect)
        # Only the tables' own names and types are formatted in; every value is a bound parameter.
        self.statement: TextClause = text(
            f"""
            WITH delivered AS (
                SELECT * FROM unnest({unnest("d_", inbox, self.inbox_columns)}) AS d({cols})
            ), stored AS (
                INSERT INTO {inbox.name} ({cols}, status)
                SELECT {cols}, 'received' FROM delivered
                ON CONFLICT DO NOTHING
                RETURNING id, connection_id, kind, dedup_key
            ), queued AS (
                INSERT INTO {jobs.name} ({job_cols})
                SELECT {job_cols} FROM unnest(
                    {unnest("j_", jobs, self.job_columns)}, CAST(:j_{_JOB_INBOX_ID} AS {id_type}[])
                ) AS j({job_cols}, {_JOB_INBOX_ID})
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
        self, connection: AsyncConnection, rows: Sequence[dict[str, Any]], jobs: Sequence[dict[str, Any]]
    ) -> dict[uuid.UUID, uuid.UUID]:
        """Store `rows` (inbox rows, each with its `id`) and `jobs` (one per row, in the same order) on a connection
        in autocommit mode. Returns each stored row's original (itself for an original); a row it does not name
        was left out (its original was neither stored nor found) and nothing of it is stored."""
        values: dict[str, Any] = {f"d_{name}": [row[name] for row in rows] for name in self.inbox_columns}
        values.update({f"j_{name}": [job[name] for job in jobs] for name in self.job_columns})
        values[f"j_{_JOB_INBOX_ID}"] = [row["id"] for row in rows]
        values["channel"] = JOBS_CHANNEL
        result = await connection.execute(self.statement, values)
        return {row_id: original for row_id, original in result if row_id is not None}


def _array_param(name: str, table: Table, column: str) -> Any:
    return bindparam(name, type_=ARRAY(table.c[column].type))
