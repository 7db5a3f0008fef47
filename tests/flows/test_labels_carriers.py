"""From an Amazon order to a UPS label bought through karrio and the shipment confirmed on Amazon, end to end.

The Amazon SP-API sandbox holds a paid, unshipped order; crossdock pulls it, the account ships automatically,
the UPS connection (the carriers connector, karrio's UPS plugin) quotes and buys from a UPS stand-in on
127.0.0.1 (carrier_standin.py) that its base URL points karrio at, and the confirmation that reaches the Amazon
sandbox carries the tracking number the stand-in issued. A purchase whose answer is lost (the connection drops,
or a gateway answers 502 after UPS bought the label) is never sent again: UPS cannot look a label up by a key of
ours, so the shipment fails saying to check the carrier, and Amazon is told nothing.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pypdf
import pytest
from sqlalchemy import select

from crossdock.engine import sync
from crossdock.flows.labels import BUY_JOB
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig, run_in_thread
from crossdock.store import tables as t
from crossdock.store.repo import Tenant
from crossdock.store.types import utcnow
from tests.engine.fulfil_support import (
    AMAZON_MARKETPLACE,
    AMAZON_REFRESH_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    Channel,
    LosesAnswers,
)
from tests.engine.support import timeline
from tests.flows.carrier_standin import ServedUps, UpsStandIn, serve_ups
from tests.flows.support import jobs_of, put_policy, run_all, shipments_of
from tests.support import Tenant as Account
from tests.support import new_account

# karrio imports PyPDF2, which announces its own deprecation on import.
pytestmark = pytest.mark.filterwarnings("ignore:PyPDF2 is deprecated:DeprecationWarning")

SHIPPER_NUMBER = "9A81V3"
UPS_CLIENT_ID = "acme-ups-client-id"
UPS_CLIENT_SECRET = "acme-ups-client-secret"
SHIPPER = {
    "company": "Acme Outfitters",
    "first_name": "Dana",
    "last_name": "Shipper",
    "line1": "500 W 2nd St",
    "city": "Austin",
    "postal_code": "78701",
    "subdivision": "TX",
    "country": "US",
    "phone": "+15125550100",
    "email": "ship@acme.example",
}
# Two orders placed in the last three days: seed 5 makes one shipped already and one paid (Unshipped), going to
# a US address, placed a day ago; the test checks that before relying on it.
AMAZON = SandboxConfig(
    seed=5,
    orders=2,
    fast_limits=False,
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    extra={"marketplace_ids": AMAZON_MARKETPLACE, "refresh_token": AMAZON_REFRESH_TOKEN, "days": "3"},
)


@asynccontextmanager
async def serve_amazon() -> AsyncIterator[Channel]:
    app = create_sandbox_app("amazon", AMAZON)
    front = LosesAnswers(
        app, lambda method, path: method == "POST" and path.endswith("/shipmentConfirmation")
    )
    with run_in_thread(front) as url:
        channel = Channel("amazon", url, front, app.state.sandbox)
        try:
            yield channel
        finally:
            await channel.admin.aclose()


@pytest.fixture
async def amazon() -> AsyncIterator[Channel]:
    async with serve_amazon() as served:
        yield served


@pytest.fixture
def ups() -> Iterator[ServedUps]:
    with serve_ups(UpsStandIn(UPS_CLIENT_ID, UPS_CLIENT_SECRET, SHIPPER_NUMBER)) as served:
        yield served


@dataclass
class Setup:
    account: Account
    amazon_id: uuid.UUID
    ups_id: uuid.UUID


async def set_up(hub: Hub, client: httpx.AsyncClient, amazon: Channel, ups: ServedUps) -> Setup:
    account = await new_account(hub, "Acme")
    account_id = uuid.UUID(account.id)
    amazon_id = await amazon.connect(hub, account_id)
    async with hub.db.transaction() as session:
        row = await Tenant(session, account_id).create_connection(
            connector="carriers",
            name="Acme on UPS",
            vault=hub.vault,
            settings={
                "carrier": "ups",
                "account_number": SHIPPER_NUMBER,
                "test_mode": "true",
                "shipper_address": SHIPPER,
            },
            # karrio's UPS host (wwwcie.ups.com in test mode) is replaced by the stand-in's address.
            base_url=ups.url,
            secrets={"client_id": UPS_CLIENT_ID, "client_secret": UPS_CLIENT_SECRET},
        )
    await put_policy(
        client, account, auto_ship=True, rules=[{"connection_id": str(row.id), "strategy": "cheapest"}]
    )
    return Setup(account, amazon_id, row.id)


async def pull_the_paid_order(hub: Hub, amazon: Channel, setup: Setup) -> tuple[uuid.UUID, str]:
    """The sandbox's one paid, unshipped order, pulled into crossdock with the rest; its id here and at Amazon."""
    (external_id,) = [
        o.amazon_order_id for o in amazon.state.all_orders() if amazon.can_ship(o.amazon_order_id)
    ]
    assert amazon.state.orders[external_id].address.country_code == "US"
    run = await sync.run_pull(
        hub, uuid.UUID(setup.account.id), setup.amazon_id, since=utcnow() - timedelta(days=7)
    )
    assert run.status == "succeeded", run.error
    async with hub.db.session() as session:
        order = (
            await session.scalars(
                select(t.Order).where(
                    t.Order.connection_id == setup.amazon_id, t.Order.external_id == external_id
                )
            )
        ).one()
    assert order.status == "paid"
    return order.id, external_id


