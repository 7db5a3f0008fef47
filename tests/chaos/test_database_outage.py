"""The database goes away mid-flow (PostgreSQL): the hub recovers by itself and loses nothing.

The shared PostgreSQL cluster is never restarted. What a restart looks like to the hub is made between the hub
and the server instead: the hub's processes reach the rig's database through a TCP proxy in this test, which
mid-flow cuts every open connection (a reset, as a server going down leaves them) and refuses new ones for a
few seconds, as a restarting server does; later every session of the rig's database is ended on the server with
pg_terminate_backend, as a failover or an administrator would. A real restart of a cluster of one's own can be
added with CROSSDOCK_CHAOS_PG_RESTART (a shell command, e.g. 'sudo pg_ctlcluster 15 main restart'), off by
default.

Afterwards, read at the remotes: every order shipped with its tracking on Shopify, no label bought twice, no
fulfillment twice; the hub processes still running (none died of the outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.chaos.conftest import report
from tests.conftest import POSTGRES_URL
from tests.rig import HOST, Rig, postgres_database


class Proxy:
    """A TCP proxy from 127.0.0.1:port to the PostgreSQL server, which can cut every connection and refuse new
    ones for a while."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.cuts = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._reset_all()

    def _reset_all(self) -> None:
        for writer in list(self._open):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._open.clear()

    async def outage(self, seconds: float) -> None:
        """Every connection reset, and nothing listening for `seconds`; then listening again on the same port."""
        self.cuts += 1
        await self.close()
        await asyncio.sleep(seconds)
        await self.start()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._open |= {client_w, server_w}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self._open.discard(writer)
                with contextlib.suppress(Exception):
                    writer.transport.abort()

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


async def terminate_sessions(url: str) -> int:
    """pg_terminate_backend for every other session of the database of `url`; returns how many."""
    parsed = make_url(url)
    conn = await asyncpg.connect(parsed.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            parsed.database,
        )
    finally:
        await conn.close()
    return len(rows)


async def outages_during_flow(
    workdir: Path, *, orders: int, outages: int, down_s: float, within_s: float
) -> None:
    assert POSTGRES_URL
    server = make_url(POSTGRES_URL)
    proxy = Proxy((server.host or HOST, server.port or 5432))
    await proxy.start()
    try:
        async with postgres_database(POSTGRES_URL) as url:
            through_proxy = (
                make_url(url).set(host=HOST, port=proxy.port).render_as_string(hide_password=False)
            )
            # The scheduled pull is on, as in production: a webhook refused while the database is away (the
            # hub answers 5xx; the sender gives up after its retries) is made good by the next pull.
            async with Rig(
                workdir,
                database_url=url,
                hub_database_url=through_proxy,
                workers=2,
                seed=5,
                sync_interval_s=10,
            ) as rig:
                per_s = 4.0
                placing = asyncio.create_task(rig.create_orders(orders, per_s=per_s))
                every_s = orders / per_s / (outages + 1)
                terminated = 0
                for k in range(outages):
                    await asyncio.sleep(every_s)
                    await proxy.outage(down_s)
                    if k == outages - 1:
                        # Sessions opened since the outage are ended on the server itself; the rig's own
                        # pool (direct, not through the proxy) is among them, so it starts afresh.
                        await asyncio.sleep(1.0)
                        terminated = await terminate_sessions(url)
                        await rig.hub.db.engine.dispose()
                restart = os.environ.get("CROSSDOCK_CHAOS_PG_RESTART")
                if restart:
                    subprocess.run(restart, shell=True, check=True)
                last_outage = time.monotonic()
                placed = await placing
                ids = [p.id for p in placed]
                await rig.wait_shipped(ids, within_s=within_s)
                recovered_s = time.monotonic() - last_outage
                truth = await rig.truth()
                deliveries = await rig.webhook_deliveries("shopify")
                died = [name for name, p in rig.processes().items() if p.poll() is not None]
    finally:
        await proxy.close()

    assert died == [], f"hub processes ended by the outage: {died}"
    # Nothing the hub acknowledged is missing: every orders/create answered 2xx names an order it has.
    acknowledged = {
        str(d["body"]["id"])
        for d in deliveries
        if d["topic"] == "orders/create" and d["status"] is not None and 200 <= d["status"] < 300
    }
    assert acknowledged - set(truth.hub_orders) == set()
    refused = sum(1 for d in deliveries if d["status"] is None or d["status"] >= 500)
    assert sorted(truth.hub_orders) == sorted(str(i) for i in ids)
    labels = truth.labels
    for i in ids:
        key = str(i)
        bought = {tr["tracking_number"] for tr in labels.get(key, [])}
        assert bought and truth.tracking_on_shopify(key) == bought, key
    assert truth.duplicate_labels == 0
    assert truth.duplicate_fulfillments == 0
    assert truth.dead_jobs == [], [(j.kind, j.last_error) for j in truth.dead_jobs]
    report(
        "database outage (postgresql)",
        orders=len(ids),
        outages=proxy.cuts,
        down_s=down_s,
        sessions_terminated=terminated,
        webhook_attempts_refused=refused,
        lost=orders - len(truth.hub_orders),
        duplicate_labels=truth.duplicate_labels,
        duplicate_fulfillments=truth.duplicate_fulfillments,
        shipped_after_last_outage_s=round(recovered_s, 1),
    )


@pytest.mark.postgres
async def test_hub_recovers_from_a_database_outage_by_itself(tmp_path: Path) -> None:
    await outages_during_flow(tmp_path, orders=16, outages=1, down_s=4.0, within_s=120)


@pytest.mark.postgres
@pytest.mark.slow
async def test_database_outages_long(tmp_path: Path) -> None:
    await outages_during_flow(tmp_path, orders=300, outages=5, down_s=8.0, within_s=900)
