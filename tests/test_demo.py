"""`make demo` on a fresh home answers /healthz within 15 seconds and the printed token works."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_make_demo_answers_healthz_within_15_seconds(tmp_path: Path) -> None:
    port = free_port()
    token = "demo-token-0123456789"
    env = os.environ | {"CROSSDOCK_HOME": str(tmp_path), "DEMO_PORT": str(port), "DEMO_TOKEN": token}
    env.pop("CROSSDOCK_DATABASE_URL", None)
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    try:
        healthy = False
        while time.monotonic() - started < 15:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    healthy = True
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert healthy, "the demo did not answer /healthz within 15 s"
        me = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/accounts/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200 and me.json()["name"] == "Demo"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}" in output
    assert re.search(rf"token\s+{token}", output)
