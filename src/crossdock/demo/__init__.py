"""`crossdock demo` (`make demo`): the hub doing its job against local sandboxes, in one process.

One asyncio loop serves the hub (with its job worker) on 127.0.0.1:DEMO_PORT and the Shopify, eBay, Amazon,
Shippo and MyParcel.com sandboxes on free loopback ports. The database (SQLite in CROSSDOCK_HOME) gets a Demo
account with connections to the five sandboxes and a shipping policy that buys labels by itself (setup.py);
then orders arrive in the channel sandboxes every few seconds and the parcels move at the carriers
(traffic.py), while the terminal shows what the hub does with them. One Ctrl-C (SIGINT) or SIGTERM stops the
traffic, the hub (its worker finishing running jobs) and the sandboxes, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from crossdock import __version__
from crossdock.api.app import create_app
from crossdock.config import Settings
from crossdock.demo.sandboxes import (
    AMAZON_APPLICATION_ID,
    AMAZON_MARKETPLACE,
    CLIENT_ID,
    CLIENT_SECRET,
    EBAY_RU_NAME,
    SANDBOXES,
    SHOPIFY_SHOP,
    Sandbox,
    Served,
    bind,
    build_sandboxes,
    serve,
    stop,
    url_of,
)
from crossdock.demo.setup import DemoError, DemoSetup, ensure_demo, next_shopify_order, shippo_webhook_url
from crossdock.demo.traffic import Feed, Traffic, run_forever
from crossdock.hub import Hub
from crossdock.logs import configure_logging
from crossdock.security.oauth import OAuthApp
from crossdock.store.migrate import upgrade

__all__ = ["DemoError", "demo_settings", "run_demo"]

# Defaults for a demo that shows things within seconds, each used unless its CROSSDOCK_* variable is set.
DEMO_DEFAULTS: dict[str, Any] = {
    # Pull eBay and Amazon every 10 s (the scheduler's tick) instead of every 5 minutes.
    "sync_interval_s": 10,
    # Ask MyParcel.com about each open parcel every minute instead of every 4 hours.
    "tracking_poll_interval_s": 60,
    # Ctrl-C gives running jobs 5 s to finish instead of 30.
    "worker_grace_s": 5,
    # The terminal shows the demo's own feed; the hub says only what goes wrong.
    "log_level": "WARNING",
}


def demo_settings(port: int, urls: dict[str, str] | None = None) -> Settings:
    """The hub's settings for the demo: SQLite in CROSSDOCK_HOME whatever CROSSDOCK_DATABASE_URL says (the demo
    never writes into a real database), reachable at 127.0.0.1:`port`, allowed to call the sandboxes on
    loopback, the DEMO_DEFAULTS where not set otherwise, and OAuth apps pointing at the Shopify, eBay, Amazon and
    Shippo sandboxes (`urls`, by sandbox name) so that shops, sellers and Shippo accounts can be connected from
    the panel's Connect buttons through the sandboxes' consent pages."""
    base = Settings()
    overrides: dict[str, Any] = {
        name: value for name, value in DEMO_DEFAULTS.items() if name not in base.model_fields_set
    }
    overrides.update(database_url=None, public_url=f"http://127.0.0.1:{port}", allow_private_urls=True)
    if urls is not None:
        apps = dict(base.oauth_apps)
        # Each sandbox's consent page and token endpoint, at the paths the real remote has them.
        endpoints: dict[str, tuple[str, str, dict[str, Any]]] = {
            "shopify": ("/admin/oauth/authorize", "/admin/oauth/access_token", {}),
            "ebay": ("/oauth2/authorize", "/identity/v1/oauth2/token", {"ru_name": EBAY_RU_NAME}),
            "amazon": (
                "/apps/authorize/consent",
                "/auth/o2/token",
                {
                    "application_id": AMAZON_APPLICATION_ID,
                    "draft": True,
                    "marketplace_ids": [AMAZON_MARKETPLACE],
                },
            ),
            "shippo": ("/oauth/authorize", "/oauth/access_token", {}),
        }
        for name, (authorize, token, extra) in endpoints.items():
            apps[name] = OAuthApp(
                client_id=CLIENT_ID,
                client_secret=SecretStr(CLIENT_SECRET),
                authorize_url=urls[name] + authorize,
                token_url=urls[name] + token,
                api_base_url=urls[name],
                **extra,
            )
        overrides["oauth_apps"] = apps
    return Settings(**overrides)


@dataclass
class Running:
    """What the demo runs, for stopping it in order."""

    hub: Hub
    sandboxes: list[Served]
    hub_server: Served | None = None
    traffic: asyncio.Task[None] | None = None


def run_demo(*, port: int, token: str | None, say: Callable[[str], None]) -> None:
    """Run the demo until SIGINT or SIGTERM; `say` prints a line for the person watching. Raises DemoError for
    what they can fix (a port in use, a DEMO_TOKEN of another account)."""
    settings = demo_settings(port)
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(_main(port, token, say))


async def _main(port: int, token: str | None, say: Callable[[str], None]) -> None:
    try:
        hub_sock = bind(port)
    except OSError as exc:
        raise DemoError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); stop what uses it or choose another port, "
            "e.g. make demo DEMO_PORT=8080"
        ) from None
    sockets = {name: bind(0) for name, _title in SANDBOXES}
    settings = demo_settings(port, {name: url_of(sock) for name, sock in sockets.items()})
    hub = Hub.from_settings(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    running = Running(hub=hub, sandboxes=[])
    try:
        await upgrade(hub.db)
        seed = random.SystemRandom().randrange(1, 2**31)
        sandboxes = build_sandboxes(
            seed, sockets, shopify_first_order=await next_shopify_order(hub), hub_url=settings.public_url
        )
        for sandbox in sandboxes:
            running.sandboxes.append(
                await serve(sandbox.app, sandbox.sock, sandbox.name, settings.log_format)
            )
        setup = await ensure_demo(hub, sandboxes, token, settings.public_url)
        # What one does in Shippo's dashboard: send its webhooks to the connection's hook.
        shippo = next(s for s in sandboxes if s.name == "shippo")
        shippo.state.config.webhook_url = await shippo_webhook_url(
            hub, setup.account.id, setup.connections["shippo"]
        )
        running.hub_server = await serve(
            create_app(hub, run_workers=True), hub_sock, "hub", settings.log_format
        )
        _banner(say, settings.public_url, setup, sandboxes)
        titles = {setup.connections[s.name]: s.title for s in sandboxes}
        traffic = Traffic({s.name: s for s in sandboxes})
        feed = Feed(hub, setup.account.id, titles, say)
        running.traffic = asyncio.create_task(run_forever(traffic.run(), feed.run()), name="demo-traffic")
        try:
            await stopping.wait()
        finally:
            say("stopping: the hub finishes its running jobs, then the sandboxes stop ...")
            running.traffic.cancel()
            await asyncio.gather(running.traffic, return_exceptions=True)
            await traffic.aclose()
    finally:
        # Ctrl-C again while stopping: stop at once, without waiting for open connections.
        loop.add_signal_handler(signal.SIGINT, _force, running)
        await _shut_down(running)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        hub_sock.close()
        for sock in sockets.values():
            sock.close()
    say("stopped")


def _force(running: Running) -> None:
    for served in [*running.sandboxes, *([running.hub_server] if running.hub_server else [])]:
        served.server.force_exit = True


async def _shut_down(running: Running) -> None:
    """The hub first (its worker's jobs may still call a sandbox), then the sandboxes, then the database."""
    if running.hub_server is not None:
        await stop([running.hub_server])
    await stop(running.sandboxes)
    await running.hub.close()


def _banner(say: Callable[[str], None], url: str, setup: DemoSetup, sandboxes: list[Sandbox]) -> None:
    account = setup.account
    say(f"crossdock {__version__} demo on {url}")
    say(f"  account   {account.name} ({account.id})")
    say(f"  token     {setup.token}")
    say(f"  sign in   {setup.sign_in}")
    say(f"  try       curl -H 'Authorization: Bearer {setup.token}' {url}/api/v1/orders")
    say(f"  API docs  {url}/docs")
    say("  sandboxes (admin API under /_sandbox/ of each):")
    for sandbox in sandboxes:
        say(f"    {sandbox.title:<13} {sandbox.url}   connection {setup.connections[sandbox.name]}")
    say(
        f"  connect   more shops and sellers on {url}/connections: Shopify, eBay and Amazon through the "
        f"sandboxes' consent pages (Shopify's shop is {SHOPIFY_SHOP})"
    )
    say(
        "  watch     a new order every 2-4 s: Shopify's arrive by webhook, eBay's and Amazon's by scheduled pulls "
        "(a minute or two late, as their APIs allow); the shipping rules buy each label (Europe by MyParcel.com, "
        "the rest by Shippo) and tracking comes back (Shippo by webhook, MyParcel.com by polling)"
    )
    say("  stop      Ctrl-C")
    say("")
