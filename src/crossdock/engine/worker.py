"""The worker: claims due jobs, runs their handlers, records each attempt, and never stops for a job's fault.

One Worker per process, with one claiming loop: on PostgreSQL any number of processes on any number of machines
claim side by side (FOR UPDATE SKIP LOCKED); on SQLite a deployment runs one worker process, whose single claimer
keeps write transactions short. Alongside the claimer run a heartbeat (renews the lease of this worker's jobs and
stops jobs an operator cancelled), a recoverer (gives jobs of silent workers back to the queue, their attempt
counted) and the periodic scheduler.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.engine import metrics, queue
from crossdock.engine.errors import ConfigurationError, JobError, PermanentError, RetryableError
from crossdock.engine.jobs import JOBS_CHANNEL, REGISTRY, JobContext, JobKind, add_waker, remove_waker
from crossdock.engine.periodic import PERIODIC, enqueue_tick
from crossdock.engine.tuning import tune_long_running_process
from crossdock.hub import Hub
from crossdock.logs import get_logger, redact_text
from crossdock.store import tables as t
from crossdock.store.repo import INSERT_EVENT, event_row
from crossdock.store.types import utcnow

log = get_logger(__name__)

# How long stopping waits for the heartbeat, recoverer and scheduler to finish their current beat.
HOUSEKEEPING_STOP_S = 15.0
# After the connection that listens for new jobs (PostgreSQL) was lost, how long before connecting again.
LISTEN_RETRY_S = 5.0

# Modules whose import registers the engine's own job kinds and periodic tasks.
JOB_MODULES: tuple[str, ...] = (
    "crossdock.engine.inbox",
    "crossdock.engine.webhooks_out",
    "crossdock.engine.shopify_orders",
    "crossdock.engine.pulled_orders",
    "crossdock.engine.sync",
    "crossdock.engine.fulfillments",
    "crossdock.engine.connect",
    "crossdock.engine.inventory",
    "crossdock.flows.labels",
    "crossdock.engine.tracking_poll",
)


def load_job_modules(extra: Iterable[str] = ()) -> None:
    for name in (*JOB_MODULES, *extra):
        importlib.import_module(name)


@asynccontextmanager
async def run_worker(hub: Hub, **kwargs: Any) -> AsyncIterator[Worker]:
    """Run a worker beside other work in this process (`crossdock serve`); on exit it stops claiming and lets
    running jobs finish within the grace period."""
    load_job_modules(hub.settings.job_modules)
    worker = Worker(hub, **kwargs)
    task = asyncio.create_task(worker.run(), name="worker")
    try:
        yield worker
    finally:
        worker.stop()
        await task


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Running:
    job: t.Job
    task: asyncio.Task[None]
    # Why the task was cancelled, if it was: "operator", "lost" (lease taken over) or "shutdown".
    cancel_reason: str | None = None
    # The outcome is being recorded: too late to cancel.
    finishing: bool = False


@dataclass
class Attempt:
    """What one attempt produced, for the record and the timeline."""

    outcome: str  # succeeded, retry, dead, cancelled, lost
    message: str | None = None
    retry_after: float | None = None
    configuration: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        hub: Hub,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        run_periodic: bool = True,
    ) -> None:
        settings = hub.settings
        self.hub = hub
        self.concurrency = concurrency or settings.worker_concurrency
        self.worker_id = worker_id or new_worker_id()
        self.lease_s = settings.worker_lease_s
        self.heartbeat_s = min(settings.worker_heartbeat_s, self.lease_s / 3)
        self.poll_s = settings.worker_poll_s
        self.grace_s = settings.worker_grace_s
        self.run_periodic = run_periodic
        self._running: dict[uuid.UUID, _Running] = {}
        self._stopping = asyncio.Event()
        # Set once running jobs are drained: the heartbeat keeps their leases until then.
        self._housekeeping_done = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._last_tick: dict[str, int] = {}

    # Lifecycle ---------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish. Safe to call from a signal handler."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        tune_long_running_process()
        log.info(
            "worker started", worker_id=self.worker_id, concurrency=self.concurrency, kinds=len(REGISTRY)
        )
        add_waker(self._wake)
        helpers = [
            asyncio.create_task(self._every(self.heartbeat_s, self._heartbeat), name="heartbeat"),
            asyncio.create_task(
                self._every(max(self.heartbeat_s, self.lease_s / 4), self._recover), name="recover"
            ),
        ]
        if self.run_periodic:
            helpers.append(asyncio.create_task(self._every(1.0, self._schedule), name="scheduler"))
        if self.hub.db.dialect == "postgresql":
            helpers.append(asyncio.create_task(self._listen(), name="listen"))
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            remove_waker(self._wake)
            # The housekeeping tasks stop between beats, not in the middle of one: a task cancelled inside its
            # transaction can leave that database connection unreturned with its write lock held (SQLite then
            # refuses every other writer until the process ends). Cancelled only if one hangs.
            self._housekeeping_done.set()
            _finished, hanging = await asyncio.wait(helpers, timeout=HOUSEKEEPING_STOP_S)
            for helper in hanging:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            log.info("worker stopped", worker_id=self.worker_id)

    async def _claim_loop(self) -> None:
        while not self.stopping:
            if len(self._running) >= self.concurrency:
                self._slot_freed.clear()
                await self._until(self._slot_freed, None)
                continue
            # Cleared before claiming, not after: a job committed while the claim runs sets it again (its NOTIFY or
            # the in-process waker), and the wait below returns at once instead of at the next poll.
            self._wake.clear()
            claimed = await self._claim()
            if claimed is not None:
                job = claimed.job
                self._running[job.id] = _Running(
                    job, asyncio.create_task(self._execute(job), name=f"job {job.id}")
                )
                if claimed.more:
                    continue
            # Nothing else is due: a claim now would find nothing.
            await self._until(self._wake, self.poll_s)

    async def _listen(self) -> None:
        """PostgreSQL: wake the claim loop as soon as any process commits a new job (jobs.JOBS_CHANNEL), rather
        than at the next poll. Its own connection, outside the pool; after a lost connection it connects again
        LISTEN_RETRY_S later, and polling goes on meanwhile, so no job waits on this."""
        import asyncpg
        from sqlalchemy.engine import make_url

        url = make_url(self.hub.settings.resolved_database_url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self.stopping:
            connection = None
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(dsn, timeout=10)
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(JOBS_CHANNEL, lambda *_notification: self._wake.set())
                self._wake.set()  # whatever was enqueued while not listening
                await self._until(lost, None)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("cannot listen for new jobs; polling only", error=f"{type(exc).__name__}: {exc}")
            finally:
                if connection is not None and not connection.is_closed():
                    await connection.close(timeout=5)
            if not self.stopping:
                await self._until(asyncio.Event(), LISTEN_RETRY_S)

    async def _until(self, event: asyncio.Event, wait_s: float | None) -> None:
        waiters = [asyncio.create_task(event.wait()), asyncio.create_task(self._stopping.wait())]
        try:
            await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then stop them (they will be retried)."""
        tasks = [r.task for r in self._running.values()]
        if not tasks:
            return
        log.info("waiting for running jobs", count=len(tasks), grace_s=self.grace_s)
        _done, pending = await asyncio.wait(tasks, timeout=self.grace_s)
        for running in list(self._running.values()):
            if running.task in pending and not running.finishing:
                running.cancel_reason = "shutdown"
                running.task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)

    async def _every(self, interval_s: float, work: Callable[[], Awaitable[None]]) -> None:
        while not self._housekeeping_done.is_set():
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be restarting: try again at the next beat
                log.warning("worker housekeeping failed", work=work.__name__, error=_describe(exc))
            try:
                await asyncio.wait_for(self._housekeeping_done.wait(), timeout=interval_s)
            except TimeoutError:
                pass

    # Claiming ----------------------------------------------------------------------------------------------
    async def _claim(self) -> queue.Claimed | None:
        for _ in range(5):
            try:
                # The claim is one statement: committed on its own, without a transaction around it.
                async with self.hub.db.autocommit_session() as session:
                    claimed = await queue.claim(session, worker_id=self.worker_id, kinds=list(REGISTRY))
            except queue.ClaimContended:
                continue  # another worker took a job with the same lock key at the same moment
            except (DBAPIError, OSError) as exc:
                log.warning("claim failed", error=_describe(exc))
                await asyncio.sleep(self.poll_s)
                return None
            if claimed is not None:
                delay = (utcnow() - claimed.job.run_at).total_seconds()
                metrics.JOB_QUEUE_DELAY.labels(claimed.job.kind).observe(max(delay, 0.0))
            return claimed
        return None

    # Running one job ---------------------------------------------------------------------------------------
    async def _execute(self, job: t.Job) -> None:
        spec = REGISTRY[job.kind]
        started = time.perf_counter()
        try:
            attempt = await self._attempt(spec, job)
            if attempt.outcome != "lost":
                self._running[job.id].finishing = True
                await self._record(job, attempt)
            metrics.JOB_ATTEMPTS.labels(job.kind, attempt.outcome).inc()
        except Exception as exc:  # recording failed for good; the lease runs out and the job is run again
            log.error(
                "could not record a job's outcome", job_id=str(job.id), kind=job.kind, error=_describe(exc)
            )
        finally:
            metrics.JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)
            self._running.pop(job.id, None)
            self._slot_freed.set()

    async def _attempt(self, spec: JobKind, job: t.Job) -> Attempt:
        ctx = JobContext(
            hub=self.hub,
            job_id=job.id,
            kind=job.kind,
            account_id=job.account_id,
            attempt=job.attempts,
            order_id=job.order_id,
            worker_id=self.worker_id,
        )
        log.debug("job started", job_id=str(job.id), kind=job.kind, attempt=job.attempts)
        try:
            async with asyncio.timeout(spec.timeout_s) as deadline:
                await spec.handler(ctx, dict(job.payload))
        except asyncio.CancelledError:
            reason = self._running[job.id].cancel_reason
            if reason == "operator":
                return Attempt("cancelled", "cancelled by an operator while it ran")
            if reason == "shutdown":
                return Attempt("retry", "interrupted: the worker shut down before the job finished", 0.0)
            if reason == "lost":
                return Attempt("lost")
            raise
        except TimeoutError as exc:
            if deadline.expired():
                return Attempt(
                    "retry", f"{job.kind} did not finish within {spec.timeout_s:g} s and was stopped"
                )
            return Attempt("retry", _internal(job.kind, exc))
        except ConfigurationError as exc:
            return Attempt("dead", exc.message, configuration=True)
        except PermanentError as exc:
            return Attempt("dead", exc.message)
        except RetryableError as exc:
            return Attempt("retry", exc.message, exc.retry_after)
        except JobError as exc:
            return Attempt("retry", exc.message)
        except Exception as exc:
            log.exception("job raised", job_id=str(job.id), kind=job.kind)
            return Attempt("retry", _internal(job.kind, exc))
        return Attempt("succeeded")

    async def _record(self, job: t.Job, attempt: Attempt) -> None:
        outcome: queue.Outcome | None = None
        for tries in range(1, 6):
            try:
                if attempt.outcome == "succeeded":
                    outcome = await self._record_success(job)
                    break
                async with self.hub.db.transaction() as session:
                    outcome = await self._store_outcome(session, job, attempt)
                    if not outcome.lost:
                        await self._on_timeline(session, job, outcome)
                        if attempt.configuration:
                            await _needs_reauth(session, job, attempt.message or "")
                break
            except IntegrityError:
                continue  # the same work was enqueued under us: the next try sees it and cancels this one
            except (DBAPIError, OSError) as exc:
                if tries == 5:
                    raise
                log.warning("recording a job's outcome failed; trying again", error=_describe(exc))
                await asyncio.sleep(min(2.0**tries * 0.1, 5.0))
        if outcome is None:
            raise RuntimeError("the outcome clashed with newly queued work five times in a row")
        if outcome.lost:
            log.warning(
                "job was taken over before its outcome was recorded", job_id=str(job.id), kind=job.kind
            )
        log.info(
            "job attempt finished",
            job_id=str(job.id),
            kind=job.kind,
            attempt=job.attempts,
            status=outcome.status,
            error=outcome.message,
        )

    async def _record_success(self, job: t.Job) -> queue.Outcome:
        """A success is one guarded UPDATE, committed on its own, and its event on the order's timeline: on
        PostgreSQL in the same statement, elsewhere on its own after it. One or two round trips where a
        transaction takes four, for the outcome most jobs have. The event is a record of the outcome, not part
        of it: if it cannot be written, the success stands."""
        event = job_event_row(job, queue.Outcome("succeeded"))
        async with self.hub.db.autocommit() as conn:
            if event is not None and conn.dialect.name == "postgresql":
                try:
                    return await queue.succeed_with_event(conn, job, worker_id=self.worker_id, event=event)
                except IntegrityError as exc:  # the order was deleted meanwhile: the success alone
                    self._event_lost(job, exc)
                    return await queue.succeed(conn, job, worker_id=self.worker_id)
            outcome = await queue.succeed(conn, job, worker_id=self.worker_id)
            if event is not None and not outcome.lost:
                try:
                    await conn.execute(INSERT_EVENT, event)
                except (DBAPIError, OSError) as exc:
                    self._event_lost(job, exc)
        return outcome

    def _event_lost(self, job: t.Job, exc: Exception) -> None:
        log.warning(
            "could not put a job's success on the order's timeline",
            job_id=str(job.id),
            kind=job.kind,
            error=_describe(exc),
        )

    async def _store_outcome(self, session: AsyncSession, job: t.Job, attempt: Attempt) -> queue.Outcome:
        """A failed, dead or cancelled attempt (a success is `_record_success`)."""
        return await queue.fail(
            session,
            job,
            worker_id=self.worker_id,
            message=attempt.message or "failed",
            permanent=attempt.outcome == "dead",
            retry_after=attempt.retry_after,
            cancelled=attempt.outcome == "cancelled",
        )

    async def _on_timeline(self, session: AsyncSession, job: t.Job, outcome: queue.Outcome) -> None:
        await job_timeline_event(session, job, outcome)

    # Housekeeping ------------------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        ids = [job_id for job_id, r in self._running.items() if not r.finishing]
        if not ids:
            return
        async with self.hub.db.transaction() as session:
            ours, cancel = await queue.heartbeat(session, worker_id=self.worker_id, job_ids=ids)
        for job_id in ids:
            running = self._running.get(job_id)
            if running is None or running.finishing or running.task.done():
                continue
            if job_id not in ours:
                log.warning("lease lost; stopping the job", job_id=str(job_id), kind=running.job.kind)
                running.cancel_reason = "lost"
                running.task.cancel()
            elif job_id in cancel:
                running.cancel_reason = "operator"
                running.task.cancel()

    async def _recover(self) -> None:
        async with self.hub.db.session() as session:
            stalled = await queue.stalled(session, lease_s=self.lease_s)
        for job in stalled:
            silent = f"worker {job.worker_id} stopped responding (no heartbeat for {self.lease_s:g} s)"
            async with self.hub.db.transaction() as session:
                outcome = await queue.fail(
                    session, job, worker_id=None, message=f"attempt {job.attempts} was interrupted: {silent}"
                )
                if not outcome.lost:
                    await job_timeline_event(session, job, outcome)
            if not outcome.lost:
                log.warning(
                    "recovered a stalled job", job_id=str(job.id), kind=job.kind, status=outcome.status
                )
                self._wake.set()

    async def _schedule(self) -> None:
        now = utcnow()
        for task in list(PERIODIC.values()):
            tick = task.tick(now)
            if self._last_tick.get(task.kind) == tick or task.kind not in REGISTRY:
                continue
            async with self.hub.db.transaction() as session:
                await enqueue_tick(session, task, now)
            self._last_tick[task.kind] = tick


