"""Outbound webhook delivery with the faults real senders show: duplicates, reordering, retries.

Real platforms deliver at least once and in no guaranteed order; a connector's inbox must cope. The sender
is a queue drained by one background task; every attempt is recorded, so tests see what went out and what
came back.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from crossdock.sandbox.common.faults import Faults


@dataclass
class Delivery:
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    error: str | None
    attempt: int
    at: datetime
    # True for the second copy sent by the dup_webhooks fault.
    duplicate: bool = False


@dataclass
class _Job:
    url: str
    body: bytes
    headers: dict[str, str]
    duplicate: bool = False
    # Reorder fault: hold this job back until the next one has gone out.
    hold: bool = False


class WebhookSender:
    # How long a reordered delivery waits for a successor before it goes out anyway.
    hold_s: float = 1.0

    def __init__(
        self,
        faults: Faults,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        retry_delay_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.faults = faults
        # Tests may deliver in-process (httpx.ASGITransport to a receiver app) instead of over a socket.
        self.transport = transport
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.deliveries: list[Delivery] = []
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._held: _Job | None = None
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._ensure_worker()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RuntimeError):
                await client.aclose()
        self._queue = None
        self._loop = None
        self._held = None
        self._pending = 0

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # A new event loop (in-process tests without lifespan) gets its own queue, client and worker.
            self._loop = loop
            self._queue = asyncio.Queue()
            # Shopify's documented delivery budget is 1 s to connect, 5 s in total.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s, connect=min(1.0, self.timeout_s)),
                transport=self.transport,
            )
            self._held = None
            self._pending = 0
            self._task = loop.create_task(self._run(), name="sandbox-webhook-sender")

    def enqueue(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue one delivery; must be called from within the event loop (any request handler)."""
        self._ensure_worker()
        assert self._queue is not None
        jobs = [_Job(url, body, dict(headers))]
        # Decided here, in enqueue order, so the fault sequence depends only on what the sandbox emitted.
        if self.faults.dup_webhook():
            jobs.append(_Job(url, body, dict(headers), duplicate=True))
        reorder = self.faults.reorder_webhook()
        jobs[0].hold = reorder
        for job in jobs:
            self._pending += 1
            self._queue.put_nowait(job)

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            try:
                job = await asyncio.wait_for(queue.get(), timeout=self.hold_s if self._held else None)
            except TimeoutError:
                held, self._held = self._held, None
                if held is not None:
                    await self._deliver(held)
                continue
            if job.hold and self._held is None:
                job.hold = False
                self._held = job
                continue
            await self._deliver(job)
            held, self._held = self._held, None
            if held is not None:
                # The held delivery goes out after the one that followed it: the reorder fault.
                await self._deliver(held)

    async def _deliver(self, job: _Job) -> None:
        assert self._client is not None
        try:
            for attempt in range(1, self.retries + 2):
                status: int | None = None
                error: str | None = None
                try:
                    response = await self._client.post(job.url, content=job.body, headers=job.headers)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                self.deliveries.append(
                    Delivery(
                        job.url,
                        job.headers,
                        job.body,
                        status,
                        error,
                        attempt,
                        datetime.now(UTC),
                        job.duplicate,
                    )
                )
                if status is not None and 200 <= status < 300:
                    return
                if attempt <= self.retries:
                    await asyncio.sleep(self.retry_delay_s)
        finally:
            self._pending -= 1

    async def drain(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the contract's signature)
        """Wait until every queued delivery (including held ones) has been attempted to the end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._pending > 0:
            if self._held is not None and self._queue is not None and self._queue.empty():
                # Nothing else is coming during a drain: release the held delivery now.
                self._queue.put_nowait(self._held)
                self._held = None
            if loop.time() > deadline:
                raise TimeoutError(f"webhook sender still has {self._pending} deliveries after {timeout}s")
            await asyncio.sleep(0.01)
