"""What `crossdock serve` writes: uvicorn's messages and access log in CROSSDOCK_LOG_FORMAT, credentials in a
request's query redacted, and no request that the log cannot write. A real `crossdock serve` on SQLite, real HTTP
on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.engine.processes import stop_all
from tests.support import free_port

CROSSDOCK = str(Path(sys.executable).with_name("crossdock"))
HOOK_TOKEN = "shippo-hook-secret-0b5c"


def _serve(tmp_path: Path, log_format: str) -> tuple[str, str]:
    """Runs the server, sends it a health check and a hook delivery with a token in its query, stops it, and
    returns what it wrote to stdout and stderr."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK_")}
    env.update(CROSSDOCK_HOME=str(tmp_path / "home"), CROSSDOCK_LOG_FORMAT=log_format)
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [CROSSDOCK, "serve", "--no-workers", "--port", str(port)], env=env, stdout=stdout, stderr=stderr
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            with httpx.Client() as client:
                while True:
                    assert proc.poll() is None, err.read_text()
                    try:
                        if client.get(f"{url}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "crossdock serve did not come up"
                    time.sleep(0.2)
                # No such connection: answered 404, and logged as any request is.
                answer = client.post(
                    f"{url}/hooks/{uuid.uuid4()}", params={"token": HOOK_TOKEN}, content=b"{}"
                )
                assert answer.status_code == 404
        finally:
            stop_all([proc], timeout_s=30)
    return out.read_text(), err.read_text()


def test_the_json_log_is_json_on_every_line_with_the_requests_as_fields(tmp_path: Path) -> None:
    out, err = _serve(tmp_path, "json")
    lines = [json.loads(line) for line in (out + err).splitlines() if line.strip()]
    requests = [line for line in lines if line["event"] == "request"]
    assert {(r["method"], r["path"].split("?")[0], r["status"]) for r in requests} >= {
        ("GET", "/healthz", 200)
    }
    hooks = [r for r in requests if r["path"].startswith("/hooks/")]
    assert len(hooks) == 1 and hooks[0]["path"].endswith("?token=[redacted]") and hooks[0]["status"] == 404
    # uvicorn's own messages, in the same format.
    assert any(
        line["logger"] == "uvicorn.error" and "Started server process" in line["event"] for line in lines
    )
    assert HOOK_TOKEN not in out + err


def test_the_console_access_log_writes_a_request_whose_query_was_redacted(tmp_path: Path) -> None:
    out, err = _serve(tmp_path, "console")
    hook_lines = [line for line in out.splitlines() if "/hooks/" in line]
    assert len(hook_lines) == 1
    assert hook_lines[0].startswith("INFO:     127.0.0.1:")
    assert hook_lines[0].endswith('?token=[redacted] HTTP/1.1" 404 Not Found')
    # Before, uvicorn's formatter raised on such a record: "--- Logging error ---" and a traceback instead.
    assert "Logging error" not in err and "Traceback" not in err
    assert HOOK_TOKEN not in out + err
