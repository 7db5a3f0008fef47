"""Signatures through the real routes, into the inbox and the worker: a forged, tampered or cross-connection
Shopify delivery is refused with nothing stored; a genuine one replayed (same X-Shopify-Webhook-Id, or the same
body under a new id, as Shopify's own redelivery and an attacker's replay look) is stored once and has one
effect; Shippo deliveries need the connection's token and, where HMAC is provisioned, its signature; a captured
Shippo delivery replayed later is a duplicate.

A supplement, not the proof: the comparisons of secrets in the code that checks signatures and tokens are
constant-time (hmac.compare_digest), asserted by reading the code's syntax tree.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crossdock.api import routes_hooks, routes_myparcelcom
from crossdock.api.app import create_app
from crossdock.flows.tracking import SHIPPO_UPDATE
from crossdock.hub import Hub
from crossdock.security import signatures
from crossdock.security.signatures import shippo_signature, shopify_webhook_signature
from crossdock.store import repo
from crossdock.store import tables as t
from tests.connectors.test_shopify_mapping import ORDER
from tests.engine.support import eventually, fast, running_worker

SECRET = "shpss_e2e_webhook_secret"
OTHER_SECRET = "shpss_e2e_other_shop_secret"
HOOK_TOKEN = "hook-token-e2e-5d1c9a"
HMAC_SECRET = "hmac-secret-e2e-7b2f"


async def shopify_connection(hub: Hub, name: str, secret: str) -> uuid.UUID:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, name)
        tenant = repo.Tenant(session, account.id)
        connection = await tenant.create_connection(connector="shopify", name=f"{name} shop", vault=hub.vault)
        await tenant.set_secret(connection, "api_secret", secret, hub.vault)
    return connection.id


async def shippo_connection(hub: Hub, **secrets: str) -> uuid.UUID:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, "Acme")
        connection = await repo.Tenant(session, account.id).create_connection(
            connector="shippo",
            name="Acme on Shippo",
            vault=hub.vault,
            secrets={"api_token": "shippo_test_e2e", "webhook_token": HOOK_TOKEN, **secrets},
        )
    return connection.id


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub.test"
    ) as c:
        yield c


async def count(hub: Hub, table: Any, *where: Any) -> int:
    async with hub.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def settle(hub: Hub) -> None:
    async def done() -> bool:
        return await count(hub, t.InboxMessage, t.InboxMessage.status == "received") == 0

    async with running_worker(fast(hub)):
        await eventually(done)


def signed(body: bytes, webhook_id: str, secret: str = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": shopify_webhook_signature(body, secret),
        "X-Shopify-Webhook-Id": webhook_id,
    }


async def test_forged_tampered_and_other_shops_shopify_deliveries_are_401_and_store_nothing(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    ours = await shopify_connection(hub, "Acme", SECRET)
    await shopify_connection(hub, "Globex", OTHER_SECRET)
    body = json.dumps(ORDER).encode()
    tampered = json.dumps({**ORDER, "total_price": "0.01"}).encode()
    genuine = signed(body, "w-genuine")
    attempts = {
        "signed with another shop's secret": (body, signed(body, "w-1", OTHER_SECRET)),
        "signed with a guessed secret": (body, signed(body, "w-2", "shpss_guess")),
        "a genuine signature over another body": (tampered, genuine),
        "no signature": (body, {k: v for k, v in genuine.items() if k != "X-Shopify-Hmac-Sha256"}),
        "an empty signature": (body, {**genuine, "X-Shopify-Hmac-Sha256": ""}),
        "hex instead of base64": (body, {**genuine, "X-Shopify-Hmac-Sha256": "ab" * 32}),
        "signed with an empty secret": (body, signed(body, "w-3", "")),
    }
    for what, (content, headers) in attempts.items():
        response = await client.post(f"/hooks/{ours}", content=content, headers=headers)
        assert response.status_code == 401, what
        assert response.headers["content-type"].startswith("application/problem+json"), what
        assert SECRET not in response.text and OTHER_SECRET not in response.text
    assert await count(hub, t.InboxMessage) == 0
    assert await count(hub, t.Job) == 0
    # The same genuine delivery still goes in.
    assert (await client.post(f"/hooks/{ours}", content=body, headers=genuine)).status_code == 200
    assert await count(hub, t.InboxMessage) == 1


async def test_a_replayed_shopify_delivery_is_stored_once_and_has_one_effect(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    connection = await shopify_connection(hub, "Acme", SECRET)
    body = json.dumps(ORDER).encode()
    url = f"/hooks/{connection}"
    first = await client.post(url, content=body, headers=signed(body, "w-1"))
    same_id = await client.post(url, content=body, headers=signed(body, "w-1"))
    assert (first.status_code, same_id.status_code) == (200, 200)
    assert (first.json()["duplicate"], same_id.json()["duplicate"]) == (False, True)
    await settle(hub)
    # Replayed later under a new delivery id (a captured body re-sent): stored, and changes nothing.
    new_id = await client.post(url, content=body, headers=signed(body, "w-replay"))
    assert new_id.status_code == 200
    await settle(hub)

    async with hub.db.session() as session:
        orders = (await session.scalars(select(t.Order))).all()
        rows = (await session.scalars(select(t.InboxMessage).order_by(t.InboxMessage.received_at))).all()
        kinds = (await session.scalars(select(t.TimelineEvent.kind))).all()
    assert len(orders) == 1 and orders[0].external_id == str(ORDER["id"])
    assert [r.dedup_key for r in rows if r.status != "duplicate"] == ["w-1", "w-replay"]
    assert sorted(r.status for r in rows) == ["duplicate", "processed", "processed"]
    # One arrival on the timeline and no change after it.
    assert [k for k in kinds if k.startswith("order.")] == ["order.imported"]
    assert await count(hub, t.Binding) == 1


async def test_shippo_hooks_need_the_token_and_where_provisioned_the_hmac(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    connection = await shippo_connection(hub, webhook_hmac_secret=HMAC_SECRET)
    body = json.dumps(
        {"event": "track_updated", "test": True, "data": {"carrier": "usps", "tracking_number": "9400"}}
    ).encode()
    now = int(time.time())
    good = {"Shippo-Auth-Signature": shippo_signature(body, HMAC_SECRET, now)}
    refused = [
        (None, good),  # no token
        ("wrong", good),
        (HOOK_TOKEN.upper(), good),
        (HOOK_TOKEN, {}),  # no signature
        (HOOK_TOKEN, {"Shippo-Auth-Signature": shippo_signature(body, "not-the-secret", now)}),
        (HOOK_TOKEN, {"Shippo-Auth-Signature": shippo_signature(body + b" ", HMAC_SECRET, now)}),
        (
            HOOK_TOKEN,
            {"Shippo-Auth-Signature": good["Shippo-Auth-Signature"].replace(f"t={now}", f"t={now + 1}")},
        ),
        (HOOK_TOKEN, {"Shippo-Auth-Signature": f"t={now},v1="}),
        (HOOK_TOKEN, {"Shippo-Auth-Signature": "garbage"}),
    ]
    for token, headers in refused:
        params = {"token": token} if token is not None else {}
        response = await client.post(f"/hooks/{connection}", params=params, content=body, headers=headers)
        assert response.status_code == 401, (token, headers)
        assert HOOK_TOKEN not in response.text and HMAC_SECRET not in response.text
    assert await count(hub, t.InboxMessage) == 0
    accepted = await client.post(
        f"/hooks/{connection}", params={"token": HOOK_TOKEN}, content=body, headers=good
    )
    assert accepted.status_code == 200 and accepted.json()["duplicate"] is False


async def test_a_captured_shippo_delivery_replayed_later_is_a_duplicate(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    """The HMAC has no time window (its scheme is not published by Shippo, and a retry may carry its first
    timestamp): a day-old signed delivery is accepted as genuine, and its body, already stored, makes it a
    duplicate with no effect."""
    connection = await shippo_connection(hub, webhook_hmac_secret=HMAC_SECRET)
    body = json.dumps(
        {"event": "track_updated", "test": True, "data": {"carrier": "usps", "tracking_number": "9401"}}
    ).encode()
    captured = {"Shippo-Auth-Signature": shippo_signature(body, HMAC_SECRET, int(time.time()) - 86_400)}
    url = f"/hooks/{connection}?token={HOOK_TOKEN}"
    first = await client.post(url, content=body, headers=captured)
    replayed = await client.post(url, content=body, headers=copy.deepcopy(captured))
    assert (first.json()["duplicate"], replayed.json()["duplicate"]) == (False, True)
    kinds = await count(
        hub, t.InboxMessage, t.InboxMessage.kind == SHIPPO_UPDATE, t.InboxMessage.status != "duplicate"
    )
    assert kinds == 1
    assert await count(hub, t.Job) == 1


# -- a supplement: secrets are compared in constant time ----------------------------------------------------
def _compare_digest_calls(function: Any) -> int:
    tree = ast.parse(inspect.getsource(function).lstrip())
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compare_digest"
    )


def _secret_equalities(function: Any) -> list[str]:
    """`==`/`!=` comparisons in `function` that involve a name that looks like a secret, signature or token."""
    words = ("secret", "signature", "hmac", "token", "expected", "received", "given", "presented", "digest")
    found = []
    for node in ast.walk(ast.parse(inspect.getsource(function).lstrip())):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            names = {n.id.lower() for n in ast.walk(node) if isinstance(n, ast.Name)}
            if any(w in name for name in names for w in words):
                found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize(
    "function",
    [
        signatures.verify_shopify_webhook,
        signatures.check_shopify_oauth_query,
        signatures.verify_shippo_signature,
        routes_hooks._shippo_hook,
        routes_myparcelcom._same_secret,
        routes_myparcelcom._link,
    ],
    ids=lambda f: f.__name__,
)
def test_secret_comparisons_are_constant_time(function: Any) -> None:
    assert _compare_digest_calls(function) >= 1
    assert _secret_equalities(function) == []
