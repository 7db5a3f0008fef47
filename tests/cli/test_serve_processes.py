"""`crossdock serve --processes N`: several server processes on one port, their metrics added up, and a process
that dies replaced. A real `crossdock serve` on SQLite, real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.engine.processes import stop_all
from tests.support import free_port

CROSSDOCK = str(Path(sys.executable).with_name("crossdock"))


def children(pid: int) -> set[int]:
    """The server processes uvicorn started (multiprocessing's spawned children, not its resource tracker)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in command:
                found.add(int(child))
    return found


def healthz_count(metrics: str) -> float:
    pattern = r'^crossdock_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$'
    match = re.search(pattern, metrics, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK_")}
    env.update(CROSSDOCK_HOME=str(tmp_path / "home"), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    log = (tmp_path / "serve.log").open("wb")
    command = [CROSSDOCK, "serve", "--no-workers", "--processes", "2", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, f"http://127.0.0.1:{port}", metrics_dir
    finally:
        stop_all([proc], timeout_s=30)
        log.close()


async def _up(url: str, proc: subprocess.Popen[bytes], within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "crossdock serve exited"
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200 and len(children(proc.pid)) == 2:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("crossdock serve --processes 2 did not come up")


async def _hit(url: str, count: int) -> list[int]:
    # A new connection for each request, so the kernel hands them to either process.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits) as client:
        answers = await asyncio.gather(*(client.get(f"{url}/healthz") for _ in range(count)))
    return [a.status_code for a in answers]


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/metrics")
    assert answer.status_code == 200
    return answer.text


def healthz_by_process(metrics_dir: Path) -> dict[int, float]:
    """GET /healthz answers counted by each process, from its own file (prometheus_client names each file after
    its process)."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if (
                    sample.name == "crossdock_http_requests_total"
                    and sample.labels.get("route") == "/healthz"
                ):
                    pid = int(path.stem.rsplit("_", 1)[1])
                    counts[pid] = counts.get(pid, 0.0) + sample.value
    return counts


async def test_several_processes_share_the_port_and_their_metrics_add_up(
    server: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    proc, url, metrics_dir = server
    await _up(url, proc)
    first = children(proc.pid)
    before = healthz_count(await _metrics(url))

    sent = 0
    # Until both processes have answered some: the kernel hands a new connection to whichever process is
    # waiting for one, so an idle server may give a whole batch to one process.
    for _ in range(20):
        assert await _hit(url, 200) == [200] * 200
        sent += 200
        if all(healthz_by_process(metrics_dir).get(pid, 0) > 0 for pid in first):
            break
    else:
        raise AssertionError(f"one process answered everything: {healthz_by_process(metrics_dir)}")
    # Whichever process answers /metrics, it counts every process's requests.
    for _ in range(4):
        assert healthz_count(await _metrics(url)) - before == sent

    # A process that dies is replaced, and what it counted still counts.
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = children(proc.pid)
        if len(now) == 2 and victim not in now:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"the killed process was not replaced: children {children(proc.pid)}")
    await _up(url, proc)
    again = healthz_count(await _metrics(url))
    assert again - before >= sent  # the dead process's answers are still counted
    assert await _hit(url, 50) == [200] * 50
    assert healthz_count(await _metrics(url)) - again == 50
