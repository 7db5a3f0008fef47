"""Processing again of pulled eBay and Amazon orders that a pull quarantined (engine.sync keeps each one whole in
the inbox, kind "<connector>.order", with the reason), once the mapping or the data was fixed: Retry on the
panel's Failures page (inbox.retry_payload) queues it, and the job maps it again here.

What is stored is the record as the pull mapped it (`Mapped.raw`): eBay's Order resource of getOrders, and for
Amazon {"Order": ..., "OrderItems": [...]}, the order with all its items' pages merged. Shopify's pulled orders
are its webhooks' bodies, processed by engine.shopify_orders. A record that still does not map is quarantined
again with the new reason; the importer's binding makes a record older than what is stored change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.connectors.amazon.mapping import map_order as map_amazon_order
from crossdock.connectors.base import Mapped, MappingProblem
from crossdock.connectors.ebay.mapping import map_order as map_ebay_order
from crossdock.engine.importer import Outcome, import_stored
from crossdock.engine.inbox import Processed, processor
from crossdock.engine.jobs import JobContext
from crossdock.store import tables as t

EBAY_KIND = "ebay.order"
AMAZON_KIND = "amazon.order"


def _amazon(payload: Any) -> Mapped:
    if not isinstance(payload, dict):
        return Mapped(problems=[MappingProblem("body", 'is not {"Order": ..., "OrderItems": [...]}')])
    return map_amazon_order(payload.get("Order"), payload.get("OrderItems"))


async def _again(
    session: AsyncSession, row: t.InboxMessage, read: Callable[[Any], Mapped], source: str
) -> Processed:
    result = await import_stored(session, row, read, source=source)
    if result.outcome is Outcome.QUARANTINED:
        return Processed(order_id=result.order_id, quarantined=f"pulled order: {result.reason}")
    return Processed(
        order_id=result.order_id, summary=f"Pulled {source} order processed again: {result.summary}"
    )


@processor(EBAY_KIND)
async def process_ebay_order(session: AsyncSession, ctx: JobContext, row: t.InboxMessage) -> Processed:
    return await _again(session, row, map_ebay_order, "eBay")


@processor(AMAZON_KIND)
async def process_amazon_order(session: AsyncSession, ctx: JobContext, row: t.InboxMessage) -> Processed:
    return await _again(session, row, _amazon, "Amazon")
