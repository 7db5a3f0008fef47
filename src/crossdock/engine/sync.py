"""Order pulls from channels: backfills and scheduled incremental syncs, page by page, resumable.

A pull reads one window of the remote's updated time, [since, until), fixed when the pull starts:
- since: the stream's watermark minus the look-back window (remotes commit out of order), or for a connection's
  first pull `sync_backfill_days` back, or the date asked for (`crossdock sync --since`);
- until: now, less the connector's `window_lag` (Amazon refuses an end later than two minutes ago).
Each page is imported in one transaction together with the stream's resume state (the window and where the next
page starts), so a pull cut short by a crash, a deploy or a rate limit resumes at the first page not stored:
no gap, and the bindings make any page read twice change nothing. When the window is done the watermark moves
to `until` in the transaction of the last page. Records that do not map are counted `invalid`, quarantined in
the inbox with their reason (and on the order's timeline when the order exists), and never stop the pull.

One pull per connection at a time: the job's lock key. Scheduled pulls come from `sync.schedule`, which every
SCHEDULE_TICK_S seconds enqueues a pull for each active channel connection whose last one is older than
`sync_interval_s`; a waiting pull is never queued twice (its queueing key).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.connectors.base import Capability, Mapped, OrdersPull, Page, PullWindow
from crossdock.connectors.registry import SPECS, get_spec
from crossdock.engine import (
    pulled_orders,  # noqa: F401  (processes the records quarantined here, retried)
    syncruns,
)
from crossdock.engine.connections import ACTIVE, NEEDS_REAUTH, open_connector
from crossdock.engine.errors import ConfigurationError, JobError
from crossdock.engine.importer import ImportResult, Outcome, import_orders
from crossdock.engine.jobs import JobContext, RetryPolicy, enqueue, job
from crossdock.engine.periodic import periodic
from crossdock.hub import Hub
from crossdock.logs import get_logger, redact_text
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for

log = get_logger(__name__)

STREAM = "orders"
SYNC_JOB = "sync.orders"
SCHEDULE_JOB = "sync.schedule"
SCHEDULE_TICK_S = 10.0

Progress = Callable[[t.SyncRun], None]


def sync_key(connection_id: uuid.UUID) -> str:
    return f"sync:{STREAM}:{connection_id}"


async def request_sync(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    trigger: str = "manual",
    since: datetime | None = None,
    priority: int = 0,
) -> uuid.UUID | None:
    """Enqueue a pull of the connection's orders in the caller's transaction; None when one is already waiting."""
    payload: dict[str, Any] = {"connection_id": str(connection_id), "trigger": trigger}
    if since is not None:
        if since.tzinfo is None:
            raise ValueError("since must be an aware datetime")
        payload["since"] = since.isoformat()
    key = sync_key(connection_id)
    return await enqueue(
        session,
        account_id=account_id,
        kind=SYNC_JOB,
        payload=payload,
        queueing_key=key,
        lock_key=key,
        priority=priority,
    )


@dataclass
class _Plan:
    window: PullWindow
    page: dict[str, Any] | None
    resumed: bool


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def _plan(
    session: AsyncSession,
    hub: Hub,
    connection_id: uuid.UUID,
    *,
    since: datetime | None,
    lag: timedelta,
) -> _Plan:
    cursor = await session.get(t.SyncCursor, (connection_id, STREAM))
    pending = cursor.resume if cursor is not None else None
    now = utcnow()
    if pending and (since is None or _when(pending.get("since")) == since):
        window = PullWindow(_when(pending.get("since")), _when(pending["until"]) or now - lag)
        return _Plan(window, pending.get("page"), resumed=True)
    if since is None:
        watermark = cursor.watermark if cursor is not None else None
        if watermark is not None:
            since = watermark - timedelta(seconds=hub.settings.sync_lookback_s)
        else:
            since = now - timedelta(days=hub.settings.sync_backfill_days)
    until = now - lag
    if since >= until:
        since = until - timedelta(seconds=hub.settings.sync_lookback_s or 1)
    return _Plan(PullWindow(since, until), None, resumed=False)


async def _save_resume(
    session: AsyncSession, account_id: uuid.UUID, connection_id: uuid.UUID, resume: dict[str, Any] | None
) -> None:
    stmt: Any = insert_for(session, t.SyncCursor).values(
        connection_id=connection_id,
        stream=STREAM,
        account_id=account_id,
        watermark=None,
        resume=resume,
        updated_at=utcnow(),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["connection_id", "stream"], set_={"resume": stmt.excluded.resume}
    )
    await session.execute(stmt)


def _resume_state(window: PullWindow, page: dict[str, Any] | None) -> dict[str, Any]:
    return {"since": _iso(window.since), "until": _iso(window.until), "page": page}


async def _quarantine(
    session: AsyncSession,
    connector: str,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    mapped: Mapped,
    result: ImportResult,
) -> None:
    """Keep a pulled record that did not map, whole, with its reason: the Failures list shows it and a fixed
    mapping can take it up again. The same record read again (look-back) is stored once."""
    body = json.dumps(mapped.raw, default=str, ensure_ascii=False).encode()
    ident = mapped.external_id or hashlib.sha256(body).hexdigest()[:32]
    version = mapped.external_version or hashlib.sha256(body).hexdigest()[:16]
    stmt: Any = insert_for(session, t.InboxMessage).values(
        id=uuid.uuid4(),
        account_id=account_id,
        connection_id=connection_id,
        kind=f"{connector}.order",
        dedup_key=f"pull:{ident}:{version}"[:255],
        headers={"x-crossdock-source": "pull"},
        body=body,
        status="quarantined",
        order_id=result.order_id,
        error=redact_text(result.reason or result.summary)[:4000],
        received_at=utcnow(),
        processed_at=utcnow(),
    )
    await session.execute(stmt.on_conflict_do_nothing())


async def _store_page(
    session: AsyncSession,
    run: t.SyncRun,
    window: PullWindow,
    connection: t.Connection,
    source: str,
    page: Page,
) -> None:
    """One page's orders imported (those that do not map quarantined), counted on the run, and the resume
    state moved past it, all in the caller's transaction."""
    tenant = Tenant(session, connection.account_id)
    tally = {outcome: 0 for outcome in Outcome}
    results = await import_orders(session, tenant, connection.id, page.records, source=source)
    for mapped, result in zip(page.records, results, strict=True):
        tally[result.outcome] += 1
        if result.outcome is Outcome.QUARANTINED:
            await _quarantine(
                session, connection.connector, connection.account_id, connection.id, mapped, result
            )
    unidentified = max((page.raw_count or 0) - len(page.records), 0)
    counts = syncruns.PageCounts(
        read=len(page.records) + unidentified,
        created=tally[Outcome.CREATED],
        updated=tally[Outcome.UPDATED],
        skipped=tally[Outcome.SKIPPED],
        invalid=tally[Outcome.QUARANTINED] + unidentified,
    )
    done = page.resume is None
    await syncruns.commit_page(session, run, window.until if done else None, counts)
    resume = None if done else _resume_state(window, page.resume)
    await _save_resume(session, connection.account_id, connection.id, resume)


