"""Outbound webhooks: the endpoints API, emit in the caller's transaction, Standard Webhooks signatures checked by
the reference `standardwebhooks` package as receiver, the retry schedule, 410, sustained failure, SSRF refusal
at creation and at delivery, and manual redelivery."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crossdock.api.app import create_app
from crossdock.engine import webhooks_out as wh
from crossdock.engine.jobs import REGISTRY as JOB_KINDS
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.engine.remote_support import local_server, strict_hub
from tests.support import Tenant

API = "/api/v1/webhook-endpoints"


async def create_endpoint(client: httpx.AsyncClient, owner: Tenant, url: str, **body: Any) -> dict[str, Any]:
    response = await client.post(API, json={"url": url, **body}, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def emit_one(
    hub: Hub, owner: Tenant, event_type: str = "order.created", **data: Any
) -> list[uuid.UUID]:
    async with hub.db.transaction() as session:
        return await wh.emit(
            session, account_id=uuid.UUID(owner.id), event_type=event_type, data=data or {"id": "ord_1"}
        )


async def jobs_for(hub: Hub, delivery_id: uuid.UUID) -> list[t.Job]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.Job).where(t.Job.kind == wh.DELIVER_JOB).order_by(t.Job.created_at)
        )
        return [j for j in rows.all() if j.payload["delivery_id"] == str(delivery_id)]


async def delivery(hub: Hub, delivery_id: uuid.UUID) -> t.WebhookDelivery:
    async with hub.db.session() as session:
        row = await session.get(t.WebhookDelivery, delivery_id)
        assert row is not None
        return row


async def endpoint_row(hub: Hub, endpoint_id: str) -> t.WebhookEndpoint:
    async with hub.db.session() as session:
        row = await session.get(t.WebhookEndpoint, uuid.UUID(endpoint_id))
        assert row is not None
        return row


class Receiver:
    """A subscriber on 127.0.0.1 that verifies with the reference library, as a real receiver would."""

    def __init__(self, secrets: list[str], status: int = 200) -> None:
        self.secrets = secrets
        self.status = status
        self.received: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            headers = dict(request.headers)
            verified = []
            for secret in self.secrets:
                try:
                    Webhook(secret).verify(body, headers)
                    verified.append(secret)
                except WebhookVerificationError:
                    pass
            client = request.client
            self.received.append(
                {"headers": headers, "body": body, "verified": verified, "peer": client and tuple(client)}
            )
            return JSONResponse({"ok": bool(verified)}, status_code=self.status)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def failing(status: int = 500) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, text="nope"))


# The endpoints API ----------------------------------------------------------------------------------------------
async def test_the_signing_secret_is_shown_once_at_creation(client: httpx.AsyncClient, acme: Tenant) -> None:
    created = await create_endpoint(
        client, acme, "https://hooks.example.com/x", event_types=["order.created"]
    )
    assert created["secret"].startswith("whsec_") and created["event_types"] == ["order.created"]
    fetched = (await client.get(f"{API}/{created['id']}", headers=acme.headers)).json()
    listed = (await client.get(API, headers=acme.headers)).json()["items"]
    assert "secret" not in fetched and all("secret" not in e for e in listed)
    assert created["secret"] not in json.dumps([fetched, listed])
    everything = await create_endpoint(client, acme, "https://hooks.example.com/all")
    assert everything["event_types"] == ["*"] and everything["enabled"] is True


async def test_endpoints_can_be_updated_disabled_and_deleted(client: httpx.AsyncClient, acme: Tenant) -> None:
    created = await create_endpoint(client, acme, "https://hooks.example.com/x")
    url = f"{API}/{created['id']}"
    patched = await client.patch(
        url, json={"event_types": ["tracking.updated"], "enabled": False}, headers=acme.headers
    )
    assert patched.status_code == 200
    assert patched.json()["event_types"] == ["tracking.updated"] and patched.json()["enabled"] is False
    assert patched.json()["disabled_reason"] == "disabled by its owner"
    again = await client.patch(url, json={"enabled": True}, headers=acme.headers)
    assert again.json()["disabled_reason"] is None
    assert (await client.delete(url, headers=acme.headers)).status_code == 204
    assert (await client.get(url, headers=acme.headers)).status_code == 404


@pytest.mark.parametrize("event_types", [[], ["Order Created"], ["order"]])
async def test_event_types_must_be_named_properly(
    client: httpx.AsyncClient, acme: Tenant, event_types: list[str]
) -> None:
    response = await client.post(
        API, json={"url": "https://hooks.example.com/x", "event_types": event_types}, headers=acme.headers
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"].startswith("event_types")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9000/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]/"],
)
async def test_private_urls_are_refused_at_creation(hub: Hub, acme: Tenant, tmp_path: Any, url: str) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(strict_hub(hub, tmp_path))), base_url="http://hub.test"
    ) as client:
        response = await client.post(API, json={"url": url}, headers=acme.headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "url"
        assert "CROSSDOCK_ALLOW_PRIVATE_URLS" in response.json()["detail"]
        created = await create_endpoint(
            client, acme, "https://93.184.216.34/hook"
        )  # a public address is fine
        moved = await client.patch(f"{API}/{created['id']}", json={"url": url}, headers=acme.headers)
        assert moved.status_code == 422


# Emitting ---------------------------------------------------------------------------------------------------
async def test_emit_writes_one_delivery_per_matching_enabled_endpoint_with_its_job(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant, globex: Tenant
) -> None:
    orders = await create_endpoint(client, acme, "https://a.example.com/1", event_types=["order.created"])
    await create_endpoint(client, acme, "https://a.example.com/2", event_types=["tracking.updated"])
    everything = await create_endpoint(client, acme, "https://a.example.com/3")
    off = await create_endpoint(client, acme, "https://a.example.com/4", enabled=False)
    await create_endpoint(client, globex, "https://b.example.com/1")  # another account's
    created = await emit_one(hub, acme, "order.created", id="ord_1")
    assert len(created) == 2
    async with hub.db.session() as session:
        rows = (await session.scalars(select(t.WebhookDelivery))).all()
    assert {str(r.endpoint_id) for r in rows} == {orders["id"], everything["id"]}
    assert off["id"] not in {str(r.endpoint_id) for r in rows}
    body = json.loads(rows[0].body)
    assert (
        body["type"] == "order.created"
        and body["data"] == {"id": "ord_1"}
        and body["timestamp"].endswith("Z")
    )
    for row in rows:
        (job,) = await jobs_for(hub, row.id)
        assert job.payload["attempt"] == 1 and job.status == "queued"


async def test_emit_in_a_rolled_back_transaction_leaves_nothing(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    await create_endpoint(client, acme, "https://a.example.com/1")
    with pytest.raises(RuntimeError):
        async with hub.db.transaction() as session:
            await wh.emit(session, account_id=uuid.UUID(acme.id), event_type="order.created", data={})
            raise RuntimeError("the change that caused the event failed")
    async with hub.db.session() as session:
        assert (await session.scalars(select(t.WebhookDelivery))).all() == []
        assert (await session.scalars(select(t.Job).where(t.Job.kind == wh.DELIVER_JOB))).all() == []


def test_the_delivery_job_kind_is_registered() -> None:
    assert JOB_KINDS[wh.DELIVER_JOB].handler is wh.deliver_job


# Signatures ------------------------------------------------------------------------------------------------
async def test_the_reference_receiver_verifies_our_signatures(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    receiver = Receiver([])
    with local_server(receiver.app()) as base:
        created = await create_endpoint(client, acme, f"{base}/hook")
        receiver.secrets.append(created["secret"])
        (delivery_id,) = await emit_one(hub, acme, id="ord_7")
        assert await wh.deliver(hub, delivery_id, attempt=1) == "succeeded"
    (got,) = receiver.received
    assert got["verified"] == [created["secret"]]
    assert got["headers"]["webhook-id"] == f"msg_{delivery_id.hex}"
    assert json.loads(got["body"])["data"] == {"id": "ord_7"}
    done = await delivery(hub, delivery_id)
    assert (done.status, done.attempts, done.last_status) == ("succeeded", 1, 200)


async def test_deliveries_one_after_another_go_over_one_kept_alive_connection(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    """Each delivery built an HTTP client of its own: a TLS context (the CA bundle read again) and a new connection
    every time. They now send through the process's pools: the receiver sees one client port."""
    receiver = Receiver([])
    with local_server(receiver.app()) as base:
        created = await create_endpoint(client, acme, f"{base}/hook")
        receiver.secrets.append(created["secret"])
        for _ in range(3):
            (delivery_id,) = await emit_one(hub, acme)
            assert await wh.deliver(hub, delivery_id, attempt=1) == "succeeded"
    assert len(receiver.received) == 3
    assert len({got["peer"] for got in receiver.received}) == 1, [got["peer"] for got in receiver.received]


