"""`make demo`: on a fresh home it answers /healthz within 15 seconds and the printed token works; within 60 s it
shows shipped orders with tracking numbers from more than one channel; one Ctrl-C stops the hub and every sandbox.
Its setup, run twice against one database with new sandboxes on new ports, makes one account and one connection
per sandbox and points them at the new sandboxes."""

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from starlette.types import Receive, Scope, Send

from crossdock.demo import demo_settings
from crossdock.demo.sandboxes import SANDBOXES, bind, build_sandboxes, serve, stop, url_of
from crossdock.demo.setup import CONNECTION_NAMES, DemoError, ensure_demo, next_shopify_order
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.migrate import upgrade
from tests.demo_process import banner_sandboxes, read_banner, start_demo
from tests.support import free_port


def port_is_free(port: int) -> bool:
    """Nothing listens on the port and a server could take it again (connections the demo closed may still be
    in TIME_WAIT, which SO_REUSEADDR lets a new server pass, as every server does)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_make_demo_answers_healthz_within_15_seconds(tmp_path: Path) -> None:
    port = free_port()
    token = "demo-token-0123456789"
    proc = start_demo(tmp_path, port, token)
    started = time.monotonic()
    try:
        healthy = False
        while time.monotonic() - started < 15:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    healthy = True
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert healthy, "the demo did not answer /healthz within 15 s"
        me = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/accounts/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200 and me.json()["name"] == "Demo"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}" in output
    assert re.search(rf"token\s+{token}", output)


def shipped_with_tracking(api: httpx.Client) -> tuple[list[str], set[str]]:
    """Tracking numbers of the account's shipped (or since delivered) orders, and the connectors of all its
    orders, read through the REST API."""
    connectors = {c["id"]: c["connector"] for c in api.get("/api/v1/connections").json()["items"]}
    orders = api.get("/api/v1/orders", params={"limit": 200}).json()["items"]
    channels = {connectors.get(o["connection_id"], "api") for o in orders}
    tracking: list[str] = []
    for order in orders:
        if order["status"] in ("shipped", "delivered"):
            shipments = api.get(f"/api/v1/orders/{order['id']}/shipments").json()["items"]
            tracking += [s["tracking_number"] for s in shipments if s.get("tracking_number")]
    return tracking, channels


def test_make_demo_ships_orders_from_several_channels_within_60_seconds_and_one_ctrl_c_stops_it(
    tmp_path: Path,
) -> None:
    port = free_port()
    token = "demo-token-shipped-0123456789"
    started = time.monotonic()
    proc = start_demo(tmp_path, port, token)
    output = ""
    try:
        output = read_banner(proc, started + 60)
        sandbox_ports = [int(url.rsplit(":", 1)[1]) for url in banner_sandboxes(output).values()]
        assert len(sandbox_ports) == 5, output
        assert re.search(r"sign in\s+\S", output) and f"http://127.0.0.1:{port}" in output
        tracking: list[str] = []
        channels: set[str] = set()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as api:
            while time.monotonic() - started < 60:
                tracking, channels = shipped_with_tracking(api)
                if tracking and len(channels) >= 2:
                    break
                time.sleep(1.0)
        waited = time.monotonic() - started
        assert tracking, f"no order was shipped with a tracking number within 60 s; channels seen: {channels}"
        assert len(channels) >= 2, f"orders came from {channels} only within {waited:.0f} s"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        stopping = time.monotonic()
        try:
            rest, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("make demo did not stop within 15 s of one Ctrl-C") from None
        output += rest
    # Every process of the group has ended (make and crossdock), and no port stays taken.
    while time.monotonic() - stopping < 15:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a process of make demo was still running 15 s after Ctrl-C")
    assert port_is_free(port) and all(port_is_free(p) for p in sandbox_ports)
    assert "stopped" in output and "Traceback" not in output, output


# The setup, in-process ------------------------------------------------------------------------------------
async def test_the_setup_run_twice_makes_one_account_and_one_connection_per_sandbox(home: Path) -> None:
    token = "demo-token-setup-0123456789"
    settings = demo_settings(free_port())
    hub = Hub.from_settings(settings)
    await upgrade(hub.db)
    ids: list[dict[str, uuid.UUID]] = []
    urls: list[dict[str, str]] = []
    try:
        for _run in range(2):
            sockets = {name: bind(0) for name, _title in SANDBOXES}
            sandboxes = build_sandboxes(7, sockets, shopify_first_order=await next_shopify_order(hub))
            served = [await serve(s.app, s.sock, s.name) for s in sandboxes]
            try:
                setup = await ensure_demo(hub, sandboxes, token, settings.public_url)
                ids.append(setup.connections)
                urls.append({s.name: url_of(s.sock) for s in sandboxes})
                shopify = next(s for s in sandboxes if s.name == "shopify")
                # The Shopify sandbox sends its order webhooks to the connection's hook, every run.
                hooks = [sub.address for sub in shopify.state.subscriptions.values()]
                assert f"{settings.public_url}/hooks/{setup.connections['shopify']}" in hooks
            finally:
                await stop(served)
                for sock in sockets.values():
                    sock.close()

        assert ids[0] == ids[1]
        async with hub.db.session() as session:
            accounts = [a for a in await repo.list_accounts(session) if a.name == "Demo"]
            assert len(accounts) == 1
            assert (await repo.account_for_token(session, token)) is not None
            rows = await repo.Tenant(session, accounts[0].id).list_connections()
            policies = await session.scalar(select(func.count()).select_from(t.ShippingPolicyRow))
        assert sorted((r.connector, r.name) for r in rows) == sorted(CONNECTION_NAMES.items())
        # Each connection now points at the second run's sandbox, on its new port.
        assert {r.connector: r.base_url for r in rows} == urls[1] and urls[0] != urls[1]
        assert all(r.status == "active" for r in rows)
        assert policies == 1

        # A DEMO_TOKEN that belongs to another account is refused, not moved.
        async with hub.db.transaction() as session:
            other = await repo.create_account(session, "Other")
            await repo.Tenant(session, other.id).add_token("theirs", "their-token-0123456789")
        with pytest.raises(DemoError, match="another account"):
            await ensure_demo(hub, [], "their-token-0123456789", settings.public_url)
    finally:
        await hub.close()


async def test_the_demos_servers_send_answers_at_once_on_kept_alive_connections() -> None:
    """The demo and the flow rig serve on sockets bound by `bind`, on asyncio's own loop, which sets TCP_NODELAY
    only on connections of sockets it binds itself. Without it each answer on a kept-alive connection waited for
    the client's delayed acknowledgement (about 44 ms measured): the socket of each connection served is checked
    here."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    sock = bind(0)
    served = await serve(app, sock, "probe")
    try:
        async with httpx.AsyncClient(base_url=url_of(sock)) as client:
            for _ in range(2):
                assert (await client.get("/")).text == "ok"
            (connection,) = served.server.server_state.connections
            accepted = connection.transport.get_extra_info("socket")
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await stop([served])
