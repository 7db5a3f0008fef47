"""Sandboxes failing a third of the time: 20% 5xx, 10% 429, 5% timeouts (the sandbox hangs, then answers 504 as
a gateway would), 1% malformed (a body cut in half), on every Shopify and Shippo API call the hub makes.

Every order must end one of two ways: shipped, with its label's tracking number on its Shopify fulfillment; or
stopped with a dead job whose reason says what the remote did. Read at the remotes: no label bought twice, no
fulfillment created twice. The faults come from a fixed seed, so a failure can be replayed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.chaos.conftest import report
from tests.rig import Rig

FAULTS = "5xx=0.2,429=0.1,timeout=0.05,malformed=0.01,timeout_s=2s,seed={seed}"
# What a dead job's reason must name: the remote's status, a timeout, or a body that could not be read.
REASON = re.compile(r"\b(50[0-9]|429|504|time[d ]?out|timed out|malformed|JSON|rate limit|throttl)", re.I)
# A fault that passes: the remote's 5xx, 429 or 504, or a body cut short.
PASSING = re.compile(r"HTTP (5[0-9][0-9]|429)|malformed|not valid JSON|cut short|timed out", re.I)


async def orders_under_faults(
    workdir: Path, database_url: str | None, *, orders: int, within_s: float, hurry: bool
) -> None:
    async with Rig(workdir, database_url=database_url, workers=2, seed=11) as rig:
        for name in ("shopify", "shippo"):
            await rig.set_faults(name, FAULTS.format(seed=11))
        placed = await rig.create_orders(orders, per_s=4.0)
        ids = [str(p.id) for p in placed]
        settled_s = await rig.wait_settled(within_s=within_s, hurry=hurry)
        await rig.set_faults("shopify", None)
        await rig.set_faults("shippo", None)
        truth = await rig.truth()

    assert sorted(truth.hub_orders) == sorted(ids), "an order did not reach the hub"
    labels = truth.labels
    dead_by_order: dict[str, list[str]] = {}
    by_uuid = {o.id: key for key, o in truth.hub_orders.items()}
    for job in truth.dead_jobs:
        if job.order_id in by_uuid:
            dead_by_order.setdefault(by_uuid[job.order_id], []).append(f"{job.kind}: {job.last_error}")
    stopped = []
    for i in ids:
        bought = {tr["tracking_number"] for tr in labels.get(i, [])}
        if truth.hub_orders[i].status == "shipped" and bought and truth.tracking_on_shopify(i) == bought:
            continue
        stopped.append(i)
        reasons = dead_by_order.get(i, [])
        assert reasons, f"order {i} ({truth.hub_orders[i].status}) neither shipped nor stopped with a reason"
        assert any(REASON.search(r) for r in reasons), f"order {i}: reasons name no remote fault: {reasons}"
    # A passing fault ends a job only once its attempts are spent: before, it is tried again.
    early = [
        (job.kind, job.attempts, job.max_attempts, job.last_error)
        for job in truth.dead_jobs
        if job.attempts < job.max_attempts and PASSING.search(job.last_error or "")
    ]
    assert early == [], "jobs dead of a passing fault with attempts left"
    assert truth.duplicate_labels == 0
    assert truth.duplicate_fulfillments == 0
    report(
        "remote faults" + (" (postgresql)" if database_url else " (sqlite)"),
        orders=len(ids),
        faults=FAULTS.format(seed=11),
        shipped=len(ids) - len(stopped),
        stopped_with_reason=len(stopped),
        duplicate_labels=truth.duplicate_labels,
        duplicate_fulfillments=truth.duplicate_fulfillments,
        settled_s=round(settled_s, 1),
    )


async def test_orders_complete_or_stop_with_a_reason_under_remote_faults(tmp_path: Path) -> None:
    # The retries' backoff (up to minutes by the fifth attempt) is brought forward, not waited out.
    await orders_under_faults(tmp_path, None, orders=10, within_s=90, hurry=True)


@pytest.mark.slow
async def test_remote_faults_long(tmp_path: Path, rig_database: str | None) -> None:
    await orders_under_faults(tmp_path, rig_database, orders=200, within_s=1500, hurry=False)