async def test_a_tampered_body_or_a_ten_minute_old_timestamp_is_rejected() -> None:
    secret = wh.new_secret()
    body = wh.event_body("order.created", {"id": "ord_1"}, utcnow())
    now = int(utcnow().timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": wh.sign(secret, "msg_1", now, body),
    }
    assert Webhook(secret).verify(body, headers)["data"] == {"id": "ord_1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("ord_1", "ord_2"), headers)
    old = now - 600
    stale = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(old),
        "webhook-signature": wh.sign(secret, "msg_1", old, body),
    }
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, stale)
    with pytest.raises(WebhookVerificationError):
        Webhook(wh.new_secret()).verify(body, headers)


async def test_after_a_rotation_both_signatures_verify_for_a_day(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    receiver = Receiver([])
    with local_server(receiver.app()) as base:
        created = await create_endpoint(client, acme, f"{base}/hook")
        rotated = await client.post(f"{API}/{created['id']}/rotate-secret", headers=acme.headers)
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != created["secret"]
        expires = datetime.fromisoformat(rotated.json()["previous_secret_expires_at"])
        assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)
        receiver.secrets.extend([created["secret"], new_secret])
        (first,) = await emit_one(hub, acme)
        await wh.deliver(hub, first, attempt=1)
        # A day later the old secret signs no more.
        async with hub.db.transaction() as session:
            row = await session.get(t.WebhookEndpoint, uuid.UUID(created["id"]))
            assert row is not None
            row.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
        (second,) = await emit_one(hub, acme)
        await wh.deliver(hub, second, attempt=1)
    during, after = receiver.received
    assert len(during["headers"]["webhook-signature"].split(" ")) == 2
    assert during["verified"] == [created["secret"], new_secret]
    assert len(after["headers"]["webhook-signature"].split(" ")) == 1
    assert after["verified"] == [new_secret]


