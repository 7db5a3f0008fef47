"""Rate limiters per connection, shared by every worker of the deployment through the database.

Every bucket is one row of `rate_limits` holding GCRA state (the generic cell rate algorithm: a theoretical
arrival time `tat`, an emission interval and a burst). Taking a slot is ONE atomic statement
(INSERT ... ON CONFLICT DO UPDATE ... RETURNING), committed on its own; the caller then sleeps until
its slot OUTSIDE any transaction, so a worker waiting for budget holds no database connection and never blocks
another connection's work. Slots are handed out in order, so concurrent workers queue up instead of
stampeding the remote.

GCRA covers the three shapes the remotes use:
- a leaky bucket (Shopify REST: 40 calls, leaking 2/s) is a burst of 40 with an interval of 0.5 s;
- a token bucket with burst and restore rate (Amazon SP-API usage plans) is the same with the API's numbers;
- a per-minute window (Shippo) is a burst b and an interval W / (N - b): GCRA admits at most
  b - 1 + ceil(D / interval) calls in any span D, so no window of W seconds, wherever it starts, holds more
  than N - 1 calls (one call of margin for clock and network skew). We stay inside the remote's window
  whether it is fixed or sliding and wherever its clock is, at a sustained (N - b) / W.

The remote's own headers adjust the state: X-Shopify-Shop-Api-Call-Limit "n/40" (bucket level and size),
x-amzn-RateLimit-Limit (the operation's current rate under a dynamic usage plan) and Retry-After on a 429.
Time is wall-clock unix seconds because the state is shared across processes and machines.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import bindparam, case, update
from sqlalchemy.ext.asyncio import AsyncConnection

from crossdock.engine.errors import RateLimited
from crossdock.logs import get_logger
from crossdock.store import tables as t
from crossdock.store.db import Database
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for_dialect

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Plan:
    """The shape of one bucket: `burst` calls at once, then one every `interval_s` seconds."""

    interval_s: float
    burst: int
    description: str = ""
    # Calls of the remote's bucket we never use (see leaky_bucket); kept when the remote resizes its bucket.
    headroom: int = 0

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.burst < 1:
            raise ValueError("a rate plan needs a positive interval and a burst of at least 1")

    @property
    def rate_per_s(self) -> float:
        return 1.0 / self.interval_s


def leaky_bucket(capacity: int, leak_per_s: float, *, headroom: int = 2) -> Plan:
    """A bucket of `capacity` calls leaking `leak_per_s`. We fill it to `capacity - headroom` only: the remote
    counts arrivals, not our send times, so a little room absorbs network jitter without a 429."""
    return Plan(
        1.0 / leak_per_s, max(1, capacity - headroom), f"leaky bucket {capacity}, {leak_per_s}/s", headroom
    )


def token_bucket(rate_per_s: float, burst: int) -> Plan:
    """A token bucket restored at `rate_per_s` holding up to `burst` tokens (SP-API usage plans)."""
    return Plan(1.0 / rate_per_s, burst, f"token bucket {rate_per_s}/s, burst {burst}")


def per_window(limit: int, window_s: float = 60.0, *, burst: int | None = None) -> Plan:
    """At most `limit` calls in any `window_s` seconds; `burst` of them may go at once (default a tenth)."""
    if limit < 2:
        raise ValueError("a per-window limit needs at least 2 calls per window")
    b = max(1, limit // 10) if burst is None else max(1, min(burst, limit - 1))
    return Plan(window_s / (limit - b), b, f"{limit} per {window_s:g} s")


@dataclass(frozen=True)
class RatePolicy:
    """A connector's buckets. An operation uses the bucket of its own name, else `default` (None: no limit)."""

    buckets: Mapping[str, Plan]
    default: str | None = None

    def bucket_for(self, operation: str | None) -> str | None:
        if operation is not None and operation in self.buckets:
            return operation
        return self.default


# Shopify REST Admin: bucket 40, leak 2/s (shopify.dev/docs/api/usage/limits; PROTOCOLS.md section 1).
SHOPIFY_REST = RatePolicy({"rest": leaky_bucket(40, 2.0)}, default="rest")

# Amazon SP-API Orders v0 usage plans, rate/burst (developer-docs.amazon.com/sp-api/docs/usage-plans-and-rate-
# limits; PROTOCOLS.md section 4).
AMAZON_ORDERS = RatePolicy(
    {
        "getOrders": token_bucket(0.0167, 20),
        "getOrder": token_bucket(0.5, 30),
        "getOrderItems": token_bucket(0.5, 30),
        "getOrderAddress": token_bucket(0.5, 30),
        "confirmShipment": token_bucket(2.0, 10),
        "updateShipmentStatus": token_bucket(5.0, 15),
    }
)


