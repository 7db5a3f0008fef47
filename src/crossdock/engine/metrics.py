"""Prometheus metrics of the job queue.

Queue depth is read from the database when /metrics is scraped (refresh_queue_depth), because jobs of every
worker process live there; latency and attempts are counted by the worker process that ran them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select

from crossdock.store import tables as t
from crossdock.store.db import Database
from crossdock.store.types import utcnow

# Read from the database by whichever process is scraped: with several server processes (prometheus_client's
# multiprocess mode) the value last read is the one to show, not a sum over the processes.
JOBS = Gauge("crossdock_jobs", "Jobs in the database by status", ["status"], multiprocess_mode="mostrecent")
OLDEST_DUE = Gauge(
    "crossdock_jobs_oldest_due_seconds",
    "Age of the longest-waiting due job (queued or failed), 0 when none",
    multiprocess_mode="mostrecent",
)
JOB_ATTEMPTS = Counter(
    "crossdock_job_attempts_total", "Job attempts by kind and outcome", ["kind", "outcome"]
)
JOB_DURATION = Histogram(
    "crossdock_job_duration_seconds",
    "How long one attempt of a job ran",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
JOB_QUEUE_DELAY = Histogram(
    "crossdock_job_queue_delay_seconds",
    "Time from when a job was due to when a worker started it",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)


async def refresh_queue_depth(db: Database) -> None:
    async with db.session() as session:
        counts = dict(
            (await session.execute(select(t.Job.status, func.count()).group_by(t.Job.status))).all()
        )
        now = utcnow()
        oldest = (
            await session.execute(
                select(func.min(t.Job.run_at)).where(t.Job.status.in_(t.JOB_WAITING), t.Job.run_at <= now)
            )
        ).scalar_one_or_none()
    for status in t.JOB_STATUSES:
        JOBS.labels(status).set(counts.get(status, 0))
    OLDEST_DUE.set(max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0)
