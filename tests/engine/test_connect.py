"""Connecting and disconnecting through engine.connect, against the Shopify sandbox; old OAuth states purged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from crossdock.engine import connect as c
from crossdock.hub import Hub
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.common.server import run_in_thread
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.types import utcnow

TOKEN = "shpat_connect_test"
SHOP = "connect-test.myshopify.com"


@pytest.fixture
def shop() -> Iterator[tuple[str, object]]:
    app = create_sandbox_app(
        "shopify", SandboxConfig(seed=3, token=TOKEN, fast_limits=True, extra={"shop": SHOP})
    )
    with run_in_thread(app) as url:
        yield url, app.state.sandbox


async def new_account(hub: Hub) -> uuid.UUID:
    async with hub.db.transaction() as session:
        return (await repo.create_account(session, "Acme")).id


def subscriptions(state: object) -> list[tuple[str, str]]:
    return sorted((s.topic, s.address) for s in state.subscriptions.values())  # type: ignore[attr-defined]


async def test_connecting_a_shop_checks_it_and_subscribes_its_order_webhooks_once(
    hub: Hub, shop: tuple[str, object]
) -> None:
    url, state = shop
    account_id = await new_account(hub)
    done = await c.connect(
        hub,
        account_id,
        connector="shopify",
        name="Acme",
        settings={"shop": SHOP},
        secrets={"access_token": TOKEN, "api_secret": "sandbox-client-secret"},
        base_url=url,
    )
    address = c.hook_address(hub, done.connection.id)
    assert SHOP in done.reached
    assert subscriptions(state) == [
        ("orders/cancelled", address),
        ("orders/create", address),
        ("orders/updated", address),
    ]

    note = await c.disconnect(hub, account_id, done.connection.id)

    assert subscriptions(state) == []
    assert "removed 3" in note
    async with hub.db.session() as session:
        assert (await session.scalars(select(t.Connection))).all() == []
        assert (await session.scalars(select(t.ConnectionSecret))).all() == []


async def test_credentials_the_remote_refuses_leave_no_connection_behind(
    hub: Hub, shop: tuple[str, object]
) -> None:
    url, _ = shop
    account_id = await new_account(hub)
    with pytest.raises(c.ConnectionRefused) as refused:
        await c.connect(
            hub,
            account_id,
            connector="shopify",
            name="Acme",
            settings={"shop": SHOP},
            secrets={"access_token": "shpat_wrong"},
            base_url=url,
        )
    assert "Shopify refused the connection" in refused.value.message
    assert "shpat_wrong" not in refused.value.message
    async with hub.db.session() as session:
        assert (await session.scalars(select(t.Connection))).all() == []


@pytest.mark.parametrize(
    ("settings", "secrets", "field"),
    [
        ({}, {"access_token": "x"}, "settings.shop"),
        ({"shop": SHOP, "colour": "red"}, {"access_token": "x"}, "settings.colour"),
        ({"shop": SHOP}, {}, "secrets.access_token"),
    ],
)
async def test_missing_or_unknown_fields_are_named(
    hub: Hub, settings: dict[str, str], secrets: dict[str, str], field: str
) -> None:
    account_id = await new_account(hub)
    with pytest.raises(c.ConnectionRefused) as refused:
        await c.connect(hub, account_id, connector="shopify", name="x", settings=settings, secrets=secrets)
    assert refused.value.field == field


async def test_oauth_states_are_purged_a_day_after_they_expire(hub: Hub) -> None:
    account_id = await new_account(hub)
    now = utcnow()
    async with hub.db.transaction() as session:
        for name, expired_ago in (("old", timedelta(days=2)), ("recent", timedelta(hours=2))):
            session.add(
                t.OAuthState(
                    account_id=account_id,
                    connector="shopify",
                    state_hash=name,
                    browser_hash="b",
                    details={},
                    expires_at=now - expired_ago,
                )
            )
    async with hub.db.transaction() as session:
        assert await c.purge_oauth_states(session) == 1
    async with hub.db.session() as session:
        assert [s.state_hash for s in (await session.scalars(select(t.OAuthState))).all()] == ["recent"]
