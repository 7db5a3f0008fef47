"""The HTTP client layer: the status-to-action table row by row, Retry-After, the POST rule, token refresh,
records in remote_calls and on the timeline, secrets kept out of records and logs, the outbound URL check."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import REGISTRY
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crossdock import model as m
from crossdock.engine.errors import ConfigurationError, PermanentError, RateLimited, RetryableError
from crossdock.engine.http import (
    Action,
    RemoteClient,
    RemotePermanentError,
    Target,
    Timeouts,
    action_for,
    prune_remote_calls,
    remote_words,
)
from crossdock.engine.ratelimit import parse_retry_after
from crossdock.hub import Hub
from crossdock.logs import configure_logging
from crossdock.security.urls import UnsafeURL
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from tests.engine.remote_support import Owner, local_server, new_owner, strict_hub
from tests.engine.support import statements_sent

BASE = "https://shop.example.com"
TOKEN = "shpat_0123456789abcdef0123456789abcdef"


class Sleeps:
    """Records the waits instead of waiting (no timing in unit tests)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(
    hub: Hub,
    owner: Owner,
    handler: Callable[[httpx.Request], httpx.Response],
    **kwargs: Any,
) -> tuple[RemoteClient, Sleeps]:
    sleeps = Sleeps()
    client = RemoteClient(
        hub,
        Target(owner.account_id, "shopify", owner.connection_id),
        base_url=BASE,
        transport=httpx.MockTransport(handler),
        sleep=sleeps,
        **kwargs,
    )
    return client, sleeps


async def calls(hub: Hub) -> list[t.RemoteCall]:
    async with hub.db.session() as session:
        return list((await session.scalars(select(t.RemoteCall).order_by(t.RemoteCall.at))).all())


def answer(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> Callable[..., httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handler


@pytest.fixture
async def owner(hub: Hub) -> Owner:
    return await new_owner(hub)


# The table -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "action"),
    [
        (200, Action.OK),
        (201, Action.OK),
        (204, Action.OK),
        (400, Action.PERMANENT),
        (404, Action.PERMANENT),
        (422, Action.PERMANENT),
        (401, Action.CONFIGURATION),
        (403, Action.CONFIGURATION),
        (408, Action.RETRY),
        (500, Action.RETRY),
        (502, Action.RETRY),
        (503, Action.RETRY),
        (429, Action.RATE_LIMITED),
    ],
)
def test_status_maps_to_the_designed_action(status: int, action: Action) -> None:
    assert action_for(status) is action


async def test_2xx_returns_the_response_and_records_the_call(hub: Hub, owner: Owner) -> None:
    client, _ = make_client(hub, owner, answer(200, {"shop": {"id": 1}}))
    async with client:
        response = await client.get("/admin/api/2025-01/shop.json", operation="shop")
    assert response.json() == {"shop": {"id": 1}}
    (row,) = await calls(hub)
    assert (row.method, row.status, row.error_kind, row.operation) == ("GET", 200, None, "shop")
    assert row.url == f"{BASE}/admin/api/2025-01/shop.json"
    assert row.connection_id == owner.connection_id and row.account_id == owner.account_id


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (400, {"errors": "Bad Request"}, "Bad Request"),
        (404, {"errors": "Not Found"}, "Not Found"),
        (422, {"errors": {"line_items": ["is invalid"]}}, "line_items: is invalid"),
        (
            400,
            {"errors": [{"code": "InvalidInput", "message": "Invalid MarketplaceId"}]},
            "Invalid MarketplaceId",
        ),
        (422, {"errors": [{"title": "Invalid", "detail": "street_1 missing"}]}, "street_1 missing"),
        (404, {"code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID."}, "Invalid ID."),
        (400, {"error": {"code": "ADDRESS.VERIFY", "message": "Unable to verify"}}, "Unable to verify"),
    ],
)
async def test_400_404_422_are_permanent_and_carry_the_remotes_words(
    hub: Hub, owner: Owner, status: int, body: Any, words: str
) -> None:
    client, sleeps = make_client(hub, owner, answer(status, body))
    async with client:
        with pytest.raises(PermanentError) as caught:
            await client.get("/orders/1.json")
    assert words in caught.value.message
    assert f"HTTP {status}" in caught.value.message
    assert sleeps.waits == []  # never retried
    (row,) = await calls(hub)
    assert (row.status, row.error_kind) == (status, "permanent")


