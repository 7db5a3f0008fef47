"""A shipment's tracking reaches the channel the order came from exactly once, for Shopify, eBay and Amazon.

End to end: the order is pulled from the channel's sandbox (engine.sync), the fulfillment recorded through the
REST API, the push job run by an in-process worker with the real connector against the sandbox on 127.0.0.1,
and the outcome read back from the sandbox. Pushing again, enqueueing twice or recording the same shipment again
adds nothing; a push whose answer was lost after the channel acted on it is looked up before any retry; a
tracking change (a number, or only the carrier or URL) reaches Shopify (update_tracking) and Amazon (the package
confirmed again), and on eBay, whose Fulfillment API cannot change a shipping fulfillment, it fails loudly on
the fulfillment and the timeline. A tracking change that comes while a push's outcome is unknown is looked up
by the tracking that push sent, then applied the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import or_, select, update

from crossdock.engine import sync
from crossdock.engine.fulfillments import PUSH_JOB, enqueue_push, push_job
from crossdock.engine.jobs import JobContext
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.engine.fulfil_support import Channel, RemoteShipment, serve_channel
from tests.engine.support import (
    eventually,
    fast,
    running_worker,
    statements_sent,
    timeline,
    transactions_sent,
)
from tests.support import Tenant, new_account

CHANNELS = ["shopify", "ebay", "amazon"]
TRACKING = "1Z999AA10123456784"
TRACKING_URL = "https://www.ups.com/track?tracknum=1Z999AA10123456784"
NEW_TRACKING = "794612345678"
NEW_TRACKING_URL = "https://www.fedex.com/fedextrack/?trknbrs=794612345678"
# The order's status on the channel once every line shipped, in the channel's own words.
SHIPPED_ON_CHANNEL = {"shopify": "fulfilled", "ebay": "FULFILLED", "amazon": "Shipped"}
# The connectors' titles, as the timeline names them.
TITLE = {"shopify": "Shopify", "ebay": "eBay", "amazon": "Amazon Selling Partner API"}


@pytest.fixture(params=CHANNELS)
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    async with serve_channel(str(request.param)) as served:
        yield served


@dataclass
class Pulled:
    account: Tenant
    connection_id: uuid.UUID
    order_id: uuid.UUID
    external_id: str

    @property
    def fulfillments_url(self) -> str:
        return f"/api/v1/orders/{self.order_id}/fulfillments"


async def pulled_order(hub: Hub, channel: Channel) -> Pulled:
    """A connection to the channel, its orders pulled, and one that is paid and not shipped on either side."""
    account = await new_account(hub, "Acme")
    account_id = uuid.UUID(account.id)
    connection_id = await channel.connect(hub, account_id)
    run = await sync.run_pull(hub, account_id, connection_id, since=utcnow() - timedelta(days=90))
    assert run.status == "succeeded" and run.created > 0, run.error
    async with hub.db.session() as session:
        rows = (
            await session.execute(
                select(t.Order.id, t.Order.external_id)
                .where(t.Order.connection_id == connection_id, t.Order.status == "paid")
                .order_by(t.Order.external_id)
            )
        ).all()
    for order_id, external_id in rows:
        if external_id is not None and channel.can_ship(external_id):
            return Pulled(account, connection_id, order_id, external_id)
    raise AssertionError(f"no paid, unshipped {channel.name} order among {len(rows)} pulled")


async def push_jobs(hub: Hub, order_id: uuid.UUID) -> list[t.Job]:
    async with hub.db.session() as session:
        stmt = select(t.Job).where(t.Job.order_id == order_id, t.Job.kind == PUSH_JOB)
        return list((await session.scalars(stmt.order_by(t.Job.created_at))).all())


async def _settled(hub: Hub, order_id: uuid.UUID) -> bool:
    """No job of the order is running or due now (a failed job waits for its retry time)."""
    async with hub.db.session() as session:
        busy = await session.scalar(
            select(t.Job.id)
            .where(
                t.Job.order_id == order_id,
                or_(
                    t.Job.status.in_(("queued", "running")),
                    (t.Job.status == "failed") & (t.Job.run_at <= utcnow()),
                ),
            )
            .limit(1)
        )
    return busy is None


async def run_jobs(hub: Hub, order_id: uuid.UUID) -> list[t.Job]:
    """Run the order's jobs in an in-process worker until none is running or due; its push jobs, oldest first."""
    async with running_worker(fast(hub), run_periodic=False):
        await eventually(lambda: _settled(hub, order_id))
    return await push_jobs(hub, order_id)


async def retry_now(hub: Hub, job_id: uuid.UUID) -> None:
    """The retry time of a failed job comes (its backoff is up to 10 s; the test does not sit through it)."""
    async with hub.db.transaction() as session:
        result: Any = await session.execute(
            update(t.Job).where(t.Job.id == job_id, t.Job.status == "failed").values(run_at=utcnow())
        )
        assert result.rowcount == 1