# Failure handling ------------------------------------------------------------------------------------------
async def test_retries_follow_the_schedule_then_the_delivery_fails(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    await create_endpoint(client, acme, "https://a.example.com/hook")
    (delivery_id,) = await emit_one(hub, acme)
    rng = random.Random(7)
    offsets: list[timedelta] = []
    for attempt in range(1, wh.MAX_ATTEMPTS + 1):
        before = utcnow()
        assert (
            await wh.deliver(hub, delivery_id, attempt=attempt, transport=failing(503), rng=rng) == "failed"
        )
        row = await delivery(hub, delivery_id)
        jobs = await jobs_for(hub, delivery_id)
        if attempt < wh.MAX_ATTEMPTS:
            assert row.status == "pending" and row.next_attempt_at is not None
            next_job = next(j for j in jobs if j.payload["attempt"] == attempt + 1)
            assert next_job.run_at == row.next_attempt_at
            offsets.append(next_job.run_at - before)
        else:
            assert row.status == "failed" and row.next_attempt_at is None
            assert all(j.payload["attempt"] <= wh.MAX_ATTEMPTS for j in jobs)
    assert len(offsets) == 9
    for offset, planned in zip(offsets, wh.RETRY_SCHEDULE, strict=True):
        assert planned * 0.9 - timedelta(seconds=1) <= offset <= planned * 1.1 + timedelta(seconds=1)
    assert (
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=14),
        timedelta(hours=20),
        timedelta(hours=24),
    ) == wh.RETRY_SCHEDULE
    async with hub.db.session() as session:
        attempts = (await session.scalars(select(t.WebhookAttempt).order_by(t.WebhookAttempt.number))).all()
    assert [a.number for a in attempts] == list(range(1, 11))
    assert {(a.response_status, a.outcome, a.response_excerpt) for a in attempts} == {(503, "failed", "nope")}
    assert all("whsec_" not in json.dumps(a.request_headers) for a in attempts)
    # A stale job for an attempt already made does nothing.
    assert await wh.deliver(hub, delivery_id, attempt=3, transport=failing()) == "stale"


