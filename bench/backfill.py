"""Backfill speed and memory: a Shopify shop's orders into the database, against fetching the same pages alone.

The Shopify sandbox runs in its own process on 127.0.0.1, seeded with N orders, so its CPU and memory are not
counted against the hub. For every size, in the same run and against the same sandbox, a child process each:
- fetch only: `ShopifyConnector.pull_orders` over the backfill window with `map_order` replaced by a stub, so
  the same requests, paging, rate limiter and JSON decoding, and nothing mapped or stored (run before the
  first import and after each import; the rate is taken from their median time);
- fetch + map: `pull_orders` as it is (pages mapped to canonical orders), nothing stored;
- import: `crossdock.engine.sync.run_pull` into a fresh, migrated database, exactly as a `sync` job runs it
  (`--repeat N` imports N times, each into a fresh database; the rate is taken from their median time).
Every child tunes its garbage collector once started, as the worker and `crossdock sync` do
(crossdock.engine.tuning), so fetching alone gets what importing gets. Each child reports its own peak RSS
(`ru_maxrss`), so sizes and runs do not contaminate each other. Goals: import orders/s >= 0.5 x fetch-only
orders/s, and a flat import peak RSS of at most 300 MB at 10k and 100k.

The connection's rate limiter is told the sandbox's fast-limits leak rate (200 calls/s, as the remote's own
headers would set it) before each run, so no run waits on it; at Shopify's standard 2 calls/s a shop gives at
most 500 orders/s whatever the hub does.

    .venv/bin/python bench/backfill.py                                  # 10k and 100k orders, SQLite
    .venv/bin/python bench/backfill.py --orders 10000 --repeat 3            # a shared, noisy machine
    .venv/bin/python bench/backfill.py --orders 10000 --profile /tmp/backfill-profile
    .venv/bin/python bench/backfill.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/crossdock_backfill_bench

A --database-url database is dropped and created again before every child, so its name must contain "bench".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import pstats
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TOKEN = "shpat_bench_backfill_000000000000000000"
SHOP = "backfill-bench.myshopify.com"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
# The Shopify sandbox with fast_limits leaks 100 x 2 calls/s (sandbox/shopify/state.py).
SANDBOX_LEAK_PER_S = 200.0
BUCKET_CAPACITY = 40
GOAL_RATIO = 0.5
BLOCK = 40  # pages, for the first-against-last comparison of an import's speed
GOAL_RSS_MB = 300.0


def _rss_mb() -> float:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# -- the sandbox process --------------------------------------------------------------------------------------


def serve_sandbox(orders: int, seed: int) -> None:
    """Seed the Shopify sandbox, tell the parent where it listens (one JSON line), serve until terminated."""
    import uvicorn

    from crossdock.sandbox import create_sandbox_app
    from crossdock.sandbox.common import SandboxConfig

    started = time.perf_counter()
    app = create_sandbox_app(
        "shopify",
        SandboxConfig(seed=seed, orders=orders, token=TOKEN, fast_limits=True, extra={"shop": SHOP}),
    )
    seed_s = time.perf_counter() - started
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    _emit({"port": port, "seed_s": seed_s, "rss_mb": _rss_mb()})
    uvicorn.Server(config).run(sockets=[sock])


# -- the measured children ------------------------------------------------------------------------------------


async def _prepare(database_url: str | None, home: Path, base_url: str) -> tuple[Any, Any, Any]:
    """A hub on a fresh, migrated database with one account and its Shopify connection to the sandbox."""
    from crossdock.config import Settings
    from crossdock.hub import Hub
    from crossdock.store import repo
    from crossdock.store import tables as t
    from crossdock.store.migrate import upgrade
    from crossdock.store.types import utcnow

    settings = Settings(home=home, database_url=database_url, allow_private_urls=True, sync_schedule=False)
    hub = Hub.from_settings(settings)
    await upgrade(hub.db)
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Backfill bench")
        connection = await repo.Tenant(session, account.id).create_connection(
            connector="shopify",
            name="Backfill bench shop",
            vault=hub.vault,
            settings={"shop": SHOP},
            base_url=base_url,
            secrets={"access_token": TOKEN, "api_secret": "sandbox-client-secret"},
        )
        # What the limiter would learn from a remote that says it leaks this fast (`adjusted`: the remote's
        # numbers win over the connector's declared 2/s).
        session.add(
            t.RateLimit(
                connection_id=connection.id,
                bucket="rest",
                account_id=account.id,
                interval_s=1.0 / SANDBOX_LEAK_PER_S,
                burst=BUCKET_CAPACITY - 2,
                tat=time.time(),
                adjusted=True,
                updated_at=utcnow(),
            )
        )
    return hub, account.id, connection.id


async def _fetch(hub: Any, account_id: Any, connection_id: Any, *, mapping: bool) -> dict[str, Any]:
    from crossdock.connectors.base import Mapped, PullWindow
    from crossdock.connectors.shopify import client as shopify_client
    from crossdock.engine.connections import open_connector
    from crossdock.store.types import utcnow

    if not mapping:
        # Same requests, paging and JSON decoding as a pull; the decoded order is dropped unmapped.
        shopify_client.map_order = lambda raw: Mapped()
    pages = orders = 0
    started, cpu = time.perf_counter(), time.process_time()
    async with open_connector(hub, account_id, connection_id) as (_connection, connector):
        async for page in connector.pull_orders(PullWindow(LONG_AGO, utcnow()), None):
            pages += 1
            orders += page.raw_count or len(page.records)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"pages": pages, "orders": orders, "seconds": elapsed, "cpu_s": cpu}


async def _import(hub: Any, account_id: Any, connection_id: Any) -> dict[str, Any]:
    from crossdock.engine.sync import run_pull

    # run_pull reports progress once when it starts, after every page and once when it is done.
    marks: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    run = await run_pull(
        hub,
        account_id,
        connection_id,
        trigger="manual",
        since=LONG_AGO,
        progress=lambda _run: marks.append(time.perf_counter()),
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if run.status != "succeeded":
        raise RuntimeError(f"the pull did not succeed: {run.status} {run.error}")
    pages = marks[: run.pages + 1]
    return {
        "pages": run.pages,
        "orders": run.read,
        "created": run.created,
        "invalid": run.invalid,
        "seconds": elapsed,
        "cpu_s": cpu,
        # Wall time of the first and the last BLOCK pages: a per-page cost that grows with the table shows here.
        "first_block_s": pages[min(BLOCK, run.pages)] - pages[0],
        "last_block_s": pages[-1] - pages[max(len(pages) - 1 - BLOCK, 0)],
    }


class _GcClock:
    """Seconds spent in the cyclic garbage collector (gc.callbacks), a large share of an import's CPU."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


