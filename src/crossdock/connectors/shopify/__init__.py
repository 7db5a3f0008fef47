"""The Shopify connector: orders in (REST Admin API and webhooks), fulfillments out.

This package imports only the canonical model, security and the connectors' shared helpers; the engine's HTTP
client and rate limiter are wired in by the engine.
"""

from crossdock.connectors.shopify.carriers import tracking_company
from crossdock.connectors.shopify.mapping import fulfillment_request, map_order, order_status

__all__ = ["fulfillment_request", "map_order", "order_status", "tracking_company"]
