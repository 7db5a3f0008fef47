"""Sync runs and cursors.

A pull of one stream of a connection is a run: a row with its counts, started and finished. The stream's cursor
is a low watermark on the remote's updated time: everything the remote updated before it has been imported.
It is written by commit_page in the caller's transaction, the one that stores the page's records, so a crash
between pages resumes from the last committed page, never past records that were not stored. A pull asks from
the watermark minus a look-back window, because remotes commit out of order and stamp updated_at before the
change is visible; bindings make the re-read records no-ops.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from crossdock.logs import redact_text
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

DEFAULT_LOOKBACK = timedelta(minutes=10)


@dataclass(frozen=True)
class PageCounts:
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0


async def start_run(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    stream: str,
    trigger: str = "schedule",
    job_id: uuid.UUID | None = None,
) -> t.SyncRun:
    cursor = await session.get(t.SyncCursor, (connection_id, stream))
    run_id = uuid.uuid4()
    # One pull per connection and stream runs at a time (the job's lock key), so a run still marked running
    # here was cut short with its process (a SIGKILL, a lost machine): close it, naming the run that resumes it.
    await session.execute(
        update(t.SyncRun)
        .where(
            t.SyncRun.connection_id == connection_id,
            t.SyncRun.stream == stream,
            t.SyncRun.status == "running",
        )
        .values(
            status="failed",
            finished_at=utcnow(),
            error=f"interrupted: the process running it stopped; run {run_id} goes on from its last stored page",
        )
        .execution_options(synchronize_session=False)
    )
    run = t.SyncRun(
        id=run_id,
        account_id=account_id,
        connection_id=connection_id,
        stream=stream,
        trigger=trigger,
        status="running",
        job_id=job_id,
        cursor_from=cursor.watermark if cursor else None,
        pages=0,
        read=0,
        created=0,
        updated=0,
        skipped=0,
        invalid=0,
        started_at=utcnow(),
    )
    session.add(run)
    await session.flush()
    return run


async def read_from(
    session: AsyncSession, *, connection_id: uuid.UUID, stream: str, lookback: timedelta = DEFAULT_LOOKBACK
) -> datetime | None:
    """Where the next pull starts: the watermark minus the look-back window; None means from the beginning."""
    watermark = await session.scalar(
        select(t.SyncCursor.watermark).where(
            t.SyncCursor.connection_id == connection_id, t.SyncCursor.stream == stream
        )
    )
    return None if watermark is None else watermark - lookback


async def commit_page(
    session: AsyncSession, run: t.SyncRun, cursor_value: datetime | None, counts: PageCounts
) -> None:
    """Count one page into its run and move the stream's watermark to cursor_value, in the caller's
    transaction (the one holding the page's records). The watermark never moves back: a page that ends
    earlier than the stored watermark (the look-back re-read) leaves it where it is."""
    if cursor_value is not None and cursor_value.tzinfo is None:
        raise ValueError("cursor_value must be an aware datetime")
    now = utcnow()
    if cursor_value is not None:
        stmt: Any = insert_for(session, t.SyncCursor).values(
            connection_id=run.connection_id,
            stream=run.stream,
            account_id=run.account_id,
            watermark=cursor_value,
            run_id=run.id,
            updated_at=now,
        )
        table = t.SyncCursor.__table__
        later = (table.c.watermark.is_(None)) | (stmt.excluded.watermark > table.c.watermark)
        stmt = stmt.on_conflict_do_update(
            index_elements=["connection_id", "stream"],
            set_={
                "watermark": case((later, stmt.excluded.watermark), else_=table.c.watermark),
                "run_id": case((later, stmt.excluded.run_id), else_=table.c.run_id),
                "updated_at": now,
            },
        )
        await session.execute(stmt)
    watermark = (
        select(t.SyncCursor.watermark)
        .where(t.SyncCursor.connection_id == run.connection_id, t.SyncCursor.stream == run.stream)
        .scalar_subquery()
    )
    counted = (
        await session.execute(
            update(t.SyncRun)
            .where(t.SyncRun.id == run.id)
            .values(
                pages=t.SyncRun.pages + 1,
                read=t.SyncRun.read + counts.read,
                created=t.SyncRun.created + counts.created,
                updated=t.SyncRun.updated + counts.updated,
                skipped=t.SyncRun.skipped + counts.skipped,
                invalid=t.SyncRun.invalid + counts.invalid,
                cursor_to=watermark,
            )
            .returning(*(getattr(t.SyncRun, name) for name in _PROGRESS))
            .execution_options(synchronize_session=False)
        )
    ).one()
    _refresh(run, dict(zip(_PROGRESS, counted, strict=True)))


_PROGRESS = ("pages", "read", "created", "updated", "skipped", "invalid", "cursor_to")


def _refresh(run: t.SyncRun, values: dict[str, Any]) -> None:
    # The run usually comes from an earlier transaction (one per page): show the stored values on it without
    # making it dirty, so nothing is written twice if it belongs to this session.
    for name, value in values.items():
        set_committed_value(run, name, value)


async def finish_run(session: AsyncSession, run: t.SyncRun, *, error: str | None = None) -> None:
    """Close the run: succeeded, or failed with the error a user reads."""
    values = {
        "status": "failed" if error else "succeeded",
        "error": redact_text(error)[:4000] if error else None,
        "finished_at": utcnow(),
    }
    await session.execute(
        update(t.SyncRun)
        .where(t.SyncRun.id == run.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    _refresh(run, values)


async def get_cursor(session: AsyncSession, *, connection_id: uuid.UUID, stream: str) -> datetime | None:
    return await session.scalar(
        select(t.SyncCursor.watermark).where(
            t.SyncCursor.connection_id == connection_id, t.SyncCursor.stream == stream
        )
    )
