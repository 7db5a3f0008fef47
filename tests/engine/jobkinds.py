"""Job kinds used by the engine tests; also imported by worker processes the tests start (--import)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete

from crossdock.engine.errors import ConfigurationError, PermanentError, RateLimited
from crossdock.engine.jobs import JobContext, RetryPolicy, job
from crossdock.store import tables as t

# Tiny backoff so retries happen within a test; two attempts so both "will retry" and "dead" are seen.
QUICK = RetryPolicy(max_attempts=2, base_s=0.01, cap_s=0.05)
EVENTS: dict[str, asyncio.Event] = {}


@job("test.ok", retry=QUICK)
async def ok(ctx: JobContext, payload: dict[str, Any]) -> None:
    return None


@job("test.deletes_its_order", retry=QUICK)
async def deletes_its_order(ctx: JobContext, payload: dict[str, Any]) -> None:
    async with ctx.session() as session:
        await session.execute(delete(t.Order).where(t.Order.id == ctx.order_id))


@job("test.boom", retry=QUICK)
async def boom(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise ValueError("the mapping table has no entry for carrier 'XYZ'")


@job("test.slow", retry=QUICK, timeout_s=0.2)
async def slow(ctx: JobContext, payload: dict[str, Any]) -> None:
    await asyncio.sleep(30)


@job("test.malformed", retry=QUICK)
async def malformed(ctx: JobContext, payload: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(payload["url"])
    response.json()  # the remote answered 200 with a body that is not JSON


@job("test.rate_limited", retry=RetryPolicy(max_attempts=5, base_s=0.01, cap_s=0.05))
async def rate_limited(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise RateLimited("Shippo asked crossdock to slow down (429)", retry_after=payload["retry_after"])


@job("test.permanent")
async def permanent(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise PermanentError("Shippo refused the shipment: 'address_to.zip' is not a valid postal code")


@job("test.configuration")
async def configuration(ctx: JobContext, payload: dict[str, Any]) -> None:
    raise ConfigurationError("Shippo refused the API token (401); connect the account again")


@job("test.wait", retry=QUICK)
async def wait(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Runs until the test sets EVENTS[name] (or for payload['seconds'] when given)."""
    if "seconds" in payload:
        await asyncio.sleep(payload["seconds"])
        return
    await EVENTS[payload["name"]].wait()


@job("test.interval", retry=QUICK)
async def interval(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Appends its start and end (wall clock, ns) to a file; the tests check that lock keys never overlap."""
    start = time.time_ns()
    await asyncio.sleep(payload.get("seconds", 0.01))
    end = time.time_ns()
    line = json.dumps(
        {"job": str(ctx.job_id), "lock": payload["lock"], "start": start, "end": end, "pid": os.getpid()}
    )
    with Path(payload["log"]).open("a") as log:
        log.write(line + "\n")


_clients: dict[int, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    """One client per event loop: building a client (and its TLS context) per call costs more than the call."""
    loop = id(asyncio.get_running_loop())
    if loop not in _clients:
        _clients[loop] = httpx.AsyncClient(timeout=10)
    return _clients[loop]


@job("test.remote_effect", retry=RetryPolicy(max_attempts=10, base_s=0.05, cap_s=0.5), timeout_s=30)
async def remote_effect(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Asks the remote for an effect under an idempotency key. A 'kill' job then SIGKILLs its own worker process
    before the worker can record success, as a power cut would, once: the marker file says it happened."""
    response = await _client().post(
        payload["url"], json={"job": str(ctx.job_id)}, headers={"Idempotency-Key": payload["key"]}
    )
    response.raise_for_status()
    if payload.get("kill"):
        try:
            (Path(payload["markers"]) / payload["key"]).touch(exist_ok=False)
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
