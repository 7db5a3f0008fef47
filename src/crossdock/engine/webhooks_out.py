"""Outbound webhooks: signed events for subscribers, delivered by jobs, every attempt kept.

Deliveries follow the Standard Webhooks spec (standardwebhooks.com): headers `webhook-id`, `webhook-timestamp`
and `webhook-signature: v1,<base64 HMAC-SHA256 over "id.timestamp.body">`, the key being the base64 part of
the endpoint's `whsec_...` secret. During the 24 h after a secret rotation both signatures are sent,
space-separated, so a receiver can switch keys whenever it likes.

Retries follow a fixed schedule after each failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
(with +-10 % jitter), so ten attempts over about three days. A 410 Gone disables the endpoint at once.
Sustained failure disables it too: when a delivery has used up its whole schedule and no attempt to the
endpoint has succeeded for 5 days (counted from the first failure after the last success, over all its
deliveries), the endpoint is disabled with that reason. Pending deliveries of a disabled endpoint are cancelled
when their turn comes; re-enabling the endpoint does not resurrect them (redeliver them by hand).
A delivery is always to a URL that passes the outbound check at delivery time, not only at creation, because
DNS can change in between; the request then goes to the very address that was checked (pinned, with the name
kept as Host and TLS SNI), so a name that changes between check and connect cannot reach inside either.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import Counter
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crossdock.engine.http import prune_remote_calls
from crossdock.engine.jobs import JobContext, RetryPolicy, enqueue, job
from crossdock.engine.periodic import periodic
from crossdock.hub import Hub
from crossdock.logs import get_logger, redact_text
from crossdock.security.urls import UnsafeURL, check_outbound_url, pin_outbound_url, resolve_host
from crossdock.security.vault import Vault
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, decode_cursor, encode_cursor
from crossdock.store.types import utcnow

DELIVERIES = Counter(
    "crossdock_webhook_deliveries_total",
    "Outbound webhook delivery attempts by outcome",
    ["outcome"],
)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32
PREVIOUS_SECRET_TTL = timedelta(hours=24)
# Delays after the 1st, 2nd, ... failed attempt (DESIGN.md, "One order's way through", step 5).
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.1
DISABLE_AFTER = timedelta(days=5)
TIMEOUT_S = 15.0
EXCERPT_CHARS = 1000
DELIVER_JOB = "webhook.deliver"
PRUNE_JOB = "outbound.prune"
ALL_EVENTS = "*"

# Event types crossdock emits (DESIGN.md); endpoints may also subscribe to types added later.
EVENT_TYPES = (
    "order.created",
    "order.updated",
    "order.status_changed",
    "shipment.label_created",
    "tracking.updated",
    "fulfillment.pushed",
)


# Secrets ------------------------------------------------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """One Standard Webhooks signature. Written out rather than imported so that the tests can use the
    reference `standardwebhooks` package as an independent receiver."""
    to_sign = f"{msg_id}.{timestamp}.{body}".encode()
    digest = hmac.new(_secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def seal_secret(vault: Vault, endpoint: t.WebhookEndpoint, secret: str, *, previous: bool = False) -> None:
    name = "webhook_previous_secret" if previous else "webhook_secret"
    key_id, ciphertext = vault.seal(
        secret, account_id=str(endpoint.account_id), connection_id=str(endpoint.id), name=name
    )
    if previous:
        endpoint.previous_secret_key_id, endpoint.previous_secret_ciphertext = key_id, ciphertext
    else:
        endpoint.secret_key_id, endpoint.secret_ciphertext = key_id, ciphertext


def open_secret(vault: Vault, endpoint: t.WebhookEndpoint, *, previous: bool = False) -> str | None:
    ids = {"account_id": str(endpoint.account_id), "connection_id": str(endpoint.id)}
    if previous:
        if endpoint.previous_secret_ciphertext is None or endpoint.previous_secret_key_id is None:
            return None
        return vault.open(
            endpoint.previous_secret_key_id,
            endpoint.previous_secret_ciphertext,
            name="webhook_previous_secret",
            **ids,
        )
    return vault.open(endpoint.secret_key_id, endpoint.secret_ciphertext, name="webhook_secret", **ids)


def signing_secrets(vault: Vault, endpoint: t.WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, plus the previous one while it is still within its day of grace."""
    secrets = [open_secret(vault, endpoint)]
    expires = endpoint.previous_secret_expires_at
    if expires is not None and expires > now:
        secrets.append(open_secret(vault, endpoint, previous=True))
    return [s for s in secrets if s]