async def run_pull(
    hub: Hub,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    *,
    trigger: str = "manual",
    since: datetime | None = None,
    job_id: uuid.UUID | None = None,
    progress: Progress | None = None,
) -> t.SyncRun:
    """Pull the connection's orders (see the module doc) and return the finished run. A remote failure closes
    the run as failed, keeps the resume state, and raises the engine's error for the job to retry or stop."""
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be an aware datetime")
    async with open_connector(hub, account_id, connection_id) as (connection, connector):
        spec = get_spec(connection.connector)
        if Capability.ORDERS_PULL not in spec.capabilities or not isinstance(connector, OrdersPull):
            raise ConfigurationError(f"{spec.title} connections do not pull orders")
        lag = getattr(connector, "window_lag", timedelta(0))
        async with hub.db.transaction() as session:
            plan = await _plan(session, hub, connection_id, since=since, lag=lag)
            run = await syncruns.start_run(
                session,
                account_id=account_id,
                connection_id=connection_id,
                stream=STREAM,
                trigger=trigger,
                job_id=job_id,
            )
            run.cursor_from = plan.window.since
            await _save_resume(session, account_id, connection_id, _resume_state(plan.window, plan.page))
        log.info(
            "pull started",
            connection_id=str(connection_id),
            since=_iso(plan.window.since),
            until=_iso(plan.window.until),
            resumed=plan.resumed,
        )
        if progress is not None:
            progress(run)
        try:
            # Closed as soon as the loop ends, by an error too: that also ends a request sent ahead.
            pages = connector.pull_orders(plan.window, plan.page)
            async with aclosing(pages):
                async for page in pages:
                    async with hub.db.transaction() as session:
                        await _store_page(session, run, plan.window, connection, spec.title, page)
                    if progress is not None:
                        progress(run)
        except BaseException as exc:
            message = exc.message if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
            async with hub.db.transaction() as session:
                await syncruns.finish_run(session, run, error=message)
                if isinstance(exc, ConfigurationError):
                    # The connector's words say what to do (reinstall, reconnect); a scheduled pull stops here
                    # until the user acts, instead of retrying into the same refusal.
                    row = await Tenant(session, account_id).get_connection(connection_id)
                    row.status, row.status_reason = NEEDS_REAUTH, redact_text(message)[:2000]
            raise
        async with hub.db.transaction() as session:
            if run.pages == 0:
                # A remote that yielded no page at all (an empty window) still finishes the window.
                await _save_resume(session, account_id, connection_id, None)
                await syncruns.commit_page(session, run, plan.window.until, syncruns.PageCounts())
            await syncruns.finish_run(session, run)
        if progress is not None:
            progress(run)
        log.info(
            "pull finished",
            connection_id=str(connection_id),
            pages=run.pages,
            read=run.read,
            created=run.created,
            updated=run.updated,
            skipped=run.skipped,
            invalid=run.invalid,
        )
        return run


