"""Periodic jobs: every worker's scheduler tries to enqueue each tick, the unique index keeps exactly one.

A tick is the wall-clock interval number floor(unix time / every_s), the same on every machine whose clock is
right, so any number of workers agree on it without talking to each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.engine.jobs import enqueue

PayloadFn = Callable[[datetime], dict[str, Any]]


@dataclass(frozen=True)
class Periodic:
    kind: str
    every_s: float
    payload_fn: PayloadFn | None = None

    def tick(self, now: datetime) -> int:
        return math.floor(now.timestamp() / self.every_s)

    def tick_start(self, tick: int) -> datetime:
        return datetime.fromtimestamp(tick * self.every_s, UTC)


PERIODIC: dict[str, Periodic] = {}


def periodic(kind: str, every_s: float, payload_fn: PayloadFn | None = None) -> Periodic:
    """Run job `kind` once every `every_s` seconds across all workers. payload_fn receives the tick's start
    time (aware UTC) and returns the job's payload; without it the payload is {"tick_at": <iso time>}."""
    if every_s <= 0:
        raise ValueError("every_s must be positive")
    task = Periodic(kind, float(every_s), payload_fn)
    PERIODIC[kind] = task
    return task


async def enqueue_tick(session: AsyncSession, task: Periodic, now: datetime) -> bool:
    """Enqueue this tick of `task` unless some worker already did; True when this call enqueued it."""
    tick = task.tick(now)
    at = task.tick_start(tick)
    payload = task.payload_fn(at) if task.payload_fn else {"tick_at": at.isoformat()}
    job_id = await enqueue(
        session,
        account_id=None,
        kind=task.kind,
        payload=payload,
        run_at=at,
        # Ticks missed while no worker ran collapse into the one still waiting instead of piling up.
        queueing_key=f"periodic:{task.kind}",
        periodic_task=task.kind,
        periodic_tick=tick,
    )
    return job_id is not None
