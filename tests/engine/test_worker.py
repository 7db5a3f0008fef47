"""The worker: outcomes of attempts, retries and dead letters, faults that never stop it, leases, cancel,
lock keys, periodic ticks, shutdown. In-process workers on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from crossdock.engine import queue
from crossdock.engine.jobs import enqueue
from crossdock.engine.periodic import PERIODIC, periodic
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.engine import jobkinds
from tests.engine.support import (
    IdempotentRemote,
    eventually,
    fast,
    job_row,
    new_shop,
    running_worker,
    serve,
    statements_sent,
    status_is,
    timeline,
)


async def test_a_job_succeeds_once_and_lands_on_the_orders_timeline(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.ok", payload={}, order_id=shop.order_id
        )
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, job_id, "succeeded"))
    row = await job_row(hub, job_id)
    assert row.attempts == 1 and row.finished_at is not None and row.last_error is None
    events = [e for e in await timeline(hub, shop.order_id) if e.kind.startswith("job.")]
    assert [(e.kind, e.severity) for e in events] == [("job.succeeded", "info")]
    assert events[0].summary == "Attempt 1 of test.ok succeeded"


# What only a claim's statement says: it counts the attempt.
_CLAIM = "attempts=(jobs.attempts +"


async def test_a_success_and_its_event_are_one_statement_on_postgresql_and_two_on_sqlite(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.ok", payload={}, order_id=shop.order_id
        )
    with statements_sent(hub) as sent:
        async with running_worker(hub, run_periodic=False):
            await eventually(lambda: status_is(hub, job_id, "succeeded"))
    recorded = [
        sql
        for sql in sent
        if ("UPDATE jobs SET status" in sql and _CLAIM not in sql) or "timeline_events" in sql
    ]
    assert len(recorded) == (1 if hub.db.dialect == "postgresql" else 2)
    events = [e for e in await timeline(hub, shop.order_id) if e.kind.startswith("job.")]
    assert [(e.kind, e.summary) for e in events] == [("job.succeeded", "Attempt 1 of test.ok succeeded")]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_a_success_whose_event_is_refused_is_recorded_alone(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one statement fails on the event's foreign key (as when the order is deleted between the statement's
    # snapshot and its check): the success is recorded on its own, once, and not retried.
    shop = await new_shop(fast(hub))
    real = queue.succeed_with_event

    async def with_an_unknown_account(connection: Any, job: t.Job, **kwargs: Any) -> queue.Outcome:
        kwargs["event"] = {**kwargs["event"], "account_id": uuid.uuid4()}
        return await real(connection, job, **kwargs)

    monkeypatch.setattr(queue, "succeed_with_event", with_an_unknown_account)
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.ok", payload={}, order_id=shop.order_id
        )
    async with running_worker(hub, run_periodic=False):
        await eventually(lambda: status_is(hub, job_id, "succeeded"))
    assert (await job_row(hub, job_id)).attempts == 1
    assert not [e for e in await timeline(hub, shop.order_id) if e.kind.startswith("job.")]


async def test_a_success_stands_when_its_event_cannot_go_on_the_timeline(hub: Hub) -> None:
    # The job deletes its own order: the success is recorded, its timeline event has no order to go on.
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session,
            account_id=shop.account_id,
            kind="test.deletes_its_order",
            payload={},
            order_id=shop.order_id,
        )
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, job_id, "succeeded"))
        async with hub.db.transaction() as session:
            after = await enqueue(session, account_id=shop.account_id, kind="test.ok", payload={})
        await eventually(lambda: status_is(hub, after, "succeeded"))
    row = await job_row(hub, job_id)
    assert row.attempts == 1 and row.order_id is None
    async with hub.db.session() as session:
        events = await session.scalar(select(func.count()).select_from(t.TimelineEvent))
    assert events == 0


async def test_faults_inside_jobs_never_stop_the_worker_and_are_explained_on_the_timeline(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    remote = IdempotentRemote()
    with serve(remote) as url:
        async with hub.db.transaction() as session:
            ids = {
                kind: await enqueue(
                    session,
                    account_id=shop.account_id,
                    kind=kind,
                    payload={"url": f"{url}/malformed"},
                    order_id=shop.order_id,
                )
                for kind in ("test.boom", "test.slow", "test.malformed")
            }
        async with running_worker(hub, concurrency=2):
            await eventually(lambda: _all(hub, ids.values(), "dead"))
            # The worker is still claiming: a job enqueued after all the faults runs.
            async with hub.db.transaction() as session:
                after = await enqueue(session, account_id=shop.account_id, kind="test.ok", payload={})
            await eventually(lambda: status_is(hub, after, "succeeded"))

    boom = await job_row(hub, ids["test.boom"])
    assert boom.attempts == 2
    assert (
        boom.last_error
        == "internal error in test.boom: ValueError: the mapping table has no entry for carrier 'XYZ'"
    )
    assert (
        await job_row(hub, ids["test.slow"])
    ).last_error == "test.slow did not finish within 0.2 s and was stopped"
    assert (await job_row(hub, ids["test.malformed"])).last_error.startswith(
        "internal error in test.malformed: JSONDecodeError: Expecting value"
    )
    events = [e for e in await timeline(hub, shop.order_id) if e.kind.startswith("job.")]
    # Each job: first attempt failed and will retry (warning), second failed for good (error).
    assert sorted(e.kind for e in events) == ["job.dead"] * 3 + ["job.failed"] * 3
    summaries = "\n".join(e.summary for e in events)
    assert (
        "Attempt 1 of test.boom failed: internal error in test.boom: ValueError: the mapping table"
        in summaries
    )
    assert "It will be tried again at" in summaries
    assert (
        "Attempt 2 of test.slow failed and will not be retried: test.slow did not finish within 0.2 s"
        in summaries
    )
    assert {e.severity for e in events if e.kind == "job.dead"} == {"error"}
    assert {e.severity for e in events if e.kind == "job.failed"} == {"warning"}


async def _all(hub: Hub, ids: object, status: str) -> bool:
    return all([await status_is(hub, i, status) for i in ids])  # type: ignore[attr-defined]


async def test_retry_after_from_the_remote_sets_the_next_attempt(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.rate_limited", payload={"retry_after": 120}
        )
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, job_id, "failed"))
    row = await job_row(hub, job_id)
    assert row.attempts == 1 and row.last_error == "Shippo asked crossdock to slow down (429)"
    assert row.started_at is not None
    # The policy's own backoff is at most 0.05 s: the 120 s wait can only come from Retry-After.
    assert row.run_at - row.started_at >= timedelta(seconds=120)


async def test_permanent_errors_go_dead_at_once_with_the_remotes_words(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.permanent", payload={}, order_id=shop.order_id
        )
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, job_id, "dead"))
    row = await job_row(hub, job_id)
    assert row.attempts == 1 and row.max_attempts == 8
    assert row.last_error == "Shippo refused the shipment: 'address_to.zip' is not a valid postal code"
    dead = [e for e in await timeline(hub, shop.order_id) if e.kind == "job.dead"]
    assert dead[0].summary.endswith("'address_to.zip' is not a valid postal code")


async def test_a_configuration_error_goes_dead_and_flags_the_connection(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session,
            account_id=shop.account_id,
            kind="test.configuration",
            payload={"connection_id": str(shop.connection_id)},
        )
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, job_id, "dead"))
    async with hub.db.session() as session:
        connection = await session.get(t.Connection, shop.connection_id)
    assert connection is not None and connection.status == "needs_reauth"
    assert connection.status_reason == "Shippo refused the API token (401); connect the account again"


async def test_a_job_of_a_silent_worker_is_claimed_again_with_its_attempt_counted(hub: Hub) -> None:
    shop = await new_shop(fast(hub, lease_s=0.6))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.ok", payload={}, order_id=shop.order_id
        )
    # A worker on another machine claimed it and went silent (power cut): its heartbeat is long past.
    async with hub.db.transaction() as session:
        claimed = await queue.claim(session, worker_id="gone:1:abc", kinds=["test.ok"])
        assert claimed is not None and claimed.job.id == job_id
        await session.execute(
            update(t.Job).where(t.Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, job_id, "succeeded"))
    row = await job_row(hub, job_id)
    assert row.attempts == 2 and row.worker_id != "gone:1:abc"
    kinds = [e.kind for e in await timeline(hub, shop.order_id) if e.kind.startswith("job.")]
    assert kinds == ["job.failed", "job.succeeded"]
    interrupted = next(e for e in await timeline(hub, shop.order_id) if e.kind == "job.failed")
    assert "worker gone:1:abc stopped responding" in interrupted.summary


async def test_cancelling_a_running_job_stops_it_and_a_waiting_one_never_runs(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    jobkinds.EVENTS["never"] = asyncio.Event()
    async with hub.db.transaction() as session:
        running = await enqueue(
            session, account_id=shop.account_id, kind="test.wait", payload={"name": "never"}
        )
        later = await enqueue(
            session,
            account_id=shop.account_id,
            kind="test.ok",
            payload={},
            run_at=utcnow() + timedelta(hours=1),
        )
    assert running is not None and later is not None
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, running, "running"))
        async with hub.db.transaction() as session:
            await queue.cancel_job(session, running, shop.account_id)
            waiting = await queue.cancel_job(session, later, shop.account_id)
            assert waiting.status == "cancelled"
        await eventually(lambda: status_is(hub, running, "cancelled"))
    assert (await job_row(hub, running)).last_error == "cancelled by an operator while it ran"
    assert (await job_row(hub, later)).attempts == 0


async def test_jobs_sharing_a_lock_key_never_overlap_in_one_worker(hub: Hub, tmp_path: Path) -> None:
    shop = await new_shop(fast(hub))
    log = tmp_path / "intervals.jsonl"
    async with hub.db.transaction() as session:
        for n in range(12):
            lock = f"order:{n % 2}"
            await enqueue(
                session,
                account_id=shop.account_id,
                kind="test.interval",
                payload={"lock": lock, "log": str(log), "seconds": 0.02},
                lock_key=lock,
            )
    async with running_worker(hub, concurrency=6):
        await eventually(lambda: _count(hub, "test.interval", "succeeded", 12))
    assert_no_overlap(log, expected=12)


def assert_no_overlap(log: Path, *, expected: int) -> None:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == expected
    assert len({r["job"] for r in records}) == expected, "a job ran twice"
    by_lock: dict[str, list[tuple[int, int]]] = {}
    for r in records:
        by_lock.setdefault(r["lock"], []).append((r["start"], r["end"]))
    for lock, spans in by_lock.items():
        spans.sort()
        for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
            assert s2 >= e1, f"two jobs with lock key {lock} overlapped"


async def _count(hub: Hub, kind: str, status: str, n: int) -> bool:
    """At least n jobs of `kind` in `status` (workers also schedule the engine's own periodic jobs)."""
    async with hub.db.session() as session:
        stmt = select(func.count()).select_from(t.Job).where(t.Job.kind == kind, t.Job.status == status)
        return int((await session.execute(stmt)).scalar_one()) >= n


async def test_a_periodic_job_runs_once_per_tick_however_many_workers_schedule_it(hub: Hub) -> None:
    fast(hub)
    periodic("test.ok", every_s=3600)
    try:
        async with running_worker(hub), running_worker(hub), running_worker(hub):
            await eventually(lambda: _count(hub, "test.ok", "succeeded", 1))
            await asyncio.sleep(0.3)  # every scheduler has had its chance at this tick
    finally:
        del PERIODIC["test.ok"]
    async with hub.db.session() as session:
        rows = (await session.scalars(select(t.Job).where(t.Job.periodic_task == "test.ok"))).all()
    assert len(rows) == 1 and rows[0].account_id is None and rows[0].status == "succeeded"


async def test_shutdown_lets_a_running_job_finish_within_the_grace_period(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.wait", payload={"seconds": 0.5}
        )
    async with running_worker(hub) as worker:
        await eventually(lambda: status_is(hub, job_id, "running"))
        worker.stop()
    assert (await job_row(hub, job_id)).status == "succeeded"


async def test_a_job_finishing_within_the_grace_period_keeps_its_lease_meanwhile(hub: Hub) -> None:
    shop = await new_shop(fast(hub, lease_s=0.6))
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.wait", payload={"seconds": 1.5}
        )
    async with running_worker(hub) as stopping:
        await eventually(lambda: status_is(hub, job_id, "running"))
        # Another worker's recoverer runs again any job whose lease lapses while the first one drains.
        async with running_worker(hub):
            stopping.stop()
            await eventually(lambda: status_is(hub, job_id, "succeeded"))
    row = await job_row(hub, job_id)
    assert row.attempts == 1 and row.last_error is None


