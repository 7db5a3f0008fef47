"""How much of a remote's rate budget the engine uses, and how often it overshoots.

Several workers call the Shopify sandbox (a local server on 127.0.0.1 enforcing Shopify's leaky bucket: 40
calls, leaking 2/s, 429 with Retry-After beyond) as fast as the connection's shared rate limiter lets them.
Each worker has its own client and limiter object; the limiter's state is shared through the database, as
between the workers of a real deployment. Reported: calls admitted against what the bucket allows over the
same time, the steady-state rate against the leak rate, and the share of 429s. Goals: >= 0.95 and < 1 %.

    .venv/bin/python bench/remote_budget.py                    # 30 s, 4 workers, SQLite
    .venv/bin/python bench/remote_budget.py --seconds 60 --workers 8 --database-url postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from crossdock.config import Settings
from crossdock.engine.errors import JobError, RateLimited
from crossdock.engine.http import RemoteClient, Target
from crossdock.engine.ratelimit import RateLimiter, RatePolicy, leaky_bucket
from crossdock.hub import Hub
from crossdock.logs import configure_logging
from crossdock.sandbox.common.config import SandboxConfig
from crossdock.sandbox.common.server import run_in_thread
from crossdock.sandbox.shopify.app import create_app
from crossdock.sandbox.shopify.state import LeakyBucket
from crossdock.store import repo
from crossdock.store.migrate import upgrade

TOKEN = "shpat_bench0000000000000000000000000000"
CAPACITY = 40


@dataclass
class Tally:
    ok: int = 0
    throttled: int = 0
    other_errors: int = 0
    ok_times: list[float] = field(default_factory=list)


async def worker(
    hub: Hub, base_url: str, ids: tuple, policy: RatePolicy, deadline: float, tally: Tally
) -> None:
    account_id, connection_id = ids
    limiter = RateLimiter(hub.db, account_id=account_id, connection_id=connection_id, policy=policy)
    client = RemoteClient(
        hub,
        Target(account_id, "shopify", connection_id),
        base_url=base_url,
        headers={"X-Shopify-Access-Token": TOKEN},
        limiter=limiter,
        attempts=1,  # count every 429 the remote gives, rather than hiding it in an inline retry
    )
    async with client:
        while time.monotonic() < deadline:
            try:
                await client.get("/admin/api/2025-01/shop.json", operation="shop")
            except RateLimited:
                tally.throttled += 1
            except JobError:
                tally.other_errors += 1
            else:
                tally.ok += 1
                tally.ok_times.append(time.monotonic())


async def run(seconds: float, workers: int, leak: float, database_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), database_url=database_url, allow_private_urls=True)
        hub = Hub.from_settings(settings)
        await upgrade(hub.db)
        async with hub.db.transaction() as session:
            account = await repo.create_account(session, f"bench {time.time_ns()}")
            connection = await repo.Tenant(session, account.id).create_connection(
                connector="shopify", name="bench", vault=hub.vault
            )
        app = create_app(SandboxConfig(token=TOKEN))
        app.state.sandbox.bucket = LeakyBucket(CAPACITY, leak)
        tally = Tally()
        try:
            with run_in_thread(app) as base_url:
                # One call to warm up the server and the database (not counted; it leaves the bucket empty
                # again well before the measured run because we wait for it to leak).
                async with httpx.AsyncClient(base_url=base_url) as warm:
                    await warm.get("/admin/api/2025-01/shop.json", headers={"X-Shopify-Access-Token": TOKEN})
                await asyncio.sleep(1.0 / leak + 0.1)
                started = time.monotonic()
                deadline = started + seconds
                ids = (account.id, connection.id)
                # The plan the connector declares (SHOPIFY_REST at the default 2/s; Plus shops leak faster).
                policy = RatePolicy({"rest": leaky_bucket(CAPACITY, leak)}, default="rest")
                await asyncio.gather(
                    *(worker(hub, base_url, ids, policy, deadline, tally) for _ in range(workers))
                )
                elapsed = (max(tally.ok_times) if tally.ok_times else time.monotonic()) - started
        finally:
            await hub.close()
    allowed = CAPACITY + leak * elapsed
    # Steady state: after the first burst has gone, the rate is the leak rate at best.
    later = [t for t in tally.ok_times if t - started >= CAPACITY / leak / 2]
    steady_span = (max(later) - min(later)) if len(later) > 1 else 0.0
    steady_rate = (len(later) - 1) / steady_span if steady_span else 0.0
    total = tally.ok + tally.throttled + tally.other_errors
    return {
        "seconds": elapsed,
        "workers": workers,
        "ok": tally.ok,
        "throttled": tally.throttled,
        "other_errors": tally.other_errors,
        "allowed": allowed,
        "budget_ratio": tally.ok / allowed,
        "steady_ratio": steady_rate / leak,
        "share_429": tally.throttled / total if total else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured run")
    parser.add_argument("--workers", type=int, default=4, help="concurrent workers sharing the connection")
    parser.add_argument("--leak", type=float, default=2.0, help="the bucket's leak rate, calls per second")
    parser.add_argument(
        "--database-url", default=None, help="default: a SQLite file in a temporary directory"
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    result = asyncio.run(run(args.seconds, args.workers, args.leak, args.database_url))
    table = Table(title=f"Remote budget: leaky bucket {CAPACITY}, {args.leak:g}/s, {args.workers} workers")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    table.add_row("run length (s)", f"{result['seconds']:.1f}", "")
    table.add_row("calls answered 2xx", str(result["ok"]), "")
    table.add_row("calls the bucket allows in that time", f"{result['allowed']:.0f}", "")
    table.add_row("achieved / allowed (whole run)", f"{result['budget_ratio']:.3f}", ">= 0.95")
    table.add_row("steady-state rate / leak rate", f"{result['steady_ratio']:.3f}", ">= 0.95")
    table.add_row("429 answers", str(result["throttled"]), "")
    table.add_row("share of 429s", f"{result['share_429']:.2%}", "< 1 %")
    table.add_row("other errors", str(result["other_errors"]), "0")
    Console().print(table)


if __name__ == "__main__":
    main()
