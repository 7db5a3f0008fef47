"""Webhooks delivered three times each and out of order: the hub ends in the latest state, with one effect each.

While `crossdock serve` is down, Shopify orders are placed unpaid, edited, and then either paid or cancelled;
the Shopify sandbox's webhooks (orders/create, orders/updated, orders/paid, orders/cancelled) find no one. With
the server back, every one of them is delivered three times, all shuffled together (seeded), as a sender
catching up after an outage might. Then the parcels move at Shippo (in transit, delivered) while the server is
down again, and each track_updated webhook is delivered three times, shuffled, the same way.

Afterwards: every order is in the state its latest webhook says (cancelled orders cancelled and never shipped;
paid ones shipped once, then delivered, never taken back to in transit by an older event), with the latest
note; one label and one fulfillment per paid order (read at the sandboxes), one tracking event per status.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from crossdock.store import tables as t
from tests.chaos.conftest import report
from tests.rig import PAID_US, Rig

ORDERS = 8
COPIES = 3


async def redeliver(rig: Rig, sent: list[dict[str, Any]], rng: random.Random) -> int:
    """Send each webhook COPIES times, all shuffled together; every delivery must be acknowledged (2xx)."""
    copies = [item for item in sent for _ in range(COPIES)]
    rng.shuffle(copies)
    for item in copies:
        r = await rig.client.post(item["url"], content=item["body"].encode(), headers=item["headers"])
        assert 200 <= r.status_code < 300, (r.status_code, r.text)
    return len(copies)


async def test_webhooks_three_times_out_of_order_end_in_the_latest_state(tmp_path: Path) -> None:
    rng = random.Random(3)
    shopify = None
    async with Rig(tmp_path, workers=2, seed=3) as rig:
        shopify = rig.urls["shopify"]

        async def later(seconds: float = 2.0) -> None:
            # The shop's clock moves on between changes, as it does between a customer's steps.
            (
                await rig.client.post(f"{shopify}/_sandbox/clock/advance", json={"seconds": seconds})
            ).raise_for_status()

        for name in ("shopify", "shippo"):
            await rig.set_webhook_retries(name, 0)
        await rig.stop_server()
        placed = await rig.create_orders(ORDERS, spec={**PAID_US, "financial_status": "pending"})
        ids = [p.id for p in placed]
        paid, cancelled = ids[: ORDERS // 2], ids[ORDERS // 2 :]
        await later()
        for i in ids:
            await rig.edit_order(i, {"note": f"first note of {i}"})
        await later()
        for i in ids:
            await rig.edit_order(i, {"note": f"latest note of {i}"})
        await later()
        for i in paid:
            await rig.edit_order(i, {"financial_status": "paid"})
        for i in cancelled:
            await rig.cancel_order(i)
        shopify_sent = await rig.webhooks_sent("shopify")
        await rig.start_hub()
        shopify_copies = await redeliver(rig, shopify_sent, rng)
        await rig.wait_shipped(paid, within_s=90)

        await rig.stop_server()
        shippo = rig.urls["shippo"]
        for _ in range(2):
            (await rig.client.post(f"{shippo}/_sandbox/clock", json={"advance_s": 3600})).raise_for_status()
            await rig.advance_tracking()
        tracking_sent = [
            item for item in await rig.webhooks_sent("shippo") if '"track_updated"' in item["body"]
        ]
        await rig.start_hub()
        tracking_copies = await redeliver(rig, tracking_sent, rng)

        async def settled() -> bool:
            hub = await rig.hub_orders()
            return all(hub[str(i)].status == "delivered" for i in paid) and all(
                hub[str(i)].status == "cancelled" for i in cancelled
            )

        await rig.wait_until(settled, what="paid orders delivered, the others cancelled", within_s=60)
        await rig.wait_settled(within_s=60)
        truth = await rig.truth()
        async with rig.hub.db.session() as session:
            events = dict(
                (
                    await session.execute(
                        select(t.TrackingEvent.shipment_id, func.count()).group_by(
                            t.TrackingEvent.shipment_id
                        )
                    )
                ).all()
            )
            statuses = dict(
                (
                    await session.execute(
                        select(
                            t.TrackingEvent.shipment_id, func.count(func.distinct(t.TrackingEvent.status))
                        ).group_by(t.TrackingEvent.shipment_id)
                    )
                ).all()
            )

    for i in ids:
        key = str(i)
        order = truth.hub_orders[key]
        assert order.notes == f"latest note of {i}", (key, order.notes)
        assert truth.shopify[key]["cancelled_at"] is None if i in paid else truth.shopify[key]["cancelled_at"]
    for i in cancelled:
        key = str(i)
        assert truth.hub_orders[key].status == "cancelled"
        assert key not in truth.hub_shipments and not truth.labels.get(key)
        assert truth.shopify[key]["fulfillments"] == []
    for i in paid:
        key = str(i)
        assert truth.hub_orders[key].status == "delivered"
        (shipment,) = truth.hub_shipments[key]
        assert shipment.status == "delivered"
        assert len(truth.labels[key]) == 1
        assert truth.tracking_on_shopify(key) == {shipment.tracking_number}
        assert len(truth.shopify[key]["fulfillments"]) == 1
        assert events[shipment.id] == statuses[shipment.id], "a tracking status stored twice"
    assert truth.duplicate_labels == 0
    assert truth.duplicate_fulfillments == 0
    assert truth.dead_jobs == [], [(j.kind, j.last_error) for j in truth.dead_jobs]
    report(
        "webhooks 3x out of order (sqlite)",
        orders=ORDERS,
        shopify_webhooks=len(shopify_sent),
        shopify_deliveries=shopify_copies,
        track_updated_webhooks=len(tracking_sent),
        track_updated_deliveries=tracking_copies,
        duplicate_labels=truth.duplicate_labels,
        duplicate_fulfillments=truth.duplicate_fulfillments,
    )
