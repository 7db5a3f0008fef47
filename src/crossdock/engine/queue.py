"""The job queue's state changes: claim, heartbeat, finish, recover stalled jobs, retry, cancel and discard.

Every change is one short statement guarded by the state it expects (status, worker, attempt), so two workers
or a worker and an operator never both win: the loser's statement matches no row. The partial unique indexes of
tables.Job are the final word; a unique violation means somebody else got there first.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Boolean,
    ColumnElement,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    column,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from crossdock.engine.jobs import policy_for
from crossdock.logs import redact_text
from crossdock.store import tables as t
from crossdock.store.repo import EVENTS, Conflict, NotFound, bound_columns, prefixed
from crossdock.store.types import utcnow

WAITING = t.JOB_WAITING
MAX_ERROR_CHARS = 4000


class ClaimContended(Exception):
    """Another worker claimed a job with the same lock key at the same moment; claim again."""


# An alias made once (fail's look for the same work waiting): one made per call has its columns adapted again
# each time, which was half of a claim's CPU when the claim made its own (3.1 ms a claim on an empty SQLite
# queue, 1.6 ms without).
_WAITING = aliased(t.Job, name="waiting")
_JOBS = cast(Table, t.Job.__table__)


@dataclass(frozen=True)
class Claimed:
    """A claimed job, and whether other jobs of the kinds asked for were due beside it."""

    job: t.Job
    # False when no other due job of these kinds had a free lock key as the claim ran: the claimer may wait to
    # be woken (or for its next poll) instead of claiming again only to find nothing. True can be wrong the
    # other way only (a job another claimer was taking at that moment): one claim too many, never one too few.
    # Always True on SQLite (see _claim_statement).
    more: bool


@functools.cache
def _claim_statement(dialect: str, kinds: tuple[str, ...]) -> Any:
    """The claim for one dialect and set of kinds, built once: building the expression, its cache key and its
    ORM bookkeeping cost more than the statement's own round trip, and a worker claims for every job it runs
    (and more often when idle). `now` and `claimer` are bound at each execution."""
    now = bindparam("now", type_=_JOBS.c.run_at.type)
    kinds_param = bindparam("kinds", list(kinds), type_=ARRAY(String)) if dialect == "postgresql" else None

    def due(candidate: Any) -> ColumnElement[bool]:
        """`candidate` (an alias of jobs) is waiting, due, of one of the kinds, and its lock key is free."""
        running = _JOBS.alias()
        # PostgreSQL: one array parameter, since an IN list is rendered again for every execution.
        of_kinds = (
            candidate.c.kind == any_(kinds_param) if kinds_param is not None else candidate.c.kind.in_(kinds)
        )
        lock_is_free = or_(
            candidate.c.lock_key.is_(None),
            ~exists().where(running.c.status == "running", running.c.lock_key == candidate.c.lock_key),
        )
        waiting = or_(*(candidate.c.status == status for status in WAITING))
        return and_(waiting, candidate.c.run_at <= now, of_kinds, lock_is_free)

    candidate, other = _JOBS.alias("candidate"), _JOBS.alias("other")
    pick = (
        select(candidate.c.id)
        .where(due(candidate))
        .order_by(candidate.c.priority.desc(), candidate.c.run_at, candidate.c.created_at)
        .limit(1)
    )
    if dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
        # Read in the same statement: whether the claimer should claim again at once. It is evaluated on the
        # statement's snapshot, in which the claimed row still waits, hence the id test.
        more: Any = exists().where(due(other), other.c.id != _JOBS.c.id).correlate(_JOBS).label("more")
    else:
        # SQLite renders RETURNING's columns without their tables, which a subquery on the same table cannot
        # survive; its one claimer per process claims again, and an empty claim there is in-process and cheap.
        more = true().label("more")
    stmt = (
        update(_JOBS)
        .where(_JOBS.c.id == pick.scalar_subquery(), or_(*(_JOBS.c.status == status for status in WAITING)))
        .values(
            status="running",
            attempts=_JOBS.c.attempts + 1,
            worker_id=bindparam("claimer", type_=_JOBS.c.worker_id.type),
            heartbeat_at=now,
            started_at=now,
            finished_at=None,
        )
        .returning(*_JOBS.c, more)
    )
    # The row comes back as a Job, as the ORM would load it, beside the flag.
    return select(t.Job, column("more", Boolean)).from_statement(stmt)


async def claim(
    session: AsyncSession, *, worker_id: str, kinds: Sequence[str], now: datetime | None = None
) -> Claimed | None:
    """Take the most urgent due job of one of `kinds` whose lock key is free, in one statement.

    On PostgreSQL the candidate row is locked with FOR UPDATE SKIP LOCKED, so concurrent claimers pass over
    each other's candidates instead of queueing behind them. Two claimers can still pick two different jobs
    with one lock key; the second UPDATE then violates uq_jobs_lock_key_running, and ClaimContended is raised
    after a rollback: someone else got that lock, nothing is lost. On SQLite one claimer per process and the
    database-wide write lock make the statement atomic.
    """
    if not kinds:
        return None
    stmt = _claim_statement(session.get_bind().dialect.name, tuple(kinds))
    try:
        result = await session.execute(stmt, {"now": now or utcnow(), "claimer": worker_id})
        row = result.one_or_none()
    except IntegrityError:
        await session.rollback()
        raise ClaimContended from None
    return None if row is None else Claimed(row[0], bool(row[1]))


async def heartbeat(
    session: AsyncSession, *, worker_id: str, job_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Renew the lease of this worker's running jobs. Returns (still ours, cancel requested): a job missing
    from the first set was taken from us (our lease lapsed and another worker recovered it)."""
    if not job_ids:
        return set(), set()
    rows = (
        await session.execute(
            update(t.Job)
            .where(t.Job.id.in_(job_ids), t.Job.worker_id == worker_id, t.Job.status == "running")
            .values(heartbeat_at=now or utcnow())
            .returning(t.Job.id, t.Job.cancel_requested)
            .execution_options(synchronize_session=False)
        )
    ).all()
    return {r.id for r in rows}, {r.id for r in rows if r.cancel_requested}


