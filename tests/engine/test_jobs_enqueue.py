"""Enqueueing: in the caller's transaction, one waiting job per queueing key, one run per periodic tick."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from crossdock.engine.errors import JobError, PermanentError, RateLimited, RetryableError
from crossdock.engine.jobs import JOBS_CHANNEL, REGISTRY, JobContext, RetryPolicy, enqueue, job
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.support import jobs_notifications, statements_sent


async def _account(hub: Hub) -> uuid.UUID:
    async with hub.db.transaction() as session:
        return (await repo.create_account(session, "Acme")).id


async def _count(hub: Hub, **where: object) -> int:
    async with hub.db.session() as session:
        stmt = select(func.count()).select_from(t.Job).filter_by(**where)
        return int((await session.execute(stmt)).scalar_one())


async def test_a_job_is_enqueued_only_when_the_callers_transaction_commits(hub: Hub) -> None:
    account_id = await _account(hub)
    with pytest.raises(RuntimeError):
        async with hub.db.transaction() as session:
            await enqueue(session, account_id=account_id, kind="test.noop", payload={"n": 1})
            raise RuntimeError("the change that caused the job failed")
    assert await _count(hub) == 0
    async with hub.db.transaction() as session:
        job_id = await enqueue(session, account_id=account_id, kind="test.noop", payload={"n": 1})
    assert job_id is not None
    async with hub.db.session() as session:
        row = await session.get(t.Job, job_id)
    assert row is not None and row.status == "queued" and row.payload == {"n": 1} and row.attempts == 0


async def test_the_same_queueing_key_waits_only_once(hub: Hub) -> None:
    account_id = await _account(hub)
    async with hub.db.transaction() as session:
        first = await enqueue(
            session, account_id=account_id, kind="test.sync", payload={}, queueing_key="sync:1"
        )
        again = await enqueue(
            session, account_id=account_id, kind="test.sync", payload={}, queueing_key="sync:1"
        )
        other = await enqueue(
            session, account_id=account_id, kind="test.sync", payload={}, queueing_key="sync:2"
        )
    assert first is not None and again is None and other is not None
    # Once the waiting job has started, the same work may be queued again (it will see newer data).
    async with hub.db.transaction() as session:
        row = await session.get(t.Job, first)
        assert row is not None
        row.status = "running"
    async with hub.db.transaction() as session:
        assert await enqueue(
            session, account_id=account_id, kind="test.sync", payload={}, queueing_key="sync:1"
        )
    assert await _count(hub, queueing_key="sync:1") == 2


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_enqueueing_notifies_other_workers_once_per_commit_in_its_own_statement(
    hub: Hub,
) -> None:
    account_id = await _account(hub)
    async with jobs_notifications(hub) as notified:
        with statements_sent(hub) as statements:
            async with hub.db.transaction() as session:  # three jobs, one of them the same work twice
                for key in ("sync:1", "sync:1", "sync:2"):
                    await enqueue(
                        session, account_id=account_id, kind="test.sync", payload={}, queueing_key=key
                    )
        assert len(statements) == 3  # the inserts alone: the notification rides on the first
        with pytest.raises(RuntimeError):
            async with hub.db.transaction() as session:
                await enqueue(session, account_id=account_id, kind="test.noop", payload={})
                raise RuntimeError("rolled back")
        async with hub.db.transaction() as session:  # adds nothing: the same work already waits
            await enqueue(session, account_id=account_id, kind="test.sync", payload={}, queueing_key="sync:1")
        async with hub.db.transaction() as session:
            await enqueue(session, account_id=account_id, kind="test.noop", payload={})
        for _ in range(50):
            if len(notified) >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    assert notified == [JOBS_CHANNEL, JOBS_CHANNEL]  # the first transaction's and the last one's
    assert await _count(hub) == 3


async def test_a_periodic_tick_is_enqueued_once(hub: Hub) -> None:
    ids = []
    for _ in range(3):
        async with hub.db.transaction() as session:
            ids.append(
                await enqueue(
                    session, account_id=None, kind="test.tick", payload={}, periodic_task="t", periodic_tick=7
                )
            )
    assert ids[0] is not None and ids[1:] == [None, None]


async def test_naive_run_at_is_refused(hub: Hub) -> None:
    async with hub.db.transaction() as session:
        with pytest.raises(ValueError, match="aware"):
            await enqueue(session, account_id=None, kind="test.noop", payload={}, run_at=datetime(2030, 1, 1))
        assert await enqueue(
            session, account_id=None, kind="test.noop", payload={}, run_at=datetime(2030, 1, 1, tzinfo=UTC)
        )


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=5, base_s=2.0, cap_s=60.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 60.0), (30, 60.0)]:
        delays = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


def test_retry_after_is_a_floor_for_the_next_attempt() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=4.0)
    rng = random.Random(1)
    assert all(policy.delay_s(3, 120.0, rng) == 120.0 for _ in range(50))
    assert all(policy.delay_s(3, None, rng) <= 4.0 for _ in range(50))


def test_errors_carry_the_users_message_and_retry_after() -> None:
    error = RateLimited("Shopify asked to slow down", retry_after=12.0)
    assert isinstance(error, RetryableError) and isinstance(error, JobError)
    assert str(error) == error.message == "Shopify asked to slow down" and error.retry_after == 12.0
    assert PermanentError("Order not found").message == "Order not found"


def test_a_kind_cannot_be_registered_by_two_handlers() -> None:
    @job("test.registered_once")
    async def first(ctx: JobContext, payload: dict[str, object]) -> None:
        return None

    assert REGISTRY["test.registered_once"].handler is first
    with pytest.raises(ValueError, match="already registered"):

        @job("test.registered_once")
        async def second(ctx: JobContext, payload: dict[str, object]) -> None:
            return None

    del REGISTRY["test.registered_once"]
