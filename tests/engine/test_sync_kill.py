"""A backfill run by a real `crossdock worker` process, SIGKILLed once some pages are stored: a second worker
recovers the job after its lease and the pull resumes at the first page not stored, reading only the rest. Every
order of the channel ends stored exactly once (no gap, no duplicate), and the stream's watermark moves past the
whole window with no resume state left.

The sandbox serves from a thread of the test process on 127.0.0.1; the workers reach it over HTTP through the
connection's base URL, and share the test's database (SQLite file or PostgreSQL).

These are also the proof of a backfill of 10,000 orders per channel. The default run has Shopify and eBay at
10,000 orders on SQLite, and Amazon at 1,000: an Amazon pull makes one getOrderItems call per order, each with
its rate-limit slot and its remote_calls record written to the database, so 10,000 take minutes. The 10,000-order
runs on PostgreSQL and Amazon's on both databases are long tests: run them with --runslow.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import distinct, func, select

from crossdock.engine import sync
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from tests.engine.channels import LONG_AGO, Channel, serve_channel
from tests.engine.processes import start_worker, stop_all, worker_env

LEASE_S = 2.0


def sync_worker_env(hub: Hub) -> dict[str, str]:
    env = worker_env(hub, lease_s=LEASE_S)
    # The sandbox listens on 127.0.0.1, which outbound calls refuse unless the operator allows it; and no
    # scheduled pull may join the one the test asked for.
    env.update(CROSSDOCK_ALLOW_PRIVATE_URLS="true", CROSSDOCK_SYNC_SCHEDULE="false")
    return env


async def until(condition: Callable[[], Awaitable[bool]], *, what: str, within_s: float, log: Path) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        assert time.monotonic() < deadline, f"{what}: not within {within_s:g} s\n{tail}"
        await asyncio.sleep(0.1)


async def stored_count(hub: Hub, connection_id: uuid.UUID) -> int:
    async with hub.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(t.Order).where(t.Order.connection_id == connection_id)
        )
    return int(count or 0)


async def sync_job(hub: Hub) -> t.Job:
    async with hub.db.session() as session:
        return (await session.scalars(select(t.Job).where(t.Job.kind == sync.SYNC_JOB))).one()


async def backfill_killed_once(
    hub: Hub, tmp_path: Path, channel: Channel, *, orders: int, within_s: float
) -> None:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
    connection_id = await channel.connect(hub, account.id)
    async with hub.db.transaction() as session:
        queued = await sync.request_sync(
            session, account_id=account.id, connection_id=connection_id, since=LONG_AGO
        )
    assert queued is not None
    env = sync_worker_env(hub)
    log = tmp_path / "workers.log"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        first = start_worker(env, concurrency=1, log=log)
        processes.append(first)

        async def some_pages_stored() -> bool:
            assert first.poll() is None, log.read_text(errors="replace")[-3000:]
            return await stored_count(hub, connection_id) >= 2 * channel.page_size

        await until(some_pages_stored, what="two pages stored", within_s=within_s, log=log)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        at_kill = await stored_count(hub, connection_id)
        assert at_kill < orders, "the backfill was done before the worker was killed"
        async with hub.db.session() as session:
            cursor = await session.get(t.SyncCursor, (connection_id, sync.STREAM))
        assert cursor is not None and cursor.resume is not None and cursor.resume["page"] is not None
        assert cursor.watermark is None

        processes.append(start_worker(env, concurrency=1, log=log))

        async def job_succeeded() -> bool:
            job = await sync_job(hub)
            assert job.status not in ("dead", "cancelled"), job.last_error
            return job.status == "succeeded"

        await until(job_succeeded, what="the recovered pull finished", within_s=within_s, log=log)
    finally:
        stop_all(processes)

    job = await sync_job(hub)
    assert job.attempts == 2  # the killed attempt, then the one that finished
    async with hub.db.session() as session:
        runs = (
            await session.scalars(
                select(t.SyncRun)
                .where(t.SyncRun.connection_id == connection_id)
                .order_by(t.SyncRun.started_at)
            )
        ).all()
        cursor = await session.get(t.SyncCursor, (connection_id, sync.STREAM))
        total, distinct_ids = (
            await session.execute(
                select(func.count(), func.count(distinct(t.Order.external_id))).where(
                    t.Order.connection_id == connection_id
                )
            )
        ).one()
        ids = await session.scalars(select(t.Order.external_id).where(t.Order.connection_id == connection_id))
        stored = set(ids.all())
        bindings = await session.scalar(
            select(func.count()).select_from(t.Binding).where(t.Binding.connection_id == connection_id)
        )
    # The pull after the kill resumed at the first page not stored: it read only the rest, all of it new.
    last = runs[-1]
    assert len(runs) == 2 and last.status == "succeeded", [(r.status, r.error) for r in runs]
    killed = runs[0]  # closed by the run that resumed it, not left running forever
    assert killed.status == "failed" and killed.finished_at is not None
    assert f"run {last.id} goes on" in (killed.error or "")
    remaining = orders - at_kill
    counts = (last.read, last.created, last.updated, last.skipped, last.invalid)
    assert counts == (remaining, remaining, 0, 0, 0)
    # No gap, no duplicate.
    assert stored == channel.order_ids()
    assert total == distinct_ids == bindings == orders
    # The window is done: the watermark moved past every order's last change, and nothing is left to resume.
    assert cursor is not None and cursor.resume is None
    assert cursor.watermark is not None and cursor.watermark == last.cursor_to
    assert cursor.watermark > channel.newest_change()


def case(backend: str, name: str, orders: int, *, slow: bool = False) -> Any:
    marks = [pytest.mark.postgres] if backend == "postgres" else []
    if slow:
        marks.append(pytest.mark.slow)
    return pytest.param(backend, name, orders, marks=marks, id=f"{backend}-{name}-{orders}")


@pytest.mark.parametrize(
    ("backend", "name", "orders"),
    [
        case("sqlite", "shopify", 10_000),
        case("sqlite", "ebay", 10_000),
        case("sqlite", "amazon", 1_000),
        case("postgres", "shopify", 10_000, slow=True),
        case("postgres", "ebay", 10_000, slow=True),
        case("sqlite", "amazon", 10_000, slow=True),
        case("postgres", "amazon", 10_000, slow=True),
    ],
    indirect=["backend"],
)
async def test_a_worker_killed_mid_backfill_leaves_no_gap_and_no_duplicate(
    hub: Hub, tmp_path: Path, name: str, orders: int
) -> None:
    # Generous bounds for a loaded CI machine: a few hundred orders a second at worst, Amazon's a few dozen.
    within_s = 120.0 if name != "amazon" else max(120.0, orders / 25)
    async with serve_channel(name, seed=5, orders=orders) as channel:
        await backfill_killed_once(hub, tmp_path, channel, orders=orders, within_s=within_s)
