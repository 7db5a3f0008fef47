"""The Amazon connector: SP-API Orders v0 in (getOrders with getOrderItems), shipment confirmations out.

This package imports only the canonical model, security and the connectors' shared helpers; the engine's HTTP
client and rate limiter are wired in by the engine.
"""

from crossdock.connectors.amazon.carriers import carrier_code
from crossdock.connectors.amazon.mapping import (
    confirm_shipment_request,
    map_order,
    merge_item_pages,
    order_status,
)

__all__ = ["carrier_code", "confirm_shipment_request", "map_order", "merge_item_pages", "order_status"]