async def fulfillment_row(hub: Hub, fulfillment_id: str) -> t.Fulfillment:
    async with hub.db.session() as session:
        row = await session.get(t.Fulfillment, uuid.UUID(fulfillment_id))
    assert row is not None
    return row


async def record(client: httpx.AsyncClient, pulled: Pulled) -> dict[str, Any]:
    r = await client.post(
        pulled.fulfillments_url,
        json={"carrier": "UPS", "tracking_number": TRACKING, "tracking_url": TRACKING_URL},
        headers=pulled.account.headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "pending"
    return body


def expected_first(channel: Channel, shipped: RemoteShipment) -> None:
    assert (shipped.tracking_number, shipped.carrier) == (TRACKING, "UPS")
    if channel.name == "shopify":  # the only one of the three whose fulfillments carry a tracking URL
        assert shipped.tracking_url == TRACKING_URL
    assert shipped.edits == 0


async def test_a_recorded_fulfillment_reaches_the_channel_once_however_often_it_is_pushed(
    hub: Hub, client: httpx.AsyncClient, channel: Channel
) -> None:
    pulled = await pulled_order(hub, channel)
    assert await channel.shipments(pulled.external_id) == []

    recorded = await record(client, pulled)
    async with hub.db.transaction() as session:  # enqueued twice while the first waits: one job
        row = await session.get(t.Fulfillment, uuid.UUID(recorded["id"]))
        assert row is not None
        assert await enqueue_push(session, row) is None
    [job] = await run_jobs(hub, pulled.order_id)

    assert (job.status, job.attempts) == ("succeeded", 1)
    [shipped] = await channel.shipments(pulled.external_id)
    expected_first(channel, shipped)
    assert channel.order_status(pulled.external_id) == SHIPPED_ON_CHANNEL[channel.name]
    listed = (await client.get(pulled.fulfillments_url, headers=pulled.account.headers)).json()["items"]
    assert [(f["id"], f["status"], f["external_id"], f["error"]) for f in listed] == [
        (recorded["id"], "pushed", shipped.external_id, None)
    ]
    order = (await client.get(f"/api/v1/orders/{pulled.order_id}", headers=pulled.account.headers)).json()
    assert order["status"] == "shipped"
    assert channel.front.pushes_received == 1

    # The same shipment recorded again: every line has shipped, so nothing is recorded or pushed.
    again = await client.post(
        pulled.fulfillments_url,
        json={"carrier": "UPS", "tracking_number": TRACKING},
        headers=pulled.account.headers,
    )
    assert again.status_code == 409 and "shipped already" in again.text, again.text
    # The push run again (a redelivered job): the channel already has it, nothing is sent.
    async with hub.db.transaction() as session:
        row = await session.get(t.Fulfillment, uuid.UUID(recorded["id"]))
        assert row is not None
        rerun = await enqueue_push(session, row)
    assert rerun is not None
    jobs = await run_jobs(hub, pulled.order_id)

    assert [(j.id, j.status) for j in jobs] == [(job.id, "succeeded"), (rerun, "succeeded")]
    assert await channel.shipments(pulled.external_id) == [shipped]
    assert channel.front.pushes_received == 1
    listed = (await client.get(pulled.fulfillments_url, headers=pulled.account.headers)).json()["items"]
    assert [(f["status"], f["external_id"]) for f in listed] == [("pushed", shipped.external_id)]
    pushed_events = [e for e in await timeline(hub, pulled.order_id) if e.kind == "fulfillment.pushed"]
    assert len(pushed_events) == 1


async def test_a_push_whose_answer_was_lost_is_looked_up_not_sent_again(
    hub: Hub, client: httpx.AsyncClient, channel: Channel
) -> None:
    pulled = await pulled_order(hub, channel)
    channel.front.lose_next = True

    recorded = await record(client, pulled)
    [job] = await run_jobs(hub, pulled.order_id)

    if channel.name == "amazon":
        # The connector asks Amazon (the order's items) right after an unknown outcome, in the same attempt.
        assert (job.status, job.attempts) == ("succeeded", 1)
    else:
        # Shopify and eBay: the attempt fails without a second POST; the retry asks the channel first.
        assert job.status == "failed" and "could not reach" in (job.last_error or "")
        assert (await fulfillment_row(hub, recorded["id"])).status == "pushing"
        await retry_now(hub, job.id)
        [job] = await run_jobs(hub, pulled.order_id)
        assert (job.status, job.attempts) == ("succeeded", 2)
    assert (channel.front.lost, channel.front.pushes_received) == (1, 1)
    [shipped] = await channel.shipments(pulled.external_id)
    expected_first(channel, shipped)
    row = await fulfillment_row(hub, recorded["id"])
    assert (row.status, row.external_id, row.error) == ("pushed", shipped.external_id, None)
    summaries = [e.summary for e in await timeline(hub, pulled.order_id) if e.kind == "fulfillment.pushed"]
    if channel.name == "amazon":
        assert summaries == [
            f"Told {TITLE[channel.name]} the order shipped with tracking {TRACKING} (fulfillment {row.external_id})"
        ]
    else:
        assert summaries == [
            f"{TITLE[channel.name]} already had this fulfillment ({row.external_id}); not sent again"
        ]


async def test_a_tracking_change_reaches_the_channel_or_fails_loudly_where_it_cannot(
    hub: Hub, client: httpx.AsyncClient, channel: Channel
) -> None:
    pulled = await pulled_order(hub, channel)
    recorded = await record(client, pulled)
    await run_jobs(hub, pulled.order_id)
    [first] = await channel.shipments(pulled.external_id)

    r = await client.patch(
        f"{pulled.fulfillments_url}/{recorded['id']}",
        json={"tracking_number": NEW_TRACKING, "carrier": "FedEx", "tracking_url": NEW_TRACKING_URL},
        headers=pulled.account.headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["tracking_number"], r.json()["carrier"]) == (NEW_TRACKING, "FedEx")
    first_job, update_job = await run_jobs(hub, pulled.order_id)  # the PATCH enqueued a push of its own
    assert first_job.status == "succeeded"

    [shipped] = await channel.shipments(pulled.external_id)
    row = await fulfillment_row(hub, recorded["id"])
    events = await timeline(hub, pulled.order_id)
    if channel.name == "ebay":
        # No update call exists: the job dies with eBay's reason, on the fulfillment and on the timeline.
        assert shipped == first
        assert update_job.status == "dead" and update_job.attempts == 1
        assert row.status == "failed" and row.external_id == first.external_id
        assert row.error is not None and "eBay cannot change the tracking" in row.error
        assert "Seller Hub" in row.error
        dead = [e for e in events if e.kind == "job.dead"]
        assert [(e.severity, row.error in e.summary) for e in dead] == [("error", True)]
        listed = (await client.get(pulled.fulfillments_url, headers=pulled.account.headers)).json()["items"]
        assert [(f["status"], f["error"]) for f in listed] == [("failed", row.error)]
        # Put back as eBay has it: the fulfillment is pushed again and the old error no longer stands on it.
        back = await client.patch(
            f"{pulled.fulfillments_url}/{recorded['id']}",
            json={"tracking_number": TRACKING, "carrier": "UPS"},
            headers=pulled.account.headers,
        )
        assert back.status_code == 200 and (back.json()["status"], back.json()["error"]) == ("pushed", None)
        return
    assert update_job.status == "succeeded"
    assert shipped.external_id == first.external_id
    assert (shipped.tracking_number, shipped.carrier) == (NEW_TRACKING, "FedEx")
    if channel.name == "shopify":
        assert shipped.tracking_url == NEW_TRACKING_URL
    else:  # Amazon: the same package (packageReferenceId), confirmed again with the new details
        assert shipped.edits == 1
    assert (row.status, row.external_id, row.error) == ("pushed", first.external_id, None)
    assert f"Updated tracking at {TITLE[channel.name]} to {NEW_TRACKING}" in [e.summary for e in events]
    assert channel.order_status(pulled.external_id) == SHIPPED_ON_CHANNEL[channel.name]


async def test_a_new_carrier_or_tracking_url_with_the_same_number_reaches_the_channel_too(
    hub: Hub, client: httpx.AsyncClient, channel: Channel
) -> None:
    pulled = await pulled_order(hub, channel)
    recorded = await record(client, pulled)
    await run_jobs(hub, pulled.order_id)
    [first] = await channel.shipments(pulled.external_id)
    assert first.tracking_number == TRACKING

    # The same number, corrected carrier and URL: the push job sees what the channel was sent differs.
    r = await client.patch(
        f"{pulled.fulfillments_url}/{recorded['id']}",
        json={"tracking_number": TRACKING, "carrier": "FedEx", "tracking_url": NEW_TRACKING_URL},
        headers=pulled.account.headers,
    )
    assert r.status_code == 200, r.text
    _first_job, update_job = await run_jobs(hub, pulled.order_id)
    [shipped] = await channel.shipments(pulled.external_id)
    row = await fulfillment_row(hub, recorded["id"])
    if channel.name == "ebay":
        # eBay's Fulfillment API has no call that changes a shipping fulfillment: it fails loudly.
        assert update_job.status == "dead" and shipped == first
        assert (
            row.status == "failed"
            and row.error is not None
            and "eBay cannot change the tracking" in row.error
        )
        return
    assert update_job.status == "succeeded"
    assert shipped.external_id == first.external_id
    assert (shipped.tracking_number, shipped.carrier) == (TRACKING, "FedEx")
    if channel.name == "shopify":
        assert shipped.tracking_url == NEW_TRACKING_URL
    else:
        assert shipped.edits == 1
    assert (row.pushed_tracking_number, row.pushed_carrier, row.pushed_tracking_url) == (
        TRACKING,
        "FedEx",
        NEW_TRACKING_URL,
    )

    # Asked again with nothing new: nothing is sent.
    async with hub.db.transaction() as session:
        fresh = await session.get(t.Fulfillment, uuid.UUID(recorded["id"]))
        assert fresh is not None
        await enqueue_push(session, fresh)
    *_, again = await run_jobs(hub, pulled.order_id)
    assert again.status == "succeeded"
    assert await channel.shipments(pulled.external_id) == [shipped]


async def test_a_tracking_change_while_a_push_outcome_is_unknown_leaves_one_shipment_with_the_new_tracking(
    hub: Hub, client: httpx.AsyncClient, channel: Channel
) -> None:
    pulled = await pulled_order(hub, channel)
    channel.front.lose_next = True
    if channel.name == "amazon":
        # Amazon would look the package up at once (its order items); the channel is down for that too.
        channel.front.unavailable_gets = 1
    recorded = await record(client, pulled)
    [job] = await run_jobs(hub, pulled.order_id)
    assert job.status == "failed"
    assert (await fulfillment_row(hub, recorded["id"])).status == "pushing"

    r = await client.patch(
        f"{pulled.fulfillments_url}/{recorded['id']}",
        json={"tracking_number": NEW_TRACKING, "carrier": "FedEx", "tracking_url": NEW_TRACKING_URL},
        headers=pulled.account.headers,
    )
    assert r.status_code == 200, r.text
    await retry_now(hub, job.id)
    jobs = await run_jobs(hub, pulled.order_id)

    assert channel.front.pushes_received == (2 if channel.name == "amazon" else 1)
    [shipped] = await channel.shipments(pulled.external_id)
    row = await fulfillment_row(hub, recorded["id"])
    assert row.external_id == shipped.external_id
    if channel.name == "ebay":
        # What eBay has (the first tracking) cannot be changed: said on the fulfillment, not glossed over.
        assert (shipped.tracking_number, shipped.carrier) == (TRACKING, "UPS")
        assert row.status == "failed" and "eBay cannot change the tracking" in (row.error or "")
        assert [j.status for j in jobs] == ["dead"]
        return
    assert (shipped.tracking_number, shipped.carrier) == (NEW_TRACKING, "FedEx")
    assert (row.status, row.error, row.pushed_tracking_number) == ("pushed", None, NEW_TRACKING)
    assert [j.status for j in jobs] == ["succeeded"]
    summaries = [e.summary for e in await timeline(hub, pulled.order_id) if e.kind == "fulfillment.pushed"]
    assert summaries == [
        f"{TITLE[channel.name]} already had this fulfillment ({row.external_id}) with tracking {TRACKING}; "
        f"updated its tracking to {NEW_TRACKING}"
    ]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_on_postgresql_a_push_reads_and_marks_outside_a_transaction_and_commits_its_outcome_in_one(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    # The push's read (the fulfillment with its order's channel id, one statement) and its mark before sending
    # (one UPDATE) each commit on their own: a transaction around either would cost a BEGIN and a COMMIT more.
    async with serve_channel("shopify") as channel:
        pulled = await pulled_order(hub, channel)
        recorded = await record(client, pulled)
        ctx = JobContext(
            hub=hub,
            job_id=uuid.uuid4(),
            kind=PUSH_JOB,
            account_id=uuid.UUID(pulled.account.id),
            attempt=1,
            order_id=pulled.order_id,
            worker_id="test",
        )
        with transactions_sent(hub) as control, statements_sent(hub) as statements:
            await push_job(ctx, {"fulfillment_id": recorded["id"]})
        [shipped] = await channel.shipments(pulled.external_id)

    expected_first(channel, shipped)
    row = await fulfillment_row(hub, recorded["id"])
    assert (row.status, row.external_id, row.pushed_tracking_number) == (
        "pushed",
        shipped.external_id,
        TRACKING,
    )
    assert control == ["BEGIN ISOLATION LEVEL READ COMMITTED", "COMMIT"]  # the outcome's
    reads = [sql for sql in statements if sql.startswith("SELECT") and "FROM fulfillments" in sql]
    assert len(reads) == 1 and "JOIN orders" in reads[0]
    marks = [sql for sql in statements if sql.startswith("UPDATE fulfillments")]
    assert len(marks) == 2  # pushing, then pushed
