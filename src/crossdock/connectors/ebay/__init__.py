"""The eBay connector: orders in (Sell Fulfillment API getOrders), shipping fulfillments out.

This package imports only the canonical model, security and the connectors' shared helpers; the engine's HTTP
client and rate limiter are wired in by the engine.
"""

from crossdock.connectors.ebay.carriers import shipping_carrier_code
from crossdock.connectors.ebay.mapping import map_order, order_status, shipping_fulfillment_request

__all__ = ["map_order", "order_status", "shipping_carrier_code", "shipping_fulfillment_request"]
