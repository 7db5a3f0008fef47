"""The demo's five sandboxes and its servers: each app built from its config, each served by uvicorn on a socket
bound to 127.0.0.1 beforehand (so its URL is known before it serves), all in the demo's one event loop.

The credentials below are the sandboxes' own: fixed values a sandbox accepts, good for nothing else. Fixing them
(instead of letting each sandbox make its own) keeps a second `make demo` with the same CROSSDOCK_HOME working
with the connections the first one stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from crossdock.logs import server_log_config
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.cli import build_config
from crossdock.sandbox.common.config import SandboxConfig

HOST = "127.0.0.1"
# The OAuth app the channel sandboxes know (its secret also signs the Shopify sandbox's webhooks).
CLIENT_ID = "crossdock-demo-app"
CLIENT_SECRET = "crossdock-demo-app-secret"  # noqa: S105 - a sandbox credential
SHOPIFY_SHOP = "crossdock-demo.myshopify.com"
SHOPIFY_TOKEN = "shpat_crossdock_demo_0123456789abcdef"  # noqa: S105 - a sandbox credential
AMAZON_MARKETPLACE = "ATVPDKIKX0DER"
AMAZON_REFRESH_TOKEN = "Atzr|IwEBI-crossdock-demo-refresh-token"  # noqa: S105 - a sandbox credential
AMAZON_SELLER = "A3CROSSDOCKDEMO"
SHIPPO_TOKEN = "shippo_test_crossdock_demo_0123456789abcdef0123"  # noqa: S105 - a sandbox credential
# eBay and Amazon are pulled, and a pull reads only what is a minute (eBay) or two (Amazon) old: orders seeded
# over the last day are there for the first pull, so both channels show orders from the start.
SEEDED_PULL_ORDERS = 3

# Name, title, and what the sandbox stands in for.
SANDBOXES: tuple[tuple[str, str], ...] = (
    ("shopify", "Shopify"),
    ("ebay", "eBay"),
    ("amazon", "Amazon"),
    ("shippo", "Shippo"),
    ("myparcelcom", "MyParcel.com"),
)


# The demo's eBay RuName (eBay's name for an app's redirect URL) and Amazon's SP-API application id, which the
# sandboxes and the hub's OAuth apps agree on so that eBay and Amazon sellers can be connected from the panel.
EBAY_RU_NAME = "crossdock_demo-crossdock-demo-runame"
AMAZON_APPLICATION_ID = "amzn1.sp.solution.crossdock-demo"


def sandbox_config(
    name: str, seed: int, *, shopify_first_order: int = 1, hub_url: str | None = None
) -> SandboxConfig:
    """The demo's configuration of sandbox `name`. Every sandbox gets the run's seed, so that its ids and tracking
    numbers differ from an earlier run's; the Shopify shop's order numbers go on from `shopify_first_order`."""
    common: dict[str, Any] = {"seed": seed, "fast_limits": True}
    if name == "shopify":
        extra = {"shop": SHOPIFY_SHOP, "first_order": str(shopify_first_order)}
        config = build_config(token=SHOPIFY_TOKEN, extra=extra, **common)
    elif name == "ebay":
        extra = {"days": "1", "ru_name": EBAY_RU_NAME}
        if hub_url is not None:
            extra["accept_url"] = f"{hub_url}/oauth/ebay/callback"
        config = build_config(orders=SEEDED_PULL_ORDERS, extra=extra, **common)
    elif name == "amazon":
        extra = {
            "marketplace_ids": AMAZON_MARKETPLACE,
            "refresh_token": AMAZON_REFRESH_TOKEN,
            "selling_partner_id": AMAZON_SELLER,
            "application_id": AMAZON_APPLICATION_ID,
            "days": "1",
        }
        config = build_config(orders=SEEDED_PULL_ORDERS, extra=extra, **common)
    elif name == "shippo":
        # Shippo sends the browser back to the callback URL registered with the partner app.
        extra = {"oauth_redirect_uri": f"{hub_url}/oauth/shippo/callback"} if hub_url is not None else {}
        config = build_config(token=SHIPPO_TOKEN, extra=extra, **common)
    elif name == "myparcelcom":
        config = build_config(**common)
    else:
        raise ValueError(f"the demo has no sandbox {name!r}")
    config.client_id, config.client_secret = CLIENT_ID, CLIENT_SECRET
    return config


@dataclass
class Sandbox:
    name: str
    title: str
    app: Any
    sock: socket.socket

    @property
    def url(self) -> str:
        return url_of(self.sock)

    @property
    def state(self) -> Any:
        return self.app.state.sandbox


def bind(port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:`port` (0: any free port). Raises OSError when the port is taken.

    With TCP_NODELAY, which the connections it accepts inherit. asyncio sets it on the connections of a server it
    binds itself, but not on those accepted from a socket made with `socket.socket()` (its protocol number is 0,
    not IPPROTO_TCP): uvicorn then writes an answer's head and body in two sends, Nagle's algorithm holds the
    body until the client acknowledges the head, and the client delays that acknowledgement (40 ms on Linux). On
    a kept-alive connection every answer waited about 44 ms."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((HOST, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://{HOST}:{sock.getsockname()[1]}"


def build_sandboxes(
    seed: int, sockets: dict[str, socket.socket], *, shopify_first_order: int, hub_url: str | None = None
) -> list[Sandbox]:
    """The five sandbox apps, each with the socket it will be served on."""
    return [
        Sandbox(
            name,
            title,
            create_sandbox_app(
                name, sandbox_config(name, seed, shopify_first_order=shopify_first_order, hub_url=hub_url)
            ),
            sockets[name],
        )
        for name, title in SANDBOXES
    ]


class Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signals alone: the demo runs six in one loop and stops them all
    on one Ctrl-C itself (uvicorn's own handlers would each take the signal from the one before)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Served:
    server: Server
    task: asyncio.Task[None]


async def serve(app: Any, sock: socket.socket, name: str, log_format: str = "console") -> Served:
    """Serve `app` on the bound socket `sock` until stopped, logging in `log_format` (CROSSDOCK_LOG_FORMAT);
    returns once it accepts connections."""
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", log_config=server_log_config(log_format)
    )
    server = Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"serve-{name}")
    while not server.started:
        if task.done():
            task.result()  # the server's own error, if it raised one
            raise RuntimeError(f"the {name} server stopped while starting")
        await asyncio.sleep(0.02)
    return Served(server, task)


async def stop(served: list[Served]) -> None:
    """Ask the servers to stop and wait for them."""
    for item in served:
        item.server.should_exit = True
    for item in served:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await item.task
