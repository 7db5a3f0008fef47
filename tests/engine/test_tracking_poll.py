"""Tracking by polling: the schedule picks the open shipments of active polling connections, each once per
interval and spread over it; a poll asks the connector (karrio's UPS against a stand-in for UPS's APIs on
127.0.0.1, the Shippo sandbox on 127.0.0.1 through the worker) and applies what it says; polling again
changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from crossdock.engine.tracking_poll import (
    POLL_JOB,
    TICK_S,
    due_shipments,
    enqueue_poll,
    poll_shipment,
    schedule_polls,
    tick_of,
)
from crossdock.hub import Hub
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.sandbox.shippo import create_app as create_shippo
from crossdock.store import tables as t
from tests.connectors.test_carriers import UPS_TRACK
from tests.engine.support import eventually, fast, running_worker, status_is, timeline
from tests.flows.carrier_standin import ServedUps, UpsStandIn, serve_ups
from tests.flows.test_tracking import Shipped, shipped_order, state

# karrio imports PyPDF2, which announces its own deprecation on import.
pytestmark = pytest.mark.filterwarnings("ignore:PyPDF2 is deprecated:DeprecationWarning")

UPS_NUMBER = "1Z9A81V30300000010"
UPS_SETTINGS = {"carrier": "ups", "account_number": "9A81V3", "test_mode": "true"}
UPS_SECRETS = {"client_id": "acme-client-id", "client_secret": "acme-client-secret"}


async def poll_jobs(hub: Hub) -> list[str]:
    async with hub.db.session() as session:
        rows = await session.scalars(select(t.Job).where(t.Job.kind == POLL_JOB))
        return sorted(row.payload["shipment_id"] for row in rows.all())


async def changed_ago(hub: Hub, ago: timedelta, *shipment_ids: uuid.UUID) -> None:
    async with hub.db.transaction() as session:
        await session.execute(
            update(t.Shipment)
            .where(t.Shipment.id.in_(shipment_ids))
            .values(updated_at=datetime.now(UTC) - ago)
        )


async def test_the_schedule_polls_open_shipments_of_active_polling_connections_only(hub: Hub) -> None:
    parcels = [
        {"status": "label_purchased"},
        {"status": "in_transit"},
        {"status": "exception"},
        {"status": "delivered"},
        {"status": "voided"},
        {"status": "label_pending", "tracking_number": None},
        {"status": "label_purchased"},  # quiet for 31 days, below
        {"status": "label_purchased"},  # bought a moment ago, below
    ]
    ups = await shipped_order(hub, settings=UPS_SETTINGS, secrets=UPS_SECRETS, parcels=parcels)
    await changed_ago(hub, timedelta(hours=1), *ups.shipment_ids[:6])
    await changed_ago(hub, timedelta(days=31), ups.shipment_ids[6])
    # Shippo tells its tracking by webhook; a paused connection is not called.
    shippo = await shipped_order(
        hub, account_id=ups.account_id, connector="shippo", secrets={"api_token": "shippo_test_x"}
    )
    paused = await shipped_order(hub, account_id=ups.account_id, settings=UPS_SETTINGS, secrets=UPS_SECRETS)
    async with hub.db.transaction() as session:
        await session.execute(
            update(t.Connection).where(t.Connection.id == paused.connection_id).values(status="paused")
        )
    await changed_ago(hub, timedelta(hours=1), *shippo.shipment_ids, *paused.shipment_ids)

    async with hub.db.transaction() as session:
        queued = await schedule_polls(session, tick=7, interval_s=TICK_S)
    assert queued == 3
    assert await poll_jobs(hub) == sorted(str(i) for i in ups.shipment_ids[:3])
    assert shippo.shipment_ids[0] not in ups.shipment_ids

    async with hub.db.transaction() as session:
        again = await schedule_polls(session, tick=8, interval_s=TICK_S)
    assert again == 0  # each poll still waits: queued once
    assert len(await poll_jobs(hub)) == 3


async def test_each_open_shipment_is_due_once_per_interval_spread_over_its_ticks(hub: Hub) -> None:
    shipped = await shipped_order(hub, settings=UPS_SETTINGS, secrets=UPS_SECRETS, parcels=[{}] * 12)
    await changed_ago(hub, timedelta(hours=2), *shipped.shipment_ids)
    interval = 4 * TICK_S
    seen: list[uuid.UUID] = []
    per_tick: list[int] = []
    async with hub.db.session() as session:
        for tick in range(1000, 1004):
            due = [
                shipment
                for _account, shipment, _order in await due_shipments(session, tick=tick, interval_s=interval)
            ]
            seen += due
            per_tick.append(len(due))
        next_cycle = await due_shipments(session, tick=1004, interval_s=interval)
        first_cycle = await due_shipments(session, tick=1000, interval_s=interval)
    assert sorted(seen) == sorted(shipped.shipment_ids)  # every shipment once, none twice
    assert next_cycle == first_cycle
    assert max(per_tick) < len(shipped.shipment_ids)  # not all in one burst
    assert tick_of(datetime.fromtimestamp(1004 * TICK_S, UTC)) == 1004


@pytest.fixture
def ups() -> Iterator[ServedUps]:
    """UPS's OAuth and Tracking APIs on 127.0.0.1 (carrier_standin.py), for the connection's base URL."""
    with serve_ups(UpsStandIn(UPS_SECRETS["client_id"], UPS_SECRETS["client_secret"], "9A81V3")) as served:
        yield served


async def ups_shipment(hub: Hub, ups: ServedUps) -> Shipped:
    return await shipped_order(
        hub,
        settings=UPS_SETTINGS,
        secrets=UPS_SECRETS,
        base_url=ups.url,
        parcels=[{"carrier": "UPS", "service_code": "ups_ground", "tracking_number": UPS_NUMBER}],
    )


async def test_a_ups_poll_through_karrio_delivers_the_order(hub: Hub, ups: ServedUps) -> None:
    shipped = await ups_shipment(hub, ups)
    ups.ups.tracking[UPS_NUMBER] = UPS_TRACK

    applied = await poll_shipment(hub, shipped.account_id, shipped.shipment_ids[0])
    assert applied is not None and (applied.added, applied.status, applied.order_delivered) == (
        3,
        "delivered",
        True,
    )
    assert applied.summary is not None and applied.summary.startswith(
        f"UPS {UPS_NUMBER} was delivered in ATLANTA"
    )
    final = await state(hub, shipped)
    assert final["order"] == "delivered"
    assert [e[1] for e in final["events"]] == ["in_transit", "in_transit", "delivered"]
    assert ups.ups.track_requests == [UPS_NUMBER]
    told = [e for e in await timeline(hub, shipped.order_id) if e.kind == "tracking.updated"]
    assert (
        len(told) == 1
        and told[0].detail["source"] == "Carriers (UPS, FedEx, USPS and more through karrio) (polled)"
    )

    # Delivered: the shipment is closed, nothing is asked again.
    assert await poll_shipment(hub, shipped.account_id, shipped.shipment_ids[0]) is None
    assert ups.ups.track_requests == [UPS_NUMBER]


async def test_polling_again_with_nothing_new_changes_nothing(hub: Hub, ups: ServedUps) -> None:
    shipped = await ups_shipment(hub, ups)
    in_transit = {
        "trackResponse": {
            "shipment": [
                {
                    "inquiryNumber": UPS_NUMBER,
                    "package": [
                        {
                            "trackingNumber": UPS_NUMBER,
                            "activity": UPS_TRACK["trackResponse"]["shipment"][0]["package"][0]["activity"][
                                1:
                            ],
                        }
                    ],
                }
            ]
        }
    }
    ups.ups.tracking[UPS_NUMBER] = in_transit
    first = await poll_shipment(hub, shipped.account_id, shipped.shipment_ids[0])
    second = await poll_shipment(hub, shipped.account_id, shipped.shipment_ids[0])
    assert ups.ups.track_requests == [UPS_NUMBER, UPS_NUMBER]
    assert first is not None and (first.added, first.status) == (2, "in_transit")
    assert second is not None and not second.changed
    assert len([e for e in await timeline(hub, shipped.order_id) if e.kind == "tracking.updated"]) == 1
    assert (await state(hub, shipped))["order"] == "shipped"


@pytest.fixture
def shippo_sandbox() -> Iterator[tuple[str, Any]]:
    app = create_shippo(SandboxConfig(seed=11, token="shippo_test_poll", fast_limits=True))
    with run_in_thread(app, host="127.0.0.1", port=0) as url:
        yield url, app


async def test_a_poll_job_run_by_the_worker_asks_the_remote_over_http(
    hub: Hub, shippo_sandbox: tuple[str, Any]
) -> None:
    url, _app = shippo_sandbox
    auth = {"Authorization": "ShippoToken shippo_test_poll"}
    async with httpx.AsyncClient(base_url=url) as sandbox:
        shipment = await sandbox.post(
            "/shipments",
            json={
                "address_from": {"name": "A", "street1": "215 Clayton St.", "city": "San Francisco",
                                 "state": "CA", "zip": "94117", "country": "US"},
                "address_to": {"name": "B", "street1": "350 5th Ave", "city": "New York", "state": "NY",
                               "zip": "10118", "country": "US"},
                "parcels": [{"length": "10", "width": "8", "height": "4", "distance_unit": "in",
                             "weight": "2", "mass_unit": "lb"}],
                "async": False,
            },
            headers=auth,
        )  # fmt: skip
        rate = shipment.json()["rates"][0]
        bought = (
            await sandbox.post(
                "/transactions", json={"rate": rate["object_id"], "async": False}, headers=auth
            )
        ).json()
        for _ in range(2):
            assert (
                await sandbox.post(f"/_sandbox/transactions/{bought['object_id']}/advance")
            ).status_code == 200
    shipped = await shipped_order(
        hub,
        connector="shippo",
        settings={"label_file_type": "PDF"},
        secrets={"api_token": "shippo_test_poll"},
        base_url=url,
        parcels=[
            {
                "carrier": rate["provider"],
                "external_id": bought["object_id"],
                "tracking_number": bought["tracking_number"],
            }
        ],
    )
    async with hub.db.transaction() as session:
        job_id = await enqueue_poll(session, shipped.account_id, shipped.shipment_ids[0], shipped.order_id)

    async with running_worker(fast(hub)):
        await eventually(lambda: status_is(hub, job_id, "succeeded", "dead"))

    assert await status_is(hub, job_id, "succeeded")
    final = await state(hub, shipped)
    assert final["order"] == "delivered"
    assert [e[1] for e in final["events"]] == ["pre_transit", "in_transit", "delivered"]
