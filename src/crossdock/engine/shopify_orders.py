"""Processing of stored Shopify order webhooks (orders/create, orders/updated, orders/cancelled).

The payload is the order itself (shopify.dev/docs/api/webhooks, topic orders/*), so the mapper reads it as is;
the importer's binding makes a redelivered or out-of-order payload change nothing.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.connectors.shopify.mapping import map_order
from crossdock.engine.importer import Outcome, import_stored
from crossdock.engine.inbox import Processed, processor
from crossdock.engine.jobs import JobContext
from crossdock.store import tables as t

KIND = "shopify.order"
# Topics whose body is an order (shopify.dev/docs/api/webhooks?reference=toml, "orders/*").
TOPICS = frozenset({"orders/create", "orders/updated", "orders/cancelled"})


@processor(KIND)
async def process_order(session: AsyncSession, ctx: JobContext, row: t.InboxMessage) -> Processed:
    topic = row.headers.get("x-shopify-topic", "orders/updated")
    result = await import_stored(session, row, map_order, source="Shopify")
    if result.outcome is Outcome.QUARANTINED:
        return Processed(order_id=result.order_id, quarantined=f"{topic}: {result.reason}")
    return Processed(order_id=result.order_id, summary=f"Received {topic} webhook: {result.summary}")
