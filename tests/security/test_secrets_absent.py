"""Secrets stay in the vault: after a realistic run, no secret value is in any log line, API answer, panel page,
stored error or database row.

The run: a Shopify connection made through the REST API with an access token and the app's API secret, its
orders pulled from the Shopify sandbox by the worker, a signed order webhook; a second connection whose remote
answers every call 401 with the request's headers (the access token among them) echoed in its error body, pulled
too, so its failure is stored on the job, the remote-call records and the connection; an outbound webhook
endpoint (its signing secret); a panel user signed in with a password (its session cookie); the API token.

Then every API answer and panel page seen, everything logged (structlog's lines and stdlib records), and a dump of
the database (SQLite's iterdump; on PostgreSQL every row of every table as text) are searched for each secret, as
text and, for binary columns, as hex.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crossdock.api.app import create_app
from crossdock.engine.sync import request_sync
from crossdock.hub import Hub
from crossdock.logs import configure_logging
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig
from crossdock.security.signatures import shopify_webhook_signature
from crossdock.store import tables as t
from crossdock.web.sessions import COOKIE as PANEL_COOKIE
from tests.connectors.test_shopify_mapping import ORDER
from tests.engine.remote_support import local_server
from tests.engine.support import eventually, fast, running_worker
from tests.support import Tenant
from tests.web.support import PASSWORD, make_user, sign_in

SHOP = "secrets-test.myshopify.com"
ACCESS_TOKEN = "shpat_ACCESS_0c1d2e3f4a5b6c7d8e9f"
API_SECRET = "shpss_APISECRET_9f8e7d6c5b4a"
ECHOED_TOKEN = "shpat_ECHOED_77aa88bb99cc"


@pytest.fixture
def shop() -> Iterator[str]:
    config = SandboxConfig(
        seed=5, orders=8, token=ACCESS_TOKEN, client_secret=API_SECRET, extra={"shop": SHOP}
    )
    with local_server(create_sandbox_app("shopify", config)) as url:
        yield url


def echoing_app() -> Starlette:
    """A remote that refuses every call and repeats the request's headers in its error, as some APIs do."""

    async def refuse(request: Request) -> Response:
        headers = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
        return JSONResponse({"errors": f"[API] Invalid API key or access token (request: {headers})"}, 401)

    return Starlette(routes=[Route("/{path:path}", refuse, methods=["GET", "POST", "PUT"])])


async def database_dump(hub: Hub) -> str:
    """Every row of every table as text."""
    if hub.db.dialect == "sqlite":
        async with hub.db.engine.connect() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        db = sqlite3.connect(hub.settings.home / "crossdock.db")
        try:
            return "\n".join(db.iterdump())
        finally:
            db.close()
    lines: list[str] = []
    async with hub.db.engine.connect() as conn:
        for table in t.Base.metadata.sorted_tables:
            rows = await conn.execute(text(f'SELECT r::text FROM "{table.name}" r'))
            lines.extend(row[0] for row in rows)
    return "\n".join(lines)


def leaks(secret: str, haystack: str) -> bool:
    raw = secret.encode()
    return any(form in haystack for form in (secret, raw.hex(), raw.hex().upper()))


