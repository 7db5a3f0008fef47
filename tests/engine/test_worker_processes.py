"""Worker processes against a real database: SIGKILL after a remote call loses nothing and repeats no effect;
three workers on PostgreSQL never overlap jobs that share a lock key and never run a job twice."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crossdock.engine.jobs import enqueue
from crossdock.hub import Hub
from crossdock.store import tables as t
from tests.engine.processes import start_worker, stop_all, worker_env
from tests.engine.support import IdempotentRemote, new_shop, serve
from tests.engine.test_worker import assert_no_overlap


async def _statuses(hub: Hub, kind: str) -> dict[str, int]:
    """Job counts by status, of the test's kind (the workers also schedule the engine's periodic jobs)."""
    async with hub.db.session() as session:
        stmt = select(t.Job.status, func.count()).where(t.Job.kind == kind).group_by(t.Job.status)
        return dict((await session.execute(stmt)).all())


KIND = "test.remote_effect"


async def _crash_run(
    hub: Hub, tmp_path: Path, *, jobs: int, kills: int, workers: int, within_s: float
) -> None:
    shop = await new_shop(hub)
    remote = IdempotentRemote()
    markers = tmp_path / "killed"
    markers.mkdir()
    every = jobs // kills
    with serve(remote) as url:
        async with hub.db.transaction() as session:
            for n in range(jobs):
                payload = {
                    "url": f"{url}/effects",
                    "key": f"label-{n}",
                    "kill": n % every == every // 2,
                    "markers": str(markers),
                }
                await enqueue(session, account_id=shop.account_id, kind=KIND, payload=payload)
        env = worker_env(hub, lease_s=2.0)
        log = tmp_path / "workers.log"
        processes = [start_worker(env, concurrency=8, log=log) for _ in range(workers)]
        sigkilled = 0
        deadline = time.monotonic() + within_s
        try:
            while (await _statuses(hub, KIND)).get("succeeded", 0) < jobs:
                assert time.monotonic() < deadline, (
                    f"not done within {within_s} s: {await _statuses(hub, KIND)}"
                )
                for i, process in enumerate(processes):
                    code = process.poll()
                    if code is None:
                        continue
                    assert code == -9, f"a worker exited with {code}:\n{log.read_text()[-3000:]}"
                    sigkilled += 1
                    processes[i] = start_worker(env, concurrency=8, log=log)
                await asyncio.sleep(0.1)
        finally:
            stop_all(processes)

    assert await _statuses(hub, KIND) == {"succeeded": jobs}
    killed = {p.name for p in markers.iterdir()}
    assert sigkilled == kills == len(killed)
    # One effect per idempotency key and none missing, although every killed job called the remote again.
    assert sorted(remote.effects) == sorted(f"label-{n}" for n in range(jobs))
    assert all(remote.requests[key] >= 2 for key in killed)
    async with hub.db.session() as session:
        rows = (await session.execute(select(t.Job.payload, t.Job.attempts).where(t.Job.kind == KIND))).all()
    assert all(attempts >= 2 for payload, attempts in rows if payload["key"] in killed)


async def test_sigkill_after_the_remote_call_loses_no_job_and_repeats_no_effect(
    hub: Hub, tmp_path: Path
) -> None:
    """CI size. SQLite deployments run one worker process, so each kill stops all work until a new process is
    up (about a second and a half here); PostgreSQL runs two side by side."""
    if hub.db.dialect == "sqlite":
        await _crash_run(hub, tmp_path, jobs=200, kills=10, workers=1, within_s=90)
    else:
        await _crash_run(hub, tmp_path, jobs=200, kills=20, workers=2, within_s=90)


@pytest.mark.slow
async def test_sigkill_twenty_times_across_a_thousand_jobs_loses_none_and_repeats_no_effect(
    hub: Hub, tmp_path: Path
) -> None:
    workers = 1 if hub.db.dialect == "sqlite" else 2
    await _crash_run(hub, tmp_path, jobs=1000, kills=20, workers=workers, within_s=180)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_three_workers_never_overlap_jobs_sharing_a_lock_key(hub: Hub, tmp_path: Path) -> None:
    shop = await new_shop(hub)
    log = tmp_path / "intervals.jsonl"
    jobs = 240
    async with hub.db.transaction() as session:
        for n in range(jobs):
            lock = f"order:{n % 8}"
            payload = {"lock": lock, "log": str(log), "seconds": 0.01 + (n % 3) * 0.01}
            await enqueue(
                session, account_id=shop.account_id, kind="test.interval", payload=payload, lock_key=lock
            )
    env = worker_env(hub, lease_s=30.0)
    processes: list[subprocess.Popen[bytes]] = [
        start_worker(env, concurrency=6, log=tmp_path / "workers.log") for _ in range(3)
    ]
    deadline = time.monotonic() + 60
    try:
        while (await _statuses(hub, "test.interval")).get("succeeded", 0) < jobs:
            assert time.monotonic() < deadline, await _statuses(hub, "test.interval")
            assert all(p.poll() is None for p in processes), (tmp_path / "workers.log").read_text()[-3000:]
            await asyncio.sleep(0.1)
    finally:
        stop_all(processes)
    assert await _statuses(hub, "test.interval") == {"succeeded": jobs}
    assert_no_overlap(log, expected=jobs)
    pids = {line.split('"pid": ')[1].rstrip("}\n") for line in log.read_text().splitlines()}
    assert len(pids) >= 2, "the jobs were not shared between the worker processes"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_job_committed_by_another_process_wakes_an_idle_worker_at_once(
    hub: Hub, tmp_path: Path
) -> None:
    """On PostgreSQL a commit that enqueues a job notifies the workers of every process (LISTEN/NOTIFY), so a
    worker that polls once every two minutes still starts the job at once. The first job proves the worker is
    up; each later one, committed here while the worker waits, must be done within 3 s. (The worker's own
    periodic ticks also wake it, every 10 s at most: three jobs in a row within 3 s each are not their luck.)"""
    shop = await new_shop(hub)
    env = {**worker_env(hub, lease_s=30.0), "CROSSDOCK_WORKER_POLL_S": "120"}
    processes = [start_worker(env, concurrency=2, log=tmp_path / "worker.log")]
    try:
        for n, within_s in enumerate((60.0, 3.0, 3.0, 3.0), start=1):
            async with hub.db.transaction() as session:
                await enqueue(session, account_id=shop.account_id, kind="test.ok", payload={"n": n})
            deadline = time.monotonic() + within_s
            while (await _statuses(hub, "test.ok")).get("succeeded", 0) < n:
                assert time.monotonic() < deadline, (
                    f"job {n} was not run within {within_s} s: {await _statuses(hub, 'test.ok')}; "
                    + (tmp_path / "worker.log").read_text()[-2000:]
                )
                assert processes[0].poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # the worker has gone back to waiting for its next poll
    finally:
        stop_all(processes)
    assert await _statuses(hub, "test.ok") == {"succeeded": 4}
