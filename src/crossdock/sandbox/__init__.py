"""Sandboxes: faithful local emulators of the external APIs crossdock talks to, with fault injection."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from crossdock.sandbox.common.config import SandboxConfig

SANDBOXES: dict[str, str] = {
    "shopify": "crossdock.sandbox.shopify",
    "ebay": "crossdock.sandbox.ebay",
    "amazon": "crossdock.sandbox.amazon",
    "shippo": "crossdock.sandbox.shippo",
    "myparcelcom": "crossdock.sandbox.myparcelcom",
}


def create_sandbox_app(name: str, config: SandboxConfig) -> Starlette:
    """Build the ASGI app of the sandbox called `name` (a key of SANDBOXES)."""
    try:
        module_name = SANDBOXES[name]
    except KeyError:
        raise ValueError(f"unknown sandbox {name!r}; known: {', '.join(sorted(SANDBOXES))}") from None
    module = importlib.import_module(module_name)
    app: Starlette = module.create_app(config)
    return app