@job(SYNC_JOB, retry=RetryPolicy(max_attempts=10, base_s=5.0, cap_s=900.0), timeout_s=6 * 3600)
async def sync_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    if ctx.account_id is None:
        raise ConfigurationError("a sync job must belong to an account")
    await run_pull(
        ctx.hub,
        ctx.account_id,
        uuid.UUID(payload["connection_id"]),
        trigger=payload.get("trigger", "schedule"),
        since=_when(payload.get("since")),
        job_id=ctx.job_id,
    )


def pulling_connectors() -> list[str]:
    return sorted(
        name for name, spec in SPECS.items() if Capability.ORDERS_PULL in spec.capabilities and spec.factory
    )


async def due_connections(session: AsyncSession, *, interval_s: float) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(account, connection) of every active channel connection whose last pull started `interval_s` ago or
    more, or that was never pulled."""
    last = (
        select(t.SyncRun.connection_id, func.max(t.SyncRun.started_at).label("at"))
        .where(t.SyncRun.stream == STREAM)
        .group_by(t.SyncRun.connection_id)
        .subquery()
    )
    cutoff = utcnow() - timedelta(seconds=interval_s)
    stmt = (
        select(t.Connection.account_id, t.Connection.id)
        .outerjoin(last, last.c.connection_id == t.Connection.id)
        .where(
            t.Connection.status == ACTIVE,
            t.Connection.connector.in_(pulling_connectors()),
            (last.c.at.is_(None)) | (last.c.at <= cutoff),
        )
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


@job(SCHEDULE_JOB, retry=RetryPolicy(max_attempts=1), timeout_s=60)
async def schedule_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    if not ctx.hub.settings.sync_schedule:
        return
    async with ctx.session() as session:
        due = await due_connections(session, interval_s=ctx.hub.settings.sync_interval_s)
        queued = 0
        for account_id, connection_id in due:
            if await request_sync(
                session, account_id=account_id, connection_id=connection_id, trigger="schedule"
            ):
                queued += 1
    if queued:
        log.info("scheduled pulls", queued=queued, due=len(due))


periodic(SCHEDULE_JOB, every_s=SCHEDULE_TICK_S)
