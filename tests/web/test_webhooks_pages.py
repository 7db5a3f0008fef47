"""The panel's Webhooks pages: endpoints listed and created (the secret shown once), private URLs refused with the
reason, enable/disable, rotate, delete after a confirmation, the delivery log newest first with its attempts,
redelivery with the same webhook-id to a real loopback receiver, CSRF on every form, and another account's
endpoints and deliveries out of reach."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crossdock.api.app import create_app
from crossdock.engine import webhooks_out as wh
from crossdock.hub import Hub
from crossdock.store import tables as t
from tests.engine.remote_support import local_server, strict_hub
from tests.support import Tenant
from tests.web.support import signed_in

API = "/api/v1/webhook-endpoints"
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


class Receiver:
    """A subscriber on 127.0.0.1 that keeps the headers of every request it gets."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            await request.body()
            self.headers.append(dict(request.headers))
            return Response(status_code=204)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def endpoints(hub: Hub, owner: Tenant) -> list[t.WebhookEndpoint]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.WebhookEndpoint).where(t.WebhookEndpoint.account_id == uuid.UUID(owner.id))
        )
        return list(rows.all())


async def create(client: httpx.AsyncClient, csrf: str, url: str, *events: str) -> httpx.Response:
    return await client.post(
        "/webhooks", data={"csrf_token": csrf, "url": url, "event_types": list(events) or ["*"]}
    )


async def emit_one(hub: Hub, owner: Tenant, event_type: str = "order.created", **data: Any) -> uuid.UUID:
    async with hub.db.transaction() as session:
        (delivery_id,) = await wh.emit(
            session, account_id=uuid.UUID(owner.id), event_type=event_type, data=data or {"id": "ord_1"}
        )
    return delivery_id


async def test_an_empty_account_says_how_to_start(client: httpx.AsyncClient, hub: Hub, acme: Tenant) -> None:
    await signed_in(client, hub, acme)
    page = await client.get("/webhooks")
    assert page.status_code == 200
    assert "No webhook endpoints yet" in page.text and 'aria-current="page">Webhooks' in page.text


