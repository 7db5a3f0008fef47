"""Storage facts that the rest of crossdock relies on, checked on both databases."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from crossdock import model as m
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store import types as repo_types
from tests.engine.support import statements_sent
from tests.support import new_account


async def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_commits_that_survive_a_power_loss(
    hub: Hub, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    async with hub.db.session() as session:
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        # 2 is FULL: every commit is synced to disk before it returns (1, NORMAL, syncs WAL commits only at a
        # checkpoint).
        assert (await session.execute(text("PRAGMA synchronous"))).scalar() == 2


async def test_foreign_keys_are_enforced(hub: Hub) -> None:
    with pytest.raises(IntegrityError):
        async with hub.db.transaction() as session:
            session.add(t.ApiToken(account_id=uuid.uuid4(), name="x", prefix="x", token_hash="0" * 64))


async def test_datetimes_come_back_aware_and_in_utc(hub: Hub) -> None:
    tenant = await new_account(hub, "Acme")
    placed = datetime(2025, 3, 30, 1, 30, tzinfo=timezone(timedelta(hours=-5)))
    order = m.Order(currency="EUR", lines=[m.OrderLine(title="x", quantity=1)], placed_at=placed)
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(tenant.id)).create_order(order)
        order_id = row.id
    async with hub.db.session() as session:
        stored = (await session.scalars(select(t.Order).where(t.Order.id == order_id))).one()
    assert stored.placed_at == placed
    assert stored.placed_at is not None and stored.placed_at.utcoffset() == timedelta(0)
    assert stored.created_at.tzinfo is not None


async def test_naive_datetimes_are_refused(hub: Hub) -> None:
    with pytest.raises(Exception, match="naive datetime refused"):
        async with hub.db.transaction() as session:
            session.add(t.Account(name="x", created_at=datetime(2025, 1, 1)))
            await session.flush()


async def test_weights_and_money_round_trip_exactly(hub: Hub) -> None:
    tenant = await new_account(hub, "Acme")
    line = m.OrderLine(
        title="Bolt",
        quantity=3,
        unit_price=m.Money.of("0.125", "KWD"),
        weight=m.Weight(value="0.3", unit="oz"),
    )
    order = m.Order(currency="KWD", lines=[line], totals=m.Totals(total=m.Money.of("0.375", "KWD")))
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(tenant.id)).create_order(order)
        order_id = row.id
    async with hub.db.session() as session:
        back = await repo.Tenant(session, uuid.UUID(tenant.id)).get_order(order_id)
    # Stored in grams to the microgram on both databases (0.3 oz is 8.5048569375 g exactly).
    assert back.lines[0].weight_g == Decimal("8.504857")
    assert back.lines[0].unit_price_minor == 125
    assert back.total_minor == 375


async def test_one_order_per_source_external_id(hub: Hub) -> None:
    tenant = await new_account(hub, "Acme")
    account_id = uuid.UUID(tenant.id)
    async with hub.db.transaction() as session:
        conn = await repo.Tenant(session, account_id).create_connection(
            connector="shippo", name="s", vault=hub.vault, secrets={"api_token": "x"}
        )
    order = m.Order(
        currency="EUR", lines=[m.OrderLine(title="x", quantity=1)], connection_id=conn.id, external_id="1001"
    )
    async with hub.db.transaction() as session:
        await repo.Tenant(session, account_id).create_order(order)
    with pytest.raises(IntegrityError):
        async with hub.db.transaction() as session:
            await repo.Tenant(session, account_id).create_order(order)
    # Manual orders without an external id do not collide.
    manual = m.Order(currency="EUR", lines=[m.OrderLine(title="x", quantity=1)])
    async with hub.db.transaction() as session:
        await repo.Tenant(session, account_id).create_order(manual)
        await repo.Tenant(session, account_id).create_order(manual)


async def test_stock_upsert_is_one_row_per_sku_and_location(hub: Hub) -> None:
    tenant = await new_account(hub, "Acme")
    account_id = uuid.UUID(tenant.id)
    for available in (1, 2, 3):
        async with hub.db.transaction() as session:
            await repo.Tenant(session, account_id).set_stock(m.StockLevel(sku="A", available=available))
    async with hub.db.session() as session:
        rows = await repo.Tenant(session, account_id).list_stock()
    assert [(r.sku, r.available) for r in rows] == [("A", 3)]
    assert rows[0].updated_at <= datetime.now(UTC)


async def test_a_connection_and_its_secrets_come_in_one_read_and_only_for_its_account(hub: Hub) -> None:
    async with hub.db.transaction() as session:
        mine = repo.Tenant(session, (await repo.create_account(session, "mine")).id)
        theirs = (await repo.create_account(session, "theirs")).id
        shop = await mine.create_connection(
            connector="shopify",
            name="shop",
            vault=hub.vault,
            secrets={"access_token": "shpat_one", "api_secret": "two"},
        )
        # Another connection's secrets, and a connection with none.
        await mine.create_connection(
            connector="shopify", name="b", vault=hub.vault, secrets={"access_token": "x"}
        )
        bare = await mine.create_connection(connector="shippo", name="bare", vault=hub.vault)
    with statements_sent(hub) as sent:
        async with hub.db.autocommit_session() as session:
            row, secrets = await repo.Tenant(session, mine.account_id).connection_and_secrets(
                shop.id, hub.vault
            )
    assert len(sent) == 1
    assert (row.id, row.name, row.connector) == (shop.id, "shop", "shopify")
    assert secrets == {"access_token": "shpat_one", "api_secret": "two"}
    async with hub.db.session() as session:
        tenant = repo.Tenant(session, mine.account_id)
        assert await tenant.get_secrets(shop.id, hub.vault) == secrets
        row, secrets = await tenant.connection_and_secrets(bare.id, hub.vault)
        assert (row.id, secrets) == (bare.id, {})
        with pytest.raises(repo.NotFound):
            await repo.Tenant(session, theirs).connection_and_secrets(shop.id, hub.vault)


def test_new_ids_are_distinct_random_uuids_of_version_4_from_one_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    urandom = repo_types.os.urandom

    def counted(size: int) -> bytes:
        reads.append(size)
        return urandom(size)

    monkeypatch.setattr(repo_types.os, "urandom", counted)
    ids = repo_types.new_ids(500)
    assert reads == [16 * 500]
    assert len(ids) == 500 and len(set(ids)) == 500
    # Version 4, RFC 4122 variant, as uuid.uuid4 makes them.
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert repo_types.new_ids(0) == []
    assert set(repo_types.new_ids(3)).isdisjoint(ids)


async def test_an_autocommit_session_writes_what_was_added_when_its_block_ends(hub: Hub) -> None:
    async with hub.db.autocommit_session() as session:
        account = t.Account(id=uuid.uuid4(), name="Added")
        session.add(account)  # not flushed inside the block
    async with hub.db.session() as session:
        assert (await session.get(t.Account, account.id)) is not None
    # A block that raises writes nothing it had not flushed.
    with pytest.raises(RuntimeError):
        async with hub.db.autocommit_session() as session:
            session.add(t.Account(id=uuid.uuid4(), name="Abandoned"))
            raise RuntimeError("stop")
    async with hub.db.session() as session:
        assert await session.scalar(select(t.Account.id).where(t.Account.name == "Abandoned")) is None
