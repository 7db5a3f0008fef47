"""The flow rig (tests/rig.py) drives a handful of orders end to end through real processes: Shopify orders by
webhook into `crossdock serve`, labels bought at Shippo by `crossdock worker` processes, fulfillments with the
tracking numbers back on Shopify, and Shippo's tracking webhooks moving the shipments to delivered."""

from __future__ import annotations

from pathlib import Path

from tests.rig import Rig

ORDERS = 5


async def test_orders_flow_end_to_end_through_the_rig(tmp_path: Path) -> None:
    async with Rig(tmp_path, workers=1) as rig:
        placed = await rig.create_orders(ORDERS)
        await rig.wait_shipped([p.id for p in placed], within_s=90)
        await rig.advance_tracking("DELIVERED")

        async def delivered() -> bool:
            return all(o.status == "delivered" for o in (await rig.hub_orders()).values())

        await rig.wait_until(delivered, what="orders delivered after Shippo's tracking webhooks", within_s=60)
        truth = await rig.truth()

    assert sorted(truth.hub_orders) == sorted(str(p.id) for p in placed)
    labels = truth.labels
    for p in placed:
        key = str(p.id)
        bought = {tr["tracking_number"] for tr in labels.get(key, [])}
        assert bought, f"order {key}: no label at Shippo"
        assert truth.tracking_on_shopify(key) == bought
        assert {s.tracking_number for s in truth.hub_shipments[key]} == bought
        assert all(truth.tracks[n]["tracking_status"]["status"] == "DELIVERED" for n in bought)
    assert truth.duplicate_labels == 0
    assert truth.duplicate_fulfillments == 0
    assert truth.dead_jobs == []
    assert truth.quarantined == []
