"""Rate limiters: counts of admitted slots against what each bucket allows (a fake clock, no timing), sharing
between workers, adjustment from the remote's headers, and no database connection held while waiting."""

from __future__ import annotations

import asyncio
import bisect
import math
import time

import httpx
import pytest
from sqlalchemy import select

from crossdock.engine.errors import RateLimited
from crossdock.engine.http import RemoteClient, Target
from crossdock.engine.ratelimit import (
    AMAZON_ORDERS,
    SHOPIFY_REST,
    Plan,
    RateLimiter,
    RatePolicy,
    leaky_bucket,
    parse_call_limit,
    per_window,
    shippo,
    token_bucket,
)
from crossdock.hub import Hub
from crossdock.store import tables as t
from tests.engine.remote_support import Owner, new_owner
from tests.engine.support import statements_sent

T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def owner(hub: Hub) -> Owner:
    return await new_owner(hub)


def limiter(hub: Hub, owner: Owner, policy: RatePolicy, clock: FakeClock, **kwargs: object) -> RateLimiter:
    return RateLimiter(
        hub.db,
        account_id=owner.account_id,
        connection_id=owner.connection_id,
        policy=policy,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


async def slots(lim: RateLimiter, operation: str | None, n: int) -> list[float]:
    return [lim.clock() + await lim.reserve(operation) for _ in range(n)]


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of slots inside any half-open window [s, s + window) starting at a slot."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, s + window - 1e-9) - i for i, s in enumerate(ordered))


def test_plans_have_the_documented_shapes() -> None:
    assert leaky_bucket(40, 2.0) == Plan(0.5, 38, "leaky bucket 40, 2.0/s", headroom=2)
    get_orders = AMAZON_ORDERS.buckets["getOrders"]
    assert get_orders.burst == 20 and math.isclose(get_orders.rate_per_s, 0.0167)
    assert AMAZON_ORDERS.buckets["getOrderItems"] == token_bucket(0.5, 30)
    assert AMAZON_ORDERS.buckets["confirmShipment"] == token_bucket(2.0, 10)
    assert SHOPIFY_REST.bucket_for("orders.list") == "rest"
    assert AMAZON_ORDERS.bucket_for("getOrders") == "getOrders" and AMAZON_ORDERS.bucket_for("other") is None
    assert shippo(live=False).bucket_for("create") == "create"
    assert parse_call_limit("32/40") == (32, 40) and parse_call_limit("junk") is None


async def test_a_leaky_bucket_never_admits_more_than_it_holds_plus_what_leaked(
    hub: Hub, owner: Owner
) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, RatePolicy({"rest": leaky_bucket(10, 2.0, headroom=0)}, default="rest"), clock)
    times = await slots(lim, None, 60)
    for elapsed in (0.0, 0.4, 1.0, 5.0, 10.0, 24.9):
        admitted = sum(1 for s in times if s <= T0 + elapsed + 1e-9)
        assert admitted <= 10 + math.floor(elapsed * 2.0), elapsed
    assert sum(1 for s in times if s == T0) == 10  # the whole burst at once
    assert times == sorted(times)


async def test_workers_sharing_a_connection_share_its_bucket(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    policy = RatePolicy({"confirmShipment": token_bucket(2.0, 10)})
    workers = [limiter(hub, owner, policy, clock) for _ in range(4)]
    per_worker = await asyncio.gather(*(slots(w, "confirmShipment", 15) for w in workers))
    times = sorted(s for worker_slots in per_worker for s in worker_slots)
    assert len(times) == 60
    for elapsed in (0.0, 1.0, 7.5, 20.0):
        assert sum(1 for s in times if s <= T0 + elapsed + 1e-9) <= 10 + math.floor(elapsed * 2.0)
    # Another connection's bucket is untouched by all this.
    other = await new_owner(hub, "Globex")
    assert await limiter(hub, other, policy, clock).reserve("confirmShipment") == 0.0


async def test_sp_api_get_orders_allows_a_burst_of_20_then_one_a_minute(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, AMAZON_ORDERS, clock)
    times = await slots(lim, "getOrders", 22)
    assert times[:20] == [T0] * 20
    assert [round(s - T0) for s in times[20:]] == [60, 120]
    # Operations have their own buckets.
    assert await lim.reserve("getOrderItems") == 0.0


async def test_a_per_minute_window_is_never_exceeded_wherever_the_window_starts(
    hub: Hub, owner: Owner
) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, RatePolicy({"create": per_window(50, 60.0)}, default="create"), clock)
    times = await slots(lim, "create", 200)
    assert most_in_any_window(times, 60.0) <= 50
    # ...and it is not needlessly slow: over the whole run at least 90 % of the window's budget is used.
    span = times[-1] - times[0]
    assert len(times) >= 0.9 * 50 * span / 60.0