def customer_context(request: dict[str, Any]) -> Any:
    return request["Request"]["TransactionReference"]["CustomerContext"]


async def test_an_amazon_order_is_confirmed_with_the_tracking_ups_issued_through_karrio(
    hub: Hub, client: httpx.AsyncClient, amazon: Channel, ups: ServedUps
) -> None:
    setup = await set_up(hub, client, amazon, ups)
    order_id, external_id = await pull_the_paid_order(hub, amazon, setup)
    await run_all(hub, setup.account.id)

    # One quote and one purchase reached UPS, for this order, for the cheapest service (03, Ground).
    assert [customer_context(r) for r in ups.ups.rate_requests] == [external_id]
    (bought,) = ups.ups.shipment_requests
    assert customer_context(bought) == external_id
    assert bought["Shipment"]["Service"]["Code"] == "03"
    assert bought["Shipment"]["Shipper"]["ShipperNumber"] == SHIPPER_NUMBER
    assert bought["LabelSpecification"]["LabelImageFormat"]["Code"] == "GIF"  # a code UPS documents
    sent_to = amazon.state.orders[external_id].address
    assert bought["Shipment"]["ShipTo"]["Address"]["PostalCode"] == sent_to.postal_code
    (tracking,) = ups.ups.issued

    # Amazon has the package confirmed with exactly that tracking number, and calls the order shipped.
    confirmed = await amazon.shipments(external_id)
    assert [(c.tracking_number, c.carrier) for c in confirmed] == [(tracking, "UPS")]
    assert amazon.order_status(external_id) == "Shipped"

    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "label_purchased"
    assert (shipment.carrier, shipment.service_code, shipment.tracking_number, shipment.external_id) == (
        "ups",
        "ups_ground",
        tracking,
        tracking,
    )
    assert shipment.decision is not None and shipment.decision.startswith("rule 1: cheapest -> ")
    async with hub.db.session() as session:
        order = await session.get(t.Order, order_id)
        label = (await session.scalars(select(t.Label).where(t.Label.shipment_id == shipment.id))).one()
        calls = (
            await session.scalars(select(t.RemoteCall).where(t.RemoteCall.connection_id == setup.ups_id))
        ).all()
    assert order is not None and order.status == "shipped"
    # UPS sent a PNG; karrio made the 4x6 PDF that is stored.
    assert label.format == "pdf" and label.tracking_number == tracking
    pdf = pypdf.PdfReader(io.BytesIO(hub.blobs.get(label.blob_key)))
    assert len(pdf.pages) == 1
    # Every carrier call went to the connection's base URL, none to UPS's own host.
    assert calls and all(c.url.startswith(ups.url + "/") for c in calls)
    assert {c.url.removeprefix(ups.url) for c in calls if c.method == "POST"} >= {
        "/api/shipments/v2409/ship",
        "/api/rating/v2409/Shop?additionalinfo=timeintransit",
    }

    events = {e.kind: e.summary for e in await timeline(hub, order_id)}
    assert events["shipping.planned"].startswith("rule 1: cheapest -> ")
    assert f"tracking {tracking}" in events["shipping.label_bought"]
    assert "fulfillment.pushed" in events