def rotate_secret(vault: Vault, endpoint: t.WebhookEndpoint, now: datetime | None = None) -> str:
    """A new secret; the old one keeps signing for PREVIOUS_SECRET_TTL. Returns the new secret (shown once)."""
    now = now or utcnow()
    current = open_secret(vault, endpoint)
    assert current is not None
    seal_secret(vault, endpoint, current, previous=True)
    endpoint.previous_secret_expires_at = now + PREVIOUS_SECRET_TTL
    secret = new_secret()
    seal_secret(vault, endpoint, secret)
    endpoint.updated_at = now
    return secret


def subscribes(endpoint_types: Sequence[str], event_type: str) -> bool:
    return ALL_EVENTS in endpoint_types or event_type in endpoint_types


# Endpoints (the REST API and the control panel both manage them through these) ------------------------------
async def check_endpoint_url(hub: Hub, url: str) -> None:
    """Raise UnsafeURL unless events may be sent to `url` (no private address unless the operator allows it)."""
    # getaddrinfo blocks; resolve in a thread.
    await asyncio.to_thread(check_outbound_url, url, allow_private=hub.settings.allow_private_urls)


def new_endpoint(
    vault: Vault,
    account_id: uuid.UUID,
    *,
    url: str,
    event_types: list[str],
    enabled: bool = True,
    description: str | None = None,
) -> tuple[t.WebhookEndpoint, str]:
    """A new endpoint (for the caller to add to its session) and its signing secret, to be shown only once."""
    now = utcnow()
    row = t.WebhookEndpoint(
        id=uuid.uuid4(),
        account_id=account_id,
        url=url,
        description=description,
        event_types=event_types,
        enabled=enabled,
        created_at=now,
        updated_at=now,
    )
    secret = new_secret()
    seal_secret(vault, row, secret)
    return row, secret


def set_enabled(endpoint: t.WebhookEndpoint, enabled: bool) -> None:
    if enabled and not endpoint.enabled:
        # A fresh start: the failure clock restarts, the reason goes.
        endpoint.disabled_reason = None
        endpoint.failing_since = None
    elif not enabled and endpoint.enabled:
        endpoint.disabled_reason = "disabled by its owner"
    endpoint.enabled = enabled


