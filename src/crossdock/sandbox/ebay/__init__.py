"""eBay sandbox: OAuth user tokens and the Sell Fulfillment API v1 (orders and shipping fulfillments)."""

from crossdock.sandbox.ebay.app import create_app
from crossdock.sandbox.ebay.state import EbayState

__all__ = ["EbayState", "create_app"]
