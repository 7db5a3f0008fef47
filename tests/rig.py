"""The flow rig: the remote world and the hub as separate OS processes on 127.0.0.1, for the chaos tests and the
end-to-end benchmark.

What runs:
- one sandbox process (`python -m tests.rig sandboxes`) serving the Shopify and Shippo sandboxes, each built as
  the demo builds it (crossdock.demo.sandboxes.sandbox_config), with a fault spec (sandbox/common/faults.py) that
  can be changed while it runs: the sandboxes have no admin route for their faults, so the rig's process adds
  `/_rig/...` routes in front of each app (its own, not the sandbox's API: never faulted);
- the hub: `crossdock serve --no-workers` (webhooks in, the API) and N `crossdock worker` processes, on one
  database: a SQLite file in the rig's home, or a PostgreSQL database (see `postgres_database`).

The account, the two connections (through engine.connect, which checks the credentials and subscribes the
Shopify sandbox's webhooks to the hub) and an automatic shipping policy (every parcel by Shippo, cheapest) are
made by the demo's own setup functions (crossdock.demo.setup) before the hub processes start.

API (stable; bench/end_to_end.py uses it):

    async with Rig(workdir, database_url=None, workers=2) as rig:   # SQLite; a URL for PostgreSQL
        placed = await rig.create_orders(10, per_s=5.0)              # Shopify orders, paid, to the US
        await rig.wait_shipped([p.id for p in placed], within_s=60)  # labels bought, fulfillments with tracking
        await rig.advance_tracking()                                 # carriers scan every parcel one step
        truth = await rig.truth()                                    # what the remotes and the hub hold
        assert truth.duplicate_labels == 0

- `Rig(workdir, *, database_url=None, hub_database_url=None, workers=2, concurrency=4, seed=1, lease_s=3.0,
  faults=None, shippo_live=True)`: `hub_database_url` is what the hub processes use when it differs from the
  rig's own (a proxy in between); `faults` maps a sandbox name to a fault spec applied once the connections are
  made; `shippo_live` gives the Shippo connection a live token (shippo_live_...), so that the hub paces label
  purchases at Shippo's live limit, 500 creates a minute, instead of the test limit, 50 (two creates an order:
  the test limit alone holds the flow to 25 orders a minute); `sync_interval_s` turns on the scheduled pull of
  the Shopify orders at that interval (off by default: orders arrive by webhook only).
- `rig.set_faults(name, spec)`: change a sandbox's faults while it runs (None: none).
- `rig.create_orders(count, *, per_s=None, spec=None) -> list[Placed]`: orders placed through the Shopify
  sandbox's admin API (which sends `orders/create` to the hub); `spec` is the sandbox's order spec.
- `rig.edit_order(id, changes)`, `rig.cancel_order(id)`: the same admin API.
- `rig.advance_tracking(status=None)`: every Shippo track not yet delivered moves one step (or to `status`),
  each move a signed `track_updated` webhook to the hub.
- `rig.wait_shipped(ids, within_s)`, `rig.wait_settled(within_s, hurry=False)`, `rig.wait_until(check,
  what=..., within_s=...)`: bounded waits; on timeout an AssertionError says what was still missing and shows
  the end of the hub's logs. `rig.hurry_retries()` brings the retries waiting out their backoff forward.
- `rig.truth() -> Truth`: Shopify orders with their fulfillments, Shippo transactions and tracks, and the
  hub's orders, shipments and unfinished jobs, with the duplicate counts worked out.
- `rig.webhooks_sent(name)`: what the sandbox sent (URL, headers, raw body), once its queue is drained, for
  redelivering it; `rig.set_webhook_retries(name, n)`: how often it tries a failed webhook again.
- `rig.kill_worker(i)` (SIGKILL), `rig.start_worker(i)`, `rig.stop_server()`, `rig.stop_hub()`,
  `rig.start_hub()` (starts what is not running).
- `rig.processes()`: the hub's processes by name, to see whether they still run.
- `rig.urls[name]`, `rig.hub_url`, `rig.client` (an httpx.AsyncClient): for the sandboxes' own admin APIs.
- `postgres_database(server_url)`: an async context manager making a database of its own on that server and
  dropping it afterwards; yields its URL.

Everything the rig starts is stopped when the `async with` block ends, whether the test passed or not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from crossdock.config import Settings
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.engine.processes import stop_all
from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# The sandboxes the flow channel -> label -> tracking -> channel needs.
SANDBOX_NAMES = ("shopify", "shippo")
# Orders that are final for the flow: a label bought and the fulfillment recorded, or nothing left to do.
SHIPPED = ("shipped", "delivered")
FINAL = ("shipped", "delivered", "cancelled", "refunded")
# An order paid at once, to a full US address, of two items that ship: the Shopify sandbox's order spec
# (POST /_sandbox/orders). Without a spec the sandbox makes some orders the hub must refuse (digital items only,
# no street), which the flow tests do not want.
PAID_US: dict[str, Any] = {
    "financial_status": "paid",
    "shipping_address": {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "address1": "731 Market St",
        "city": "San Francisco",
        "province_code": "CA",
        "zip": "94103",
        "country_code": "US",
        "phone": "+1 415 555 0142",
    },
    "line_items": [{"sku": "TSHIRT-BLK-M", "quantity": 2}, {"sku": "MUG-CERAMIC", "quantity": 1}],
}


# -- what the remotes and the hub hold -----------------------------------------------------------------------
@dataclass
class Placed:
    """An order placed in the Shopify sandbox: its id there and when (time.time()) it was placed."""

    id: int
    placed_at: float


@dataclass
class Truth:
    """Read after (or during) a run. Keys of the per-order maps are Shopify order ids as strings."""

    # Shopify: every order with its financial status, cancelled_at and fulfillments (id, status,
    # tracking_number, created_at), as the sandbox's REST API renders them.
    shopify: dict[str, dict[str, Any]]
    # Shippo: every transaction (label purchase) and every track, as the sandbox holds them.
    transactions: list[dict[str, Any]]
    tracks: dict[str, dict[str, Any]]
    # The hub: orders of the Shopify connection by external id, their shipments, and the jobs not done.
    hub_orders: dict[str, t.Order]
    hub_shipments: dict[str, list[t.Shipment]]
    open_jobs: list[t.Job]
    dead_jobs: list[t.Job]
    quarantined: list[t.InboxMessage]

    @property
    def labels(self) -> dict[str, list[dict[str, Any]]]:
        """Successful Shippo purchases by the Shopify order they were bought for (through the purchase's
        metadata, which names the hub shipment's idempotency key); purchases of no known shipment under ''."""
        by_key = {
            s.idempotency_key: order
            for order, shipments in self.hub_shipments.items()
            for s in shipments
            if s.idempotency_key
        }
        out: dict[str, list[dict[str, Any]]] = {}
        for tr in self.transactions:
            if tr.get("status") not in ("SUCCESS", "REFUNDED", "REFUNDPENDING", "REFUNDREJECTED"):
                continue
            key = str(tr.get("metadata") or "").partition(":")[2]
            out.setdefault(by_key.get(key, ""), []).append(tr)
        return out

    @property
    def duplicate_labels(self) -> int:
        """Labels bought more than once for one purchase (one metadata), plus labels no shipment asked for."""
        counts = Counter(
            str(tr.get("metadata"))
            for tr in self.transactions
            if tr.get("status") in ("SUCCESS", "REFUNDED", "REFUNDPENDING", "REFUNDREJECTED")
        )
        extra = sum(n - 1 for n in counts.values())
        return extra + len(self.labels.get("", []))

    @property
    def duplicate_fulfillments(self) -> int:
        """Shopify fulfillments beyond one per tracking number of an order."""
        extra = 0
        for order in self.shopify.values():
            counts = Counter(f.get("tracking_number") for f in order["fulfillments"])
            extra += sum(n - 1 for n in counts.values())
        return extra

    def tracking_on_shopify(self, order_id: str) -> set[str]:
        return {
            f["tracking_number"] for f in self.shopify[order_id]["fulfillments"] if f.get("tracking_number")
        }

    def summary(self) -> dict[str, Any]:
        statuses = Counter(o.status for o in self.hub_orders.values())
        return {
            "shopify_orders": len(self.shopify),
            "hub_orders": dict(statuses),
            "labels": sum(len(v) for k, v in self.labels.items() if k),
            "duplicate_labels": self.duplicate_labels,
            "fulfillments": sum(len(o["fulfillments"]) for o in self.shopify.values()),
            "duplicate_fulfillments": self.duplicate_fulfillments,
            "open_jobs": len(self.open_jobs),
            "dead_jobs": len(self.dead_jobs),
            "quarantined": len(self.quarantined),
        }


# -- PostgreSQL: a database of the rig's own ------------------------------------------------------------------
@contextlib.asynccontextmanager
async def postgres_database(server_url: str, prefix: str = "crossdock_rig") -> AsyncIterator[str]:
    """A new database on the server of `server_url` (an SQLAlchemy asyncpg URL naming any database there),
    dropped afterwards with whatever sessions are left in it; yields its SQLAlchemy URL."""
    import asyncpg

    url = make_url(server_url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# -- the rig --------------------------------------------------------------------------------------------------
@dataclass
class _Sandbox:
    """What the demo's setup (ensure_connection) reads of a sandbox: its name, title and URL."""

    name: str
    title: str
    url: str


@dataclass
class Rig:
    workdir: Path
    database_url: str | None = None
    hub_database_url: str | None = None
    workers: int = 2
    concurrency: int = 4
    seed: int = 1
    lease_s: float = 3.0
    faults: dict[str, str] | None = None
    shippo_live: bool = True
    sync_interval_s: float | None = None
    # Filled by start().
    hub: Hub = field(init=False)
    hub_url: str = field(init=False, default="")
    urls: dict[str, str] = field(init=False, default_factory=dict)
    account_id: uuid.UUID = field(init=False)
    token: str = field(init=False, default="")
    connections: dict[str, uuid.UUID] = field(init=False, default_factory=dict)
    _sandbox_proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _server: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _workers: list[subprocess.Popen[bytes] | None] = field(init=False, default_factory=list)
    client: httpx.AsyncClient = field(init=False)
    _port: int = field(init=False, default=0)

    @property
    def home(self) -> Path:
        return self.workdir / "home"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    async def __aenter__(self) -> Rig:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- start and stop -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        from crossdock.demo.setup import ensure_account, ensure_connection, shippo_webhook_url
        from crossdock.store.migrate import upgrade

        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.client = httpx.AsyncClient(timeout=30.0)
        self._workers = [None] * self.workers
        self._port = free_port()
        self.hub_url = f"http://{HOST}:{self._port}"
        self.urls = await self._start_sandboxes()
        self.hub = Hub.from_settings(
            Settings(
                home=self.home,
                database_url=self.database_url,
                public_url=self.hub_url,
                allow_private_urls=True,
                sync_schedule=False,
                log_level="WARNING",
            )
        )
        await upgrade(self.hub.db)
        account, self.token = await ensure_account(self.hub, None)
        self.account_id = account.id
        for name in SANDBOX_NAMES:
            sandbox = _Sandbox(name, name.capitalize(), self.urls[name])
            self.connections[name] = await ensure_connection(self.hub, account.id, sandbox)  # type: ignore[arg-type]
        if self.shippo_live:
            await self._go_live()
        await self._save_policy()
        webhook_url = await shippo_webhook_url(self.hub, account.id, self.connections["shippo"])
        await self._rig_post("shippo", "config", {"webhook_url": webhook_url})
        for name, spec in (self.faults or {}).items():
            await self.set_faults(name, spec)
        await self.start_hub()

    async def _start_sandboxes(self) -> dict[str, str]:
        log = (self.logs / "sandboxes.log").open("ab")
        args = [sys.executable, "-m", "tests.rig", "sandboxes", "--seed", str(self.seed)]
        self._sandbox_proc = subprocess.Popen(
            args, cwd=REPO, env=self._env(), stdout=subprocess.PIPE, stderr=log
        )
        log.close()
        assert self._sandbox_proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self._sandbox_proc.stdout.readline), 60)
        if not line:
            raise AssertionError("the sandbox process ended before serving:\n" + self._tail("sandboxes.log"))
        urls: dict[str, str] = json.loads(line)
        return urls

    async def _go_live(self) -> None:
        """The Shippo connection with a live token instead of the demo's test one: the hub paces its purchases
        at Shippo's live limits (500 creates a minute, not 50: engine/ratelimit.py shippo)."""
        from crossdock.store import repo

        token = f"shippo_live_rig_{secrets.token_hex(16)}"
        await self._rig_post("shippo", "config", {"token": token})
        async with self.hub.db.transaction() as session:
            tenant = repo.Tenant(session, self.account_id)
            row = await tenant.get_connection(self.connections["shippo"])
            await tenant.set_secret(row, "api_token", token, self.hub.vault)

    async def _save_policy(self) -> None:
        """The demo's policy (ship-from, packing, auto_ship) with one rule: every parcel by Shippo, cheapest."""
        from crossdock.demo.setup import demo_policy
        from crossdock.flows.policy import ShippingPolicy, load_policy, save_policy

        shippo = self.connections["shippo"]
        data = demo_policy(shippo, shippo).model_dump(mode="json")
        data["rules"] = [
            {"name": "Everything by Shippo", "connection_id": str(shippo), "strategy": "cheapest"}
        ]
        async with self.hub.db.transaction() as session:
            _policy, version = await load_policy(session, self.account_id)
            await save_policy(session, self.account_id, ShippingPolicy.model_validate(data), version=version)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSDOCK_")}
        heartbeat = min(0.5, self.lease_s / 4)
        env.update(
            CROSSDOCK_HOME=str(self.home),
            CROSSDOCK_PUBLIC_URL=self.hub_url,
            CROSSDOCK_ALLOW_PRIVATE_URLS="true",
            CROSSDOCK_SYNC_SCHEDULE="true" if self.sync_interval_s else "false",
            CROSSDOCK_SYNC_INTERVAL_S=str(self.sync_interval_s or 300),
            CROSSDOCK_WORKER_LEASE_S=str(self.lease_s),
            CROSSDOCK_WORKER_HEARTBEAT_S=str(heartbeat),
            CROSSDOCK_WORKER_POLL_S="0.05",
            CROSSDOCK_WORKER_GRACE_S="5",
            CROSSDOCK_LOG_LEVEL="WARNING",
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        )
        url = self.hub_database_url or self.database_url
        if url:
            env["CROSSDOCK_DATABASE_URL"] = url
        return env

    def _crossdock(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        code = "from crossdock.cli import main; main()"
        with (self.logs / log).open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-c", code, *args], cwd=REPO, env=self._env(), stdout=out, stderr=out
            )

    async def start_hub(self) -> None:
        """`crossdock serve --no-workers` and the workers; returns once the server answers /healthz."""
        if self._server is None or self._server.poll() is not None:
            self._server = self._crossdock(["serve", "--port", str(self._port), "--no-workers"], "serve.log")
        for i in range(self.workers):
            self.start_worker(i)

        async def up() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await self.client.get(f"{self.hub_url}/healthz")).status_code == 200
            return False

        await self.wait_until(up, what="crossdock serve answering /healthz", within_s=60)

    def start_worker(self, i: int) -> None:
        """Start worker `i` (again) unless it runs."""
        running = self._workers[i]
        if running is None or running.poll() is not None:
            args = ["worker", "--concurrency", str(self.concurrency)]
            self._workers[i] = self._crossdock(args, f"worker-{i}.log")

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker `i`: no goodbye, its running jobs' leases simply stop being renewed."""
        running = self._workers[i]
        if running is not None and running.poll() is None:
            running.send_signal(signal.SIGKILL)
            running.wait()
        self._workers[i] = None

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """The hub's processes by name ('serve', 'worker-0', ...), for a test to see whether they still run."""
        named = {"serve": self._server, **{f"worker-{i}": p for i, p in enumerate(self._workers)}}
        return {name: p for name, p in named.items() if p is not None}

    async def stop_server(self) -> None:
        """SIGTERM `crossdock serve` only: webhooks sent now find no one (start_hub starts it again)."""
        if self._server is not None:
            await asyncio.to_thread(stop_all, [self._server])
        self._server = None

    async def stop_hub(self) -> None:
        """SIGTERM the server and the workers (a graceful stop), SIGKILL what is still running 15 s later."""
        processes = [p for p in [self._server, *self._workers] if p is not None]
        await asyncio.to_thread(stop_all, processes)
        self._server = None
        self._workers = [None] * self.workers

    async def close(self) -> None:
        processes = [p for p in [self._server, *self._workers, self._sandbox_proc] if p is not None]
        await asyncio.to_thread(stop_all, processes)
        self._server, self._sandbox_proc = None, None
        self._workers = [None] * self.workers
        with contextlib.suppress(AttributeError):
            await self.client.aclose()
        with contextlib.suppress(AttributeError):
            await self.hub.close()

    # -- acting on the remotes ------------------------------------------------------------------------------------
    async def _rig_post(self, sandbox: str, what: str, body: dict[str, Any]) -> Any:
        r = await self.client.post(f"{self.urls[sandbox]}/_rig/{what}", json=body)
        r.raise_for_status()
        return r.json()

    async def set_webhook_retries(self, sandbox: str, retries: int) -> None:
        """How often the sandbox tries a webhook again after a failed attempt (2 unless set; 0: one try)."""
        await self._rig_post(sandbox, "config", {"webhook_retries": retries})

    async def set_faults(self, sandbox: str, spec: str | None) -> None:
        """Faults of `sandbox` from now on, in the fault spec syntax ("5xx=0.2,429=0.1,seed=7"); None: none."""
        await self._rig_post(sandbox, "config", {"faults": spec or ""})

    async def create_orders(
        self, count: int, *, per_s: float | None = None, spec: dict[str, Any] | None = None
    ) -> list[Placed]:
        """`count` orders placed in the Shopify sandbox, `per_s` a second (None: as fast as it answers)."""
        placed: list[Placed] = []
        start = time.monotonic()
        for k in range(count):
            if per_s:
                delay = start + k / per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            r = await self.client.post(
                f"{self.urls['shopify']}/_sandbox/orders", json={"order": spec or PAID_US}
            )
            r.raise_for_status()
            placed.append(Placed(int(r.json()["order"]["id"]), time.time()))
        return placed

    async def edit_order(self, order_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        r = await self.client.patch(f"{self.urls['shopify']}/_sandbox/orders/{order_id}", json=changes)
        r.raise_for_status()
        order: dict[str, Any] = r.json()["order"]
        return order

    async def cancel_order(self, order_id: int, reason: str = "customer") -> dict[str, Any]:
        r = await self.client.post(
            f"{self.urls['shopify']}/_sandbox/orders/{order_id}/cancel", json={"reason": reason}
        )
        r.raise_for_status()
        order: dict[str, Any] = r.json()["order"]
        return order

    async def advance_tracking(self, status: str | None = None) -> int:
        """Move every Shippo track not delivered yet one step on (or to `status`); returns how many moved."""
        shippo = self.urls["shippo"]
        r = await self.client.get(f"{shippo}/_sandbox/tracks")
        r.raise_for_status()
        moved = 0
        for track in r.json():
            number = track.get("tracking_number")
            current = (track.get("tracking_status") or {}).get("status")
            if not number or current == "DELIVERED" or current == status:
                continue
            body = {"status": status} if status else {}
            answer = await self.client.post(f"{shippo}/_sandbox/tracks/{number}/advance", json=body)
            moved += answer.status_code == 200
        return moved

    async def webhooks_sent(self, sandbox: str) -> list[dict[str, Any]]:
        """Every webhook the sandbox sent (once each, however often it tried), in the order it sent them: the
        URL, the headers and the raw body as text, ready to be sent again as a redelivery."""
        r = await self.client.get(f"{self.urls[sandbox]}/_rig/deliveries")
        r.raise_for_status()
        sent: list[dict[str, Any]] = r.json()
        return sent

    async def webhook_deliveries(self, sandbox: str) -> list[dict[str, Any]]:
        """What the sandbox sent to the hub so far, each attempt with its answer."""
        r = await self.client.get(f"{self.urls[sandbox]}/_sandbox/webhooks")
        r.raise_for_status()
        deliveries: list[dict[str, Any]] = r.json()["deliveries"]
        return deliveries

    # -- reading ------------------------------------------------------------------------------------------------
    async def hub_orders(self) -> dict[str, t.Order]:
        """The hub's orders of the Shopify connection, by Shopify order id."""
        stmt = select(t.Order).where(t.Order.connection_id == self.connections["shopify"])
        async with self.hub.db.session() as session:
            rows = list((await session.scalars(stmt)).all())
            session.expunge_all()
        return {str(row.external_id): row for row in rows}

    async def truth(self) -> Truth:
        shopify = (await self.client.get(f"{self.urls['shopify']}/_rig/orders")).json()
        transactions = (await self.client.get(f"{self.urls['shippo']}/_sandbox/transactions")).json()
        tracks = (await self.client.get(f"{self.urls['shippo']}/_sandbox/tracks")).json()
        orders = await self.hub_orders()
        by_id = {o.id: key for key, o in orders.items()}
        async with self.hub.db.session() as session:
            shipments = list(
                (await session.scalars(select(t.Shipment).where(t.Shipment.order_id.in_(list(by_id))))).all()
            )
            open_jobs = list(
                (
                    await session.scalars(
                        select(t.Job).where(
                            t.Job.account_id == self.account_id,
                            t.Job.status.in_(("queued", "running", "failed")),
                        )
                    )
                ).all()
            )
            dead = list(
                (
                    await session.scalars(
                        select(t.Job).where(t.Job.account_id == self.account_id, t.Job.status == "dead")
                    )
                ).all()
            )
            quarantined = list(
                (
                    await session.scalars(
                        select(t.InboxMessage).where(
                            t.InboxMessage.account_id == self.account_id,
                            t.InboxMessage.status == "quarantined",
                        )
                    )
                ).all()
            )
            session.expunge_all()
        by_order: dict[str, list[t.Shipment]] = {}
        for s in shipments:
            by_order.setdefault(by_id[s.order_id], []).append(s)
        return Truth(
            shopify=shopify,
            transactions=transactions,
            tracks={tr["tracking_number"]: tr for tr in tracks if tr.get("tracking_number")},
            hub_orders=orders,
            hub_shipments=by_order,
            open_jobs=open_jobs,
            dead_jobs=dead,
            quarantined=quarantined,
        )

    # -- waiting -------------------------------------------------------------------------------------------------
    def _tail(self, name: str, size: int = 2500) -> str:
        path = self.logs / name
        if not path.exists():
            return ""
        return f"--- {name} ---\n" + path.read_text(errors="replace")[-size:]

    def log_tails(self) -> str:
        names = ["serve.log", *(f"worker-{i}.log" for i in range(self.workers)), "sandboxes.log"]
        return "\n".join(filter(None, (self._tail(n) for n in names)))

    async def wait_until(
        self,
        check: Callable[[], Awaitable[bool]],
        *,
        what: str,
        within_s: float,
        missing: Callable[[], Awaitable[str]] | None = None,
    ) -> float:
        """Wait for `check()` to be true; returns the seconds it took. After `within_s` an AssertionError
        names `what`, says what is `missing` and shows the end of the hub's logs."""
        start = time.monotonic()
        while not await check():
            if time.monotonic() - start > within_s:
                said = await missing() if missing else ""
                raise AssertionError(f"{what}: not within {within_s:g} s. {said}\n{self.log_tails()}")
            await asyncio.sleep(0.25)
        return time.monotonic() - start

    async def wait_shipped(self, ids: Iterable[int], within_s: float) -> float:
        """Wait until every order of `ids` is shipped in the hub and its Shopify order has a fulfillment with
        the tracking number of each of its labels; returns the seconds it took."""
        wanted = [str(i) for i in ids]

        async def not_done() -> list[str]:
            orders = await self.hub_orders()
            pending = [i for i in wanted if i not in orders or orders[i].status not in SHIPPED]
            if pending:
                return pending
            shopify = (await self.client.get(f"{self.urls['shopify']}/_rig/orders")).json()
            return [
                i for i in wanted if not any(f.get("tracking_number") for f in shopify[i]["fulfillments"])
            ]

        async def done() -> bool:
            return not await not_done()

        async def missing() -> str:
            pending = await not_done()
            orders = await self.hub_orders()
            states = Counter(orders[i].status if i in orders else "not in the hub" for i in pending)
            truth = await self.truth()
            dead = [f"{j.kind}: {(j.last_error or '')[:200]}" for j in truth.dead_jobs][:5]
            return (
                f"{len(pending)} of {len(wanted)} orders not shipped with tracking on Shopify, by hub state: "
                f"{dict(states)} (e.g. {pending[:5]}); open jobs {len(truth.open_jobs)}, dead jobs {dead}"
            )

        return await self.wait_until(
            done, what=f"{len(wanted)} orders shipped", within_s=within_s, missing=missing
        )

    async def hurry_retries(self) -> int:
        """Bring every retry of the account that waits out its backoff forward to now; returns how many. What
        waiting would do, minus the wait: the attempts are counted and spent as they would be, only sooner
        (a job's backoff grows to minutes, which a bounded test cannot wait)."""
        now = utcnow()
        async with self.hub.db.transaction() as session:
            result = await session.execute(
                update(t.Job)
                .where(t.Job.account_id == self.account_id, t.Job.status == "failed", t.Job.run_at > now)
                .values(run_at=now)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def wait_settled(self, within_s: float, *, hurry: bool = False) -> float:
        """Wait until the account has no job queued, running or waiting for a retry; with `hurry`, retries are
        brought forward as they come (hurry_retries)."""

        async def settled() -> bool:
            if hurry:
                await self.hurry_retries()
            async with self.hub.db.session() as session:
                found = await session.scalar(
                    select(t.Job.id)
                    .where(
                        t.Job.account_id == self.account_id, t.Job.status.in_(("queued", "running", "failed"))
                    )
                    .limit(1)
                )
            return found is None

        async def missing() -> str:
            truth = await self.truth()
            return "jobs not done: " + ", ".join(
                f"{j.kind} {j.status} ({j.attempts})" for j in truth.open_jobs[:10]
            )

        return await self.wait_until(settled, what="no job left", within_s=within_s, missing=missing)


# -- the sandbox process ---------------------------------------------------------------------------------------
def _with_rig_routes(app: Any) -> Any:
    """`app` with the rig's own routes in front: POST /_rig/config {"faults": spec, "webhook_url": url} and, for
    Shopify, GET /_rig/orders (every order with its fulfillments, rendered as the REST API renders them)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from crossdock.sandbox.common.faults import FaultSpec

    state = app.state.sandbox
    sender = getattr(state, "sender", None) or state.webhooks

    async def config(request: Request) -> JSONResponse:
        body = await request.json()
        if "faults" in body:
            # The seed stays the one the sandbox started with (its random streams are already seeded).
            spec = FaultSpec.parse(body["faults"] or None)
            state.faults.spec = spec
        if "webhook_url" in body:
            state.config.webhook_url = body["webhook_url"]
        if body.get("token"):
            state.token = body["token"]
        if "webhook_retries" in body:
            sender.retries = int(body["webhook_retries"])
        return JSONResponse({"faults": state.faults.spec.describe(), "webhook_url": state.config.webhook_url})

    async def deliveries(_: Request) -> JSONResponse:
        await sender.drain(timeout=60.0)
        out, seen = [], set()
        for d in sender.deliveries:
            key = (d.url, d.body, d.duplicate)
            if key in seen:
                continue
            seen.add(key)
            out.append({"url": d.url, "headers": d.headers, "body": d.body.decode()})
        return JSONResponse(out)

    async def orders(_: Request) -> JSONResponse:
        out = {}
        for order in state.orders():
            rendered = state.render(order)
            out[str(rendered["id"])] = {
                "financial_status": rendered.get("financial_status"),
                "cancelled_at": rendered.get("cancelled_at"),
                "updated_at": rendered.get("updated_at"),
                "fulfillments": [
                    {
                        "id": f.get("id"),
                        "status": f.get("status"),
                        "tracking_number": f.get("tracking_number"),
                        "created_at": f.get("created_at"),
                    }
                    for f in rendered.get("fulfillments") or []
                ],
            }
        return JSONResponse(out)

    admin = Starlette(
        routes=[
            Route("/_rig/config", config, methods=["POST"]),
            Route("/_rig/orders", orders, methods=["GET"]),
            Route("/_rig/deliveries", deliveries, methods=["GET"]),
        ]
    )

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/_rig/"):
            await admin(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


async def _serve_sandboxes(seed: int, names: list[str]) -> None:
    from crossdock.demo.sandboxes import bind, sandbox_config, serve, stop, url_of
    from crossdock.sandbox import create_sandbox_app
    from crossdock.sandbox.common.faults import FaultSpec

    served = []
    urls = {}
    for name in names:
        config = sandbox_config(name, seed)
        # No faults yet, but the seed the fault streams start from, so that faults set later are replayable.
        config.faults = FaultSpec(seed=seed, timeout_s=2.0)
        app = create_sandbox_app(name, config)
        sock = bind(0)
        urls[name] = url_of(sock)
        served.append(await serve(_with_rig_routes(app), sock, name))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    sys.stdout.write(json.dumps(urls) + "\n")
    sys.stdout.flush()
    await stopping.wait()
    await stop(served)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.rig", description="The flow rig's own processes.")
    sub = parser.add_subparsers(dest="command", required=True)
    sandboxes = sub.add_parser(
        "sandboxes", help="serve the flow's sandboxes; print their URLs as one JSON line"
    )
    sandboxes.add_argument("--seed", type=int, default=1)
    sandboxes.add_argument("--names", default=",".join(SANDBOX_NAMES))
    args = parser.parse_args(argv)
    asyncio.run(_serve_sandboxes(args.seed, args.names.split(",")))


if __name__ == "__main__":
    main()
