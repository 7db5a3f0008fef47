"""Paid orders pushed to Shippo's Orders, end to end against the Shippo sandbox on a real socket.

An account's Shippo connection with `push_orders` on gets each paid order created once (read back through
Shippo's GET /orders with its fields); a second run, a replay and an order paid again create nothing more; an
answer lost after Shippo created the order, a crash between Shippo's answer and our commit and an outage all
end with one Shippo order; Shippo's refusal is permanent with its words on the order's timeline; with
`push_orders` off nothing is pushed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.types import Message, Receive, Scope, Send

from crossdock import model as m
from crossdock.connectors.shippo.client import ShippoConnector
from crossdock.engine.connections import load_context
from crossdock.engine.errors import ConfigurationError
from crossdock.engine.queue import retry_job
from crossdock.flows.order_push import PUSH_JOB, PUSHED, STARTED, enqueue_push
from crossdock.hub import FLOW_MODULES, Hub
from crossdock.sandbox.common import run_in_thread
from crossdock.store import tables as t
from crossdock.store.convert import row_order
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow
from tests.connectors.test_shippo_client import LIVE_TOKEN, ORIGIN, Front, Shippo, an_order, sandbox_app
from tests.engine.support import timeline
from tests.flows.support import jobs_of, run_all
from tests.support import Tenant as Account

# Placed two hours ago, to the second (Shippo's placed_at has no fractions): recent enough to be pushed.
PLACED = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
BAD_GATEWAY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class OrdersFront(Front):
    """The test network in front of the Shippo sandbox, for POST /orders: loses the answer to the next one after
    Shippo created the order (a 502 reaches us), answers the next one 503 before Shippo sees it, or refuses the
    next one with the 400 body given."""

    lose_next_order: bool = False
    fail_next_order: bool = False
    refuse_next_order: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        creating = (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/") == "/orders"
        )
        if creating and (self.fail_next_order or self.refuse_next_order is not None):
            self.seen.append(("POST", scope["path"], 0.0))
            status, body = (503, b"<h1>Service Unavailable</h1>") if self.fail_next_order else (400, b"")
            if not self.fail_next_order:
                assert self.refuse_next_order is not None
                body, self.refuse_next_order = self.refuse_next_order, None
            self.fail_next_order = False
            await _answer(send, status, body)
            return
        if creating and self.lose_next_order:
            self.lose_next_order = False
            self.seen.append(("POST", scope["path"], 0.0))

            async def discard(_message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
            await _answer(send, 502, BAD_GATEWAY)
            return
        await super().__call__(scope, receive, send)


async def _answer(send: Send, status: int, body: bytes) -> None:
    kind = b"application/json" if body.startswith(b"{") else b"text/html"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def sandbox() -> AsyncIterator[Shippo]:
    app = sandbox_app()
    front = OrdersFront(app)
    with run_in_thread(front) as url:
        remote = Shippo(url, front, app.state.sandbox)
        yield remote
        await remote.admin.aclose()


def front_of(sandbox: Shippo) -> OrdersFront:
    assert isinstance(sandbox.front, OrdersFront)
    return sandbox.front


async def connect(hub: Hub, account: Account, sandbox: Shippo, **settings: Any) -> uuid.UUID:
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="shippo",
            name="Shippo",
            vault=hub.vault,
            settings={"from_address": ORIGIN, **settings},
            base_url=sandbox.url,
            secrets={"api_token": LIVE_TOKEN},
        )
        return row.id


async def paid_order(hub: Hub, account: Account, number: str, **changes: Any) -> uuid.UUID:
    lines = [
        m.OrderLine(sku="MUG-1", title="Mug", quantity=2, unit_price=m.Money.of("12.50", "USD"),
                    weight=m.Weight.grams(350)),
        m.OrderLine(sku="TEA-7", title="Tea", quantity=1, unit_price=m.Money.of("4.00", "USD"),
                    weight=m.Weight.grams(120)),
    ]  # fmt: skip
    fields: dict[str, Any] = {
        "status": m.OrderStatus.PAID,
        "external_number": number,
        "placed_at": PLACED,
        "lines": lines,
        "totals": m.Totals(shipping=m.Money.of("5.00", "USD"), total=m.Money.of("34.00", "USD")),
        **changes,
    }
    async with hub.db.transaction() as session:
        row = await Tenant(session, uuid.UUID(account.id)).create_order(an_order(**fields))
        return row.id


async def shippo_orders(sandbox: Shippo, number: str) -> list[dict[str, Any]]:
    """The orders Shippo lists with this order_number, read through its own API (GET /orders)."""
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        r = await http.get(
            "/orders", params={"results": 100}, headers={"Authorization": f"ShippoToken {LIVE_TOKEN}"}
        )
    assert r.status_code == 200, r.text
    return [o for o in r.json()["results"] if o["order_number"] == number]


async def bindings(hub: Hub, connection_id: uuid.UUID, kind: str) -> list[t.Binding]:
    async with hub.db.session() as session:
        stmt = select(t.Binding).where(t.Binding.connection_id == connection_id, t.Binding.kind == kind)
        return list((await session.scalars(stmt)).all())


def posts(sandbox: Shippo) -> int:
    return len([r for r in sandbox.front.seen if r[0] == "POST" and r[1].rstrip("/") == "/orders"])


async def pushed_events(hub: Hub, order_id: uuid.UUID) -> list[str]:
    return [e.summary for e in await timeline(hub, order_id) if e.kind == "orders.pushed"]


async def due_now(hub: Hub, order_id: uuid.UUID) -> None:
    """The order's push jobs waiting for a retry are due now (the test does not sit through the backoff)."""
    async with hub.db.transaction() as session:
        for job in (await session.scalars(select(t.Job).where(t.Job.order_id == order_id))).all():
            if job.status == "failed":
                job.run_at = utcnow()


