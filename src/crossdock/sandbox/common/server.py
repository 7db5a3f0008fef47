"""Running a sandbox app: blocking on a port (the CLI) or in a background thread (tests, SDKs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

# Sandboxes accept any token for a fake shop: they must never be reachable from another machine.
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _check_loopback(host: str) -> None:
    if host not in _LOOPBACK:
        raise ValueError(f"sandboxes listen on loopback only, not {host!r} (use 127.0.0.1)")


def serve(app: Any, port: int, host: str = "127.0.0.1") -> None:
    """Serve `app` until interrupted (blocking)."""
    _check_loopback(host)
    uvicorn.run(app, host=host, port=port, log_level="info", lifespan="on")


@contextmanager
def run_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a daemon thread; yields its base URL and stops the server on exit."""
    _check_loopback(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="sandbox-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("sandbox server failed to start (see log output)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("sandbox server did not start within 10 s")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound_port}" if host != "::1" else f"http://[::1]:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
