"""Shippo sandbox: a local emulator of api.goshippo.com (orders, shipments, rates, labels, tracking, refunds,
partner OAuth, webhooks) with Shippo's auth, error shapes, pagination and per-minute rate limits."""

from crossdock.sandbox.shippo.app import create_app
from crossdock.sandbox.shippo.state import ShippoState

__all__ = ["ShippoState", "create_app"]