async def test_acquire_hands_a_long_wait_back_without_using_a_slot(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    lim = limiter(hub, owner, AMAZON_ORDERS, clock, sleep=sleep, max_wait_s=30.0)
    for _ in range(20):
        await lim.acquire("getOrders")
    assert waits == []
    with pytest.raises(RateLimited) as caught:
        await lim.acquire("getOrders")
    assert caught.value.retry_after is not None and 55 <= caught.value.retry_after <= 60
    clock.now += 60  # a minute later exactly one slot has come back, and nobody took it meanwhile
    assert await lim.acquire("getOrders") == 0.0


async def test_waiting_for_budget_holds_no_database_connection(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    checked_out: list[int] = []

    async def sleep(seconds: float) -> None:
        checked_out.append(hub.db.engine.pool.checkedout())  # type: ignore[attr-defined]

    lim = limiter(hub, owner, RatePolicy({"x": token_bucket(1.0, 1)}, default="x"), clock, sleep=sleep)
    for _ in range(3):
        await lim.acquire(None)
    assert len(checked_out) == 2 and checked_out == [0, 0]


async def test_shopify_call_limit_header_fills_our_bucket_to_the_remotes_level(
    hub: Hub, owner: Owner
) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, SHOPIFY_REST, clock)
    assert await lim.reserve(None) == 0.0
    # Someone else (another app on the same shop) has filled the bucket: the remote says 38 of 40.
    await lim.observe(None, httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "38/40"}))
    assert await lim.reserve(None) == pytest.approx(0.5)
    # A Plus shop with a bucket of 80: the size follows, keeping the same headroom.
    await lim.observe(None, httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "0/80"}))
    async with hub.db.session() as session:
        row = (await session.scalars(select(t.RateLimit))).one()
    assert row.burst == 78 and row.adjusted


async def test_a_call_limit_header_that_counts_only_our_calls_costs_no_update(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, SHOPIFY_REST, clock)
    for _ in range(10):
        await lim.reserve(None)
    with statements_sent(hub, "UPDATE rate_limits") as updates:
        # The remote holds our ten calls (or one more): nothing to learn from it.
        await lim.observe(None, httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "10/40"}))
        await lim.observe(None, httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "11/40"}))
        assert updates == []
        # Two calls more than ours: someone else uses the shop's bucket, and ours follows.
        await lim.observe(None, httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "12/40"}))
        assert len(updates) == 1
    assert await lim.reserve(None) == 0.0  # 13 of a burst of 38: no wait yet


