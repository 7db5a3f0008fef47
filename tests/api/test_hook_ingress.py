"""Hooks are answered ahead of FastAPI's routing (api.routes_hooks.HookIngress), exactly as the route answers them:
a hook URL whose id is written otherwise than as a UUID (32 hex digits, say) still goes through FastAPI's route,
so each delivery below is sent both ways and must get the same answer."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI, Request

from crossdock.api.app import create_app
from crossdock.api.deps import get_hub
from crossdock.hub import Hub
from crossdock.store import tables as t
from tests.connectors.test_shopify_mapping import ORDER
from tests.security.test_hook_signatures_e2e import SECRET, count, shopify_connection, signed

BODY = json.dumps(ORDER).encode()


@dataclass
class Routed:
    """The app under test, and the paths of the requests FastAPI's dependency injection served."""

    client: httpx.AsyncClient
    app: FastAPI
    through_fastapi: list[str]


@pytest.fixture
async def routed(hub: Hub) -> AsyncIterator[Routed]:
    app = create_app(hub)
    served: list[str] = []

    async def counted_hub(request: Request) -> Hub:
        served.append(request.url.path)
        return hub

    app.dependency_overrides[get_hub] = counted_hub
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hub.test"
    ) as client:
        yield Routed(client, app, served)


async def test_a_signed_delivery_is_stored_without_fastapi_routing_it(hub: Hub, routed: Routed) -> None:
    connection = await shopify_connection(hub, "Acme", SECRET)
    answer = await routed.client.post(f"/hooks/{connection}", content=BODY, headers=signed(BODY, "w-1"))
    assert answer.status_code == 200 and answer.json()["stored"] is True
    assert routed.through_fastapi == []
    # Written as 32 hex digits, the same connection's hook goes through FastAPI's route, and is stored alike.
    other = await routed.client.post(f"/hooks/{connection.hex}", content=BODY, headers=signed(BODY, "w-2"))
    assert other.status_code == 200 and other.json()["stored"] is True
    assert routed.through_fastapi == [f"/hooks/{connection.hex}"]
    assert await count(hub, t.InboxMessage) == 2


async def _both_ways(
    routed: Routed, connection: uuid.UUID, body: bytes, headers: dict[str, str], *, new_ids: bool = False
) -> list[tuple[int, str, object]]:
    """The answers to the delivery sent as written by str(uuid), in capitals (both HookIngress's), and as 32 hex
    digits (FastAPI's route); with `new_ids`, each under a webhook id of its own."""
    answers = []
    for n, written in enumerate((str(connection), str(connection).upper(), connection.hex)):
        sent = {**headers, "X-Shopify-Webhook-Id": f"w-{n}"} if new_ids else headers
        answer = await routed.client.post(f"/hooks/{written}", content=body, headers=sent)
        content = answer.json()
        if isinstance(content, dict) and "instance" in content:
            assert content.pop("instance") == f"/hooks/{written}"
        if isinstance(content, dict) and "inbox_id" in content:
            content.pop("inbox_id")
        answers.append((answer.status_code, answer.headers["content-type"], content))
    return answers


@pytest.mark.parametrize(
    "case",
    [
        "genuine",
        "redelivered",
        "bad signature",
        "no webhook id",
        "topic not imported",
        "unknown connection",
        "too large",
    ],
)
async def test_each_answer_is_the_route_s_answer(hub: Hub, routed: Routed, case: str) -> None:
    connection = await shopify_connection(hub, "Acme", SECRET)
    body, headers = BODY, signed(BODY, f"w-{case}")
    if case == "redelivered":
        await routed.client.post(f"/hooks/{connection}", content=body, headers=headers)
    elif case == "bad signature":
        headers = signed(body, "w-forged", "shpss_guess")
    elif case == "no webhook id":
        headers.pop("X-Shopify-Webhook-Id")
    elif case == "topic not imported":
        headers["X-Shopify-Topic"] = "products/update"
    elif case == "unknown connection":
        connection = uuid.uuid4()
    elif case == "too large":
        body = b" " * (hub.settings.max_body_bytes + 1)
        headers = signed(body, "w-large")
    answers = await _both_ways(routed, connection, body, headers, new_ids=case == "genuine")
    assert answers[0] == answers[1] == answers[2], answers
    status = answers[0][0]
    assert (
        status
        == {
            "genuine": 200,
            "redelivered": 200,
            "bad signature": 401,
            "no webhook id": 400,
            "topic not imported": 200,
            "unknown connection": 404,
            "too large": 413,
        }[case]
    )
    if status >= 400:
        assert answers[0][1] == "application/problem+json"


async def test_the_request_metrics_name_the_hook_route_either_way(hub: Hub, routed: Routed) -> None:
    connection = await shopify_connection(hub, "Acme", SECRET)
    prefix = 'crossdock_http_requests_total{method="POST",route="/hooks/{connection_id}",status="401"} '

    def counted(text: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0

    before = counted((await routed.client.get("/metrics")).text)
    forged = signed(BODY, "w-1", "shpss_guess")
    for written in (str(connection), connection.hex):
        assert (
            await routed.client.post(f"/hooks/{written}", content=BODY, headers=forged)
        ).status_code == 401
    assert counted((await routed.client.get("/metrics")).text) == before + 2
