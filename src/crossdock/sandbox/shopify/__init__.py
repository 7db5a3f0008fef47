"""Shopify sandbox: the REST Admin API (orders, fulfillment orders, fulfillments, inventory, webhooks), the
OAuth install flow, signed outbound webhooks and Shopify's leaky-bucket rate limit, for one emulated shop."""

from crossdock.sandbox.shopify.app import create_app
from crossdock.sandbox.shopify.state import ShopState

__all__ = ["ShopState", "create_app"]