async def test_a_paid_order_is_created_in_shippo_once_with_its_fields(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    cid = await connect(hub, acme, sandbox, push_orders=True)
    order_id = await paid_order(hub, acme, "CD-1001")
    assert len(await jobs_of(hub, order_id, PUSH_JOB)) == 1
    await run_all(hub, acme.id)

    (created,) = await shippo_orders(sandbox, "CD-1001")
    assert created["order_status"] == "PAID" and created["shop_app"] == "Shippo"
    assert created["placed_at"] == PLACED.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert created["currency"] == "USD" and created["total_price"] == "34.00"
    assert (created["shipping_cost"], created["shipping_cost_currency"]) == ("5.00", "USD")
    assert created["subtotal_price"] == "29.00"
    assert (created["weight"], created["weight_unit"]) == ("820", "g")
    to = created["to_address"]
    assert (to["name"], to["street1"], to["city"], to["state"], to["zip"], to["country"]) == (
        "Mr Hippo", "350 5th Ave", "New York", "NY", "10118", "US",
    )  # fmt: skip
    assert created["from_address"]["name"] == ORIGIN["name"]
    items = [(i["sku"], i["quantity"], i["total_price"], i["currency"], i["weight"], i["weight_unit"])
             for i in created["line_items"]]  # fmt: skip
    assert items == [("MUG-1", 2, "25.00", "USD", "700", "g"), ("TEA-7", 1, "4.00", "USD", "120", "g")]

    (bound,) = await bindings(hub, cid, PUSHED)
    assert (bound.external_id, bound.canonical_id) == (created["object_id"], order_id)
    assert await bindings(hub, cid, STARTED) == []
    assert await pushed_events(hub, order_id) == [
        f"Created the order at Shippo (order {created['object_id']})"
    ]


async def test_running_twice_replaying_and_paying_again_push_nothing_more(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    cid = await connect(hub, acme, sandbox, push_orders="true")  # as a form or the command line sends it
    order_id = await paid_order(hub, acme, "CD-1002")
    async with hub.db.transaction() as session:  # asked twice before any worker ran: one job waits
        assert await enqueue_push(session, uuid.UUID(acme.id), cid, order_id) is None
    await run_all(hub, acme.id)
    assert posts(sandbox) == 1

    async with hub.db.transaction() as session:
        tenant = Tenant(session, uuid.UUID(acme.id))
        assert await enqueue_push(session, uuid.UUID(acme.id), cid, order_id) is not None  # a replay
        row = await tenant.get_order(order_id)
        await tenant.order_entered(row, m.OrderStatus.PAID)  # the order paid a second time
        await tenant.transition_order(row, m.OrderStatus.READY_TO_SHIP)
    await run_all(hub, acme.id)

    assert len(await shippo_orders(sandbox, "CD-1002")) == 1
    assert posts(sandbox) == 1
    assert len(await bindings(hub, cid, PUSHED)) == 1
    assert len(await pushed_events(hub, order_id)) == 1
    jobs = await jobs_of(hub, order_id, PUSH_JOB)
    assert [j.status for j in jobs] == ["succeeded", "succeeded"]  # the first and the replay; no third


async def test_an_answer_lost_after_shippo_created_the_order_is_found_not_created_again(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    cid = await connect(hub, acme, sandbox, push_orders=True)
    front_of(sandbox).lose_next_order = True
    order_id = await paid_order(hub, acme, "CD-1003")
    await run_all(hub, acme.id)
    assert front_of(sandbox).lose_next_order is False  # Shippo made the order and its answer was lost
    await due_now(hub, order_id)  # in case the lookup was put off to the job's retry
    await run_all(hub, acme.id)

    (created,) = await shippo_orders(sandbox, "CD-1003")
    assert posts(sandbox) == 1
    (bound,) = await bindings(hub, cid, PUSHED)
    assert (bound.external_id, bound.canonical_id) == (created["object_id"], order_id)
    assert len(await pushed_events(hub, order_id)) == 1


async def test_a_push_cut_off_before_it_was_recorded_is_looked_up_first(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    """A worker died after Shippo created the order and before the binding was written: the "push started"
    mark makes the next run ask Shippo, which has it."""
    cid = await connect(hub, acme, sandbox, push_orders=True)
    order_id = await paid_order(hub, acme, "CD-1004")
    for job in await jobs_of(hub, order_id, PUSH_JOB):  # the job that died: its work is done below by hand
        async with hub.db.transaction() as session:
            await session.delete(await session.get(t.Job, job.id))
    async with hub.db.transaction() as session:
        session.add(t.Binding(account_id=uuid.UUID(acme.id), connection_id=cid, kind=STARTED,
                              external_id=str(order_id), canonical_id=order_id))  # fmt: skip
        order = row_order(await Tenant(session, uuid.UUID(acme.id)).get_order(order_id))
    _row, ctx = await load_context(hub, uuid.UUID(acme.id), cid)
    connector = ShippoConnector(ctx)
    try:
        remote_id = await connector.push_order(order)
    finally:
        await connector.aclose()

    async with hub.db.transaction() as session:
        await enqueue_push(session, uuid.UUID(acme.id), cid, order_id)
    await run_all(hub, acme.id)

    assert [o["object_id"] for o in await shippo_orders(sandbox, "CD-1004")] == [remote_id]
    assert posts(sandbox) == 1
    (bound,) = await bindings(hub, cid, PUSHED)
    assert bound.external_id == remote_id and await bindings(hub, cid, STARTED) == []
    assert await pushed_events(hub, order_id) == [
        f"Found the order already created at Shippo (order {remote_id})"
    ]


async def test_an_outage_is_retried_and_the_retry_looks_before_it_creates(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    cid = await connect(hub, acme, sandbox, push_orders=True)
    front_of(sandbox).fail_next_order = True
    order_id = await paid_order(hub, acme, "CD-1005")
    await run_all(hub, acme.id)
    (job,) = await jobs_of(hub, order_id, PUSH_JOB)
    assert job.status == "failed" and job.attempts == 1 and "HTTP 503" in (job.last_error or "")
    assert len(await bindings(hub, cid, STARTED)) == 1  # the push was sent: the retry must look first
    looked = len(sandbox.front.requests("GET", "/orders"))

    await due_now(hub, order_id)
    await run_all(hub, acme.id)
    assert len(sandbox.front.requests("GET", "/orders")) > looked
    assert len(await shippo_orders(sandbox, "CD-1005")) == 1
    assert posts(sandbox) == 2  # the one the outage swallowed before Shippo saw it, and the retry
    assert len(await bindings(hub, cid, PUSHED)) == 1 and await bindings(hub, cid, STARTED) == []


async def test_shippos_refusal_and_bad_data_are_permanent_with_the_reason_on_the_timeline(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    cid = await connect(hub, acme, sandbox, push_orders=True)
    front_of(sandbox).refuse_next_order = b'{"to_address": {"zip": ["Enter a valid ZIP code."]}}'
    refused_id = await paid_order(hub, acme, "CD-1006")
    unshippable_id = await paid_order(hub, acme, "CD-1007", shipping_address=None)
    await run_all(hub, acme.id)

    for order_id, words in (
        (refused_id, "Shippo refused order CD-1006 (HTTP 400)"),
        (
            unshippable_id,
            "order CD-1007 cannot be sent to Shippo: shipping_address: the order has no shipping",
        ),
    ):
        (job,) = await jobs_of(hub, order_id, PUSH_JOB)
        assert job.status == "dead" and job.attempts == 1
        assert words in (job.last_error or "")
        assert any(words in e.summary for e in await timeline(hub, order_id) if e.severity == "error")
    (refused,) = await jobs_of(hub, refused_id, PUSH_JOB)
    assert "Enter a valid ZIP code." in (refused.last_error or "")
    assert await bindings(hub, cid, PUSHED) == []

    # Retried by hand once the cause is gone: Shippo is asked first, then the order is created once.
    async with hub.db.transaction() as session:
        await retry_job(session, refused.id, uuid.UUID(acme.id))
    await run_all(hub, acme.id)
    assert len(await shippo_orders(sandbox, "CD-1006")) == 1
    assert [b.canonical_id for b in await bindings(hub, cid, PUSHED)] == [refused_id]


async def test_with_push_orders_off_nothing_is_pushed(hub: Hub, acme: Account, sandbox: Shippo) -> None:
    await connect(hub, acme, sandbox)
    await connect(hub, acme, sandbox, push_orders="false")
    order_id = await paid_order(hub, acme, "CD-1008")
    assert await jobs_of(hub, order_id, PUSH_JOB) == []
    await run_all(hub, acme.id)
    assert posts(sandbox) == 0
    assert await shippo_orders(sandbox, "CD-1008") == []


async def test_an_order_placed_long_ago_is_not_pushed(hub: Hub, acme: Account, sandbox: Shippo) -> None:
    await connect(hub, acme, sandbox, push_orders="true")
    order_id = await paid_order(hub, acme, "CD-1009", placed_at=PLACED - timedelta(days=30))
    assert await jobs_of(hub, order_id, PUSH_JOB) == []
    (skipped,) = [e for e in await timeline(hub, order_id) if e.kind == "orders.not_pushed"]
    assert "placed more than 7 days ago" in skipped.summary
    await run_all(hub, acme.id)
    assert posts(sandbox) == 0


async def test_the_flow_is_registered_and_a_setting_that_is_not_yes_or_no_is_refused(
    hub: Hub, acme: Account, sandbox: Shippo
) -> None:
    assert "crossdock.flows.order_push" in FLOW_MODULES  # every hub reacts to paid orders with it
    cid = await connect(hub, acme, sandbox, push_orders="sometimes")
    _row, ctx = await load_context(hub, uuid.UUID(acme.id), cid)
    with pytest.raises(ConfigurationError, match="push_orders is 'sometimes': set it to true or false"):
        ShippoConnector(ctx)
    order_id = await paid_order(hub, acme, "CD-1009")
    assert await jobs_of(hub, order_id, PUSH_JOB) == []
    (warning,) = [e for e in await timeline(hub, order_id) if e.kind == "orders.not_pushed"]
    assert "set it to true or false" in warning.summary and warning.severity == "warning"
