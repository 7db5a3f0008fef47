"""The demo's account, user, connections and shipping policy, made through the code paths a user's requests go
through (the store's repositories, engine.connect, flows.policy), and idempotent: a second run with the same
database finds what the first made and points it at this run's sandboxes instead of adding more."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from crossdock.demo.sandboxes import (
    AMAZON_MARKETPLACE,
    AMAZON_REFRESH_TOKEN,
    AMAZON_SELLER,
    CLIENT_ID,
    CLIENT_SECRET,
    SHIPPO_TOKEN,
    SHOPIFY_SHOP,
    SHOPIFY_TOKEN,
    Sandbox,
)
from crossdock.engine.connect import check_and_subscribe, connect, hook_address
from crossdock.engine.connections import ACTIVE
from crossdock.engine.errors import JobError
from crossdock.engine.sync import request_sync
from crossdock.flows.policy import ShippingPolicy, load_policy, save_policy
from crossdock.hub import Hub
from crossdock.security.passwords import verify_password
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from crossdock.web.users import create_user, set_password

ACCOUNT_NAME = "Demo"
TOKEN_NAME = "demo"  # noqa: S105 - the token's name, not a secret
# The demo's panel user: printed in the banner, so not a secret (a real hub's users are made with
# 'crossdock users create').
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "crossdock-demo"  # noqa: S105
# The demo's connections are found again by connector and name (a user may add more of the same connector).
CONNECTION_NAMES = {
    "shopify": "Demo shop (Shopify sandbox)",
    "ebay": "Demo seller (eBay sandbox)",
    "amazon": "Demo seller (Amazon sandbox)",
    "shippo": "Shippo (sandbox)",
    "myparcelcom": "MyParcel.com (sandbox)",
}
CHANNELS = ("shopify", "ebay", "amazon")
# Where the demo's parcels leave from: the sender on Shippo labels and packing slips.
WAREHOUSE = {
    "name": "Demo Warehouse",
    "company": "crossdock demo",
    "street1": "215 Clayton St.",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94117",
    "country": "US",
    "phone": "+1 415 555 0100",
    "email": "warehouse@example.com",
}
# MyParcel.com ships the European orders.
EUROPE = ["AT", "BE", "DE", "ES", "FR", "GB", "IT", "NL"]
# A pull right after start reads this far back, so that orders seeded in the eBay and Amazon sandboxes arrive
# even when an earlier run's pulls already moved the watermark past their dates.
FIRST_PULL_BACK = timedelta(days=2)


class DemoError(Exception):
    """Something the person starting the demo can fix; said without a traceback."""


@dataclass
class DemoSetup:
    account: t.Account
    # The API token to print: DEMO_TOKEN, or a new one made for this run.
    token: str
    # The sign-in line the demo prints (see ensure_demo_user).
    sign_in: str
    # Connection ids by sandbox name.
    connections: dict[str, uuid.UUID] = field(default_factory=dict)


async def ensure_account(hub: Hub, token: str | None) -> tuple[t.Account, str]:
    """The account named Demo, made once. With `token` (DEMO_TOKEN) that becomes its API token, once; without
    one a new token is made for this run (tokens are stored hashed, so an old one cannot be shown again)."""
    async with hub.db.transaction() as session:
        existing = [a for a in await repo.list_accounts(session) if a.name == ACCOUNT_NAME]
        account = existing[0] if existing else await repo.create_account(session, ACCOUNT_NAME)
        tenant = repo.Tenant(session, account.id)
        if token is not None:
            known = await repo.account_for_token(session, token)
            if known is None:
                try:
                    await tenant.add_token(TOKEN_NAME, token)
                except repo.Conflict as exc:
                    raise DemoError(f"DEMO_TOKEN: {exc}") from None
            elif known.id != account.id:
                raise DemoError("DEMO_TOKEN already belongs to another account; choose another token")
            return account, token
        _row, secret = await tenant.create_token(TOKEN_NAME)
        return account, secret


async def ensure_demo_user(hub: Hub, account: t.Account, hub_url: str) -> str:
    """The demo's control-panel user, made once; returns how to sign in, for the printed banner. A second run
    puts the printed password back if it was changed, so that the banner stays true."""
    async with hub.db.transaction() as session:
        user = await session.scalar(select(t.User).where(t.User.email == DEMO_EMAIL))
        if user is None:
            await create_user(session, account.id, DEMO_EMAIL, DEMO_PASSWORD)
        elif user.account_id != account.id:
            raise DemoError(f"the user {DEMO_EMAIL} belongs to another account; use another CROSSDOCK_HOME")
        elif not verify_password(user.password_hash, DEMO_PASSWORD):
            await set_password(session, user, DEMO_PASSWORD)
    return f"{hub_url}/login as {DEMO_EMAIL}, password {DEMO_PASSWORD} (or with the API token above)"


async def _sandbox_json(sandbox: Sandbox, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10.0) as client:
        response = await client.request(method, path, json=body)
    response.raise_for_status()
    return response.json()


async def _connection_values(
    name: str, sandbox: Sandbox, previous: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Settings and secrets of the demo's connection to `sandbox`, as its setup or consent flow leaves them, and
    the secrets an earlier run kept that this run's sandbox would refuse (cached access tokens)."""
    if name == "shopify":
        settings: dict[str, Any] = {"shop": SHOPIFY_SHOP, "api_version": "2025-01"}
        return settings, {"access_token": SHOPIFY_TOKEN, "api_secret": CLIENT_SECRET}, []
    if name == "ebay":
        # The user token pair eBay's consent page would leave; the sandbox hands one out without the page.
        tokens = await _sandbox_json(sandbox, "POST", "/_sandbox/tokens", {})
        expires = utcnow() + timedelta(seconds=int(tokens["expires_in"]))
        return (
            {"client_id": CLIENT_ID},
            {
                "client_secret": CLIENT_SECRET,
                "refresh_token": tokens["refresh_token"],
                "access_token": tokens["access_token"],
                "access_token_expires_at": expires.isoformat(timespec="seconds"),
            },
            [],
        )
    if name == "amazon":
        settings = {
            "client_id": CLIENT_ID,
            "marketplace_ids": AMAZON_MARKETPLACE,
            "lwa_url": f"{sandbox.url}/auth/o2/token",
            "selling_partner_id": AMAZON_SELLER,
        }
        secrets_ = {"client_secret": CLIENT_SECRET, "refresh_token": AMAZON_REFRESH_TOKEN}
        return settings, secrets_, ["access_token", "access_token_expires_at"]
    if name == "shippo":
        # Shippo signs nothing by default: its webhook URL carries a token of our own (docs/shipping.md).
        webhook_token = previous.get("webhook_token") or secrets.token_urlsafe(24)
        return {"from_address": WAREHOUSE}, {"api_token": SHIPPO_TOKEN, "webhook_token": webhook_token}, []
    if name == "myparcelcom":
        info = await _sandbox_json(sandbox, "GET", "/_sandbox/")
        settings = {"client_id": CLIENT_ID, "shop_id": info["shops"][0], "default_service": "dpd-classic"}
        return settings, {"client_secret": CLIENT_SECRET}, ["access_token", "access_token_expires_at"]
    raise ValueError(f"the demo does not connect to {name!r}")


