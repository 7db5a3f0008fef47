"""kill -9 of worker processes while orders flow channel -> label -> tracking -> channel.

Orders are placed in the Shopify sandbox at a steady rate; every few seconds one `crossdock worker` process is
SIGKILLed (no goodbye: its running jobs' leases just stop being renewed) and started again. Afterwards, read at
the remotes: every order has exactly one label per parcel at Shippo (no purchase repeated), a fulfillment on
Shopify carrying its label's tracking number, and after Shippo's tracking webhooks every order is delivered in
the hub. Nothing lost, nothing done twice.

The CI version is small (24 orders, 3 kills); the long one (--runslow) is the issue's 1,000 orders and 20 kills.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import report
from tests.rig import Rig


async def kills_during_flow(
    workdir: Path,
    database_url: str | None,
    *,
    orders: int,
    kills: int,
    per_s: float,
    workers: int,
    within_s: float,
    label: str,
) -> None:
    rng = random.Random(8)
    async with Rig(workdir, database_url=database_url, workers=workers, lease_s=2.0, seed=8) as rig:
        started = time.monotonic()
        placing = asyncio.create_task(rig.create_orders(orders, per_s=per_s))
        # Kills spread over the time the orders are placed and a little after, while labels are being bought.
        every_s = (orders / per_s + 4.0) / kills
        last_kill = started
        for _ in range(kills):
            await asyncio.sleep(every_s * rng.uniform(0.6, 1.0))
            victim = rng.randrange(workers)
            rig.kill_worker(victim)
            last_kill = time.monotonic()
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            rig.start_worker(victim)
        placed = await placing
        ids = [p.id for p in placed]
        await rig.wait_shipped(ids, within_s=within_s)
        shipped_s = time.monotonic() - started
        recovered_s = time.monotonic() - last_kill
        for _ in range(2):
            await rig.advance_tracking()

        async def delivered() -> bool:
            hub = await rig.hub_orders()
            return all(hub[str(i)].status == "delivered" for i in ids)

        await rig.wait_until(
            delivered, what="every order delivered after Shippo's tracking", within_s=within_s
        )
        truth = await rig.truth()

    lost = [i for i in ids if str(i) not in truth.hub_orders]
    assert lost == []
    labels = truth.labels
    for i in ids:
        key = str(i)
        bought = {tr["tracking_number"] for tr in labels.get(key, [])}
        assert len(bought) == len(labels.get(key, [])) == len(truth.hub_shipments[key]), key
        assert truth.tracking_on_shopify(key) == bought, key
        assert truth.hub_orders[key].status == "delivered", key
    assert truth.duplicate_labels == 0
    assert truth.duplicate_fulfillments == 0
    assert truth.dead_jobs == [], [(j.kind, j.last_error) for j in truth.dead_jobs]
    report(
        f"worker kills ({label})",
        orders=len(ids),
        kills=kills,
        workers=workers,
        lost=len(lost),
        duplicate_labels=truth.duplicate_labels,
        duplicate_fulfillments=truth.duplicate_fulfillments,
        all_shipped_s=round(shipped_s, 1),
        shipped_after_last_kill_s=round(recovered_s, 1),
    )


async def test_worker_kills_lose_nothing_and_buy_no_label_twice(
    tmp_path: Path, rig_database: str | None
) -> None:
    label = "postgresql" if rig_database else "sqlite"
    await kills_during_flow(
        tmp_path, rig_database, orders=24, kills=3, per_s=4.0, workers=2, within_s=120, label=label
    )


@pytest.mark.slow
async def test_worker_kills_long(tmp_path: Path, rig_database: str | None) -> None:
    label = "postgresql, long" if rig_database else "sqlite, long"
    # Bounded by time as every chaos run is, with room for a loaded two-core machine: there the hub ships 3 to 5
    # orders a second (BENCHMARKS.md, "End to end"), and an earlier run of this test reached shipped for all
    # 1,000 orders after about 15 minutes, then ran out of a 900 s bound waiting for their tracking.
    await kills_during_flow(
        tmp_path, rig_database, orders=1000, kills=20, per_s=10.0, workers=3, within_s=1800, label=label
    )