@pytest.mark.parametrize("loss", ["connection dropped", "502 after the purchase"])
async def test_a_ups_purchase_whose_answer_was_lost_is_not_bought_again(
    hub: Hub, client: httpx.AsyncClient, amazon: Channel, ups: ServedUps, loss: str
) -> None:
    setup = await set_up(hub, client, amazon, ups)
    order_id, external_id = await pull_the_paid_order(hub, amazon, setup)
    if loss == "connection dropped":
        ups.front.lose_next = True
    else:
        ups.ups.answer_next_shipment_with = 502
    await run_all(hub, setup.account.id)

    # UPS bought the label (its tracking number was issued), and crossdock never heard back.
    (tracking,) = ups.ups.issued
    assert len(ups.ups.shipment_requests) == 1
    assert ups.front.lost == (1 if loss == "connection dropped" else 0)
    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "failed" and shipment.tracking_number is None
    assert shipment.purchase_started_at is not None
    error = shipment.error or ""
    assert "outcome is unknown" in error and "check the remote before retrying" in error
    (buy,) = await jobs_of(hub, order_id, BUY_JOB)
    assert buy.status == "dead" and buy.attempts == 1

    (failed,) = [e for e in await timeline(hub, order_id) if e.kind == "shipping.label_failed"]
    assert failed.severity == "error"
    assert failed.summary.startswith("Label not bought: ") and "outcome is unknown" in failed.summary
    assert "/api/shipments/v2409/ship" in failed.summary and "check the remote" in failed.summary
    # ... and says where the label would be and what to do before shipping again.
    assert "account for order" in error and "void it there before asking" in error
    assert failed.summary.endswith("it never buys a second one by itself)")
    assert not any(e.kind == "shipping.label_bought" for e in await timeline(hub, order_id))
    # Amazon was told nothing: the order waits there, unshipped, and no tracking number reached it.
    assert await amazon.shipments(external_id) == []
    assert amazon.can_ship(external_id)
    assert tracking not in {c.tracking_number for c in await amazon.shipments(external_id)}

    # Someone retries the purchase job without checking UPS: nothing is sent again.
    retried = await client.post(f"/api/v1/jobs/{buy.id}/retry", headers=setup.account.headers)
    assert retried.status_code == 200, retried.text
    await run_all(hub, setup.account.id)
    assert len(ups.ups.shipment_requests) == 1 and ups.ups.issued == [tracking]
    (shipment,) = await shipments_of(hub, order_id)
    assert shipment.status == "failed"
    assert await amazon.shipments(external_id) == []
    # The retry is taken as a decision to try again, but UPS cannot be asked whether the first purchase took
    # effect, so the run stops before sending and says where to look.
    events = await timeline(hub, order_id)
    assert [e.kind for e in events if e.kind == "shipping.label_retried"] == ["shipping.label_retried"]
    again = [e for e in events if e.kind == "shipping.label_failed"][-1]
    assert "cannot look a label up, so crossdock does not buy again" in again.summary
    assert "void it there if it exists, then ask for the order to be shipped again" in again.summary