async def test_shutdown_past_the_grace_period_leaves_the_job_to_be_retried(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    hub.settings.worker_grace_s = 0.1
    jobkinds.EVENTS["forever"] = asyncio.Event()
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.wait", payload={"name": "forever"}
        )
    async with running_worker(hub) as worker:
        await eventually(lambda: status_is(hub, job_id, "running"))
        worker.stop()
    row = await job_row(hub, job_id)
    assert row.status == "failed" and row.last_error is not None and "worker shut down" in row.last_error


@pytest.mark.parametrize("status", ["dead", "cancelled"])
async def test_retry_gives_a_finished_job_a_fresh_budget(hub: Hub, status: str) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        job_id = await enqueue(session, account_id=shop.account_id, kind="test.ok", payload={})
        await session.execute(update(t.Job).where(t.Job.id == job_id).values(status=status, attempts=2))
    assert job_id is not None
    async with hub.db.transaction() as session:
        row = await queue.retry_job(session, job_id, shop.account_id)
        assert row.status == "queued" and row.max_attempts == 2 + 2
    async with running_worker(hub):
        await eventually(lambda: status_is(hub, job_id, "succeeded"))
    assert (await job_row(hub, job_id)).attempts == 3


async def test_a_failing_job_is_not_requeued_beside_the_same_work_already_waiting(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    async with hub.db.transaction() as session:
        first = await enqueue(
            session, account_id=shop.account_id, kind="test.boom", payload={}, queueing_key="sync:x"
        )
    async with hub.db.transaction() as session:
        claimed = await queue.claim(session, worker_id="w", kinds=["test.boom"])
        assert claimed is not None
        job = claimed.job
    async with hub.db.transaction() as session:
        second = await enqueue(
            session, account_id=shop.account_id, kind="test.boom", payload={}, queueing_key="sync:x"
        )
        assert second is not None
    async with hub.db.transaction() as session:
        outcome = await queue.fail(session, job, worker_id="w", message="remote down")
    assert outcome.status == "cancelled" and "the same work is already queued" in (outcome.message or "")
    assert (await job_row(hub, first)).status == "cancelled"
    assert (await job_row(hub, second)).status == "queued"


async def test_a_claim_takes_only_due_jobs_of_its_kinds_most_urgent_first(hub: Hub) -> None:
    # The claim's statement is built once per database and set of kinds: claims with other kinds, at other
    # times and by other workers must each get their own answer from it.
    shop = await new_shop(hub)
    later = utcnow() + timedelta(hours=1)
    async with hub.db.transaction() as session:
        low = await enqueue(session, account_id=shop.account_id, kind="test.ok", payload={"n": 1})
        high = await enqueue(
            session, account_id=shop.account_id, kind="test.ok", payload={"n": 2}, priority=5
        )
        boom = await enqueue(session, account_id=shop.account_id, kind="test.boom", payload={})
        due_later = await enqueue(
            session, account_id=shop.account_id, kind="test.wait", payload={}, run_at=later
        )

    async def claim(worker_id: str, kinds: list[str], **at: object) -> queue.Claimed | None:
        async with hub.db.autocommit_session() as session:
            return await queue.claim(session, worker_id=worker_id, kinds=kinds, **at)  # type: ignore[arg-type]

    # `more`: whether another job of the kinds asked for is due beside the one taken. PostgreSQL reads it in the
    # claim; SQLite always says yes (its claimer then claims again).
    on_postgres = hub.db.dialect == "postgresql"
    first = await claim("a", ["test.ok"])
    assert first is not None and first.job.id == high and first.job.payload == {"n": 2}
    assert (first.job.status, first.job.worker_id, first.job.attempts) == ("running", "a", 1)
    assert first.more is True  # `low` is due too
    assert await claim("b", ["test.wait"]) is None  # not due yet
    other = await claim("b", ["test.boom", "test.wait"])
    assert other is not None and other.job.id == boom and other.job.worker_id == "b"
    assert other.more is not on_postgres  # test.wait is not due yet
    second = await claim("c", ["test.ok", "test.boom"])
    assert second is not None and second.job.id == low and second.job.worker_id == "c"
    assert second.more is not on_postgres
    assert await claim("a", ["test.ok", "test.boom"]) is None
    waited = await claim("d", ["test.wait"], now=later + timedelta(seconds=1))
    assert waited is not None and waited.job.id == due_later and waited.job.started_at is not None
    async with hub.db.session() as session:
        rows = (
            await session.execute(select(t.Job.id, t.Job.worker_id).where(t.Job.status == "running"))
        ).all()
    assert dict(rows) == {high: "a", boom: "b", low: "c", due_later: "d"}
    async with hub.db.autocommit_session() as session:
        assert (await queue.succeed(session, first.job, worker_id="a")).lost is False
        assert (await queue.succeed(session, second.job, worker_id="a")).lost is True  # not a's: c claimed it
    assert (await job_row(hub, high)).status == "succeeded" and (await job_row(hub, low)).status == "running"


async def test_a_job_committed_while_the_worker_claims_runs_without_waiting_for_the_next_poll(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = await new_shop(fast(hub))
    hub.settings.worker_poll_s = 60.0  # only a wake can start the job within the test's bound
    real_claim, enqueued = queue.claim, []

    async def claim_then_enqueue(session: object, **kwargs: object) -> queue.Claimed | None:
        claimed = await real_claim(session, **kwargs)  # type: ignore[arg-type]
        if claimed is None and not enqueued:
            # Committed after the claim looked and before the claimer waits: its wake must not be lost.
            async with hub.db.transaction() as other:
                enqueued.append(await enqueue(other, account_id=shop.account_id, kind="test.ok", payload={}))
        return claimed

    monkeypatch.setattr(queue, "claim", claim_then_enqueue)
    async with running_worker(hub, run_periodic=False):
        await eventually(lambda: _enqueued(enqueued))
        await eventually(lambda: status_is(hub, enqueued[0], "succeeded"), within_s=10)


async def _enqueued(ids: list[object]) -> bool:
    return bool(ids)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_a_worker_claims_once_for_the_last_due_job_and_not_again(hub: Hub) -> None:
    # The claim says whether more is due: without that, the worker would claim once more and find nothing.
    shop = await new_shop(fast(hub))
    hub.settings.worker_poll_s = 60.0
    async with running_worker(hub, run_periodic=False):
        await eventually(lambda: _a_session(hub, "query LIKE 'LISTEN%'"))
        await asyncio.sleep(0.3)  # the claim the listener's start triggers
        with statements_sent(hub, "UPDATE jobs SET status") as claims:
            async with hub.db.transaction() as session:
                job_ids = [
                    await enqueue(session, account_id=shop.account_id, kind="test.ok", payload={"n": n})
                    for n in range(2)
                ]
            for job_id in job_ids:
                assert job_id is not None
                await eventually(lambda job_id=job_id: status_is(hub, job_id, "succeeded"))
            await asyncio.sleep(0.5)  # for a claim that would follow
    assert len([sql for sql in claims if _CLAIM in sql]) == 2


async def test_two_claims_of_one_lock_key_at_the_same_moment_give_it_to_one_worker(hub: Hub) -> None:
    shop = await new_shop(hub)
    async with hub.db.transaction() as session:
        for n in range(2):
            await enqueue(
                session, account_id=shop.account_id, kind="test.ok", payload={"n": n}, lock_key="order:1"
            )
    async with hub.db.transaction() as first:
        claimed = await queue.claim(first, worker_id="a", kinds=["test.ok"])
        assert claimed is not None
        mine = claimed.job
        # The second claimer starts before the first commits: on PostgreSQL it skips the locked row, takes the
        # other job of the same lock key and then meets the unique index; on SQLite it waits for the write lock.
        second = asyncio.create_task(_claim_in_own_transaction(hub, "b"))
        await _blocked_on_a_lock(hub)
    outcome = await second
    assert outcome == ("contended" if hub.db.dialect == "postgresql" else None)
    assert await _claim_in_own_transaction(hub, "b") is None  # the lock key is running: nothing to claim
    async with hub.db.session() as session:
        running = (await session.scalars(select(t.Job).where(t.Job.status == "running"))).all()
    assert [(r.id, r.worker_id) for r in running] == [(mine.id, "a")]


async def _blocked_on_a_lock(hub: Hub) -> None:
    """Until the second claimer waits for the first one's transaction (PostgreSQL), or a moment (SQLite)."""
    if hub.db.dialect != "postgresql":
        await asyncio.sleep(0.2)
        return

    await eventually(lambda: _a_session(hub, "wait_event_type = 'Lock'"), within_s=10)


async def _a_session(hub: Hub, condition: str) -> bool:
    """Whether a session of the test's database meets `condition` (a constant SQL condition on
    pg_stat_activity)."""
    async with hub.db.session() as session:
        stmt = text(
            f"SELECT count(*) FROM pg_stat_activity WHERE {condition} AND datname = current_database()"
        )
        return int((await session.execute(stmt)).scalar_one()) > 0


async def _claim_in_own_transaction(hub: Hub, worker_id: str) -> str | None:
    try:
        async with hub.db.transaction() as session:
            claimed = await queue.claim(session, worker_id=worker_id, kinds=["test.ok"])
    except queue.ClaimContended:
        return "contended"
    return None if claimed is None else str(claimed.job.id)


async def test_a_worker_whose_job_was_taken_over_stops_it_and_records_nothing(hub: Hub) -> None:
    shop = await new_shop(fast(hub))
    jobkinds.EVENTS["taken"] = asyncio.Event()
    async with hub.db.transaction() as session:
        job_id = await enqueue(
            session, account_id=shop.account_id, kind="test.wait", payload={"name": "taken"}
        )
    async with running_worker(hub) as worker:
        await eventually(lambda: status_is(hub, job_id, "running"))
        # Another worker recovered the job (this one's heartbeats were late) and is running attempt 2.
        async with hub.db.transaction() as session:
            await session.execute(
                update(t.Job).where(t.Job.id == job_id).values(worker_id="other", attempts=t.Job.attempts + 1)
            )
        await eventually(lambda: _idle(worker))
    row = await job_row(hub, job_id)
    assert (row.status, row.worker_id, row.attempts, row.last_error) == ("running", "other", 2, None)


async def _idle(worker: object) -> bool:
    return not worker._running  # type: ignore[attr-defined]