async def _child(kind: str, base_url: str, database_url: str | None) -> dict[str, Any]:
    from crossdock.engine.tuning import tune_long_running_process
    from crossdock.logs import configure_logging

    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="crossdock-backfill-") as home:
        hub, account_id, connection_id = await _prepare(database_url, Path(home), base_url)
        # What the worker and `crossdock sync` do once started; every child, fetch only included, so the ratio
        # compares like with like.
        tune_long_running_process()
        gc_clock = _GcClock()
        try:
            rss_start = _rss_mb()
            gc.callbacks.append(gc_clock)
            if kind == "import":
                result = await _import(hub, account_id, connection_id)
            else:
                result = await _fetch(hub, account_id, connection_id, mapping=kind == "fetch-map")
        finally:
            gc.callbacks.remove(gc_clock)
            await hub.close()
    return {
        "kind": kind,
        **result,
        "gc_s": gc_clock.seconds,
        "gc_collections": gc_clock.collections,
        "rss_start_mb": rss_start,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_child(kind: str, base_url: str, database_url: str | None, profile: str | None) -> None:
    if profile is None:
        _emit(asyncio.run(_child(kind, base_url, database_url)))
        return
    profiler = cProfile.Profile()
    result = profiler.runcall(asyncio.run, _child(kind, base_url, database_url))
    profiler.dump_stats(profile)
    _emit({**result, "profile": profile})


# -- the parent: sandbox, children, table ---------------------------------------------------------------------


@contextlib.contextmanager
def sandbox(orders: int, seed: int, timeout_s: float) -> Iterator[dict[str, Any]]:
    """The seeded sandbox in its own process; yields its base URL and seeding figures, and always stops it."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "sandbox", "--orders", str(orders), "--seed", str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = ""
        while not line:
            if proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited with {proc.returncode} before it listened")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sandbox did not start within {timeout_s:.0f} s")
            line = proc.stdout.readline()
        info = json.loads(line)
        base_url = f"http://127.0.0.1:{info['port']}"
        _wait_listening(base_url, deadline)
        yield {**info, "base_url": base_url}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_listening(base_url: str, deadline: float) -> None:
    import httpx

    while True:
        try:
            response = httpx.get(
                f"{base_url}/admin/api/2025-01/shop.json", headers={"X-Shopify-Access-Token": TOKEN}
            )
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the sandbox does not answer shop.json")
        time.sleep(0.05)


def recreate_postgres(database_url: str, *, create: bool = True) -> str:
    """Drop the benchmark's own PostgreSQL database (its name must contain "bench") and, with `create`, make it
    anew, so that a run starts from nothing; returns the server's autovacuum setting (without it a table filled
    from empty keeps the planner's empty-table stats). The other benchmarks use it too."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name = url.database or ""
    if "bench" not in name:
        raise SystemExit(f"--database-url: {name!r} is dropped and recreated; use a database named *bench*")

    async def recreate() -> str:
        conn = await asyncpg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            database="postgres",
        )
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                await conn.execute(f'CREATE DATABASE "{name}"')
            return str(await conn.fetchval("SHOW autovacuum"))
        finally:
            await conn.close()

    return asyncio.run(recreate())