def _mine(job: t.Job, worker_id: str) -> list[ColumnElement[bool]]:
    # The attempt number pins the claim: after a recovery and a new claim by this same worker, the old
    # attempt's late outcome must not overwrite the new one.
    return [
        t.Job.id == job.id,
        t.Job.status == "running",
        t.Job.worker_id == worker_id,
        t.Job.attempts == job.attempts,
    ]


@dataclass(frozen=True)
class Outcome:
    """What became of an attempt: the job's new status, when it runs again, the message recorded."""

    status: str
    run_at: datetime | None = None
    message: str | None = None
    # The job was taken from this worker before it could record the outcome.
    lost: bool = False


# Built once, as the claim is: every job that runs ends here.
_SUCCEED = (
    update(_JOBS)
    .where(
        _JOBS.c.id == bindparam("job_id", type_=_JOBS.c.id.type),
        _JOBS.c.status == "running",
        _JOBS.c.worker_id == bindparam("claimer", type_=_JOBS.c.worker_id.type),
        _JOBS.c.attempts == bindparam("attempt", type_=_JOBS.c.attempts.type),
    )
    .values(
        status="succeeded",
        finished_at=bindparam("now", type_=_JOBS.c.finished_at.type),
        last_error=None,
        cancel_requested=False,
    )
)


@functools.cache
def _succeed_with_event() -> Any:
    """PostgreSQL: a job's success and its timeline event in one statement, the event inserted only if the
    success matched (the claimer still holds the job) and the job still names an order (deleting an order
    clears its jobs' order_id). Returns 1 when the success matched, 0 when the job was taken over."""
    done = _SUCCEED.returning(_JOBS.c.order_id).cte("done")
    values = bound_columns(EVENTS, "event_", order_id=done.c.order_id)
    event = (
        insert(EVENTS)
        .from_select(list(values), select(*values.values()).where(done.c.order_id.is_not(None)))
        .cte("event")
    )
    return select(func.count()).select_from(done).add_cte(event)


async def succeed_with_event(
    connection: AsyncConnection, job: t.Job, *, worker_id: str, event: dict[str, Any]
) -> Outcome:
    """`succeed`, and the success's timeline event (repo.event_row) with it, in one statement: PostgreSQL only,
    where a WITH query may write."""
    params = {"job_id": job.id, "claimer": worker_id, "attempt": job.attempts, "now": utcnow()}
    matched = (
        await connection.execute(_succeed_with_event(), {**params, **prefixed("event_", event)})
    ).scalar_one()
    return Outcome("succeeded") if matched else Outcome("succeeded", lost=True)


