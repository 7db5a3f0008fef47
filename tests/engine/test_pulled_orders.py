"""Pulled eBay and Amazon orders that a pull quarantined are processed again when retried: a real pull stores the
unmappable record whole in the inbox; once the record is readable (here: a record that an older mapping could not
read, stored as the pull stores it), Retry maps it again and imports it, and one that still does not map is
quarantined again with the new reason."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from crossdock.engine import inbox, sync
from crossdock.engine.pulled_orders import AMAZON_KIND, EBAY_KIND
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.repo import Conflict
from crossdock.store.repo import Tenant as Repo
from crossdock.store.types import utcnow
from tests.connectors.support import changed
from tests.connectors.test_amazon_mapping import ITEMS as AMAZON_ITEMS
from tests.connectors.test_amazon_mapping import ORDER as AMAZON_ORDER
from tests.connectors.test_ebay_mapping import ORDER as EBAY_ORDER
from tests.engine.fulfil_support import serve_channel
from tests.flows.support import run_all
from tests.support import new_account


async def connection(hub: Hub, account_id: uuid.UUID, connector: str) -> uuid.UUID:
    async with hub.db.transaction() as session:
        row = await Repo(session, account_id).create_connection(
            connector=connector, name=f"Acme on {connector}", vault=hub.vault, settings={}, secrets={}
        )
    return row.id


async def quarantined(
    hub: Hub, account_id: uuid.UUID, connection_id: uuid.UUID, kind: str, body: Any, reason: str
) -> uuid.UUID:
    """The record as engine.sync keeps one that did not map: whole, as JSON, with the reason."""
    row = t.InboxMessage(
        account_id=account_id,
        connection_id=connection_id,
        kind=kind,
        dedup_key=f"pull:{uuid.uuid4()}:1",
        headers={"x-crossdock-source": "pull"},
        body=json.dumps(body).encode(),
        status="quarantined",
        error=reason,
        received_at=utcnow(),
        processed_at=utcnow(),
    )
    async with hub.db.transaction() as session:
        session.add(row)
    return row.id


async def retried(hub: Hub, account_id: uuid.UUID, inbox_id: uuid.UUID) -> t.InboxMessage:
    async with hub.db.transaction() as session:
        await inbox.retry_payload(session, inbox_id=inbox_id, account_id=account_id)
    await run_all(hub, str(account_id))
    async with hub.db.session() as session:
        row = await session.get(t.InboxMessage, inbox_id)
    assert row is not None
    return row


async def orders_of(hub: Hub, connection_id: uuid.UUID) -> list[t.Order]:
    async with hub.db.session() as session:
        return list(
            (await session.scalars(select(t.Order).where(t.Order.connection_id == connection_id))).all()
        )


async def test_an_ebay_record_a_pull_quarantined_is_stored_whole_and_retry_reads_it_again(hub: Hub) -> None:
    account_id = uuid.UUID((await new_account(hub, "Acme")).id)
    async with serve_channel("ebay") as ebay:
        ebay_id = await ebay.connect(hub, account_id)
        [broken, *_] = sorted(ebay.state.all_orders(), key=lambda o: o.order_id)
        # No such country: the pull quarantines the order.
        broken.ship_to = dataclasses.replace(broken.ship_to, country_code="XX")
        run = await sync.run_pull(hub, account_id, ebay_id, since=utcnow() - timedelta(days=90))
        assert run.invalid == 1, run
    async with hub.db.session() as session:
        (row,) = (
            await session.scalars(select(t.InboxMessage).where(t.InboxMessage.connection_id == ebay_id))
        ).all()
    assert (row.kind, row.status) == (EBAY_KIND, "quarantined") and "countryCode" in (row.error or "")
    assert json.loads(row.body)["orderId"] == broken.order_id
    # Still unreadable: quarantined again, with the reason of this attempt.
    again = await retried(hub, account_id, row.id)
    assert again.status == "quarantined" and "XX" in (again.error or "")
    assert broken.order_id not in {o.external_id for o in await orders_of(hub, ebay_id)}


async def test_retrying_a_pulled_ebay_record_that_now_maps_imports_the_order(hub: Hub) -> None:
    account_id = uuid.UUID((await new_account(hub, "Acme")).id)
    ebay_id = await connection(hub, account_id, "ebay")
    inbox_id = await quarantined(
        hub, account_id, ebay_id, EBAY_KIND, EBAY_ORDER, "lineItems: a mapping bug, fixed since"
    )

    row = await retried(hub, account_id, inbox_id)

    assert row.status == "processed" and row.error is None
    [order] = await orders_of(hub, ebay_id)
    assert order.external_id == "12-34567-89012" and row.order_id == order.id
    # Retrying a processed record is refused: it is no longer quarantined.
    async with hub.db.transaction() as session:
        with pytest.raises(Conflict, match="quarantined"):
            await inbox.retry_payload(session, inbox_id=inbox_id, account_id=account_id)


async def test_retrying_a_pulled_amazon_record_imports_it_and_a_broken_one_stays_quarantined(
    hub: Hub,
) -> None:
    account_id = uuid.UUID((await new_account(hub, "Acme")).id)
    amazon_id = await connection(hub, account_id, "amazon")
    good = await quarantined(
        hub, account_id, amazon_id, AMAZON_KIND, {"Order": AMAZON_ORDER, "OrderItems": AMAZON_ITEMS}, "bug"
    )
    broken_order = changed(AMAZON_ORDER, "ShippingAddress.CountryCode", "XX")
    broken = await quarantined(
        hub, account_id, amazon_id, AMAZON_KIND, {"Order": broken_order, "OrderItems": AMAZON_ITEMS}, "bug"
    )
    not_a_record = await quarantined(hub, account_id, amazon_id, AMAZON_KIND, ["not", "an", "order"], "bug")

    assert (await retried(hub, account_id, good)).status == "processed"
    [order] = await orders_of(hub, amazon_id)
    assert order.external_id == "902-3159896-1390916"
    still = await retried(hub, account_id, broken)
    assert still.status == "quarantined" and "CountryCode" in (still.error or "")
    odd = await retried(hub, account_id, not_a_record)
    assert odd.status == "quarantined" and "body" in (odd.error or "")
    assert len(await orders_of(hub, amazon_id)) == 1
