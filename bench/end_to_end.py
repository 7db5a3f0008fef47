"""End to end: an order created in the Shopify sandbox, a label bought at the Shippo sandbox, the tracking written
back to Shopify as a fulfillment; at a sustained rate, with 1, 2 and 4 worker processes.

Everything runs as its own OS process on 127.0.0.1 through the flow rig (tests/rig.py): one process serving the
Shopify and Shippo sandboxes, `crossdock serve --no-workers` (the webhooks come in there) and N `crossdock
worker` processes, on a PostgreSQL database of the run's own (created and dropped) or a SQLite file. The account,
the connections (the Shopify sandbox subscribes the hub's webhooks) and an automatic shipping policy (every
parcel by Shippo, cheapest) come from the demo's setup functions, as the rig makes them.

For each run, after five warm-up orders have gone through: orders are placed through the Shopify sandbox's admin
API at --rate a second for --seconds (each a paid US order of two items; the sandbox sends `orders/create` to the
hub), then the benchmark waits until each is done: shipped in the hub with all its fulfillments pushed to Shopify.
- latency: from the sandbox's answer to the order's creation to the hub's `pushed_at` of the order's last
  fulfillment, stamped when the Shopify sandbox answered that fulfillment's creation (so the fulfillment with its
  tracking number is in the sandbox from then on); p50 and p99 over the orders placed (an order not done within
  --drain seconds counts as infinitely late);
- where the time goes: the median of each step of an order's way, from the step before: the webhook stored in the
  inbox (its first delivery's `received_at`; the first step counts from the order's placing), then the order
  imported, its shipping planned, its label bought, its fulfillment pushed (its timeline events' times);
- throughput: orders done / (last done - first placed); scale-out: throughput / that of 1 worker (same backend);
- duplicates, counted at the sandboxes: Shippo purchases beyond one per shipment, Shopify fulfillments beyond one
  per tracking number; and that every order's tracking numbers on Shopify are its labels' (checked per order);
- CPU per order done, for each process of the run (the server, each worker, the sandboxes, this benchmark and
  all of PostgreSQL's processes, from /proc), and the most orders a second the machine's cores could carry at
  that cost: the bound the run's own figures set, whatever the hub's speed.
Goals: p50 <= 0.5 s, p99 <= 2 s, 0 duplicates; scale-out reported as measured.

As bench/backfill.py does, the hub's rate limiter is told the sandboxes' limits (`fast_limits`: 100 x the real
ones, so Shopify's REST bucket leaks 200 calls/s and Shippo takes 5,000 test purchases a minute), as a remote's
headers would tell it; --real-limits leaves the connectors' declared plans. At the real limits one shop and one
Shippo account cap the flow whatever the hub does: Shopify's standard plan leaks 2 REST calls/s (a fulfillment
takes two), Shippo allows 500 live purchases a minute (50 in test mode).

Workers poll for due jobs every --poll-s (CROSSDOCK_WORKER_POLL_S, 1 s by default as in a deployment); on
PostgreSQL they are also woken by LISTEN/NOTIFY when another process (`crossdock serve`, for a webhook's
processing) enqueues a job, on SQLite a job enqueued by another process waits for the next poll.

    .venv/bin/python bench/end_to_end.py                                   # PostgreSQL, 1, 2 and 4 workers, 50/s, 60 s
    .venv/bin/python bench/end_to_end.py --workers 1 --rate 20 --seconds 10 --backends sqlite
    .venv/bin/python bench/end_to_end.py --poll-s 0.05 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from bench.procs import cpu_seconds, cpu_seconds_of  # noqa: E402
from crossdock.store import tables as t  # noqa: E402
from tests.rig import SHIPPED, Rig, postgres_database  # noqa: E402

DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
GOAL_P50_S = 0.5
GOAL_P99_S = 2.0
WARMUP_ORDERS = 5


@dataclass
class BenchRig(Rig):
    """The rig with the workers' poll interval of the benchmark's choosing (the rig's own is 0.05 s)."""

    poll_s: float = 1.0

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["CROSSDOCK_WORKER_POLL_S"] = str(self.poll_s)
        return env


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


# The sandboxes' fast_limits multiply every limit by 100 (sandbox/shopify/state.py: the bucket leaks 2 x 100
# calls/s; sandbox/shippo/state.py: each per-minute limit x 100).
FAST_LIMITS = 100


async def tell_sandbox_limits(rig: Rig) -> None:
    """Set the connections' rate-limit buckets to what the sandboxes allow, marked `adjusted` as when a remote's
    headers set them (so the connectors' declared plans no longer override them)."""
    from crossdock.engine.ratelimit import SHOPIFY_REST, shippo
    from crossdock.store.types import utcnow
    from crossdock.store.upsert import insert_for

    plans = {
        # The leak rate is 100 x, the bucket's size is not.
        "shopify": {name: (p.interval_s / FAST_LIMITS, p.burst) for name, p in SHOPIFY_REST.buckets.items()},
        "shippo": {
            name: (p.interval_s / FAST_LIMITS, p.burst * FAST_LIMITS)
            for name, p in shippo(live=False).buckets.items()
        },
    }
    async with rig.hub.db.transaction() as session:
        for sandbox, buckets in plans.items():
            for bucket, (interval_s, burst) in buckets.items():
                values = {"interval_s": interval_s, "burst": burst, "tat": time.time(), "adjusted": True}
                stmt: Any = insert_for(session, t.RateLimit).values(
                    connection_id=rig.connections[sandbox],
                    bucket=bucket,
                    account_id=rig.account_id,
                    updated_at=utcnow(),
                    **values,
                )
                await session.execute(
                    stmt.on_conflict_do_update(index_elements=["connection_id", "bucket"], set_=values)
                )


async def done_times(rig: Rig) -> dict[str, float]:
    """Shopify order id -> when its last fulfillment was pushed, for every order shipped in the hub whose
    fulfillments are all pushed. One grouped query, cheap enough to run every second during the run."""
    stmt = (
        select(
            t.Order.external_id,
            func.count(t.Fulfillment.id),
            func.count(t.Fulfillment.pushed_at),
            func.max(t.Fulfillment.pushed_at),
        )
        .join(t.Fulfillment, t.Fulfillment.order_id == t.Order.id)
        .where(
            t.Order.connection_id == rig.connections["shopify"],
            t.Order.status.in_(SHIPPED),
            t.Fulfillment.status == "pushed",
        )
        .group_by(t.Order.external_id)
    )
    # Fulfillments not pushed yet are left out by the status filter: compare with all of the order's.
    total = (
        select(t.Order.external_id, func.count(t.Fulfillment.id))
        .join(t.Fulfillment, t.Fulfillment.order_id == t.Order.id)
        .where(t.Order.connection_id == rig.connections["shopify"])
        .group_by(t.Order.external_id)
    )
    async with rig.hub.db.session() as session:
        pushed = (await session.execute(stmt)).all()
        counts = {external_id: n for external_id, n in (await session.execute(total)).all()}
    return {
        str(external_id): _epoch(last)
        for external_id, _n, n_pushed, last in pushed
        if last is not None and n_pushed == counts.get(external_id)
    }


# The steps of an order's way, each from the one before: the webhook stored in the inbox (its first delivery), the
# order imported, its shipping planned, its label bought, its fulfillment pushed (timeline events' times).
STEPS = (
    ("stored", None),
    ("imported", "order.imported"),
    ("planned", "shipping.planned"),
    ("label", "shipping.label_bought"),
    ("pushed", "fulfillment.pushed"),
)


async def step_times(rig: Rig) -> dict[str, dict[str, float]]:
    """Shopify order id -> {step: when the hub first reached it}, read once after the run."""
    shopify = rig.connections["shopify"]
    kinds = [kind for _, kind in STEPS if kind is not None]
    events = (
        select(t.Order.external_id, t.TimelineEvent.kind, func.min(t.TimelineEvent.at))
        .join(t.TimelineEvent, t.TimelineEvent.order_id == t.Order.id)
        .where(t.Order.connection_id == shopify, t.TimelineEvent.kind.in_(kinds))
        .group_by(t.Order.external_id, t.TimelineEvent.kind)
    )
    stored = (
        select(t.Order.external_id, func.min(t.InboxMessage.received_at))
        .join(t.InboxMessage, t.InboxMessage.order_id == t.Order.id)
        .where(t.Order.connection_id == shopify)
        .group_by(t.Order.external_id)
    )
    step_of = {kind: step for step, kind in STEPS}
    times: dict[str, dict[str, float]] = {}
    async with rig.hub.db.session() as session:
        for external_id, kind, at in (await session.execute(events)).all():
            times.setdefault(str(external_id), {})[step_of[kind]] = _epoch(at)
        for external_id, at in (await session.execute(stored)).all():
            times.setdefault(str(external_id), {})["stored"] = _epoch(at)
    return times


def step_p50s(placed: list[Any], times: dict[str, dict[str, float]]) -> dict[str, float]:
    """The median time of each step, from the step before (the first from the order's placing), over the orders
    that reached both."""
    p50s: dict[str, float] = {}
    for i, (step, _kind) in enumerate(STEPS):
        spans = []
        for order in placed:
            reached = times.get(str(order.id), {})
            start = order.placed_at if i == 0 else reached.get(STEPS[i - 1][0])
            if start is not None and step in reached:
                spans.append(reached[step] - start)
        p50s[step] = statistics.median(spans) if spans else math.nan
    return p50s


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method; inf where it falls on an order not done."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def sample_processes(args: argparse.Namespace, rig: Rig, tag: str) -> list[subprocess.Popen[bytes]]:
    """With --profile, py-spy samples the server and every worker through the placing window (collapsed stacks,
    one file per process)."""
    if not args.profile:
        return []
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    processes = {"serve": rig._server, **{f"worker-{i}": w for i, w in enumerate(rig._workers)}}
    duration = str(max(1, round(args.seconds)))
    record = [spy, "record", "--duration", duration, "--format", "raw"]
    return [
        subprocess.Popen(
            [*record, "--pid", str(proc.pid), "-o", f"{args.profile}/{tag}-{name}.txt"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, proc in processes.items()
        if proc is not None
    ]


def cpu_now(rig: Rig) -> dict[str, float]:
    """CPU seconds so far of each process of the run: the hub's, the sandboxes', this benchmark's (placing orders,
    reading the database) and PostgreSQL's (all its processes on this machine, summed)."""
    named = {name: proc.pid for name, proc in rig.processes().items()}
    if rig._sandbox_proc is not None:
        named["sandboxes"] = rig._sandbox_proc.pid
    named["benchmark"] = os.getpid()
    cpu = {name: cpu_seconds(pid) for name, pid in named.items()}
    cpu["PostgreSQL"] = cpu_seconds_of("postgres")
    return cpu


@contextlib.asynccontextmanager
async def database(backend: str, server_url: str) -> AsyncIterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    async with postgres_database(server_url, prefix="crossdock_e2e_bench") as url:
        yield url


async def one_run(args: argparse.Namespace, backend: str, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="crossdock-e2e-") as tmp:
        async with (
            database(backend, args.server_url) as url,
            BenchRig(
                Path(tmp),
                database_url=url,
                workers=workers,
                concurrency=args.concurrency,
                seed=args.seed,
                lease_s=30.0,
                poll_s=args.poll_s,
            ) as rig,
        ):
            if not args.real_limits:
                await tell_sandbox_limits(rig)
            warm = await rig.create_orders(WARMUP_ORDERS, per_s=WARMUP_ORDERS)
            await rig.wait_shipped([p.id for p in warm], within_s=120)

            count = max(1, round(args.rate * args.seconds))
            samplers = sample_processes(args, rig, f"{backend}-{workers}")
            cpu_before = cpu_now(rig)
            started = time.time()
            # Several clients place orders side by side: one alone, awaiting each answer, places 15 to 20 a
            # second on a loaded machine, short of the rate asked for.
            placers = args.placers or max(1, math.ceil(args.rate / 10))
            shares = [count // placers + (i < count % placers) for i in range(placers)]
            batches = await asyncio.gather(
                *(rig.create_orders(share, per_s=args.rate / placers) for share in shares if share)
            )
            placed = sorted((p for batch in batches for p in batch), key=lambda p: p.placed_at)
            placing_s = placed[-1].placed_at - placed[0].placed_at if len(placed) > 1 else 0.0
            wanted = {str(p.id) for p in placed}
            deadline = time.monotonic() + args.drain
            done: dict[str, float] = {}
            while time.monotonic() < deadline:
                done = await done_times(rig)
                if wanted <= done.keys():
                    break
                await asyncio.sleep(1.0)
            finished = time.time()
            cpu_after = cpu_now(rig)
            for sampler in samplers:
                sampler.wait(timeout=60)
            truth = await rig.truth()
            steps = await step_times(rig)
            tracking = {
                key: {f.tracking_number for f in shipments if f.tracking_number}
                for key, shipments in truth.hub_shipments.items()
            }
    latencies = [done[str(p.id)] - p.placed_at if str(p.id) in done else math.inf for p in placed]
    finite = [x for x in latencies if math.isfinite(x)]
    completed = [done[k] for k in wanted if k in done]
    span = (max(completed) - placed[0].placed_at) if completed else math.nan
    labels = truth.labels
    mismatched = [
        key for key in wanted if key in done and truth.tracking_on_shopify(key) != tracking.get(key, set())
    ]
    return {
        "backend": "PostgreSQL" if backend == "postgres" else "SQLite",
        "workers": workers,
        "concurrency": args.concurrency,
        "poll_s": args.poll_s,
        "real_limits": args.real_limits,
        "rate": args.rate,
        "placers": placers,
        "placed": len(placed),
        "placed_per_s": (len(placed) - 1) / placing_s if placing_s else math.nan,
        "done": len(completed),
        "not_done": len(placed) - len(completed),
        "throughput": len(completed) / span if completed and span > 0 else math.nan,
        "p50_s": percentile(latencies, 0.50),
        "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies) if latencies else math.nan,
        "mean_s": statistics.fmean(finite) if finite else math.nan,
        "step_p50_s": step_p50s(placed, steps),
        "labels_max_per_order": max((len(labels.get(k, [])) for k in wanted), default=0),
        "fulfillments_max_per_order": max(
            (len(truth.shopify[k]["fulfillments"]) for k in wanted if k in truth.shopify), default=0
        ),
        "duplicate_labels": truth.duplicate_labels,
        "duplicate_fulfillments": truth.duplicate_fulfillments,
        "tracking_mismatched": len(mismatched),
        "dead_jobs": len(truth.dead_jobs),
        "quarantined": len(truth.quarantined),
        "wall_s": finished - started,
        # CPU ms each process spent per order done, from the first order placed to the last done (or the drain's
        # end); with 2 cores, 2,000 / the total is the most orders a second this machine could carry.
        "cpu_ms_per_order": {
            name: 1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / len(completed)
            if completed
            else math.nan
            for name in cpu_after
        },
        "cores": os.cpu_count(),
    }


def print_table(runs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    first = runs[0]
    table = Table(
        title=(
            f"End to end: Shopify order -> Shippo label -> Shopify fulfillment with tracking, "
            f"{first['rate']:g} orders/s placed (workers poll every {first['poll_s']:g} s)"
        ),
        caption=f"goals: p50 <= {GOAL_P50_S} s, p99 <= {GOAL_P99_S} s, 0 duplicates",
    )
    columns = (
        "backend",
        "workers",
        "placed",
        "placed/s",
        "done",
        "done/s",
        "/ 1 worker",
        "p50 s",
        "p99 s",
        "max s",
        "dup labels",
        "dup fulfil.",
        "tracking ok",
    )
    for name in columns:
        table.add_column(name, justify="left" if name == "backend" else "right")
    base = {r["backend"]: r["throughput"] for r in runs if r["workers"] == 1}
    for r in runs:
        ratio = r["throughput"] / base[r["backend"]] if r["backend"] in base else math.nan
        table.add_row(
            r["backend"],
            str(r["workers"]),
            f"{r['placed']:,}",
            f"{r['placed_per_s']:.1f}",
            f"{r['done']:,}",
            f"{r['throughput']:.1f}",
            f"{ratio:.2f}",
            f"{r['p50_s']:.3f}",
            f"{r['p99_s']:.3f}",
            f"{r['max_s']:.3f}",
            str(r["duplicate_labels"]),
            str(r["duplicate_fulfillments"]),
            f"{r['done'] - r['tracking_mismatched']}/{r['done']}",
        )
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(table)
    for r in runs:
        console.print(
            f"{r['backend']}, {r['workers']} worker(s) x {r['concurrency']} jobs: at most "
            f"{r['labels_max_per_order']} label(s) and {r['fulfillments_max_per_order']} fulfillment(s) per order; "
            f"{r['not_done']} not done; {r['dead_jobs']} dead jobs, {r['quarantined']} quarantined; mean latency "
            f"{r['mean_s']:.3f} s; run {r['wall_s']:.0f} s"
        )
        console.print(
            "  p50 of each step, from the one before (s): placed -> "
            + " -> ".join(f"{step} {seconds:.3f}" for step, seconds in r["step_p50_s"].items())
        )
        cpu = r["cpu_ms_per_order"]
        total = sum(cpu.values())
        console.print(
            "  CPU ms per order done: "
            + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu.items())
            + f"; total {total:.1f}, so {r['cores']} cores carry at most {1000 * r['cores'] / total:.1f} orders/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="orders placed per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long orders are placed")
    parser.add_argument(
        "--workers", default="1,2,4", help="comma-separated worker process counts, one run each"
    )
    parser.add_argument(
        "--placers", type=int, default=0, help="clients placing orders side by side (default: one per 10/s)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="jobs one worker process runs at once")
    parser.add_argument("--backends", default="postgres", help="comma-separated: postgres, sqlite")
    parser.add_argument(
        "--server-url",
        default=DEFAULT_SERVER,
        help="a PostgreSQL server (SQLAlchemy URL); each run creates a database of its own there and drops it",
    )
    parser.add_argument("--poll-s", type=float, default=1.0, help="the workers' CROSSDOCK_WORKER_POLL_S")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for the last orders")
    parser.add_argument("--seed", type=int, default=1, help="the sandboxes' seed")
    parser.add_argument(
        "--real-limits", action="store_true", help="keep Shopify's and Shippo's real rate limits in the hub"
    )
    parser.add_argument("--profile", default=None, help="sample the hub's processes with py-spy, output here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()

    from crossdock.logs import configure_logging

    configure_logging("WARNING")
    runs = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in ("postgres", "sqlite"):
            raise SystemExit(f"--backends: {backend!r} is neither postgres nor sqlite")
        for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
            runs.append(asyncio.run(one_run(args, backend, workers)))
    print_table(runs)
    if args.json:
        sys.stdout.write(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
