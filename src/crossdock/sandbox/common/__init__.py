"""Helpers every sandbox shares: configuration, fault injection, test data, webhook delivery, serving.

This is the only part of crossdock a sandbox may import, so that each sandbox stays an honest stand-in for the
remote system it emulates.
"""

from crossdock.sandbox.common.config import SandboxConfig
from crossdock.sandbox.common.datagen import (
    CATALOG,
    Address,
    DataGen,
    Item,
    Person,
    from_usd,
    minor_units,
    quantize_money,
)
from crossdock.sandbox.common.faults import FaultMiddleware, Faults, FaultSpec
from crossdock.sandbox.common.server import run_in_thread, serve
from crossdock.sandbox.common.webhooks import Delivery, WebhookSender

__all__ = [
    "CATALOG",
    "Address",
    "DataGen",
    "Delivery",
    "FaultMiddleware",
    "FaultSpec",
    "Faults",
    "Item",
    "Person",
    "SandboxConfig",
    "WebhookSender",
    "from_usd",
    "minor_units",
    "quantize_money",
    "run_in_thread",
    "serve",
]