async def test_creating_shows_the_secret_once_and_the_list_never(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    made = await create(client, csrf, "https://a.example.com/hook", "order.created", "tracking.updated")
    assert made.status_code == 200, made.text
    (secret,) = SECRET.findall(made.text)
    assert "it will not be shown again" in made.text
    (row,) = await endpoints(hub, acme)
    assert row.event_types == ["order.created", "tracking.updated"] and row.enabled
    assert wh.open_secret(hub.vault, row) == secret
    listed = await client.get("/webhooks")
    assert "https://a.example.com/hook" in listed.text and "order.created, tracking.updated" in listed.text
    assert "whsec_" not in listed.text and secret[6:20] not in listed.text
    log = await client.get(f"/webhooks/{row.id}")
    assert log.status_code == 200 and "whsec_" not in log.text
    assert "Nothing has been sent to this endpoint yet" in log.text


async def test_bad_input_is_named_on_the_form_and_nothing_is_made(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    none = await client.post("/webhooks", data={"csrf_token": csrf, "url": "https://a.example.com/h"})
    assert none.status_code == 422
    assert "Events: give at least one event type" in none.text
    assert 'value="https://a.example.com/h"' in none.text  # what was typed stays in the form
    assert await endpoints(hub, acme) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hook", "http://10.1.2.3/hook"])
async def test_a_private_url_is_refused_with_the_reason(
    hub: Hub, acme: Tenant, tmp_path: Any, url: str
) -> None:
    strict = strict_hub(hub, tmp_path)
    transport = httpx.ASGITransport(app=create_app(strict))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        csrf = await signed_in(client, strict, acme)
        refused = await create(client, csrf, url)
    assert refused.status_code == 422
    assert "URL: " in refused.text and "CROSSDOCK_ALLOW_PRIVATE_URLS" in refused.text
    assert "whsec_" not in refused.text
    assert await endpoints(hub, acme) == []


async def test_disable_enable_rotate_and_delete_after_confirming(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    await create(client, csrf, "https://a.example.com/hook")
    (row,) = await endpoints(hub, acme)
    first_secret = wh.open_secret(hub.vault, row)

    off = await client.post(f"/webhooks/{row.id}/disable", data={"csrf_token": csrf})
    assert off.status_code == 303 and off.headers["location"].startswith("/webhooks?notice=")
    (row,) = await endpoints(hub, acme)
    assert not row.enabled and row.disabled_reason == "disabled by its owner"
    assert "disabled by its owner" in (await client.get("/webhooks")).text
    on = await client.post(f"/webhooks/{row.id}/enable", data={"csrf_token": csrf})
    assert on.status_code == 303
    (row,) = await endpoints(hub, acme)
    assert row.enabled and row.disabled_reason is None

    rotated = await client.post(f"/webhooks/{row.id}/rotate-secret", data={"csrf_token": csrf})
    assert rotated.status_code == 200
    (secret,) = SECRET.findall(rotated.text)
    (row,) = await endpoints(hub, acme)
    assert secret != first_secret and wh.open_secret(hub.vault, row) == secret
    assert "it will not be shown again" in rotated.text and "previous secret as well" in rotated.text

    confirm = await client.get(f"/webhooks/{row.id}/delete")
    assert confirm.status_code == 200 and "Delete this endpoint?" in confirm.text
    assert (await endpoints(hub, acme)) != []
    gone = await client.post(f"/webhooks/{row.id}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert await endpoints(hub, acme) == []
    assert "No webhook endpoints yet" in (await client.get(gone.headers["location"])).text


async def test_the_log_pages_newest_first_with_each_attempt(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossdock.web import pages_webhooks

    monkeypatch.setattr(pages_webhooks, "PAGE_SIZE", 2)
    csrf = await signed_in(client, hub, acme)
    await create(client, csrf, "https://a.example.com/hook")
    (row,) = await endpoints(hub, acme)
    ids = [await emit_one(hub, acme, "order.created", n=n) for n in range(3)]
    failing = httpx.MockTransport(lambda request: httpx.Response(503, text="down for maintenance"))
    assert await wh.deliver(hub, ids[0], attempt=1, transport=failing) == "failed"

    first = await client.get(f"/webhooks/{row.id}")
    shown = re.findall(r'id="d-([0-9a-f-]+)"', first.text)
    assert shown == [str(ids[2]), str(ids[1])]
    assert 'data-live="log"' in first.text and "Older deliveries" in first.text
    older_link = re.search(r'href="(/webhooks/[^"]+\?cursor=[^"]+)"', first.text)
    assert older_link
    second = await client.get(older_link.group(1).replace("&amp;", "&"))
    assert re.findall(r'id="d-([0-9a-f-]+)"', second.text) == [str(ids[0])]
    assert "<td>503</td>" in second.text and "the endpoint answered 503" in second.text
    assert re.search(r"<td>\d+ ms</td>", second.text) and "on schedule" in second.text
    assert "Newest deliveries" in second.text
    live = await client.get(f"/webhooks/{row.id}", headers={"X-Live-Block": "log"})
    assert live.status_code == 200 and "<html" not in live.text and str(ids[2]) in live.text
    bad = await client.get(f"/webhooks/{row.id}?cursor=nonsense")
    assert bad.status_code == 400 and "not valid" in bad.text


async def test_redeliver_sends_the_same_webhook_id_again_to_a_loopback_receiver(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    receiver = Receiver()
    with local_server(receiver.app()) as base:
        csrf = await signed_in(client, hub, acme)
        await create(client, csrf, f"{base}/hook")
        (row,) = await endpoints(hub, acme)
        delivery_id = await emit_one(hub, acme)
        pending = await client.get(f"/webhooks/{row.id}")
        assert "Cannot be sent again now: this delivery is already scheduled" in pending.text
        assert await wh.deliver(hub, delivery_id, attempt=1) == "succeeded"

        page = await client.get(f"/webhooks/{row.id}")
        action = f"/webhooks/{row.id}/deliveries/{delivery_id}/redeliver"
        assert f'action="{action}"' in page.text and "Redeliver" in page.text
        sent = await client.post(action, data={"csrf_token": csrf})
        assert (
            sent.status_code == 303 and "same webhook-id" in (await client.get(sent.headers["location"])).text
        )
        again = await client.post(action, data={"csrf_token": csrf})  # a second click while it waits
        assert again.status_code == 409 and "already scheduled" in again.text
        async with hub.db.session() as session:
            jobs = (
                await session.scalars(
                    select(t.Job).where(t.Job.kind == wh.DELIVER_JOB).order_by(t.Job.created_at)
                )
            ).all()
        manual = [j for j in jobs if j.payload["trigger"] == "manual"]
        assert len(manual) == 1 and manual[0].payload == {
            "delivery_id": str(delivery_id),
            "attempt": 2,
            "trigger": "manual",
        }
        assert await wh.deliver(hub, delivery_id, attempt=2, trigger="manual") == "succeeded"

    first, second = receiver.headers
    assert first["webhook-id"] == second["webhook-id"] == f"msg_{delivery_id.hex}"
    log = await client.get(f"/webhooks/{row.id}")
    assert "again by hand" in log.text and log.text.count("<td>204</td>") == 2
    async with hub.db.session() as session:
        deliveries = await session.scalar(select(func.count()).select_from(t.WebhookDelivery))
        attempts = (await session.scalars(select(t.WebhookAttempt).order_by(t.WebhookAttempt.number))).all()
    assert deliveries == 1  # one delivery, its history told by its attempts
    assert [(a.number, a.trigger, a.outcome) for a in attempts] == [
        (1, "schedule", "succeeded"),
        (2, "manual", "succeeded"),
    ]


async def test_every_form_is_refused_without_its_csrf_token(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    await create(client, csrf, "https://a.example.com/hook")
    (row,) = await endpoints(hub, acme)
    secret = wh.open_secret(hub.vault, row)
    delivery_id = await emit_one(hub, acme)
    async with hub.db.transaction() as session:
        delivery = await session.get(t.WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.status = "failed"
    for path, data in [
        ("/webhooks", {"url": "https://b.example.com/hook", "event_types": "*"}),
        (f"/webhooks/{row.id}/disable", {}),
        (f"/webhooks/{row.id}/rotate-secret", {}),
        (f"/webhooks/{row.id}/delete", {}),
        (f"/webhooks/{row.id}/deliveries/{delivery_id}/redeliver", {}),
    ]:
        refused = await client.post(path, data=data)
        assert refused.status_code == 403, path
        assert "Reload the page" in refused.text
    (after,) = await endpoints(hub, acme)
    assert after.enabled and wh.open_secret(hub.vault, after) == secret
    async with hub.db.session() as session:
        delivery = await session.get(t.WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.status == "failed"


async def test_account_a_cannot_see_or_touch_bs_endpoint_or_delivery(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    made = await client.post(API, json={"url": "https://globex.example.com/hook"}, headers=globex.headers)
    assert made.status_code == 201
    theirs = made.json()["id"]
    delivery_id = await emit_one(hub, globex)
    async with hub.db.transaction() as session:
        delivery = await session.get(t.WebhookDelivery, delivery_id)
        assert delivery is not None
        delivery.status = "failed"
    csrf = await signed_in(client, hub, acme)
    listed = await client.get("/webhooks")
    assert "globex.example.com" not in listed.text
    for path in (f"/webhooks/{theirs}", f"/webhooks/{theirs}/delete", "/webhooks/not-a-uuid"):
        page = await client.get(path)
        assert page.status_code == 404 and "does not exist in your account" in page.text, path
        assert "globex.example.com" not in page.text
    for path in (
        f"/webhooks/{theirs}/disable",
        f"/webhooks/{theirs}/rotate-secret",
        f"/webhooks/{theirs}/delete",
        f"/webhooks/{theirs}/deliveries/{delivery_id}/redeliver",
    ):
        assert (await client.post(path, data={"csrf_token": csrf})).status_code == 404, path
    # A's own endpoint with B's delivery: still not found.
    await create(client, csrf, "https://a.example.com/hook")
    (mine,) = await endpoints(hub, acme)
    crossed = await client.post(
        f"/webhooks/{mine.id}/deliveries/{delivery_id}/redeliver", data={"csrf_token": csrf}
    )
    assert crossed.status_code == 404
    (row,) = await endpoints(hub, globex)
    assert row.enabled and row.url == "https://globex.example.com/hook"
    async with hub.db.session() as session:
        delivery = await session.get(t.WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.status == "failed" and delivery.attempts == 0