async def succeed(session: AsyncSession | AsyncConnection, job: t.Job, *, worker_id: str) -> Outcome:
    params = {"job_id": job.id, "claimer": worker_id, "attempt": job.attempts, "now": utcnow()}
    result = await session.execute(_SUCCEED, params)
    return Outcome("succeeded") if _rowcount(result) else Outcome("succeeded", lost=True)


async def fail(
    session: AsyncSession,
    job: t.Job,
    *,
    worker_id: str | None,
    message: str,
    permanent: bool = False,
    retry_after: float | None = None,
    cancelled: bool = False,
) -> Outcome:
    """Record a failed attempt: dead when permanent or out of attempts, cancelled when asked to, else failed
    (will retry) with the next run after the policy's backoff and no sooner than retry_after.

    worker_id None means the caller recovers a stalled job: the guard is then the heartbeat it saw stall.
    A job that would go back to waiting while the same work (its queueing key) is already waiting is cancelled
    instead, in the same statement: two waiting jobs with one key would break the index and run the work twice.
    If a job with that key is enqueued between this statement's snapshot and its write, the index refuses and
    IntegrityError propagates; the caller rolls back and records the outcome again.
    """
    now = utcnow()
    message = redact_text(message)[:MAX_ERROR_CHARS]
    if worker_id is not None:
        guard = _mine(job, worker_id)
    else:
        seen = (
            t.Job.heartbeat_at.is_(None)
            if job.heartbeat_at is None
            else t.Job.heartbeat_at == job.heartbeat_at
        )
        guard = [t.Job.id == job.id, t.Job.status == "running", t.Job.attempts == job.attempts, seen]
    if cancelled:
        status, run_at = "cancelled", None
    elif permanent or job.attempts >= job.max_attempts:
        status, run_at = "dead", None
    else:
        status = "failed"
        run_at = now + timedelta(seconds=policy_for(job.kind).delay_s(job.attempts, retry_after))
    values: dict[str, Any] = {"status": status, "last_error": message, "cancel_requested": False}
    if status == "failed":
        values["run_at"] = run_at
        if job.queueing_key is not None:
            waiting = _WAITING
            same_work_waits = exists().where(
                waiting.queueing_key == job.queueing_key, waiting.status.in_(WAITING), waiting.id != job.id
            )
            superseded = f"{message} (not retried: the same work is already queued)"
            values["status"] = case((same_work_waits, "cancelled"), else_="failed")
            values["last_error"] = case((same_work_waits, superseded), else_=message)
            values["finished_at"] = case((same_work_waits, now), else_=None)
    else:
        values["finished_at"] = now
    stmt = (
        update(t.Job)
        .where(*guard)
        .values(**values)
        .returning(t.Job.status, t.Job.last_error)
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return Outcome(status, run_at, message, lost=True)
    return Outcome(row.status, run_at if row.status == "failed" else None, row.last_error)


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def stalled(
    session: AsyncSession,
    *,
    lease_s: float,
    limit: int = 100,
    now: datetime | None = None,
    lock_key: str | None = None,
) -> list[t.Job]:
    """Running jobs whose worker has not sent a heartbeat within the lease (only those holding `lock_key`)."""
    cutoff = (now or utcnow()) - timedelta(seconds=lease_s)
    stmt = select(t.Job).where(
        t.Job.status == "running", or_(t.Job.heartbeat_at.is_(None), t.Job.heartbeat_at < cutoff)
    )
    if lock_key is not None:
        stmt = stmt.where(t.Job.lock_key == lock_key)
    stmt = stmt.order_by(t.Job.heartbeat_at).limit(limit)
    # No row locks: each recovery is a separate statement guarded by the heartbeat it saw (see fail), so of
    # several workers recovering one job at the same moment exactly one matches.
    return list((await session.scalars(stmt)).all())


# Operator actions (API and CLI) ------------------------------------------------------------------------------
async def get_job(session: AsyncSession, job_id: uuid.UUID, account_id: uuid.UUID | None) -> t.Job:
    """A job of the account (or any job when account_id is None: the operator's CLI)."""
    stmt = select(t.Job).where(t.Job.id == job_id)
    if account_id is not None:
        stmt = stmt.where(t.Job.account_id == account_id)
    row = (await session.scalars(stmt)).first()
    if row is None:
        raise NotFound("job", job_id)
    return row


async def retry_job(session: AsyncSession, job_id: uuid.UUID, account_id: uuid.UUID | None) -> t.Job:
    """Run a dead, cancelled or failed job again now, with a fresh budget of attempts."""
    row = await get_job(session, job_id, account_id)
    if row.status not in {"dead", "cancelled", "failed"}:
        raise Conflict(
            f"job {job_id} is {row.status}; only dead, cancelled or failed jobs can be retried",
            field="status",
        )
    now = utcnow()
    stmt = (
        update(t.Job)
        .where(t.Job.id == row.id, t.Job.status == row.status)
        .values(
            status="queued",
            run_at=now,
            finished_at=None,
            cancel_requested=False,
            max_attempts=row.attempts + policy_for(row.kind).max_attempts,
        )
        .execution_options(synchronize_session=False)
    )
    try:
        result = await session.execute(stmt)
    except IntegrityError:
        raise Conflict(
            f"another job with queueing key '{row.queueing_key}' is already waiting; it does the same work",
            field="queueing_key",
        ) from None
    if not _rowcount(result):
        raise Conflict(f"job {job_id} changed meanwhile; look at it again", field="status")
    await session.refresh(row)
    return row


async def cancel_job(session: AsyncSession, job_id: uuid.UUID, account_id: uuid.UUID | None) -> t.Job:
    """Cancel a waiting job at once; ask a running one to stop (its worker cancels it at the next heartbeat)."""
    row = await get_job(session, job_id, account_id)
    now = utcnow()
    if row.status in WAITING:
        stmt = (
            update(t.Job)
            .where(t.Job.id == row.id, t.Job.status == row.status)
            .values(status="cancelled", finished_at=now, last_error=_cancel_note(row.last_error))
        )
    elif row.status == "running":
        stmt = (
            update(t.Job).where(t.Job.id == row.id, t.Job.status == "running").values(cancel_requested=True)
        )
    else:
        raise Conflict(f"job {job_id} is already {row.status}; there is nothing to cancel", field="status")
    result = await session.execute(stmt.execution_options(synchronize_session=False))
    if not _rowcount(result):
        raise Conflict(f"job {job_id} changed meanwhile; look at it again", field="status")
    await session.refresh(row)
    return row


async def discard_job(session: AsyncSession, job_id: uuid.UUID, account_id: uuid.UUID | None) -> t.Job:
    """Put a dead job aside: it becomes cancelled (its last error kept in the note), so it leaves the list of
    failures; retry_job can still run it again later."""
    row = await get_job(session, job_id, account_id)
    if row.status != "dead":
        raise Conflict(f"job {job_id} is {row.status}; only dead jobs can be discarded", field="status")
    stmt = (
        update(t.Job)
        .where(t.Job.id == row.id, t.Job.status == "dead")
        .values(status="cancelled", last_error=_cancel_note(row.last_error))
        .execution_options(synchronize_session=False)
    )
    if not _rowcount(await session.execute(stmt)):
        raise Conflict(f"job {job_id} changed meanwhile; look at it again", field="status")
    await session.refresh(row)
    return row


def _cancel_note(previous: str | None) -> str:
    return f"cancelled by an operator (last error: {previous})" if previous else "cancelled by an operator"


async def list_jobs(
    session: AsyncSession,
    *,
    account_id: uuid.UUID | None,
    status: str | None = None,
    kind: str | None = None,
    order_id: uuid.UUID | None = None,
    limit: int = 50,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[t.Job]:
    """Newest first; `before` is the (created_at, id) of the last job of the previous page."""
    stmt = select(t.Job)
    if account_id is not None:
        stmt = stmt.where(t.Job.account_id == account_id)
    if status is not None:
        stmt = stmt.where(t.Job.status == status)
    if kind is not None:
        stmt = stmt.where(t.Job.kind == kind)
    if order_id is not None:
        stmt = stmt.where(t.Job.order_id == order_id)
    if before is not None:
        at, after_id = before
        stmt = stmt.where(or_(t.Job.created_at < at, and_(t.Job.created_at == at, t.Job.id < after_id)))
    stmt = stmt.order_by(t.Job.created_at.desc(), t.Job.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())
