"""Configuration shared by every sandbox (the knobs `crossdock sandbox NAME ...` exposes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from crossdock.sandbox.common.faults import FaultSpec


@dataclass
class SandboxConfig:
    seed: int = 1
    # Orders to seed at start.
    orders: int = 0
    # A fixed valid access token; when None the sandbox makes one and logs it (app.state.sandbox.token).
    token: str | None = None
    # Where outbound webhooks go (None: only to subscriptions the sandbox itself knows, if any).
    webhook_url: str | None = None
    faults: FaultSpec = field(default_factory=FaultSpec)
    # Scale rate limits up (x100) so tests are not slowed by them.
    fast_limits: bool = False
    client_id: str = "sandbox-client-id"
    # OAuth client secret and webhook signing secret.
    client_secret: str = "sandbox-client-secret"
    # Sandbox-specific knobs, e.g. {"shop": "my-shop.myshopify.com"}.
    extra: dict[str, str] = field(default_factory=dict)