async def test_no_secret_is_in_logs_answers_pages_errors_or_the_database(
    hub: Hub,
    acme: Tenant,
    shop: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_logging("DEBUG")
    caplog.set_level("DEBUG")
    seen: list[str] = []  # every answer and page
    app = create_app(hub)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as api:

        async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = await api.request(method, path, headers=acme.headers, **kwargs)
            seen.append(f"{method} {path} -> {response.status_code} {dict(response.headers)} {response.text}")
            return response

        made = await call(
            "POST",
            "/api/v1/connections",
            json={
                "connector": "shopify",
                "name": "Shop",
                "settings": {"shop": SHOP},
                "secrets": {"access_token": ACCESS_TOKEN, "api_secret": API_SECRET},
                "base_url": shop,
            },
        )
        assert made.status_code == 201, made.text
        connection_id = uuid.UUID(made.json()["id"])
        with local_server(echoing_app()) as echo:
            failing = await call(
                "POST",
                "/api/v1/connections",
                json={
                    "connector": "shopify",
                    "name": "Echoing shop",
                    "settings": {"shop": "echo.myshopify.com"},
                    "secrets": {"access_token": ECHOED_TOKEN, "api_secret": "shpss_echo_secret"},
                    "base_url": echo,
                },
            )
            assert failing.status_code == 201, failing.text
            failing_id = uuid.UUID(failing.json()["id"])
            # The pull of both, through the queue and a worker.
            async with hub.db.transaction() as session:
                for cid in (connection_id, failing_id):
                    await request_sync(session, account_id=uuid.UUID(acme.id), connection_id=cid)

            async def pulled() -> bool:
                async with hub.db.session() as session:
                    jobs = (await session.scalars(select(t.Job))).all()
                return len(jobs) >= 2 and all(j.status in {"succeeded", "failed", "dead"} for j in jobs)

            async with running_worker(fast(hub)):
                await eventually(pulled)
                body = json.dumps(ORDER).encode()
                hook = await api.post(
                    f"/hooks/{connection_id}",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-Shopify-Topic": "orders/create",
                        "X-Shopify-Hmac-Sha256": shopify_webhook_signature(body, API_SECRET),
                        "X-Shopify-Webhook-Id": "w-secrets-1",
                    },
                )
                seen.append(hook.text)
                assert hook.status_code == 200, hook.text

                async def hooked() -> bool:
                    async with hub.db.session() as session:
                        row = (await session.scalars(select(t.InboxMessage))).one()
                    return row.status != "received"

                await eventually(hooked)

        endpoint = await api.post(
            "/api/v1/webhook-endpoints", json={"url": "https://hooks.example.com/in"}, headers=acme.headers
        )
        assert endpoint.status_code == 201
        endpoint_secret = endpoint.json()["secret"]  # shown once, on purpose: not added to `seen`

        for path in (
            "/api/v1/connections",
            f"/api/v1/connections/{connection_id}",
            f"/api/v1/connections/{failing_id}",
            "/api/v1/jobs?limit=50",
            "/api/v1/sync-runs",
            "/api/v1/orders?limit=50",
            "/api/v1/webhook-endpoints",
        ):
            answer = await call("GET", path)
            assert answer.status_code == 200, (path, answer.text)
            if path.startswith("/api/v1/orders"):
                assert len(answer.json()["items"]) == 9  # the sandbox's 8 pulled, and the webhook's

    # The panel, signed in with a password.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hub.test"
    ) as browser:
        email = await make_user(hub, acme)
        assert (await sign_in(browser, email)).status_code == 303
        session_cookie = browser.cookies[PANEL_COOKIE]
        for path in ("/connections", "/failures", "/webhooks", "/orders", "/"):
            page = await browser.get(path)
            assert page.status_code == 200, (path, page.text[:300])
            seen.append(page.text)
        assert "Echoing shop" in "".join(seen)

    # What the failing pull kept: the remote's words, without the token it echoed.
    async with hub.db.session() as session:
        errors = [c.error or "" for c in (await session.scalars(select(t.RemoteCall))).all()]
        echoing = await session.get(t.Connection, failing_id)
    assert echoing is not None and echoing.status == "needs_reauth"
    assert any("Invalid API key or access token" in e for e in errors), errors
    seen.append(echoing.status_reason or "")

    out = capsys.readouterr()
    logged = "\n".join([out.out, out.err, caplog.text])
    assert "remote call" in logged  # the run was logged at all
    dump = await database_dump(hub)
    assert str(connection_id) in dump and "Invalid API key or access token" in dump

    secrets = {
        "access token": ACCESS_TOKEN,
        "API secret (webhook signing)": API_SECRET,
        "echoed access token": ECHOED_TOKEN,
        "outbound webhook secret": endpoint_secret,
        "panel password": PASSWORD,
        "panel session cookie": session_cookie,
        "API token": acme.headers["Authorization"].split()[-1],
    }
    found = [
        f"{name} in {where}"
        for name, value in secrets.items()
        for where, haystack in (("logs", logged), ("answers and pages", "\n".join(seen)), ("database", dump))
        if leaks(value, haystack)
    ]
    assert found == []