async def job_timeline_event(session: AsyncSession, job: t.Job, outcome: queue.Outcome) -> None:
    """Put one attempt's outcome on the order's timeline, when the job concerns an order."""
    row = job_event_row(job, outcome)
    if row is not None:
        session.add(t.TimelineEvent(**row))


def job_event_row(job: t.Job, outcome: queue.Outcome) -> dict[str, Any] | None:
    """The timeline event of one attempt's outcome (repo.event_row), or None when the job concerns no order."""
    if job.order_id is None or job.account_id is None:
        return None
    attempt = f"attempt {job.attempts} of {job.kind}"
    detail: dict[str, Any] = {"job_id": str(job.id), "kind": job.kind, "attempt": job.attempts}
    if outcome.status == "succeeded":
        summary, severity = f"{attempt.capitalize()} succeeded", "info"
    elif outcome.status == "failed":
        when = outcome.run_at.strftime("%Y-%m-%d %H:%M:%S UTC") if outcome.run_at else "soon"
        summary, severity = (
            f"{attempt.capitalize()} failed: {outcome.message}. It will be tried again at {when}.",
            "warning",
        )
        detail["next_attempt_at"] = outcome.run_at.isoformat() if outcome.run_at else None
    elif outcome.status == "dead":
        summary = f"{attempt.capitalize()} failed and will not be retried: {outcome.message}"
        severity = "error"
    else:
        summary, severity = f"{attempt.capitalize()} was cancelled: {outcome.message}", "warning"
    detail["status"] = outcome.status
    if outcome.message:
        detail["error"] = outcome.message
    return event_row(job.account_id, job.order_id, f"job.{outcome.status}", summary, detail, severity)


async def _needs_reauth(session: AsyncSession, job: t.Job, reason: str) -> None:
    """A configuration error means the connection's credentials are wrong: flag it for re-authorisation."""
    connection_id = job.payload.get("connection_id") if isinstance(job.payload, dict) else None
    if not connection_id or job.account_id is None:
        return
    try:
        ident = uuid.UUID(str(connection_id))
    except ValueError:
        return
    await session.execute(
        update(t.Connection)
        .where(t.Connection.id == ident, t.Connection.account_id == job.account_id)
        .values(status="needs_reauth", status_reason=redact_text(reason)[:2000], updated_at=utcnow())
    )


def _internal(kind: str, exc: BaseException) -> str:
    text = str(exc).strip()
    return f"internal error in {kind}: {type(exc).__name__}" + (f": {text}" if text else "")


def _describe(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:500]
