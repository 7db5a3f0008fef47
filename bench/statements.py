"""The CPU a worker spends on the statements every job runs, against a plain `SELECT 1` measured in the same run.

Each is run in a loop in this process, on the hub's own database code, and timed with getrusage (this
process's CPU: building the statement, SQLAlchemy's execution and the driver; the database server's own time
is not in it):
- claim + success: `queue.claim` of a due job, then `queue.succeed` of it, each on an autocommit connection as
  the worker does (engine/worker.py);
- empty claim: `queue.claim` with no job due;
- rate-limit slot: `RateLimiter.reserve` of a bucket with room;
- remote-call record: what `RemoteClient` writes for every call it sends (its `_record`, engine/http.py), for a
  call that concerns no order;
- baseline: `SELECT 1` on an autocommit connection, the least a round trip through the same layers costs.

    .venv/bin/python bench/statements.py                                  # SQLite file, 500 loops each
    .venv/bin/python bench/statements.py --database-url postgresql+asyncpg://postgres@127.0.0.1/bench_db --json

A PostgreSQL database given here is emptied first (its public schema dropped and made again): give it one of
its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.engine.remote_support: an account and a connection to own the rows

from crossdock.config import Settings  # noqa: E402
from crossdock.engine import jobs, queue  # noqa: E402
from crossdock.engine.http import Action, RemoteClient, _Outcome  # noqa: E402
from crossdock.engine.ratelimit import RateLimiter, RatePolicy, token_bucket  # noqa: E402
from crossdock.engine.worker import load_job_modules  # noqa: E402
from crossdock.hub import Hub  # noqa: E402
from crossdock.store.migrate import upgrade  # noqa: E402
from crossdock.store.repo import Tenant  # noqa: E402
from tests.engine.remote_support import new_owner  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_call_ms(fn: Callable[[], Awaitable[None]], loops: int) -> float:
    for _ in range(min(50, loops)):  # warm: statement caches, prepared statements, the pool
        await fn()
    start = cpu()
    for _ in range(loops):
        await fn()
    return 1000 * (cpu() - start) / loops


async def measure(database_url: str | None, loops: int, home: Path) -> dict[str, Any]:
    hub = Hub.from_settings(Settings(home=home, database_url=database_url))
    if database_url:
        async with hub.db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await upgrade(hub.db)
    load_job_modules(list(hub.settings.job_modules))
    kinds = list(jobs.REGISTRY)
    owner = await new_owner(hub)
    async with hub.db.transaction() as session:
        for i in range(loops + 60):
            await jobs.enqueue(session, account_id=None, kind="inbox.purge", payload={"bench": i})

    async def baseline() -> None:
        async with hub.db.autocommit() as conn:
            await conn.execute(text("SELECT 1"))

    async def claim_and_succeed() -> None:
        async with hub.db.autocommit_session() as session:
            claimed = await queue.claim(session, worker_id="bench", kinds=kinds)
        assert claimed is not None, "the queue ran dry"
        async with hub.db.autocommit_session() as session:
            assert not (await queue.succeed(session, claimed.job, worker_id="bench")).lost

    async def empty_claim() -> None:
        async with hub.db.autocommit_session() as session:
            assert await queue.claim(session, worker_id="bench", kinds=["bench.none"]) is None

    limiter = RateLimiter(
        hub.db,
        account_id=owner.account_id,
        connection_id=owner.connection_id,
        policy=RatePolicy({"bench": token_bucket(1e9, 10)}, default="bench"),
    )

    async def slot() -> None:
        await limiter.reserve(None)

    async with hub.db.session() as session:
        connection = await Tenant(session, owner.account_id).get_connection(owner.connection_id)
        session.expunge(connection)
    client = RemoteClient.for_connection(hub, connection, default_base_url="https://bench.myshopify.com")
    url = "https://bench.myshopify.com/admin/api/2025-01/orders.json"
    answer = httpx.Response(200, request=httpx.Request("GET", url))

    async def record() -> None:
        await client._record("GET", url, "orders.list", None, 1, answer, _Outcome(Action.OK, None), 0.012)

    results: dict[str, float] = {}
    try:
        for name, fn in (
            ("baseline: SELECT 1", baseline),
            ("claim + success", claim_and_succeed),
            ("empty claim", empty_claim),
            ("rate-limit slot", slot),
            ("remote-call record", record),
        ):
            results[name] = await per_call_ms(fn, loops)
    finally:
        await hub.close()
    base = results["baseline: SELECT 1"]
    return {
        "database": "PostgreSQL" if database_url else "SQLite",
        "loops": loops,
        "ms": results,
        "ratio": {name: ms / base for name, ms in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL database of its own (emptied first)"
    )
    parser.add_argument("--loops", type=int, default=500, help="runs of each statement")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crossdock-statements-") as tmp:
        result = asyncio.run(measure(args.database_url, args.loops, Path(tmp)))

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"CPU per statement of this process, {result['database']}, {result['loops']} loops each"
    )
    for name in ("statement", "CPU ms", "/ SELECT 1"):
        table.add_column(name, justify="left" if name == "statement" else "right")
    for name, ms in result["ms"].items():
        table.add_row(name, f"{ms:.3f}", f"{result['ratio'][name]:.2f}")
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
