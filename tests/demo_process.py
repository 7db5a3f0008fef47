"""`make demo` run as a newcomer runs it, for the tests that watch it: on a fresh home and a free port, in its own
process group (so that one Ctrl-C to the group reaches make and crossdock), its banner read as printed."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_demo(home: Path, port: int, token: str) -> subprocess.Popen[str]:
    """`make demo` with CROSSDOCK_HOME `home`, DEMO_PORT `port` and DEMO_TOKEN `token`, its output on stdout."""
    env = os.environ | {"CROSSDOCK_HOME": str(home), "DEMO_PORT": str(port), "DEMO_TOKEN": token}
    env.pop("CROSSDOCK_DATABASE_URL", None)
    return subprocess.Popen(
        ["make", "--no-print-directory", "demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def read_banner(proc: subprocess.Popen[str], deadline: float) -> str:
    """The demo's output up to its banner's last line ("stop  Ctrl-C"), read before `deadline` (monotonic)."""
    assert proc.stdout is not None
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("make demo ended early:\n" + "".join(lines))
        lines.append(line)
        if line.strip().startswith("stop"):
            return "".join(lines)
    raise AssertionError("make demo printed no banner in time:\n" + "".join(lines))


def keep_reading(proc: subprocess.Popen[str]) -> None:
    """Read and drop the rest of the demo's output in the background: a test that watches the demo longer than a
    minute would otherwise let its feed fill the pipe, and the demo, blocked writing to it, would stop moving."""
    assert proc.stdout is not None
    threading.Thread(target=proc.stdout.read, daemon=True).start()


def banner_sandboxes(banner: str) -> dict[str, str]:
    """The sandboxes the banner lists, their URLs by title."""
    return {
        m.group(1).strip(): m.group(2)
        for m in re.finditer(r"^\s{4}(\S[^\n]*?)\s+(http://127\.0\.0\.1:\d+)\s+connection", banner, re.M)
    }