def spawn_child(
    kind: str, base_url: str, database_url: str | None, timeout_s: float, profile: str | None = None
) -> dict[str, Any]:
    if database_url:
        recreate_postgres(database_url)
    command = [sys.executable, __file__, "--role", kind, "--base-url", base_url]
    if database_url:
        command += ["--database-url", database_url]
    if profile:
        command += ["--profile", profile]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    orders: int,
    seed: int,
    database_url: str | None,
    timeout_s: float,
    profile_dir: Path | None,
    repeat: int = 1,
) -> dict[str, Any]:
    """Fetch only, then `repeat` times an import followed by fetch only again, all against one sandbox; the
    rates come from the median times, so one run slowed by a neighbour on the machine moves nothing."""
    backend = "PostgreSQL" if database_url else "SQLite"
    autovacuum = recreate_postgres(database_url) if database_url else None
    with sandbox(orders, seed, timeout_s) as box:
        url = box["base_url"]
        fetches = [spawn_child("fetch", url, database_url, timeout_s)]
        mapped = spawn_child("fetch-map", url, database_url, timeout_s)
        imports = []
        for _ in range(repeat):
            imports.append(spawn_child("import", url, database_url, timeout_s))
            fetches.append(spawn_child("fetch", url, database_url, timeout_s))
        profiled = None
        if profile_dir is not None:
            target = profile_dir / f"import-{backend.lower()}-{orders}.prof"
            profiled = spawn_child("import", url, database_url, timeout_s * 3, str(target))
    for run in (*fetches, mapped, *imports):
        if run["orders"] != orders:
            raise RuntimeError(f"the {run['kind']} run saw {run['orders']} orders, not {orders}")
    for run in imports:
        if run["created"] != orders:
            raise RuntimeError(f"the import created {run['created']} orders of {orders}")
    fetch_rate = orders / statistics.median(run["seconds"] for run in fetches)
    by_time = sorted(imports, key=lambda run: run["seconds"])
    median_import = by_time[(len(by_time) - 1) // 2]
    import_rate = orders / statistics.median(run["seconds"] for run in imports)
    return {
        "backend": backend,
        "autovacuum": autovacuum,
        "orders": orders,
        "pages": median_import["pages"],
        "seed_s": box["seed_s"],
        "sandbox_rss_mb": box["rss_mb"],
        "fetch": fetches,
        "fetch_rate": fetch_rate,
        "fetch_map_rate": orders / mapped["seconds"],
        "import_rate": import_rate,
        "ratio": import_rate / fetch_rate,
        # CPU moves less than wall time with what else the machine runs: the importer's own cost.
        "import_cpu_s": statistics.median(run["cpu_s"] for run in imports),
        "import": {**median_import, "peak_rss_mb": max(run["peak_rss_mb"] for run in imports)},
        "imports": imports,
        "fetch_peak_rss_mb": max(run["peak_rss_mb"] for run in (*fetches, mapped)),
        "profile": profiled,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Backfill from the Shopify sandbox: orders/s, import against fetch only (same run)",
        caption=f"goals: ratio >= {GOAL_RATIO}; import peak RSS <= {GOAL_RSS_MB:.0f} MB and flat",
    )
    columns = (
        "backend",
        "orders",
        "fetch only",
        "fetch+map",
        "import",
        "ratio",
        "import CPU s",
        "RSS MB",
        "fetch RSS MB",
    )
    for name in columns:
        table.add_column(name, justify="left" if name == "backend" else "right")
    for r in results:
        table.add_row(
            r["backend"],
            f"{r['orders']:,}",
            f"{r['fetch_rate']:,.0f}",
            f"{r['fetch_map_rate']:,.0f}",
            f"{r['import_rate']:,.0f}",
            f"{r['ratio']:.2f}",
            f"{r['import_cpu_s']:.1f}",
            f"{r['import']['peak_rss_mb']:.0f}",
            f"{r['fetch_peak_rss_mb']:.0f}",
        )
    console = Console(width=None if sys.stdout.isatty() else 110)
    console.print(table)
    console.print(
        "import CPU s: the importing process's CPU time (median of the imports); RSS MB: its peak RSS; fetch RSS "
        "MB: the highest of the fetch children."
    )
    for r in results:
        fetched = ", ".join(f"{run['seconds']:.1f}" for run in r["fetch"])
        fetch_cpu = ", ".join(f"{run['cpu_s']:.1f}" for run in r["fetch"])
        imported = ", ".join(f"{run['seconds']:.1f}" for run in r["imports"])
        console.print(
            f"{r['backend']} {r['orders']:,}: {r['pages']} pages; sandbox seeded in {r['seed_s']:.2f} s "
            f"({r['sandbox_rss_mb']:.0f} MB); fetch only {fetched} s, before and after each import ({fetch_cpu} s "
            f"CPU); imports {imported} s; the median import {r['import']['seconds']:.1f} s "
            f"({r['import']['cpu_s']:.1f} s CPU, "
            f"{r['import']['gc_s']:.1f} s of it in the garbage collector; first {BLOCK} pages "
            f"{r['import']['first_block_s']:.1f} s, last {BLOCK} {r['import']['last_block_s']:.1f} s), RSS "
            f"{r['import']['rss_start_mb']:.0f} MB when the pull started"
            + (f"; server autovacuum {r['autovacuum']}" if r["autovacuum"] else "")
            + (f"; profile in {r['profile']['profile']}" if r["profile"] else "")
        )


def print_profile(path: str, top: int) -> None:
    stats = pstats.Stats(path, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", default="10000,100000", help="comma-separated sizes to seed and pull")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sandbox's generated orders")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL URL (dropped and recreated per child); default: a fresh SQLite file per child",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed to each child")
    parser.add_argument(
        "--profile", default=None, help="also run each import once under cProfile and keep the stats here"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="imports per size, each followed by a fetch-only run; rates from the median times (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--role", default="parent", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "sandbox":
        serve_sandbox(int(args.orders), args.seed)
        return
    if args.role in ("fetch", "fetch-map", "import"):
        run_child(args.role, args.base_url, args.database_url, args.profile)
        return

    sizes = [int(part) for part in str(args.orders).split(",") if part.strip()]
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    results = [
        measure(n, args.seed, args.database_url, args.timeout, profile_dir, args.repeat) for n in sizes
    ]
    print_table(results)
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    for r in results:
        if r["profile"]:
            sys.stdout.write(f"\n== profile of the import, {r['backend']}, {r['orders']:,} orders ==\n")
            print_profile(r["profile"]["profile"], 25)


if __name__ == "__main__":
    main()
