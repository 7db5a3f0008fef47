"""Hook keys kept in memory: read once while fresh, read again after the time to live, after a change this
process commits, or when they fail to authenticate a delivery (at most once a second)."""

from __future__ import annotations

import uuid

from sqlalchemy import event

from crossdock.engine.hook_keys import HookKeyCache
from crossdock.hub import Hub
from crossdock.store import repo
from tests.engine.support import Shop, new_shop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _names(connector: str) -> tuple[str, ...]:
    return ("api_secret", "api_secret_previous") if connector == "shopify" else ()


def _statements(hub: Hub) -> list[str]:
    seen: list[str] = []
    event.listen(
        hub.db.engine.sync_engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: seen.append(sql)
    )
    return seen


async def _set_secret(hub: Hub, shop: Shop, value: str) -> None:
    async with hub.db.transaction() as session:
        tenant = repo.Tenant(session, shop.account_id)
        await tenant.set_secret(
            await tenant.get_connection(shop.connection_id), "api_secret", value, hub.vault
        )


async def test_keys_are_read_once_while_fresh_and_again_after_the_time_to_live(hub: Hub) -> None:
    shop = await new_shop(hub)
    await _set_secret(hub, shop, "shpss_one")
    clock = Clock()
    cache = HookKeyCache(hub, _names, ttl_s=5.0, clock=clock)
    statements = _statements(hub)

    keys = await cache.get(shop.connection_id)
    assert keys is not None
    assert (keys.account_id, keys.connector, dict(keys.secrets)) == (
        shop.account_id,
        "shopify",
        {"api_secret": "shpss_one"},
    )
    read = len(statements)
    assert read > 0
    clock.now += 4.9
    assert await cache.get(shop.connection_id) is keys
    assert len(statements) == read
    clock.now += 0.2
    assert await cache.get(shop.connection_id) is not keys
    assert len(statements) > read


async def test_a_change_this_process_commits_is_seen_at_once(hub: Hub) -> None:
    shop = await new_shop(hub)
    await _set_secret(hub, shop, "shpss_one")
    cache = HookKeyCache(hub, _names, ttl_s=3600.0)
    assert (await cache.get(shop.connection_id)).secrets["api_secret"] == "shpss_one"  # type: ignore[union-attr]
    await _set_secret(hub, shop, "shpss_two")
    assert (await cache.get(shop.connection_id)).secrets["api_secret"] == "shpss_two"  # type: ignore[union-attr]

    async with hub.db.transaction() as session:
        await repo.Tenant(session, shop.account_id).delete_connection(shop.connection_id)
    assert await cache.get(shop.connection_id) is None


async def test_keys_that_failed_are_read_again_at_most_once_a_second(hub: Hub) -> None:
    shop = await new_shop(hub)
    await _set_secret(hub, shop, "shpss_one")
    clock = Clock()
    cache = HookKeyCache(hub, _names, ttl_s=3600.0, clock=clock)
    keys = await cache.get(shop.connection_id)
    assert keys is not None
    assert await cache.recheck(keys) is None  # just read: nothing newer to try
    clock.now += 1.5
    fresh = await cache.recheck(keys)
    assert fresh is not None and fresh is not keys
    assert await cache.get(shop.connection_id) is fresh


async def test_unknown_connections_and_connectors_without_hooks(hub: Hub) -> None:
    shop = await new_shop(hub)
    await _set_secret(hub, shop, "shpss_one")
    cache = HookKeyCache(hub, lambda connector: (), ttl_s=60.0)
    assert await cache.get(uuid.uuid4()) is None
    keys = await cache.get(shop.connection_id)
    assert keys is not None and dict(keys.secrets) == {}
    assert "shpss_one" not in repr(keys)
    # Keys that hold the secret do not show it either (the assertion above holds no secret to show).
    holding = await HookKeyCache(hub, _names, ttl_s=60.0).get(shop.connection_id)
    assert holding is not None and holding.secrets["api_secret"] == "shpss_one"
    assert "shpss_one" not in repr(holding) and "shpss_one" not in str(holding)


async def test_the_oldest_entries_go_beyond_the_limit(hub: Hub) -> None:
    shops = [await new_shop(hub, f"Shop {n}") for n in range(3)]
    cache = HookKeyCache(hub, _names, ttl_s=3600.0, max_entries=2)
    for shop in shops:
        await cache.get(shop.connection_id)
    statements = _statements(hub)
    await cache.get(shops[2].connection_id)
    assert statements == []
    await cache.get(shops[0].connection_id)
    assert statements != []