async def test_410_gone_disables_the_endpoint_and_its_later_deliveries_are_cancelled(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    created = await create_endpoint(client, acme, "https://a.example.com/hook")
    first, second = await emit_one(hub, acme), await emit_one(hub, acme)
    assert await wh.deliver(hub, first[0], attempt=1, transport=failing(410)) == "gone"
    endpoint = await endpoint_row(hub, created["id"])
    assert endpoint.enabled is False and "410 Gone" in (endpoint.disabled_reason or "")
    assert (await delivery(hub, first[0])).status == "failed"
    assert await jobs_for(hub, first[0]) and len(await jobs_for(hub, first[0])) == 1  # no retry scheduled
    assert await wh.deliver(hub, second[0], attempt=1, transport=failing(200)) == "cancelled"
    assert (await delivery(hub, second[0])).status == "cancelled"


async def test_an_endpoint_failing_for_five_days_is_disabled_when_a_delivery_runs_out(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    created = await create_endpoint(client, acme, "https://a.example.com/hook")
    recent, old = await emit_one(hub, acme), await emit_one(hub, acme)
    async with hub.db.transaction() as session:
        for delivery_id in (recent[0], old[0]):
            row = await session.get(t.WebhookDelivery, delivery_id)
            assert row is not None
            row.attempts = wh.MAX_ATTEMPTS - 1
        endpoint = await session.get(t.WebhookEndpoint, uuid.UUID(created["id"]))
        assert endpoint is not None
        endpoint.failing_since = utcnow() - timedelta(days=4)
    await wh.deliver(hub, recent[0], attempt=wh.MAX_ATTEMPTS, transport=failing())
    assert (await endpoint_row(hub, created["id"])).enabled is True  # four days: not yet
    async with hub.db.transaction() as session:
        endpoint = await session.get(t.WebhookEndpoint, uuid.UUID(created["id"]))
        assert endpoint is not None
        endpoint.failing_since = utcnow() - timedelta(days=5, minutes=1)
    await wh.deliver(hub, old[0], attempt=wh.MAX_ATTEMPTS, transport=failing())
    endpoint = await endpoint_row(hub, created["id"])
    assert endpoint.enabled is False and "every delivery attempt has failed since" in (
        endpoint.disabled_reason or ""
    )


async def test_a_success_resets_the_failure_clock(hub: Hub, client: httpx.AsyncClient, acme: Tenant) -> None:
    created = await create_endpoint(client, acme, "https://a.example.com/hook")
    (delivery_id,) = await emit_one(hub, acme)
    await wh.deliver(hub, delivery_id, attempt=1, transport=failing())
    assert (await endpoint_row(hub, created["id"])).failing_since is not None
    await wh.deliver(hub, delivery_id, attempt=2, transport=failing(204))
    assert (await endpoint_row(hub, created["id"])).failing_since is None


async def test_a_url_that_now_resolves_privately_is_refused_at_delivery(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant, tmp_path: Any
) -> None:
    # Created while private addresses were allowed (or while its name resolved publicly), delivered after.
    await create_endpoint(client, acme, "http://127.0.0.1:9/hook")
    (delivery_id,) = await emit_one(hub, acme)
    reached: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: reached.append(request) or httpx.Response(200))
    assert (
        await wh.deliver(strict_hub(hub, tmp_path), delivery_id, attempt=1, transport=transport) == "refused"
    )
    assert reached == []
    async with hub.db.session() as session:
        (attempt,) = (await session.scalars(select(t.WebhookAttempt))).all()
    assert attempt.response_status is None and "CROSSDOCK_ALLOW_PRIVATE_URLS" in (attempt.error or "")
    assert (await delivery(hub, delivery_id)).status == "pending"  # retried on schedule, checked again then


# Deliveries API and manual redelivery -----------------------------------------------------------------------
async def test_deliveries_are_listed_with_their_attempts_and_can_be_redelivered(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    created = await create_endpoint(client, acme, "https://a.example.com/hook")
    (delivery_id,) = await emit_one(hub, acme, id="ord_9")
    url = f"{API}/{created['id']}/deliveries"
    pending = await client.post(f"{url}/{delivery_id}/redeliver", headers=acme.headers)
    assert pending.status_code == 409  # its first attempt is still to come
    async with hub.db.transaction() as session:  # as if the whole schedule had failed
        row = await session.get(t.WebhookDelivery, delivery_id)
        assert row is not None
        row.attempts, row.status = wh.MAX_ATTEMPTS - 1, "pending"
    await wh.deliver(hub, delivery_id, attempt=wh.MAX_ATTEMPTS, transport=failing(500))
    redelivered = await client.post(f"{url}/{delivery_id}/redeliver", headers=acme.headers)
    assert redelivered.status_code == 202 and redelivered.json()["status"] == "pending"
    manual = [j for j in await jobs_for(hub, delivery_id) if j.payload["trigger"] == "manual"]
    assert len(manual) == 1 and manual[0].payload["attempt"] == wh.MAX_ATTEMPTS + 1
    assert await wh.deliver(
        hub, delivery_id, attempt=wh.MAX_ATTEMPTS + 1, trigger="manual", transport=failing(200)
    ) == ("succeeded")
    listed = (await client.get(url, headers=acme.headers)).json()
    (item,) = listed["items"]
    assert item["status"] == "succeeded" and item["webhook_id"] == f"msg_{delivery_id.hex}"
    assert [(a["number"], a["trigger"], a["outcome"]) for a in item["attempt_log"]] == [
        (wh.MAX_ATTEMPTS, "schedule", "failed"),
        (wh.MAX_ATTEMPTS + 1, "manual", "succeeded"),
    ]
    assert item["attempt_log"][0]["request_headers"]["webhook-id"] == item["webhook_id"]


async def test_deliveries_page_newest_first(hub: Hub, client: httpx.AsyncClient, acme: Tenant) -> None:
    created = await create_endpoint(client, acme, "https://a.example.com/hook")
    ids = [(await emit_one(hub, acme, n=n))[0] for n in range(5)]
    url = f"{API}/{created['id']}/deliveries"
    first = (await client.get(url, params={"limit": 3}, headers=acme.headers)).json()
    second = (
        await client.get(url, params={"limit": 3, "cursor": first["next_cursor"]}, headers=acme.headers)
    ).json()
    seen = [i["id"] for i in first["items"] + second["items"]]
    assert seen == [str(i) for i in reversed(ids)] and second["next_cursor"] is None


async def test_delivery_outcomes_are_counted(hub: Hub, client: httpx.AsyncClient, acme: Tenant) -> None:
    def value(outcome: str) -> float:
        return REGISTRY.get_sample_value("crossdock_webhook_deliveries_total", {"outcome": outcome}) or 0.0

    before = value("succeeded"), value("will_retry")
    await create_endpoint(client, acme, "https://a.example.com/hook")
    (delivery_id,) = await emit_one(hub, acme)
    await wh.deliver(hub, delivery_id, attempt=1, transport=failing(500))
    await wh.deliver(hub, delivery_id, attempt=2, transport=failing(200))
    assert (value("succeeded"), value("will_retry")) == (before[0] + 1, before[1] + 1)


async def test_vault_key_rotation_keeps_signing_secrets_usable(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    from crossdock.security.rotation import reseal_all
    from crossdock.security.vault import VaultKey

    created = await create_endpoint(client, acme, "https://a.example.com/hook")
    rotated = (await client.post(f"{API}/{created['id']}/rotate-secret", headers=acme.headers)).json()
    hub.vault.add_primary(VaultKey.generate())
    await reseal_all(hub.db, hub.vault)
    hub.vault.retire_all_but_primary()
    endpoint = await endpoint_row(hub, created["id"])
    assert endpoint.secret_key_id == endpoint.previous_secret_key_id == hub.vault.primary.id
    assert wh.signing_secrets(hub.vault, endpoint, utcnow()) == [rotated["secret"], created["secret"]]


async def test_the_hourly_prune_keeps_outbound_records_bounded(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    from crossdock.engine.jobs import JobContext
    from crossdock.engine.periodic import PERIODIC

    assert PERIODIC[wh.PRUNE_JOB].every_s == 3600
    await create_endpoint(client, acme, "https://a.example.com/hook")
    old_done, old_pending, fresh_done = (
        (await emit_one(hub, acme))[0],
        (await emit_one(hub, acme))[0],
        (await emit_one(hub, acme))[0],
    )
    for delivery_id in (old_done, fresh_done):
        await wh.deliver(hub, delivery_id, attempt=1, transport=failing(200))
    long_ago = utcnow() - timedelta(days=hub.settings.webhook_deliveries_retention_days + 1)
    async with hub.db.transaction() as session:
        for delivery_id in (old_done, old_pending):
            row = await session.get(t.WebhookDelivery, delivery_id)
            assert row is not None
            row.created_at = long_ago
        session.add(
            t.RemoteCall(
                account_id=uuid.UUID(acme.id),
                connector="shopify",
                method="GET",
                url="https://x/",
                duration_ms=1,
                at=long_ago,
            )
        )
    ctx = JobContext(
        hub=hub,
        job_id=uuid.uuid4(),
        kind=wh.PRUNE_JOB,
        account_id=None,
        attempt=1,
        order_id=None,
        worker_id="test",
    )
    await wh.prune_job(ctx, {})
    async with hub.db.session() as session:
        left = {r.id for r in (await session.scalars(select(t.WebhookDelivery))).all()}
        calls = (await session.scalars(select(t.RemoteCall))).all()
        attempts = (await session.scalars(select(t.WebhookAttempt))).all()
    assert left == {old_pending, fresh_done}  # pending work is never pruned
    assert calls == [] and [a.delivery_id for a in attempts] == [fresh_done]


async def test_a_worker_delivers_an_emitted_event_end_to_end(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant
) -> None:
    from tests.engine.support import eventually, fast, running_worker

    receiver = Receiver([])
    with local_server(receiver.app()) as base:
        created = await create_endpoint(client, acme, f"{base}/hook", event_types=["shipment.label_created"])
        receiver.secrets.append(created["secret"])
        (delivery_id,) = await emit_one(hub, acme, "shipment.label_created", tracking_number="1Z999")

        async def delivered() -> bool:
            return (await delivery(hub, delivery_id)).status == "succeeded"

        async with running_worker(fast(hub), run_periodic=False):
            await eventually(delivered)
    (got,) = receiver.received
    assert got["verified"] == [created["secret"]]
    assert json.loads(got["body"])["data"] == {"tracking_number": "1Z999"}
    (job,) = await jobs_for(hub, delivery_id)
    assert job.status == "succeeded"


async def test_a_delivery_goes_to_the_address_that_was_checked(
    hub: Hub, client: httpx.AsyncClient, acme: Tenant, tmp_path: Any
) -> None:
    await create_endpoint(client, acme, "https://hooks.example.com/in")
    first, second = (await emit_one(hub, acme))[0], (await emit_one(hub, acme))[0]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    public = {"hooks.example.com": ["93.184.216.34"]}
    assert await wh.deliver(
        strict_hub(hub, tmp_path), first, attempt=1, transport=transport, resolver=public.get
    ) == ("succeeded")
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34/in" and request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    rebound = {"hooks.example.com": ["169.254.169.254"]}  # the name now points at the metadata service
    assert await wh.deliver(
        strict_hub(hub, tmp_path), second, attempt=1, transport=transport, resolver=rebound.get
    ) == ("refused")
    assert len(seen) == 1