# Emitting --------------------------------------------------------------------------------------------------
async def emit(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    order_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """One delivery per matching enabled endpoint, written with its delivery job in the CALLER's transaction
    (nothing is committed here): the event goes out if and only if the change that caused it commits."""
    endpoints = (
        await session.scalars(
            select(t.WebhookEndpoint).where(
                t.WebhookEndpoint.account_id == account_id, t.WebhookEndpoint.enabled.is_(True)
            )
        )
    ).all()
    now = utcnow()
    created: list[uuid.UUID] = []
    for endpoint in endpoints:
        if not subscribes(endpoint.event_types, event_type):
            continue
        delivery = t.WebhookDelivery(
            id=uuid.uuid4(),
            account_id=account_id,
            endpoint_id=endpoint.id,
            order_id=order_id,
            event_type=event_type,
            body=event_body(event_type, data, now),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(delivery)
        await session.flush()
        await _enqueue_attempt(session, delivery, number=1, run_at=None)
        created.append(delivery.id)
    return created


def event_body(event_type: str, data: dict[str, Any], at: datetime) -> str:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    return json.dumps(
        {"type": event_type, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        default=str,
    )


async def _enqueue_attempt(
    session: AsyncSession,
    delivery: t.WebhookDelivery,
    *,
    number: int,
    run_at: datetime | None,
    trigger: str = "schedule",
) -> None:
    await enqueue(
        session,
        account_id=delivery.account_id,
        kind=DELIVER_JOB,
        payload={"delivery_id": str(delivery.id), "attempt": number, "trigger": trigger},
        # One waiting attempt per delivery and attempt number: a duplicate enqueue is a no-op.
        queueing_key=f"webhook:{delivery.id}:{number}",
        run_at=run_at,
    )


def retry_delay(failed_attempt: int, rng: random.Random | None = None) -> timedelta | None:
    """The wait after the n-th failed attempt (1-based), jittered by +-10 %; None when the schedule is done."""
    if failed_attempt < 1 or failed_attempt > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[failed_attempt - 1]
    factor = 1.0 + (rng or random).uniform(-JITTER, JITTER)
    return base * factor


# Delivering ------------------------------------------------------------------------------------------------
@job(DELIVER_JOB, retry=RetryPolicy(max_attempts=3, base_s=5.0, cap_s=300.0), timeout_s=TIMEOUT_S + 30)
async def deliver_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    """The worker's entry: delivery failures are handled here (schedule, disable), not by job retries."""
    await deliver(
        ctx.hub,
        uuid.UUID(payload["delivery_id"]),
        attempt=int(payload.get("attempt", 1)),
        trigger=str(payload.get("trigger", "schedule")),
    )


async def deliver(
    hub: Hub,
    delivery_id: uuid.UUID,
    *,
    attempt: int,
    trigger: str = "schedule",
    transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
    resolver: Callable[[str], list[str]] = resolve_host,
) -> str:
    """Make one attempt of a delivery and record it; returns the attempt's outcome.

    No database transaction is open while the HTTP request runs. A stale job (the delivery moved on, or its
    endpoint was disabled) does nothing.
    """
    async with hub.db.session() as session:
        row = (
            await session.execute(
                select(t.WebhookDelivery, t.WebhookEndpoint)
                .join(t.WebhookEndpoint, t.WebhookEndpoint.id == t.WebhookDelivery.endpoint_id)
                .where(t.WebhookDelivery.id == delivery_id)
            )
        ).first()
    if row is None:
        return "missing"
    delivery, endpoint = row
    if delivery.status != "pending" or delivery.attempts != attempt - 1:
        return "stale"
    if not endpoint.enabled:
        async with hub.db.transaction() as session:
            current = await session.get(t.WebhookDelivery, delivery_id)
            if current is not None and current.status == "pending":
                current.status, current.completed_at = "cancelled", utcnow()
                current.last_error = f"endpoint disabled: {endpoint.disabled_reason or 'by its owner'}"
        DELIVERIES.labels("cancelled").inc()
        return "cancelled"

    now = utcnow()
    msg_id = f"msg_{delivery.id.hex}"
    timestamp = int(now.timestamp())
    signatures = [
        sign(s, msg_id, timestamp, delivery.body) for s in signing_secrets(hub.vault, endpoint, now)
    ]
    headers = {
        "content-type": "application/json",
        "user-agent": "crossdock-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
    result = await _send(hub, endpoint.url, headers, delivery.body, transport, resolver)
    await _record(hub, delivery.id, attempt, trigger, headers, result, rng)
    return result.outcome


@dataclass
class _Result:
    outcome: str  # succeeded, failed, gone (410), refused (URL check)
    status: int | None = None
    excerpt: str | None = None
    error: str | None = None
    duration_ms: int = 0


async def _send(
    hub: Hub,
    url: str,
    headers: dict[str, str],
    body: str,
    transport: httpx.AsyncBaseTransport | None,
    resolver: Callable[[str], list[str]],
) -> _Result:
    try:
        # Checked on every attempt because DNS can change, and the request goes to the very address that was
        # checked (pinned). getaddrinfo blocks: resolve in a thread.
        target, host = await asyncio.to_thread(
            pin_outbound_url, url, allow_private=hub.settings.allow_private_urls, resolver=resolver
        )
    except UnsafeURL as exc:
        return _Result("refused", error=f"refused to deliver: {redact_text(str(exc))}")
    send_headers = dict(headers)
    extensions: dict[str, Any] = {}
    if host is not None:
        send_headers["host"] = urlsplit(url).netloc
        if url.lower().startswith("https:"):
            extensions["sni_hostname"] = host
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(TIMEOUT_S),
            # Over the process's kept-alive connections (engine/http_pools.py), unless a transport was given.
            hub.remote_pools.client(
                transport=transport, timeout=httpx.Timeout(TIMEOUT_S), follow_redirects=False
            ) as client,
            client.stream(
                "POST", target, content=body.encode(), headers=send_headers, extensions=extensions
            ) as response,
        ):
            excerpt = await _excerpt(response)
            status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        return _Result(
            "failed",
            error=f"no answer within {TIMEOUT_S:g} s",
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
    except httpx.TransportError as exc:
        return _Result(
            "failed",
            error=f"could not connect: {redact_text(str(exc) or type(exc).__name__)}",
            duration_ms=round((time.perf_counter() - started) * 1000),
        )
    duration_ms = round((time.perf_counter() - started) * 1000)
    if 200 <= status < 300:
        return _Result("succeeded", status=status, excerpt=excerpt, duration_ms=duration_ms)
    if status == 410:
        return _Result(
            "gone",
            status=status,
            excerpt=excerpt,
            error="the endpoint answered 410 Gone",
            duration_ms=duration_ms,
        )
    return _Result(
        "failed",
        status=status,
        excerpt=excerpt,
        error=f"the endpoint answered {status}",
        duration_ms=duration_ms,
    )


async def _excerpt(response: httpx.Response) -> str:
    """At most EXCERPT_CHARS of the answer, read no further than needed (a receiver may send megabytes)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= EXCERPT_CHARS * 4:
            break
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return redact_text(text[:EXCERPT_CHARS])


def _stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """What we keep of the request: everything but the signatures themselves, which we shorten."""
    stored = dict(headers)
    stored["webhook-signature"] = " ".join(sig[:11] + "..." for sig in headers["webhook-signature"].split())
    return stored


async def _record(
    hub: Hub,
    delivery_id: uuid.UUID,
    number: int,
    trigger: str,
    headers: dict[str, str],
    result: _Result,
    rng: random.Random | None,
) -> None:
    now = utcnow()
    log = get_logger(__name__)
    async with hub.db.transaction() as session:
        delivery = await session.get(t.WebhookDelivery, delivery_id)
        if delivery is None:
            return
        endpoint = await session.get(t.WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None
        session.add(
            t.WebhookAttempt(
                account_id=delivery.account_id,
                delivery_id=delivery.id,
                number=number,
                trigger=trigger,
                at=now,
                request_headers=_stored_headers(headers),
                response_status=result.status,
                response_excerpt=result.excerpt,
                duration_ms=result.duration_ms,
                outcome="succeeded" if result.outcome == "succeeded" else "failed",
                error=result.error,
            )
        )
        delivery.attempts = number
        delivery.last_status = result.status
        delivery.last_error = result.error
        if result.outcome == "succeeded":
            delivery.status, delivery.completed_at, delivery.next_attempt_at = "succeeded", now, None
            endpoint.failing_since = None
            DELIVERIES.labels("succeeded").inc()
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        if result.outcome == "gone":
            _disable(endpoint, f"the endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC", now)
            delivery.status, delivery.completed_at, delivery.next_attempt_at = "failed", now, None
            DELIVERIES.labels("gone").inc()
            log.info("webhook endpoint gone: disabled", endpoint=str(endpoint.id))
            return
        delay = retry_delay(number, rng) if trigger == "schedule" else None
        if delay is None:
            delivery.status, delivery.completed_at, delivery.next_attempt_at = "failed", now, None
            if trigger == "schedule" and now - endpoint.failing_since >= DISABLE_AFTER:
                _disable(
                    endpoint,
                    f"every delivery attempt has failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC "
                    f"(last: {result.error})",
                    now,
                )
            DELIVERIES.labels("failed" if result.outcome != "refused" else "refused").inc()
            return
        delivery.next_attempt_at = now + delay
        await _enqueue_attempt(session, delivery, number=number + 1, run_at=delivery.next_attempt_at)
        DELIVERIES.labels("refused" if result.outcome == "refused" else "will_retry").inc()


def _disable(endpoint: t.WebhookEndpoint, reason: str, now: datetime) -> None:
    endpoint.enabled = False
    endpoint.disabled_reason = reason
    endpoint.updated_at = now


def why_not_redeliver(endpoint: t.WebhookEndpoint, delivery: t.WebhookDelivery) -> str | None:
    """Why the delivery cannot be sent again by hand now, with what to do; None when it can."""
    if not endpoint.enabled:
        return f"this endpoint is disabled ({endpoint.disabled_reason or 'by its owner'}); enable it first"
    if delivery.status == "pending":
        when = f" at {delivery.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC" if delivery.next_attempt_at else ""
        return f"this delivery is already scheduled{when}; wait for that attempt"
    return None


async def redeliver(session: AsyncSession, endpoint: t.WebhookEndpoint, delivery: t.WebhookDelivery) -> None:
    """Manual redelivery: one more attempt of the same delivery now, recorded beside its earlier attempts, with
    the same webhook-id and body (receivers deduplicate on the id). Conflict when `why_not_redeliver` says no."""
    refused = why_not_redeliver(endpoint, delivery)
    if refused is not None:
        raise Conflict(refused)
    delivery.status = "pending"
    delivery.completed_at = None
    delivery.next_attempt_at = utcnow()
    await _enqueue_attempt(session, delivery, number=delivery.attempts + 1, run_at=None, trigger="manual")


async def list_deliveries(
    session: AsyncSession,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[t.WebhookDelivery], str | None]:
    """One page of an endpoint's deliveries, newest first, each with its attempts; and the cursor of the next
    page (None on the last). A cursor not made here raises Conflict (undecodable) or ValueError."""
    d = t.WebhookDelivery
    stmt = (
        select(d)
        .where(d.account_id == account_id, d.endpoint_id == endpoint_id)
        .options(selectinload(d.attempt_rows))
        .order_by(d.created_at.desc(), d.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(d.status == status)
    if cursor:
        position = decode_cursor(cursor)
        try:
            at, last_id = datetime.fromisoformat(position["at"]), uuid.UUID(position["id"])
        except (KeyError, ValueError, TypeError):
            raise ValueError("not a cursor this API issued; start again without it") from None
        stmt = stmt.where(or_(d.created_at < at, and_(d.created_at == at, d.id < last_id)))
    rows = list((await session.scalars(stmt)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor({"at": rows[-1].created_at.isoformat(), "id": str(rows[-1].id)})
    return rows, next_cursor


# Retention ---------------------------------------------------------------------------------------------------
async def prune_deliveries(hub: Hub, *, keep_days: float, batch: int = 1000) -> int:
    """Delete finished deliveries (with their attempts) older than `keep_days`, in small transactions.
    Pending deliveries are kept whatever their age: they still have attempts to make."""
    cutoff = utcnow() - timedelta(days=keep_days)
    removed = 0
    while True:
        async with hub.db.transaction() as session:
            ids = (
                await session.scalars(
                    select(t.WebhookDelivery.id)
                    .where(t.WebhookDelivery.status != "pending", t.WebhookDelivery.created_at < cutoff)
                    .limit(batch)
                )
            ).all()
            if not ids:
                return removed
            await session.execute(delete(t.WebhookAttempt).where(t.WebhookAttempt.delivery_id.in_(ids)))
            await session.execute(delete(t.WebhookDelivery).where(t.WebhookDelivery.id.in_(ids)))
            removed += len(ids)


@job(PRUNE_JOB, retry=RetryPolicy(max_attempts=3, base_s=60.0, cap_s=600.0), timeout_s=1800)
async def prune_job(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Bounded retention for the records of outbound traffic: remote calls and webhook deliveries. (It lives
    here, in a module the worker loads, so that both tables are pruned by one hourly job.)"""
    settings = ctx.hub.settings
    calls = await prune_remote_calls(ctx.hub.db, keep_days=settings.remote_calls_retention_days)
    deliveries = await prune_deliveries(ctx.hub, keep_days=settings.webhook_deliveries_retention_days)
    get_logger(__name__).info("outbound records pruned", remote_calls=calls, webhook_deliveries=deliveries)


periodic(PRUNE_JOB, every_s=3600)
