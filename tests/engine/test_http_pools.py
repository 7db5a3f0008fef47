"""The keep-alive connections RemoteClients share (engine/http_pools.py): reused from one client (one job) to the
next, never across TLS names, closed when idle or when the hub closes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from crossdock.engine.errors import PermanentError
from crossdock.engine.http import RemoteClient, Target
from crossdock.engine.http_pools import SWEEP_EVERY_S, RemotePools
from crossdock.hub import Hub
from tests.engine.remote_support import local_server, new_owner, strict_hub


class Recording(httpx.AsyncBaseTransport):
    """Stands where an httpx.AsyncHTTPTransport (one origin's connection pool) would: answers 200 and records
    the requests it was given and whether it was closed."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert not self.closed, "a request was sent through a closed pool"
        self.requests.append(request)
        return httpx.Response(200, json={"ok": True})

    async def aclose(self) -> None:
        self.closed = True


class Pools:
    """RemotePools whose origin pools are `Recording`s, on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.made: list[Recording] = []

        def make(_limits: httpx.Limits) -> Recording:
            self.made.append(Recording())
            return self.made[-1]

        self.pools = RemotePools(clock=lambda: self.now, make_transport=make, idle_close_s=60.0)


async def test_clients_one_after_another_send_over_one_kept_alive_connection(hub: Hub) -> None:
    """Each job opens a connector, calls and closes it: the next job's calls go over the same TCP connection
    (the server sees one client port), where each client used to open a connection of its own."""
    owner = await new_owner(hub)
    peers: list[tuple[str, int]] = []

    async def page(request: Request) -> JSONResponse:
        assert request.client is not None
        peers.append((request.client.host, request.client.port))
        return JSONResponse({"orders": []})

    with local_server(Starlette(routes=[Route("/orders.json", page)])) as url:
        for _job in range(3):
            async with RemoteClient(
                hub, Target(owner.account_id, "shopify", owner.connection_id), base_url=url
            ) as client:
                await client.get("/orders.json")
                await client.get("/orders.json")
        assert len(peers) == 6 and len(set(peers)) == 1, peers
        (origin,) = hub.remote_pools.origins()
        assert origin[:3] == ("http", "127.0.0.1", int(url.rsplit(":", 1)[1]))

        # Closed with the hub: the next request needs a new connection.
        await hub.remote_pools.aclose()
        assert hub.remote_pools.origins() == []
        async with RemoteClient(
            hub, Target(owner.account_id, "shopify", owner.connection_id), base_url=url
        ) as client:
            await client.get("/orders.json")
    assert peers[-1] != peers[0]


async def test_two_names_on_one_address_never_share_a_connection(hub: Hub, tmp_path: Any) -> None:
    """Pinned requests go to the checked address with the name as TLS server name: a TLS connection was verified
    for its name, so shops behind one address get pools of their own, and each name's clients share its."""
    owner = await new_owner(hub)
    fake = Pools()
    strict = strict_hub(hub, tmp_path, remote_pools=fake.pools)
    answers = {"shop-a.example.com": ["93.184.216.34"], "shop-b.example.com": ["93.184.216.34"]}

    async def call(host: str) -> None:
        async with RemoteClient(
            strict,
            Target(owner.account_id, "shopify", owner.connection_id),
            base_url=f"https://{host}",
            resolver=lambda name: answers[name],
        ) as client:
            await client.get("/admin/api/2025-01/shop.json")

    for host in ("shop-a.example.com", "shop-b.example.com", "shop-a.example.com"):
        await call(host)
    a, b = fake.made
    assert [r.extensions["sni_hostname"] for r in a.requests] == ["shop-a.example.com"] * 2
    assert [r.extensions["sni_hostname"] for r in b.requests] == ["shop-b.example.com"]
    assert {r.url.host for r in a.requests + b.requests} == {"93.184.216.34"}
    assert sorted(o[3] or "" for o in fake.pools.origins()) == ["shop-a.example.com", "shop-b.example.com"]
    assert not a.closed and not b.closed  # closing the clients closed nothing shared


async def test_a_pool_idle_past_its_limit_is_closed_and_one_with_an_open_answer_is_not() -> None:
    fake = Pools()
    pools = fake.pools
    transport = pools.transport()
    first = await transport.handle_async_request(httpx.Request("GET", "https://one.example.com/a"))
    await (await transport.handle_async_request(httpx.Request("GET", "https://two.example.com/a"))).aclose()
    one, two = fake.made
    fake.now += 30
    await (await transport.handle_async_request(httpx.Request("GET", "https://two.example.com/b"))).aclose()
    # one: last used 91 s ago, but its answer is still open (its connection is in use); two: idle for 61 s.
    fake.now += 61
    await (await transport.handle_async_request(httpx.Request("GET", "https://three.example.com/a"))).aclose()
    assert two.closed and not one.closed
    assert {o[1] for o in pools.origins()} == {"one.example.com", "three.example.com"}

    await first.aclose()  # one's answer is read: idle from now
    fake.now += SWEEP_EVERY_S + 1  # not idle long enough yet
    await (await transport.handle_async_request(httpx.Request("GET", "https://three.example.com/b"))).aclose()
    assert not one.closed
    fake.now += 60
    await (await transport.handle_async_request(httpx.Request("GET", "https://four.example.com/a"))).aclose()
    one, two, three, four = fake.made
    assert one.closed and three.closed and not four.closed
    assert [o[1] for o in pools.origins()] == ["four.example.com"]
    await transport.aclose()  # a client's close leaves the pools open
    assert not four.closed
    await pools.aclose()
    assert four.closed and pools.origins() == []


async def test_a_name_is_resolved_once_a_minute_for_every_client_and_a_refused_answer_is_not_kept(
    hub: Hub, tmp_path: Any
) -> None:
    """Every job used to resolve its remote's name again (a DNS query and a hop to a thread): the checked
    addresses are now the process's for a minute. An answer that was refused (a private address) is dropped, so
    the next call asks DNS again rather than failing on a kept answer for a minute."""
    owner = await new_owner(hub)
    fake = Pools()
    strict = strict_hub(hub, tmp_path, remote_pools=fake.pools)
    answers = {"shop.example.com": ["93.184.216.34"], "rebound.example.com": ["10.0.0.7"]}
    asked: list[str] = []

    def resolver(name: str) -> list[str]:
        asked.append(name)
        return answers[name]

    async def call(host: str) -> None:
        async with RemoteClient(
            strict,
            Target(owner.account_id, "shopify", owner.connection_id),
            base_url=f"https://{host}",
            resolver=resolver,
        ) as client:
            await client.get("/admin/api/2025-01/shop.json")

    for _job in range(3):
        await call("shop.example.com")
    assert asked == ["shop.example.com"]
    fake.now += 60  # the kept answer has run out
    await call("shop.example.com")
    assert asked == ["shop.example.com"] * 2
    for _job in range(2):
        with pytest.raises(PermanentError, match=r"10\.0\.0\.7"):
            await call("rebound.example.com")
    assert asked == ["shop.example.com"] * 2 + ["rebound.example.com"] * 2
    # Four calls went out, all to the checked address (the minute idle closed the first pool).
    assert [r.url.host for pool in fake.made for r in pool.requests] == ["93.184.216.34"] * 4
