"""An eBay order ships through MyParcel.com and its tracking ends on eBay, end to end against both sandboxes.

The order is pulled from the eBay sandbox; the account's rule names its MyParcel.com connection, which quotes no
rates (MyParcel.com prices a shipment when it registers it), so the rule decides by its match alone and the
shipment goes out with the connection's default service. crossdock creates the shipment at the MyParcel.com
sandbox under the purchase's Idempotency-Key, stores the label, and the fulfillment's push confirms it at the
eBay sandbox with the tracking code MyParcel.com issued.

A fixed rule on that connection ships with the rule's own service, not the connection's default: the service
code reaches the MyParcel.com sandbox as the POST /shipments body's meta.service_code.
"""

from __future__ import annotations

import io
import uuid
from datetime import timedelta

import httpx
import pypdf
from sqlalchemy import select

from crossdock.engine import sync
from crossdock.hub import Hub
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.sandbox.myparcelcom import create_app
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.connectors.test_myparcelcom_client import Front, MyParcelCom, connect
from tests.engine.fulfil_support import serve_channel
from tests.engine.support import eventually, fast, running_worker, timeline
from tests.flows.support import put_policy, run_all, shipments_of
from tests.support import new_account, order_body


async def test_an_ebay_order_ends_with_the_tracking_myparcelcom_issued_on_ebay(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    app = create_app(SandboxConfig(seed=7, extra={"processing_s": "0"}))
    front = Front(app)
    account = await new_account(hub, "Acme")
    account_id = uuid.UUID(account.id)
    with run_in_thread(front) as url:
        mpc = MyParcelCom(url, front, app.state.sandbox)
        mpc_id = await connect(hub, account, mpc)
        await put_policy(client, account, auto_ship=False, rules=[{"connection_id": str(mpc_id)}])
        async with serve_channel("ebay") as ebay:
            ebay_id = await ebay.connect(hub, account_id)
            run = await sync.run_pull(hub, account_id, ebay_id, since=utcnow() - timedelta(days=90))
            assert run.status == "succeeded" and run.created > 0, run.error
            async with hub.db.session() as session:
                rows = (
                    await session.execute(
                        select(t.Order.id, t.Order.external_id)
                        .where(t.Order.connection_id == ebay_id, t.Order.status == "paid")
                        .order_by(t.Order.external_id)
                    )
                ).all()
            order_id, external_id = next(r for r in rows if r.external_id and ebay.can_ship(r.external_id))
            assert external_id is not None
            asked = await client.post(f"/api/v1/orders/{order_id}/ship", headers=account.headers)
            assert asked.status_code == 202, asked.text

            async def on_ebay() -> bool:
                return bool(await ebay.shipments(external_id))

            async with running_worker(fast(hub), run_periodic=False):
                await eventually(on_ebay, within_s=60)
            remote = await ebay.shipments(external_id)
        created = front.requests("POST", "/shipments")
        await mpc.admin.aclose()

    async with hub.db.session() as session:
        (shipment,) = (await session.scalars(select(t.Shipment).where(t.Shipment.order_id == order_id))).all()
        label = (await session.scalars(select(t.Label).where(t.Label.shipment_id == shipment.id))).one()
        order = await session.get(t.Order, order_id)
    assert len(created) == 1 and created[0]["idempotency-key"] == shipment.idempotency_key
    assert shipment.status == "label_purchased" and shipment.tracking_number
    assert shipment.decision == (
        "rule 1: every shipment -> MyParcel.com with the connection's default service (priced by MyParcel.com when the label "
        "is bought)"
    )
    assert [s.tracking_number for s in remote] == [shipment.tracking_number]
    assert order is not None and order.status == "shipped"
    assert len(pypdf.PdfReader(io.BytesIO(hub.blobs.get(label.blob_key))).pages) >= 1
    kinds = [e.kind for e in await timeline(hub, order_id)]
    assert kinds.count("shipping.label_bought") == 1 and "fulfillment.pushed" in kinds


async def test_a_fixed_rule_on_myparcelcom_ships_with_the_rules_service_not_the_default(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    app = create_app(SandboxConfig(seed=7, extra={"processing_s": "0"}))
    front = Front(app)
    account = await new_account(hub, "Acme")
    with run_in_thread(front) as url:
        mpc = MyParcelCom(url, front, app.state.sandbox)
        mpc_id = await connect(hub, account, mpc)  # its default_service is dpd-classic
        rule = {
            "match": {"countries": ["ES"]},
            "connection_id": str(mpc_id),
            "strategy": "fixed",
            "service": "parcelforce:parcelforce-express-48",
        }
        await put_policy(client, account, auto_ship=False, rules=[rule])
        created = await client.post("/api/v1/orders", json=order_body(), headers=account.headers)
        assert created.status_code == 201, created.text
        order_id = uuid.UUID(created.json()["id"])
        asked = await client.post(f"/api/v1/orders/{order_id}/ship", headers=account.headers)
        assert asked.status_code == 202, asked.text
        await run_all(hub, account.id)
        await mpc.admin.aclose()

    (shipment,) = await shipments_of(hub, order_id)
    (remote,) = mpc.state.shipments.values()
    # The service reached MyParcel.com (meta.service_code of POST /shipments, PROTOCOLS.md section 7).
    assert remote.service_code == "parcelforce-express-48"
    assert shipment.status == "label_purchased", shipment.error
    assert shipment.service_code == "parcelforce-express-48" and shipment.carrier == "Parcelforce"
    assert shipment.decision == (
        "rule 1: parcelforce:parcelforce-express-48 for ES -> parcelforce-express-48 at MyParcel.com, price not "
        "quoted (priced by MyParcel.com when the label is bought)"
    )
    # The chosen rate names the rule's service and, unquoted, no price; what the label cost is MyParcel.com's.
    assert shipment.rate is not None and shipment.rate["price"] is None
    assert shipment.rate["service_code"] == "parcelforce-express-48"
    bought = [e for e in await timeline(hub, order_id) if e.kind == "shipping.label_bought"]
    assert len(bought) == 1
    assert bought[0].summary.startswith("Bought a label at MyParcel.com: parcelforce-express-48 for ")
    assert shipment.rate_minor is not None and shipment.rate_currency  # the price MyParcel.com charged
