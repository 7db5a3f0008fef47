"""REST API for operations: /api/v1/jobs and /api/v1/sync-runs. Scoped to the caller's account; maintenance
jobs that belong to no account are seen through the CLI only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select

from crossdock.api.deps import CallerDep
from crossdock.api.problems import documented
from crossdock.engine import queue
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, NotFound, decode_cursor, encode_cursor

router = APIRouter(prefix="/api/v1")
Limit = Annotated[int, Query(ge=1, le=250, description="Page size (1-250).")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page.")]
JobStatus = Literal["queued", "running", "succeeded", "failed", "dead", "cancelled"]


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str
    status: JobStatus = Field(description="failed means failed and will be retried at run_at; dead is final.")
    attempts: int
    max_attempts: int
    run_at: datetime = Field(description="When the job is (or was) due.")
    queueing_key: str | None
    lock_key: str | None
    priority: int
    order_id: uuid.UUID | None
    payload: dict[str, Any]
    last_error: str | None
    cancel_requested: bool
    worker_id: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: t.Job) -> JobOut:
        return cls(
            id=row.id,
            kind=row.kind,
            status=row.status,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            run_at=row.run_at,
            queueing_key=row.queueing_key,
            lock_key=row.lock_key,
            priority=row.priority,
            order_id=row.order_id,
            payload=row.payload,
            last_error=row.last_error,
            cancel_requested=row.cancel_requested,
            worker_id=row.worker_id,
            heartbeat_at=row.heartbeat_at,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


def _after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    data = decode_cursor(cursor)
    try:
        return datetime.fromisoformat(data["c"]), uuid.UUID(data["i"])
    except (KeyError, ValueError, TypeError):
        raise Conflict("cursor is not one this API issued; start again without it", field="cursor") from None


@router.get("/jobs", response_model=JobPage, tags=["operations"])
async def list_jobs(
    caller: CallerDep,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    order_id: uuid.UUID | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> JobPage:
    """The account's jobs, newest first."""
    rows = await queue.list_jobs(
        caller.tenant.session,
        account_id=caller.account.id,
        status=status,
        kind=kind,
        order_id=order_id,
        limit=limit + 1,
        before=_after(cursor),
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor({"c": rows[-1].created_at.isoformat(), "i": str(rows[-1].id)})
    return JobPage(items=[JobOut.of(r) for r in rows], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["operations"])
async def get_job(job_id: uuid.UUID, caller: CallerDep) -> JobOut:
    return JobOut.of(await queue.get_job(caller.tenant.session, job_id, caller.account.id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["operations"], responses=documented(409))
async def retry_job(job_id: uuid.UUID, caller: CallerDep) -> JobOut:
    """Run a dead, cancelled or failed job again now, with a fresh budget of attempts (409 otherwise)."""
    return JobOut.of(await queue.retry_job(caller.tenant.session, job_id, caller.account.id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["operations"], responses=documented(409))
async def cancel_job(job_id: uuid.UUID, caller: CallerDep) -> JobOut:
    """Cancel a waiting job; a running one gets cancel_requested and its worker stops it within seconds."""
    return JobOut.of(await queue.cancel_job(caller.tenant.session, job_id, caller.account.id))


# Sync runs -----------------------------------------------------------------------------------------------------
class SyncRunOut(BaseModel):
    id: uuid.UUID
    connection_id: uuid.UUID
    stream: str
    trigger: str
    status: Literal["running", "succeeded", "failed"]
    job_id: uuid.UUID | None
    pages: int
    read: int
    created: int
    updated: int
    skipped: int
    invalid: int
    cursor_from: datetime | None = Field(description="The stream's watermark when the run started.")
    cursor_to: datetime | None = Field(description="The watermark the run reached.")
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: t.SyncRun) -> SyncRunOut:
        return cls.model_validate(
            {name: getattr(row, name) for name in cls.model_fields},
        )


class SyncRunPage(BaseModel):
    items: list[SyncRunOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


@router.get("/sync-runs", response_model=SyncRunPage, tags=["operations"])
async def list_sync_runs(
    caller: CallerDep,
    connection_id: uuid.UUID | None = None,
    stream: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["running", "succeeded", "failed"] | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SyncRunPage:
    """The account's sync runs, newest first."""
    stmt = select(t.SyncRun).where(t.SyncRun.account_id == caller.account.id)
    if connection_id is not None:
        stmt = stmt.where(t.SyncRun.connection_id == connection_id)
    if stream is not None:
        stmt = stmt.where(t.SyncRun.stream == stream)
    if status is not None:
        stmt = stmt.where(t.SyncRun.status == status)
    after = _after(cursor)
    if after is not None:
        at, after_id = after
        stmt = stmt.where(
            or_(t.SyncRun.started_at < at, and_(t.SyncRun.started_at == at, t.SyncRun.id < after_id))
        )
    stmt = stmt.order_by(t.SyncRun.started_at.desc(), t.SyncRun.id.desc()).limit(limit + 1)
    rows = list((await caller.tenant.session.scalars(stmt)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor({"c": rows[-1].started_at.isoformat(), "i": str(rows[-1].id)})
    return SyncRunPage(items=[SyncRunOut.of(r) for r in rows], next_cursor=next_cursor)


@router.get("/sync-runs/{run_id}", response_model=SyncRunOut, tags=["operations"])
async def get_sync_run(run_id: uuid.UUID, caller: CallerDep) -> SyncRunOut:
    row = (
        await caller.tenant.session.scalars(
            select(t.SyncRun).where(t.SyncRun.id == run_id, t.SyncRun.account_id == caller.account.id)
        )
    ).first()
    if row is None:
        raise NotFound("sync run", run_id)
    return SyncRunOut.of(row)