async def next_shopify_order(hub: Hub) -> int:
    """The number of the Shopify sandbox's next order: one after the highest the hub has from the demo shop, so
    that a new sandbox (every run starts one) never reuses an order id an earlier run's sandbox gave out."""
    stmt = (
        select(t.Order.external_number)
        .join(t.Connection, t.Connection.id == t.Order.connection_id)
        .where(t.Connection.connector == "shopify", t.Connection.name == CONNECTION_NAMES["shopify"])
    )
    async with hub.db.session() as session:
        numbers = [n for n in (await session.scalars(stmt)).all() if n]
    # Shopify numbers its orders from #1001: order N of the shop is #(1000 + N).
    known = [int(n.lstrip("#")) - 1000 for n in numbers if n.lstrip("#").isdigit()]
    return max(known, default=0) + 1


async def _find_connection(hub: Hub, account_id: uuid.UUID, connector: str) -> t.Connection | None:
    async with hub.db.session() as session:
        for row in await repo.Tenant(session, account_id).list_connections():
            if row.connector == connector and row.name == CONNECTION_NAMES[connector]:
                session.expunge(row)
                return row
    return None


async def ensure_connection(hub: Hub, account_id: uuid.UUID, sandbox: Sandbox) -> uuid.UUID:
    """The account's connection to `sandbox`: made through engine.connect the first time (which checks the
    credentials and subscribes the sandbox's webhooks to the hub), afterwards pointed at this run's sandbox
    (its address, settings and credentials) and checked and subscribed again the same way (a new sandbox knows
    no subscriptions). Returns its id."""
    connector = sandbox.name
    existing = await _find_connection(hub, account_id, connector)
    previous: dict[str, str] = {}
    if existing is not None:
        async with hub.db.session() as session:
            previous = await repo.Tenant(session, account_id).get_secrets(existing.id, hub.vault)
    settings, secret_values, stale = await _connection_values(connector, sandbox, previous)
    if existing is None:
        try:
            connected = await connect(
                hub,
                account_id,
                connector=connector,
                name=CONNECTION_NAMES[connector],
                settings=settings,
                secrets=secret_values,
                base_url=sandbox.url,
            )
        except ValueError as exc:
            raise DemoError(f"could not connect the {sandbox.title} sandbox: {exc}") from None
        return connected.connection.id
    async with hub.db.transaction() as session:
        tenant = repo.Tenant(session, account_id)
        row = await tenant.get_connection(existing.id)
        row.base_url, row.settings = sandbox.url, settings
        row.status, row.status_reason = ACTIVE, None
        for name, value in secret_values.items():
            await tenant.set_secret(row, name, value, hub.vault)
        for name in stale:
            await tenant.delete_secret(row, name)
        row.updated_at = utcnow()
    try:
        await check_and_subscribe(hub, account_id, existing.id)
    except JobError as exc:
        raise DemoError(f"the {sandbox.title} sandbox refused the demo's connection: {exc.message}") from None
    return existing.id


