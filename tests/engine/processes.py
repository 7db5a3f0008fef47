"""Worker processes for the crash and concurrency tests: `crossdock worker` started as the operator would,
importing the test job kinds, on the test's own database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from crossdock.hub import Hub

REPO = Path(__file__).resolve().parents[2]


def worker_env(hub: Hub, *, lease_s: float) -> dict[str, str]:
    settings = hub.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK_")}
    env.update(
        CROSSDOCK_HOME=str(settings.home),
        CROSSDOCK_WORKER_LEASE_S=str(lease_s),
        CROSSDOCK_WORKER_HEARTBEAT_S=str(min(0.25, lease_s / 4)),
        CROSSDOCK_WORKER_POLL_S="0.05",
        CROSSDOCK_WORKER_GRACE_S="5",
        CROSSDOCK_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    if settings.database_url:
        env["CROSSDOCK_DATABASE_URL"] = settings.database_url
    return env


def start_worker(env: dict[str, str], *, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    code = "from crossdock.cli import main; main()"
    args = ["worker", "--concurrency", str(concurrency), "--import", "tests.engine.jobkinds"]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args], env=env, cwd=REPO, stdout=out, stderr=out
        )


def stop_all(processes: list[subprocess.Popen[bytes]], *, timeout_s: float = 15.0) -> None:
    """SIGTERM (a graceful stop, as systemd or Kubernetes sends it), then SIGKILL if one hangs."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