async def test_401_refreshes_the_token_once_then_succeeds(hub: Hub, owner: Owner) -> None:
    class Auth:
        token = "old"
        refreshes = 0

        async def authorize(self, request: httpx.Request) -> None:
            request.headers["X-Shopify-Access-Token"] = self.token

        async def refresh(self) -> bool:
            self.refreshes += 1
            self.token = "new"
            return True

    def handler(request: httpx.Request) -> httpx.Response:
        ok = request.headers["X-Shopify-Access-Token"] == "new"
        return httpx.Response(200 if ok else 401, json={} if ok else {"errors": "Invalid API key"})

    auth = Auth()
    client, _ = make_client(hub, owner, handler, auth=auth)
    async with client:
        response = await client.get("/shop.json")
    assert response.status_code == 200 and auth.refreshes == 1
    assert [c.status for c in await calls(hub)] == [401, 200]


@pytest.mark.parametrize("status", [401, 403])
async def test_401_403_after_one_refresh_is_a_configuration_error_and_the_connection_needs_reauth(
    hub: Hub, owner: Owner, status: int
) -> None:
    class Auth:
        refreshes = 0

        async def authorize(self, request: httpx.Request) -> None:
            request.headers["X-Shopify-Access-Token"] = TOKEN

        async def refresh(self) -> bool:
            self.refreshes += 1
            return True

    auth = Auth()
    body = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    client, _ = make_client(hub, owner, answer(status, body), auth=auth)
    async with client:
        with pytest.raises(ConfigurationError) as caught:
            await client.get("/shop.json")
    assert auth.refreshes == 1
    assert "Invalid API key" in caught.value.message and TOKEN not in caught.value.message
    async with hub.db.session() as session:
        connection = await session.get(t.Connection, owner.connection_id)
    assert connection is not None and connection.status == "needs_reauth"
    assert connection.status_reason and "Invalid API key" in connection.status_reason


@pytest.mark.parametrize("status", [401, 403])
async def test_the_connectors_reauth_hint_reaches_the_error_and_the_connections_reason(
    hub: Hub, owner: Owner, status: int
) -> None:
    class Auth:
        async def authorize(self, request: httpx.Request) -> None:
            request.headers["X-Shopify-Access-Token"] = TOKEN

        async def refresh(self) -> bool:
            return False

    def hint(refused: int | None) -> str:
        return f"paste a new token ({refused})"

    client, _ = make_client(hub, owner, answer(status, {"errors": "nope"}), auth=Auth(), reauth_hint=hint)
    async with client:
        with pytest.raises(ConfigurationError) as caught:
            await client.get("/shop.json")
    assert caught.value.message.endswith(f". paste a new token ({status})")
    async with hub.db.session() as session:
        connection = await session.get(t.Connection, owner.connection_id)
    assert connection is not None and connection.status == "needs_reauth"
    assert connection.status_reason == caught.value.message


async def test_a_403_to_a_request_the_auth_hook_does_not_sign_leaves_the_credentials_alone(
    hub: Hub, owner: Owner
) -> None:
    """An expired signed link on a file host answers 403; the connection's token was never sent there."""

    class ApiOnly:
        refreshes = 0

        def signs(self, request: httpx.Request) -> bool:
            return request.url.host == "api.example.com"

        async def authorize(self, request: httpx.Request) -> None:
            if self.signs(request):
                request.headers["X-Shopify-Access-Token"] = TOKEN

        async def refresh(self) -> bool:
            self.refreshes += 1
            return True

    auth = ApiOnly()
    client, _ = make_client(hub, owner, answer(403, {"message": "Request has expired"}), auth=auth)
    async with client:
        with pytest.raises(RemotePermanentError) as caught:
            await client.get("https://files.example.com/label.pdf?X-Amz-Signature=abc")
    assert auth.refreshes == 0
    assert "carried none of the connection's credentials" in caught.value.message
    assert "fetch the object that gave the link again" in caught.value.message
    async with hub.db.session() as session:
        connection = await session.get(t.Connection, owner.connection_id)
    assert connection is not None and connection.status == "active"
    assert [c.error_kind for c in await calls(hub)] == ["permanent"]