def shippo(*, live: bool) -> RatePolicy:
    """Shippo's per-minute limits, live/test (docs.goshippo.com/docs/API_Concepts/RateLimits)."""
    create, single, listing = (500, 4000, 50) if live else (50, 400, 10)
    return RatePolicy(
        {"create": per_window(create), "get": per_window(single), "list": per_window(listing)},
        default="get",
    )


@dataclass
class _Seen:
    interval_s: float
    burst: int
    # The bucket's tat as this limiter last read it. Others only move it later (a slot handed back moves it one
    # interval earlier), so the stored tat is at least this, give or take an interval.
    tat: float = 0.0


@dataclass
class RateLimiter:
    """The buckets of one connection. Cheap to build; all state is in the database."""

    db: Database
    account_id: uuid.UUID
    connection_id: uuid.UUID
    policy: RatePolicy
    clock: Clock = time.time
    sleep: Sleep = asyncio.sleep
    # A wait longer than this is not slept inside a job: RateLimited tells the worker to come back later.
    max_wait_s: float = 60.0
    _seen: dict[str, _Seen] = field(default_factory=dict, repr=False)

    def bucket_for(self, operation: str | None) -> str | None:
        return self.policy.bucket_for(operation)

    async def acquire(self, operation: str | None = None) -> float:
        """Wait for a slot of the operation's bucket; returns the seconds waited."""
        bucket = self.bucket_for(operation)
        if bucket is None:
            return 0.0
        wait = await self.reserve(operation)
        if wait > self.max_wait_s:
            # A wait we will not sleep through must not use up a slot: it goes back at once. Rare, so this
            # costs less than a look at the bucket before every call would.
            await self._update(bucket, tat=t.RateLimit.tat - t.RateLimit.interval_s)
            raise RateLimited(
                f"the rate limit of '{bucket}' has no room for {wait:.0f} s; the call will be retried then",
                retry_after=wait,
            )
        if wait > 0:
            await self.sleep(wait)  # outside any transaction: reserve() has committed
        return wait

    async def reserve(self, operation: str | None = None) -> float:
        """Take the next slot (one atomic statement, committed at once); returns seconds until it."""
        bucket = self.bucket_for(operation)
        if bucket is None:
            return 0.0
        plan = self.policy.buckets[bucket]
        now = self.clock()
        async with self.db.autocommit() as conn:
            tat, interval_s, burst = await _take_slot(
                conn, self.account_id, self.connection_id, bucket, plan, now
            )
        self._seen[bucket] = _Seen(interval_s, burst, tat)
        slot = max(now, tat - interval_s * burst)
        return slot - now

    async def observe(self, operation: str | None, response: httpx.Response) -> None:
        """Follow what the remote says about its own limits."""
        bucket = self.bucket_for(operation)
        if bucket is None:
            return
        headers = response.headers
        if response.status_code == 429:
            await self.back_off(operation, parse_retry_after(headers.get("retry-after")) or 1.0)
        call_limit = parse_call_limit(headers.get("x-shopify-shop-api-call-limit"))
        if call_limit is not None:
            await self._follow_bucket_level(bucket, *call_limit)
        amzn_rate = _parse_float(headers.get("x-amzn-ratelimit-limit"))
        if amzn_rate is not None and amzn_rate > 0:
            await self._follow_rate(bucket, amzn_rate)

    async def back_off(self, operation: str | None, seconds: float) -> None:
        """Nobody of this bucket calls before `seconds` from now (after a 429 with Retry-After)."""
        bucket = self.bucket_for(operation)
        if bucket is None:
            return
        # tat >= now + seconds + (burst - 1) * interval puts the next slot at now + seconds.
        floor = self.clock() + seconds + (t.RateLimit.burst - 1) * t.RateLimit.interval_s
        await self._update(bucket, tat=case((t.RateLimit.tat > floor, t.RateLimit.tat), else_=floor))

    async def _follow_bucket_level(self, bucket: str, level: int, capacity: int) -> None:
        plan = self.policy.buckets[bucket]
        burst = max(1, capacity - plan.headroom)
        now = self.clock()
        # The remote's bucket holds `level` calls that leak one per interval: our tat is at least that far out.
        floor = now + level * t.RateLimit.interval_s
        values: dict[str, object] = {"tat": case((t.RateLimit.tat > floor, t.RateLimit.tat), else_=floor)}
        seen = self._seen.get(bucket)
        if seen is None or seen.burst != burst:
            values.update(burst=burst, adjusted=True)
        elif max(seen.tat, now) + seen.interval_s >= now + level * seen.interval_s:
            # The remote counts no more than one call beyond what our own reservations account for (the calls
            # we reserved are the ones it counts, and one call of difference is within the plan's headroom):
            # the update is not worth a round trip on every call. Our bucket is never below empty: a call that
            # took longer than one interval finds it empty while the remote still counts that call.
            return
        await self._update(bucket, **values)

    async def _follow_rate(self, bucket: str, rate_per_s: float) -> None:
        interval_s = 1.0 / rate_per_s
        seen = self._seen.get(bucket)
        if seen is not None and math.isclose(seen.interval_s, interval_s, rel_tol=0.01):
            return
        get_logger(__name__).info(
            "remote changed its rate limit",
            bucket=bucket,
            rate_per_s=rate_per_s,
            connection=str(self.connection_id),
        )
        # The calls already reserved keep their number, not their duration: a backlog of n slots at the old
        # interval is n slots at the new one (else a rate raised 100-fold would still wait out the old spacing).
        now = self.clock()
        rl = t.RateLimit
        rescaled = case((rl.tat > now, now + (rl.tat - now) * (interval_s / rl.interval_s)), else_=rl.tat)
        await self._update(bucket, tat=rescaled, interval_s=interval_s, adjusted=True)
        self._seen[bucket] = _Seen(interval_s, seen.burst if seen else self.policy.buckets[bucket].burst)

    async def _update(self, bucket: str, **values: object) -> None:
        async with self.db.autocommit() as conn:
            await conn.execute(
                update(t.RateLimit)
                .where(t.RateLimit.connection_id == self.connection_id, t.RateLimit.bucket == bucket)
                .values(updated_at=utcnow(), **values)
            )


