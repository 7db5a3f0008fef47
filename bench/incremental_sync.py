"""Incremental sync: 100 changed orders among N stored, against the full backfill of those N orders.

The Shopify sandbox runs in its own process on 127.0.0.1, seeded with N orders (bench/backfill.py's sandbox).
In the same run, against that sandbox and one database:
1. full backfill: a child process pulls every order into a fresh, migrated database with
   `crossdock.engine.sync.run_pull` (since long ago, as bench/backfill.py's import does); the pull's end becomes
   the stream's committed watermark;
2. the benchmark changes K orders (default 100) spread over the shop through the sandbox's admin API (a new note
   and tags each: Shopify moves their updated_at, as for an edit in the shop's admin);
3. incremental pull: a new child process runs `run_pull` as the periodic sync job runs it (trigger "schedule",
   no since: from the committed watermark less the look-back, CROSSDOCK_SYNC_LOOKBACK_S), then reads the K orders
   back from the database and checks that every edit landed.
Reported: both pulls' wall times, orders read and updated, and incremental / full (goal <= 2 %).

    .venv/bin/python bench/incremental_sync.py                           # 100k orders, SQLite
    .venv/bin/python bench/incremental_sync.py --orders 10000 --changes 100
    .venv/bin/python bench/incremental_sync.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/crossdock_incremental_bench

A --database-url database is dropped and created again before the backfill and dropped at the end, so its name
must contain "bench".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import backfill  # bench/backfill.py: the seeded sandbox process, the hub's preparation, the import child

GOAL_RATIO = 0.02


def _settings(home: Path, database_url: str | None) -> Any:
    from crossdock.config import Settings

    return Settings(home=home, database_url=database_url, allow_private_urls=True, sync_schedule=False)


async def _full(home: Path, base_url: str, database_url: str | None) -> dict[str, Any]:
    """The full backfill into a fresh database (backfill.py's preparation and import, the same hub home kept for
    the incremental child)."""
    from crossdock.engine.tuning import tune_long_running_process

    hub, account_id, connection_id = await backfill._prepare(database_url, home, base_url)
    tune_long_running_process()
    try:
        result = await backfill._import(hub, account_id, connection_id)
    finally:
        await hub.close()
    return {**result, "account_id": str(account_id), "connection_id": str(connection_id)}


async def _incremental(
    home: Path, database_url: str | None, account_id: str, connection_id: str, edits: dict[str, str]
) -> dict[str, Any]:
    """One pull as the periodic sync job runs it, then the edited orders read back."""
    from sqlalchemy import select

    from crossdock.engine.sync import run_pull
    from crossdock.engine.tuning import tune_long_running_process
    from crossdock.hub import Hub
    from crossdock.store import tables as t

    hub = Hub.from_settings(_settings(home, database_url))
    tune_long_running_process()
    try:
        async with hub.db.session() as session:
            cursor = await session.get(t.SyncCursor, (uuid.UUID(connection_id), "orders"))
            watermark = cursor.watermark.isoformat() if cursor and cursor.watermark else None
        started, cpu = time.perf_counter(), time.process_time()
        run = await run_pull(hub, uuid.UUID(account_id), uuid.UUID(connection_id), trigger="schedule")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if run.status != "succeeded":
            raise RuntimeError(f"the incremental pull did not succeed: {run.status} {run.error}")
        async with hub.db.session() as session:
            rows = (
                await session.execute(
                    select(t.Order.external_id, t.Order.notes).where(
                        t.Order.connection_id == uuid.UUID(connection_id),
                        t.Order.external_id.in_(list(edits)),
                    )
                )
            ).all()
    finally:
        await hub.close()
    landed = sum(1 for external_id, notes in rows if notes == edits.get(str(external_id)))
    return {
        "seconds": elapsed,
        "cpu_s": cpu,
        "pages": run.pages,
        "read": run.read,
        "created": run.created,
        "updated": run.updated,
        "skipped": run.skipped,
        "invalid": run.invalid,
        "watermark_before": watermark,
        "window_since": run.cursor_from.isoformat() if run.cursor_from else None,
        "edits_found": len(rows),
        "edits_landed": landed,
    }


def run_child(args: argparse.Namespace) -> None:
    from crossdock.logs import configure_logging

    configure_logging("WARNING")
    home = Path(args.home)
    if args.role == "full":
        result = asyncio.run(_full(home, args.base_url, args.database_url))
    else:
        edits = json.loads(Path(args.edits).read_text())
        result = asyncio.run(
            _incremental(home, args.database_url, args.account_id, args.connection_id, edits)
        )
    backfill._emit({"kind": args.role, **result, "peak_rss_mb": backfill._peak_rss_mb()})


def _spawn(command: list[str], timeout_s: float) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[2:4]} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def edit_orders(base_url: str, orders: int, changes: int, seed: int) -> dict[str, str]:
    """Change `changes` of the seeded orders, spread over the shop, through the sandbox's admin API; returns
    their ids with the note each now has."""
    import httpx

    from crossdock.sandbox.shopify.state import ORDER_ID_BASE, ORDER_ID_STEP

    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    edits: dict[str, str] = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for number in sorted(rng.sample(range(1, orders + 1), min(changes, orders))):
            order_id = ORDER_ID_BASE + number * ORDER_ID_STEP
            note = f"Incremental bench {tag}: edit of order {number}"
            response = client.post(
                f"/_sandbox/orders/{order_id}", json={"note": note, "tags": ["bench", f"edit-{tag}"]}
            )
            response.raise_for_status()
            edits[str(order_id)] = note
    return edits


def measure(args: argparse.Namespace) -> dict[str, Any]:
    backend = "PostgreSQL" if args.database_url else "SQLite"
    me = [sys.executable, __file__]
    db = ["--database-url", args.database_url] if args.database_url else []
    with tempfile.TemporaryDirectory(prefix="crossdock-incremental-") as tmp:
        home = Path(tmp) / "home"
        if args.database_url:
            backfill.recreate_postgres(args.database_url, create=True)
        try:
            with backfill.sandbox(args.orders, args.seed, args.timeout) as box:
                url = box["base_url"]
                full = _spawn(
                    [*me, "--role", "full", "--home", str(home), "--base-url", url, *db], args.timeout
                )
                if full["created"] != args.orders:
                    raise RuntimeError(f"the backfill created {full['created']} orders of {args.orders}")
                edits = edit_orders(url, args.orders, args.changes, args.seed)
                edits_file = Path(tmp) / "edits.json"
                edits_file.write_text(json.dumps(edits))
                incremental = _spawn(
                    [
                        *me,
                        "--role",
                        "incremental",
                        "--home",
                        str(home),
                        "--account-id",
                        full["account_id"],
                        "--connection-id",
                        full["connection_id"],
                        "--edits",
                        str(edits_file),
                        *db,
                    ],
                    args.timeout,
                )
        finally:
            if args.database_url:
                backfill.recreate_postgres(args.database_url, create=False)
    return {
        "backend": backend,
        "orders": args.orders,
        "changes": len(edits),
        "full": full,
        "incremental": incremental,
        "ratio": incremental["seconds"] / full["seconds"],
    }


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    full, inc = r["full"], r["incremental"]
    table = Table(
        title=(
            f"Incremental sync: {r['changes']} changed orders among {r['orders']:,} stored "
            f"({r['backend']}), against their full backfill (same run)"
        ),
        caption=f"goal: incremental / full <= {GOAL_RATIO:.0%}; every edit in the database",
    )
    for name in ("pull", "seconds", "CPU s", "pages", "read", "created", "updated", "peak RSS MB"):
        table.add_column(name, justify="left" if name == "pull" else "right")
    for name, run in (("full backfill", full), ("incremental", inc)):
        table.add_row(
            name,
            f"{run['seconds']:.2f}",
            f"{run['cpu_s']:.2f}",
            str(run["pages"]),
            f"{run['orders'] if 'orders' in run else run['read']:,}",
            f"{run['created']:,}",
            f"{run.get('updated', 0):,}",
            f"{run['peak_rss_mb']:.0f}",
        )
    console = Console(width=None if sys.stdout.isatty() else 110)
    console.print(table)
    console.print(
        f"incremental / full: {r['ratio']:.4f} ({r['ratio']:.2%}); edits landed: {inc['edits_landed']} of "
        f"{r['changes']} ({inc['edits_found']} orders found); the incremental window started at "
        f"{inc['window_since']} (watermark {inc['watermark_before']} less the look-back)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=100_000, help="orders seeded, backfilled and stored")
    parser.add_argument("--changes", type=int, default=100, help="orders changed before the incremental pull")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sandbox's orders and of the sample")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL URL (dropped and recreated, dropped at the end); default: a fresh SQLite file",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed to each child")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--role", default="parent", help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--account-id", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--connection-id", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--edits", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role in ("full", "incremental"):
        run_child(args)
        return
    result = measure(args)
    print_table(result)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if result["incremental"]["edits_landed"] != result["changes"]:
        raise SystemExit(
            f"only {result['incremental']['edits_landed']} of {result['changes']} edits reached the database"
        )


if __name__ == "__main__":
    main()