@pytest.mark.parametrize("status", [408, 500, 502, 503])
async def test_408_and_5xx_are_retried_then_raise_retryable(hub: Hub, owner: Owner, status: int) -> None:
    client, sleeps = make_client(hub, owner, answer(status, {"errors": "Internal Server Error"}), attempts=3)
    async with client:
        with pytest.raises(RetryableError) as caught:
            await client.get("/orders.json")
    assert not isinstance(caught.value, RateLimited)
    assert len(sleeps.waits) == 2  # three tries, two waits between them
    assert [c.error_kind for c in await calls(hub)] == ["retryable"] * 3


async def test_a_5xx_then_2xx_succeeds_within_the_call(hub: Hub, owner: Owner) -> None:
    answers = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={})

    client, sleeps = make_client(hub, owner, handler)
    async with client:
        assert (await client.get("/orders.json")).status_code == 200
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_is_rate_limited_and_honours_retry_after(hub: Hub, owner: Owner, form: str) -> None:
    value = (
        "2.0"
        if form == "seconds"
        else format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    )
    client, sleeps = make_client(
        hub, owner, answer(429, {"errors": "Exceeded 2 calls per second"}, {"Retry-After": value}), attempts=2
    )
    async with client:
        with pytest.raises(RateLimited) as caught:
            await client.get("/orders.json")
    assert "Exceeded 2 calls per second" in caught.value.message
    assert caught.value.retry_after is not None
    if form == "seconds":
        # Slept the short wait inline once, then handed back to the job queue with the remote's wait.
        assert sleeps.waits == [2.0] and caught.value.retry_after == 2.0
    else:
        # 30 s is more than the client sleeps inline: straight back to the queue.
        assert sleeps.waits == [] and 25 <= caught.value.retry_after <= 30
    assert {c.error_kind for c in await calls(hub)} == {"rate_limited"}


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("2.0", now=now) == 2.0
    assert parse_retry_after("Mon, 05 Jan 2026 12:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Mon, 05 Jan 2026 11:00:00 GMT", now=now) == 0.0  # in the past: go now
    assert parse_retry_after("-5", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None and parse_retry_after("") is None


async def test_connection_errors_and_timeouts_are_retried(hub: Hub, owner: Owner) -> None:
    faults = iter([httpx.ConnectError("connection refused"), httpx.ReadTimeout("timed out")])

    def handler(request: httpx.Request) -> httpx.Response:
        fault = next(faults, None)
        if fault is not None:
            raise fault
        return httpx.Response(200, json={})

    client, sleeps = make_client(hub, owner, handler, attempts=3)
    async with client:
        assert (await client.get("/orders.json")).status_code == 200
    assert [c.error_kind for c in await calls(hub)] == ["connection", "timeout", None]
    assert len(sleeps.waits) == 2


async def test_a_real_server_that_answers_too_slowly_is_a_read_timeout(hub: Hub, owner: Owner) -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        try:
            await asyncio.wait_for(release.wait(), timeout=5)
        except TimeoutError:
            pass
        return JSONResponse({})

    async def fine(request: Request) -> Response:
        return JSONResponse({"ok": True}, status_code=201)

    app = Starlette(routes=[Route("/slow", slow), Route("/fine", fine, methods=["POST"])])
    with local_server(app) as url:
        client = RemoteClient(
            hub,
            Target(owner.account_id, "shopify", owner.connection_id),
            base_url=url,
            timeouts=Timeouts(connect_s=2, read_s=0.2, total_s=3),
            attempts=1,
        )
        async with client:
            assert (await client.post("/fine", json={})).status_code == 201
            with pytest.raises(RetryableError) as caught:
                await client.get("/slow")
    assert "read timeout" in caught.value.message
    assert [c.error_kind for c in await calls(hub)] == [None, "timeout"]


def client_to_a_closed_port(hub: Hub, owner: Owner) -> RemoteClient:
    """A client (one try a call) whose base URL is a loopback port nobody listens on any more."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return RemoteClient(
        hub,
        Target(owner.account_id, "shopify", owner.connection_id),
        base_url=f"http://127.0.0.1:{port}",
        attempts=1,
    )


async def test_a_refused_connection_to_a_real_port_is_retryable(hub: Hub, owner: Owner) -> None:
    client = client_to_a_closed_port(hub, owner)
    async with client:
        with pytest.raises(RetryableError) as caught:
            await client.get("/orders.json")
    assert "could not reach shopify" in caught.value.message


# The POST rule ----------------------------------------------------------------------------------------------
async def test_a_post_without_idempotency_key_is_not_retried_after_a_5xx(hub: Hub, owner: Owner) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(502, text="Bad Gateway")

    client, sleeps = make_client(hub, owner, handler)
    async with client:
        with pytest.raises(PermanentError) as caught:
            await client.post("/fulfillments.json", json={"fulfillment": {}})
    assert len(seen) == 1 and sleeps.waits == []
    assert "outcome is unknown" in caught.value.message


async def test_a_post_with_an_idempotency_key_is_retried_with_the_same_key(hub: Hub, owner: Owner) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Idempotency-Key"])
        return httpx.Response(201 if len(seen) == 3 else 500, json={})

    client, _ = make_client(hub, owner, handler)
    async with client:
        response = await client.post("/shipments", json={}, idempotency_key="order-1/parcel-1")
    assert response.status_code == 201 and seen == ["order-1/parcel-1"] * 3


async def test_a_post_whose_object_is_looked_up_first_is_left_to_the_jobs_retry(
    hub: Hub, owner: Owner
) -> None:
    """lookup_first: the caller looks the object up before trying again, so the failure is retryable, but the
    client does not send the POST a second time itself (that would skip the lookup)."""
    client, _ = make_client(hub, owner, answer(500, {}), attempts=3)
    async with client:
        with pytest.raises(RetryableError):
            await client.post("/fulfillments.json", json={}, lookup_first=True)
    assert len(await calls(hub)) == 1


async def test_a_post_that_never_connected_or_was_throttled_is_retried_without_a_key(
    hub: Hub, owner: Owner
) -> None:
    faults: list[Any] = [httpx.ConnectError("refused"), 429]

    def handler(request: httpx.Request) -> httpx.Response:
        fault = faults.pop(0) if faults else None
        if isinstance(fault, Exception):
            raise fault
        if fault == 429:
            return httpx.Response(429, headers={"Retry-After": "1"})
        return httpx.Response(201, json={})

    client, _ = make_client(hub, owner, handler)
    async with client:
        assert (await client.post("/orders", json={})).status_code == 201


# Records, timeline, secrets, URL check -------------------------------------------------------------------------
async def test_a_call_for_an_order_lands_on_its_timeline(hub: Hub, owner: Owner) -> None:
    async with hub.db.transaction() as session:
        order = m.Order(
            currency="EUR",
            lines=[m.OrderLine(sku="MUG-1", title="Mug", quantity=1)],
        )
        row = await repo.Tenant(session, owner.account_id).create_order(order)
    client, _ = make_client(hub, owner, answer(422, {"errors": {"tracking_number": ["is invalid"]}}))
    async with client:
        with pytest.raises(PermanentError), statements_sent(hub) as sent:
            await client.post("/fulfillments.json", json={}, order_id=row.id)
    # On PostgreSQL the call's record and its event are one statement (the call in a WITH query).
    writes = [sql for sql in sent if "remote_calls" in sql or "timeline_events" in sql]
    assert len(writes) == (1 if hub.db.dialect == "postgresql" else 2)
    async with hub.db.session() as session:
        events = await repo.Tenant(session, owner.account_id).timeline(row.id)
    remote = [e for e in events if e.kind == "remote.call"]
    assert len(remote) == 1
    assert "tracking_number: is invalid" in remote[0].summary and remote[0].severity == "warning"
    assert remote[0].detail["status"] == 422
    (call,) = await calls(hub)
    assert call.order_id == row.id


async def test_secrets_stay_out_of_remote_calls_errors_and_logs(
    hub: Hub, owner: Owner, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_query = "cs_9f8e7d6c5b4a39281706f5e4d3c2b1a0"

    class Auth:
        async def authorize(self, request: httpx.Request) -> None:
            request.headers["Authorization"] = f"Bearer {TOKEN}"

        async def refresh(self) -> bool:
            return False

    def handler(request: httpx.Request) -> httpx.Response:
        # A careless remote that echoes the credentials back in its error.
        return httpx.Response(400, json={"message": f"bad request for token {TOKEN} key {secret_query}"})

    configure_logging("DEBUG", "json")
    caplog.set_level(logging.DEBUG)
    try:
        client, _ = make_client(hub, owner, handler, auth=Auth(), secrets=[TOKEN])
        async with client:
            with pytest.raises(PermanentError) as caught:
                await client.get(
                    "/wp-json/wc/v3/orders",
                    params={"consumer_key": "ck_abc123456", "consumer_secret": secret_query},
                )
            logging.getLogger("httpx").warning(
                "HTTP Request: GET %s", f"{BASE}/x?consumer_secret={secret_query}"
            )
    finally:
        structlog.reset_defaults()
    (row,) = await calls(hub)
    stored = f"{row.url} {row.error}"
    logged = capsys.readouterr().err + caplog.text
    for secret in (TOKEN, secret_query, "ck_abc123456"):
        assert secret not in stored
        assert secret not in caught.value.message
        assert secret not in logged
    assert "consumer_secret=[redacted]" in row.url
    assert "remote call" in logged  # the structured log line was written, redacted


async def test_private_addresses_are_refused_unless_allowed(hub: Hub, owner: Owner, tmp_path: Any) -> None:
    strict = strict_hub(hub, tmp_path)
    reached: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        reached.append(str(request.url))
        return httpx.Response(200, json={})

    for url in ("http://127.0.0.1:8080", "http://169.254.169.254", "http://10.0.0.5", "http://localhost"):
        client = RemoteClient(
            strict,
            Target(owner.account_id, "shopify", owner.connection_id),
            base_url=url,
            transport=httpx.MockTransport(handler),
        )
        async with client:
            with pytest.raises(PermanentError) as caught:
                await client.get("/latest/meta-data/")
        assert "CROSSDOCK_ALLOW_PRIVATE_URLS" in caught.value.message
    assert reached == []
    # The test hub allows private addresses (as CROSSDOCK_ALLOW_PRIVATE_URLS=1 does).
    client, _ = make_client(hub, owner, handler)
    client.base_url = "http://127.0.0.1:8080"
    async with client:
        await client.get("/ok")
    assert reached == ["http://127.0.0.1:8080/ok"]


async def test_metrics_count_calls_by_connector_and_status_and_429s(hub: Hub, owner: Owner) -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before_ok = value("crossdock_remote_calls_total", connector="shopify", status="200")
    before_429 = value("crossdock_remote_rate_limited_total", connector="shopify")
    answers = iter([429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={}, headers={"Retry-After": "0"})

    client, _ = make_client(hub, owner, handler)
    async with client:
        await client.get("/shop.json")
    assert value("crossdock_remote_calls_total", connector="shopify", status="200") == before_ok + 1
    assert value("crossdock_remote_rate_limited_total", connector="shopify") == before_429 + 1


async def test_old_remote_call_records_are_pruned(hub: Hub, owner: Owner) -> None:
    async with hub.db.transaction() as session:
        for age_days in (0, 1, 20, 40):
            session.add(
                t.RemoteCall(
                    account_id=owner.account_id,
                    connector="shopify",
                    method="GET",
                    url=f"{BASE}/{age_days}",
                    duration_ms=1,
                    at=utcnow() - timedelta(days=age_days),
                )
            )
    assert await prune_remote_calls(hub.db, keep_days=14, batch=1) == 2
    assert sorted(c.url for c in await calls(hub)) == [f"{BASE}/0", f"{BASE}/1"]


def test_remote_words_reads_common_error_shapes() -> None:
    def words(body: Any, **kwargs: Any) -> str:
        return remote_words(httpx.Response(400, json=body, **kwargs))

    assert words({"detail": "Token does not exist"}) == "Token does not exist"
    assert (
        words({"error": "invalid_grant", "error_description": "code expired"})
        == "invalid_grant: code expired"
    )
    assert words({"messages": [{"source": "UPS", "code": "", "text": "Invalid ZIP"}]}) == "Invalid ZIP"
    assert remote_words(httpx.Response(502, text="<html><body>Bad gateway</body></html>")) == ""
    assert remote_words(httpx.Response(500, text="upstream failed")) == "upstream failed"


async def test_the_request_goes_to_the_address_that_was_checked(
    hub: Hub, owner: Owner, tmp_path: Any
) -> None:
    """DNS rebinding: the name is resolved once, checked, and the connection goes to that very address."""
    strict = strict_hub(hub, tmp_path)
    answers = {"shop.example.com": ["93.184.216.34"], "rebound.example.com": ["93.184.216.35", "10.0.0.7"]}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client = RemoteClient(
        strict,
        Target(owner.account_id, "shopify", owner.connection_id),
        base_url="https://shop.example.com",
        transport=httpx.MockTransport(handler),
        resolver=lambda host: answers[host],
    )
    async with client:
        await client.get("/admin/api/2025-01/shop.json")
        with pytest.raises(PermanentError) as caught:
            await client.get("https://rebound.example.com/x")
    (request,) = seen
    assert request.url.host == "93.184.216.34" and request.headers["host"] == "shop.example.com"
    assert request.extensions["sni_hostname"] == "shop.example.com"
    assert "10.0.0.7" in caught.value.message
    assert [c.url for c in await calls(hub)] == ["https://shop.example.com/admin/api/2025-01/shop.json"]


async def test_a_name_that_does_not_resolve_is_retried_and_an_internal_name_is_refused(
    hub: Hub, owner: Owner, tmp_path: Any
) -> None:
    strict = strict_hub(hub, tmp_path)

    def no_dns(host: str) -> list[str]:
        raise UnsafeURL(f"host '{host}' does not resolve; check the URL")

    sleeps = Sleeps()
    client = RemoteClient(
        strict,
        Target(owner.account_id, "shopify", owner.connection_id),
        base_url="https://shop.example.com",
        transport=httpx.MockTransport(lambda request: httpx.Response(200)),
        resolver=no_dns,
        sleep=sleeps,
        attempts=2,
    )
    async with client:
        with pytest.raises(RetryableError) as caught:  # even a POST: nothing was sent
            await client.post("/orders.json", json={})
        assert "does not resolve" in caught.value.message and len(sleeps.waits) == 1
        with pytest.raises(PermanentError):
            await client.get("http://metadata.internal/latest")
    assert [c.error_kind for c in await calls(hub)] == ["connection", "connection"]


async def test_a_connections_client_uses_its_base_url_and_shared_limiter(hub: Hub, owner: Owner) -> None:
    from crossdock.engine.ratelimit import SHOPIFY_REST

    async with hub.db.session() as session:
        connection = await session.get(t.Connection, owner.connection_id)
    assert connection is not None
    seen: list[str] = []
    client = RemoteClient.for_connection(
        hub,
        connection,
        default_base_url="https://fallback.example.com",
        policy=SHOPIFY_REST,
        transport=httpx.MockTransport(lambda request: seen.append(str(request.url)) or httpx.Response(200)),
    )
    async with client:
        await client.get("/shop.json", operation="shop")
    assert seen == ["https://fallback.example.com/shop.json"]
    assert client.limiter is not None and client.limiter.connection_id == owner.connection_id
    async with hub.db.session() as session:
        (bucket,) = (await session.scalars(select(t.RateLimit))).all()
    assert (bucket.connection_id, bucket.bucket) == (owner.connection_id, "rest")


# Requests started ahead -------------------------------------------------------------------------------------
async def test_start_returns_once_the_request_has_reached_the_server(hub: Hub, owner: Owner) -> None:
    arrived, release = threading.Event(), threading.Event()

    async def page(request: Request) -> Response:
        arrived.set()
        await asyncio.to_thread(release.wait, 5)
        return JSONResponse({"orders": []})

    app = Starlette(routes=[Route("/orders.json", page)])
    with local_server(app) as url:
        client = RemoteClient(hub, Target(owner.account_id, "shopify", owner.connection_id), base_url=url)
        async with client:
            task = await client.start("GET", "/orders.json", operation="rest")
            # This blocks the event loop: only a request already written (connection opened, rate-limit and
            # outbound checks done) can reach the server meanwhile.
            reached = arrived.wait(5)
            release.set()
            response = await task
    assert reached
    assert response.json() == {"orders": []}
    assert [(c.status, c.operation) for c in await calls(hub)] == [(200, "rest")]


async def test_start_returns_the_failed_call_when_nothing_could_be_sent(hub: Hub, owner: Owner) -> None:
    client = client_to_a_closed_port(hub, owner)
    async with client:
        task = await client.start("GET", "/orders.json")
        assert task.done()
        with pytest.raises(RetryableError) as caught:
            await task
    assert "could not reach shopify" in caught.value.message