def demo_policy(shippo_id: uuid.UUID, myparcelcom_id: uuid.UUID) -> ShippingPolicy:
    """Automatic shipping with rules one can read: Europe goes by MyParcel.com, the US by Shippo's cheapest
    service under 2 kg and its fastest from 2 kg, everything else by Shippo's cheapest."""
    grams = "g"
    return ShippingPolicy.model_validate(
        {
            "auto_ship": True,
            "ship_from": {
                "company": WAREHOUSE["company"],
                "line1": WAREHOUSE["street1"],
                "city": WAREHOUSE["city"],
                "postal_code": WAREHOUSE["zip"],
                "subdivision": "US-CA",
                "country": WAREHOUSE["country"],
                "phone": WAREHOUSE["phone"],
            },
            # Channel lines without a weight (eBay, Amazon) count 300 g; every parcel a 30 x 20 x 10 cm box.
            "packing": {
                "packaging_weight": {"value": "100", "unit": grams},
                "default_item_weight": {"value": "300", "unit": grams},
                "default_box": {
                    "length": {"value": "30", "unit": "cm"},
                    "width": {"value": "20", "unit": "cm"},
                    "height": {"value": "10", "unit": "cm"},
                },
            },
            "rules": [
                {
                    "name": "Europe by MyParcel.com",
                    "match": {"countries": EUROPE},
                    "connection_id": str(myparcelcom_id),
                },
                {
                    "name": "US parcels under 2 kg",
                    "match": {"countries": ["US"], "max_weight": {"value": "2", "unit": "kg"}},
                    "connection_id": str(shippo_id),
                    "strategy": "cheapest",
                },
                {
                    "name": "US parcels from 2 kg",
                    "match": {"countries": ["US"], "min_weight": {"value": "2", "unit": "kg"}},
                    "connection_id": str(shippo_id),
                    "strategy": "fastest",
                },
                {"name": "Rest of the world", "connection_id": str(shippo_id), "strategy": "cheapest"},
            ],
        }
    )


async def ensure_policy(
    hub: Hub, account_id: uuid.UUID, shippo_id: uuid.UUID, myparcelcom_id: uuid.UUID
) -> None:
    """The demo's shipping policy, saved once: a policy edited since (the API, the panel) is left as it is."""
    async with hub.db.transaction() as session:
        _policy, version = await load_policy(session, account_id)
        if version == 0:
            await save_policy(session, account_id, demo_policy(shippo_id, myparcelcom_id), version=0)


async def request_first_pulls(hub: Hub, account_id: uuid.UUID, channels: Mapping[str, uuid.UUID]) -> None:
    """Pull every channel now instead of at the next scheduled tick."""
    since = utcnow() - FIRST_PULL_BACK
    async with hub.db.transaction() as session:
        for connection_id in channels.values():
            await request_sync(
                session, account_id=account_id, connection_id=connection_id, trigger="manual", since=since
            )


async def ensure_demo(hub: Hub, sandboxes: list[Sandbox], token: str | None, hub_url: str) -> DemoSetup:
    """Everything the demo needs in the database, made or brought up to date (see the module doc)."""
    account, secret = await ensure_account(hub, token)
    setup = DemoSetup(account=account, token=secret, sign_in=await ensure_demo_user(hub, account, hub_url))
    for sandbox in sandboxes:
        setup.connections[sandbox.name] = await ensure_connection(hub, account.id, sandbox)
    await ensure_policy(hub, account.id, setup.connections["shippo"], setup.connections["myparcelcom"])
    await request_first_pulls(hub, account.id, {name: setup.connections[name] for name in CHANNELS})
    return setup


async def shippo_webhook_url(hub: Hub, account_id: uuid.UUID, shippo_id: uuid.UUID) -> str:
    """The URL one registers in Shippo's dashboard for the connection: its hook, with its webhook token."""
    async with hub.db.session() as session:
        values = await repo.Tenant(session, account_id).get_secrets(shippo_id, hub.vault, ["webhook_token"])
    return f"{hook_address(hub, shippo_id)}?token={values['webhook_token']}"