async def test_a_call_slower_than_the_leak_is_not_taken_for_someone_elses(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, SHOPIFY_REST, clock)
    await lim.reserve(None)
    # The call took three leak intervals: our bucket is empty again, the remote still counts the call.
    clock.now += 3 * SHOPIFY_REST.buckets["rest"].interval_s
    with statements_sent(hub, "UPDATE rate_limits") as updates:
        await lim.observe(None, httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "1/40"}))
        assert updates == []
        # Two calls in the remote's bucket where ours holds none: one is someone else's.
        await lim.observe(None, httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": "2/40"}))
        assert len(updates) == 1


async def test_retry_after_on_a_429_pushes_the_next_slot_back(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, SHOPIFY_REST, clock)
    await lim.reserve(None)
    await lim.observe(None, httpx.Response(429, headers={"Retry-After": "2.0"}))
    assert await lim.reserve(None) == pytest.approx(2.0)
    assert await lim.reserve(None) == pytest.approx(2.5)  # then paced, not a new burst


async def test_amazon_rate_header_changes_the_operations_rate(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    lim = limiter(hub, owner, RatePolicy({"confirmShipment": token_bucket(2.0, 1)}), clock)
    await lim.reserve("confirmShipment")
    await lim.observe("confirmShipment", httpx.Response(204, headers={"x-amzn-RateLimit-Limit": "0.5"}))
    # The call already made holds its token; at the new rate a token comes back every 2 s.
    assert await lim.reserve("confirmShipment") == pytest.approx(2.0)
    assert await lim.reserve("confirmShipment") == pytest.approx(4.0)


async def test_a_raised_rate_shortens_the_waits_already_booked(hub: Hub, owner: Owner) -> None:
    """Reservations count as calls, not as seconds: five calls booked at one a minute, then the remote says
    100 a second; the next call waits for five calls' worth at the new rate, not five minutes."""
    clock = FakeClock()
    lim = limiter(hub, owner, RatePolicy({"getOrders": token_bucket(1 / 60, 1)}), clock, max_wait_s=1000)
    for _ in range(5):
        await lim.reserve("getOrders")
    await lim.observe("getOrders", httpx.Response(200, headers={"x-amzn-RateLimit-Limit": "100"}))
    assert await lim.reserve("getOrders") == pytest.approx(0.05)


async def test_the_client_takes_a_limiter_and_an_operation_per_call(hub: Hub, owner: Owner) -> None:
    clock = FakeClock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    lim = limiter(hub, owner, AMAZON_ORDERS, clock, sleep=sleep, max_wait_s=1000)
    client = RemoteClient(
        hub,
        Target(owner.account_id, "amazon", owner.connection_id),
        base_url="https://sellingpartnerapi-na.amazon.com",
        limiter=lim,
        transport=httpx.MockTransport(
            lambda r: httpx.Response(204, headers={"x-amzn-RateLimit-Limit": "2.0"})
        ),
        sleep=sleep,
    )
    async with client:
        for _ in range(11):
            await client.post(
                "/orders/v0/orders/1/shipmentConfirmation", json={}, operation="confirmShipment"
            )
    assert waits == [pytest.approx(0.5)]  # burst of 10, then the 11th waits one interval


async def test_against_the_shopify_sandbox_a_full_bucket_costs_one_429_then_none(
    hub: Hub, owner: Owner
) -> None:
    """Another app has filled the shop's bucket: our first call hears 429 (with Retry-After and the call-limit
    header); the limiter then follows the remote's level and no later call is refused."""
    from crossdock.engine.ratelimit import leaky_bucket
    from crossdock.sandbox.common.config import SandboxConfig
    from crossdock.sandbox.shopify.app import create_app
    from crossdock.sandbox.shopify.state import LeakyBucket
    from tests.engine.remote_support import local_server

    token = "shpat_ratelimit_test_000000000000000"
    app = create_app(SandboxConfig(token=token))
    bucket = app.state.sandbox.bucket = LeakyBucket(10, 20.0)  # Shopify's shape, faster so the test is short
    policy = RatePolicy({"rest": leaky_bucket(10, 20.0)}, default="rest")
    outcomes: list[str] = []
    with local_server(app) as base:
        client = RemoteClient(
            hub,
            Target(owner.account_id, "shopify", owner.connection_id),
            base_url=base,
            headers={"X-Shopify-Access-Token": token},
            limiter=RateLimiter(
                hub.db, account_id=owner.account_id, connection_id=owner.connection_id, policy=policy
            ),
            attempts=1,
        )
        async with client:
            bucket.level, bucket._at = 10.0, time.monotonic()  # another app has just used the whole bucket
            for _ in range(25):
                try:
                    await client.get("/admin/api/2025-01/shop.json")
                    outcomes.append("ok")
                except RateLimited:
                    outcomes.append("429")
    # The first call finds the bucket full (429), or just leaked enough to pass on a slow machine; either way
    # its answer tells the limiter the remote's level and no later call is refused.
    assert outcomes[1:] == ["ok"] * 24