async def _take_slot(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    connection_id: uuid.UUID,
    bucket: str,
    plan: Plan,
    now: float,
) -> tuple[float, float, int]:
    """tat := max(tat, now) + interval, atomically; returns (new tat, interval, burst).

    The row is created on first use with the plan's numbers. Later, the plan's numbers replace the stored
    ones unless the remote's headers set them (`adjusted`): the remote knows its current limits best.
    """
    params = {
        "b_connection_id": connection_id,
        "b_bucket": bucket,
        "b_account_id": account_id,
        "b_interval_s": plan.interval_s,
        "b_burst": plan.burst,
        "b_first_tat": now + plan.interval_s,
        "b_now": now,
        "b_updated_at": utcnow(),
    }
    row = (await conn.execute(_take_slot_statement(conn.dialect.name), params)).one()
    return float(row[0]), float(row[1]), int(row[2])


@functools.cache
def _take_slot_statement(dialect: str) -> Any:
    """`_take_slot`'s statement, built once per dialect (a remote call takes a slot; building the upsert and its
    cache key each time cost more than running it). Its values are bound at each execution."""
    rl = t.RateLimit.__table__

    def param(name: str, column: Any) -> Any:
        return bindparam(f"b_{name}", type_=column.type)

    now = param("now", rl.c.tat)
    stmt: Any = insert_for_dialect(dialect, rl).values(
        connection_id=param("connection_id", rl.c.connection_id),
        bucket=param("bucket", rl.c.bucket),
        account_id=param("account_id", rl.c.account_id),
        interval_s=param("interval_s", rl.c.interval_s),
        burst=param("burst", rl.c.burst),
        tat=param("first_tat", rl.c.tat),
        adjusted=False,
        updated_at=param("updated_at", rl.c.updated_at),
    )
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[rl.c.connection_id, rl.c.bucket],
        set_={
            # Right-hand sides see the row as it was before this statement (both databases).
            "tat": case((rl.c.tat > now, rl.c.tat), else_=now) + rl.c.interval_s,
            "interval_s": case((rl.c.adjusted, rl.c.interval_s), else_=excluded.interval_s),
            "burst": case((rl.c.adjusted, rl.c.burst), else_=excluded.burst),
            "updated_at": excluded.updated_at,
        },
    ).returning(rl.c.tat, rl.c.interval_s, rl.c.burst)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: delay-seconds (Shopify sends floats like "2.0") or an HTTP-date (RFC 9110 10.2.3).
    None when absent or unreadable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    seconds = _parse_float(value)
    if seconds is not None:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 HTTP-dates are GMT
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_call_limit(value: str | None) -> tuple[int, int] | None:
    """X-Shopify-Shop-Api-Call-Limit "32/40" -> (32, 40)."""
    if not value or "/" not in value:
        return None
    used, _, size = value.partition("/")
    try:
        level, capacity = int(used.strip()), int(size.strip())
    except ValueError:
        return None
    if capacity <= 0 or level < 0:
        return None
    return level, capacity


def _parse_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
