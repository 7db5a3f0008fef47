"""Behaviour of the helpers every sandbox shares (crossdock.sandbox.common)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crossdock.sandbox import SANDBOXES, create_sandbox_app
from crossdock.sandbox.common import (
    DataGen,
    FaultMiddleware,
    Faults,
    FaultSpec,
    SandboxConfig,
    WebhookSender,
    minor_units,
    run_in_thread,
)

# -- fault spec --------------------------------------------------------------------------------------------


def test_fault_spec_parses_every_key() -> None:
    spec = FaultSpec.parse(
        "latency=50ms,5xx=0.2,429=0.1,timeout=0.05,malformed=0.01,dup_webhooks=0.3,reorder_webhooks=0.4,seed=7"
    )
    assert spec == FaultSpec(
        latency_s=0.05,
        p_5xx=0.2,
        p_429=0.1,
        p_timeout=0.05,
        p_malformed=0.01,
        p_dup_webhooks=0.3,
        p_reorder_webhooks=0.4,
        seed=7,
    )


@pytest.mark.parametrize(("text", "seconds"), [("50ms", 0.05), ("0.05s", 0.05), ("0.05", 0.05), ("2s", 2.0)])
def test_fault_spec_latency_units(text: str, seconds: float) -> None:
    assert FaultSpec.parse(f"latency={text}").latency_s == pytest.approx(seconds)


def test_fault_spec_empty_is_no_faults() -> None:
    assert FaultSpec.parse(None) == FaultSpec()
    assert FaultSpec.parse("") == FaultSpec()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bogus=1", "bogus"),
        ("5xx=lots", "5xx"),
        ("429=1.5", "429"),
        ("latency=fast", "latency"),
        ("seed=x", "seed"),
    ],
)
def test_fault_spec_bad_key_or_value_names_it(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        FaultSpec.parse(text)


def test_same_seed_same_fault_sequence_and_other_seed_differs() -> None:
    def sequence(seed: int) -> list[str | None]:
        faults = Faults(FaultSpec(p_5xx=0.3, p_429=0.2, p_malformed=0.1, seed=seed))
        return [faults.draw() for _ in range(200)]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)
    kinds = set(sequence(7))
    assert {"5xx", "429", "malformed", None} <= kinds


def test_fault_log_records_request_numbers() -> None:
    faults = Faults(FaultSpec(p_5xx=1.0))
    faults.draw()
    faults.draw()
    assert faults.log == [(1, "5xx"), (2, "5xx")]


def test_webhook_fault_stream_is_independent_of_requests() -> None:
    a = Faults(FaultSpec(p_5xx=0.5, p_dup_webhooks=0.5, seed=3))
    b = Faults(FaultSpec(p_5xx=0.5, p_dup_webhooks=0.5, seed=3))
    first = [a.dup_webhook() for _ in range(20)]
    for _ in range(13):
        b.draw()
    assert [b.dup_webhook() for _ in range(20)] == first


# -- middleware --------------------------------------------------------------------------------------------


def _app(spec: FaultSpec) -> tuple[Starlette, Faults]:
    async def hello(request: Request) -> Response:
        return JSONResponse({"hello": "world", "padding": "x" * 40})

    async def admin(request: Request) -> Response:
        return JSONResponse({"admin": True})

    app = Starlette(routes=[Route("/api/hello", hello), Route("/_sandbox/state", admin)])
    faults = Faults(spec)
    app.add_middleware(
        FaultMiddleware,
        faults=faults,
        error_5xx=lambda: JSONResponse({"errors": "Internal Server Error"}, status_code=500),
        error_429=lambda: JSONResponse(
            {
                "errors": "Exceeded 2 calls per second for api client. "
                "Reduce request rates to resume uninterrupted service."
            },
            status_code=429,
            headers={"Retry-After": "2.0"},
        ),
    )
    return app, faults


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox")


async def test_middleware_returns_sandbox_5xx_shape() -> None:
    app, _ = _app(FaultSpec(p_5xx=1.0))
    async with _client(app) as client:
        response = await client.get("/api/hello")
    assert response.status_code == 500
    assert response.json() == {"errors": "Internal Server Error"}


async def test_middleware_returns_sandbox_429_with_retry_after() -> None:
    app, _ = _app(FaultSpec(p_429=1.0))
    async with _client(app) as client:
        response = await client.get("/api/hello")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2.0"
    assert "Exceeded" in response.json()["errors"]


async def test_middleware_malformed_truncates_body_and_fixes_length() -> None:
    app, _ = _app(FaultSpec(p_malformed=1.0))
    async with _client(app) as client:
        response = await client.get("/api/hello")
    full = json.dumps({"hello": "world", "padding": "x" * 40}, separators=(",", ":")).encode()
    assert response.status_code == 200
    assert response.content == full[: len(full) // 2]
    assert int(response.headers["content-length"]) == len(full) // 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_middleware_timeout_sleeps_then_504() -> None:
    app, _ = _app(FaultSpec(p_timeout=1.0, timeout_s=0.01))
    async with _client(app) as client:
        response = await client.get("/api/hello")
    assert response.status_code == 504


async def test_middleware_never_faults_admin_prefix() -> None:
    app, faults = _app(FaultSpec(p_5xx=1.0))
    async with _client(app) as client:
        response = await client.get("/_sandbox/state")
    assert response.status_code == 200
    assert faults.log == []


async def test_middleware_same_seed_same_failing_requests() -> None:
    async def statuses(seed: int) -> list[int]:
        app, _ = _app(FaultSpec(p_5xx=0.4, seed=seed))
        async with _client(app) as client:
            return [(await client.get("/api/hello")).status_code for _ in range(30)]

    assert await statuses(11) == await statuses(11)
    assert set(await statuses(11)) == {200, 500}


# -- data generation ---------------------------------------------------------------------------------------


def _sample(seed: int) -> list[object]:
    gen = DataGen(seed)
    out: list[object] = []
    for _ in range(50):
        address = gen.address()
        out.append(address)
        out.append(gen.line_items(gen.currency_for(address.country_code)))
    return out


def test_datagen_same_seed_same_data() -> None:
    assert _sample(5) == _sample(5)
    assert _sample(5) != _sample(6)


def test_datagen_covers_several_scripts() -> None:
    gen = DataGen(1)
    scripts = {gen.person().script for _ in range(400)}
    assert {"Latin", "Cyrillic", "Arabic", "Greek", "Hangul", "Han/Kana", "Han"} <= scripts


@pytest.mark.parametrize("code", DataGen.country_codes())
def test_datagen_address_in_country_script(code: str) -> None:
    gen = DataGen(3)
    address = gen.address(code)
    assert address.country_code == code
    assert address.line1 and address.city and address.country_name
    assert address.first_name and address.last_name
    if address.phone is not None:
        assert address.phone.startswith("+") and address.phone[1:].isdigit()


def test_datagen_non_latin_names_are_not_ascii() -> None:
    gen = DataGen(2)
    for code in ("RU", "JP", "CN", "KR", "AE", "GR"):
        person = gen.person(code)
        assert not person.last_name.isascii(), (code, person)
        assert person.email.isascii()


def test_datagen_prices_use_currency_minor_units() -> None:
    gen = DataGen(4)
    for currency in ("USD", "EUR", "JPY", "KRW", "KWD", "BHD"):
        for item in gen.line_items(currency, 4):
            assert isinstance(item.unit_price, Decimal)
            exponent = item.unit_price.as_tuple().exponent
            assert isinstance(exponent, int)
            assert -exponent == minor_units(currency)
            assert item.quantity >= 1 and item.grams >= 0
    assert gen.currency_for("JP") == "JPY" and gen.currency_for("KR") == "KRW"


def test_datagen_instant_is_aware_utc_within_bounds() -> None:
    gen = DataGen(9)
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    for _ in range(100):
        moment = gen.instant(start, end)
        assert moment.tzinfo is UTC and start <= moment < end


# -- webhook sender ----------------------------------------------------------------------------------------


class _Receiver:
    """An in-process webhook endpoint that answers with queued status codes (default 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[bytes] = []

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.bodies.append(request.content)
            return httpx.Response(self.statuses.pop(0) if self.statuses else 200)

        return httpx.MockTransport(handle)


async def test_webhook_sender_delivers_in_order() -> None:
    receiver = _Receiver()
    sender = WebhookSender(Faults(FaultSpec()), transport=receiver.transport())
    for i in range(5):
        sender.enqueue("http://hooks.test/in", str(i).encode(), {"X-N": str(i)})
    await sender.drain()
    await sender.stop()
    assert receiver.bodies == [b"0", b"1", b"2", b"3", b"4"]
    assert [d.status for d in sender.deliveries] == [200] * 5
    assert sender.deliveries[0].headers == {"X-N": "0"}


async def test_webhook_sender_dup_fault_sends_twice() -> None:
    receiver = _Receiver()
    sender = WebhookSender(Faults(FaultSpec(p_dup_webhooks=1.0)), transport=receiver.transport())
    sender.enqueue("http://hooks.test/in", b"a", {})
    sender.enqueue("http://hooks.test/in", b"b", {})
    await sender.drain()
    await sender.stop()
    assert receiver.bodies == [b"a", b"a", b"b", b"b"]
    assert [d.duplicate for d in sender.deliveries] == [False, True, False, True]


async def test_webhook_sender_reorder_fault_swaps_with_next() -> None:
    receiver = _Receiver()
    faults = Faults(FaultSpec(p_reorder_webhooks=1.0))
    sender = WebhookSender(faults, transport=receiver.transport())
    sender.enqueue("http://hooks.test/in", b"first", {})
    sender.enqueue("http://hooks.test/in", b"second", {})
    await sender.drain()
    await sender.stop()
    # "first" is held back until "second" (which cannot be held while "first" is) has gone out.
    assert receiver.bodies == [b"second", b"first"]


async def test_webhook_sender_retries_non_2xx_then_gives_up() -> None:
    receiver = _Receiver([500, 503, 200])
    sender = WebhookSender(Faults(FaultSpec()), transport=receiver.transport(), retries=2, retry_delay_s=0.0)
    sender.enqueue("http://hooks.test/in", b"x", {})
    await sender.drain()
    assert [(d.attempt, d.status) for d in sender.deliveries] == [(1, 500), (2, 503), (3, 200)]

    receiver.statuses = [500, 500, 500, 500]
    sender.enqueue("http://hooks.test/in", b"y", {})
    await sender.drain()
    await sender.stop()
    assert [d.status for d in sender.deliveries[3:]] == [500, 500, 500]


async def test_webhook_sender_records_connection_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sender = WebhookSender(
        Faults(FaultSpec()), transport=httpx.MockTransport(refuse), retries=1, retry_delay_s=0.0
    )
    sender.enqueue("http://hooks.test/in", b"x", {})
    await sender.drain()
    await sender.stop()
    assert [(d.attempt, d.status) for d in sender.deliveries] == [(1, None), (2, None)]
    assert all(d.error and "ConnectError" in d.error for d in sender.deliveries)


# -- server and registry -----------------------------------------------------------------------------------


def test_run_in_thread_serves_and_stops() -> None:
    app, _ = _app(FaultSpec())
    with run_in_thread(app) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{base_url}/api/hello", timeout=5)
        assert response.json()["hello"] == "world"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/api/hello", timeout=1)


def test_run_in_thread_refuses_non_loopback() -> None:
    app, _ = _app(FaultSpec())
    with pytest.raises(ValueError, match="loopback"), run_in_thread(app, host="0.0.0.0"):
        pass


def test_create_sandbox_app_unknown_name() -> None:
    assert set(SANDBOXES) == {"shopify", "ebay", "amazon", "shippo", "myparcelcom"}
    with pytest.raises(ValueError, match="unknown sandbox"):
        create_sandbox_app("nope", SandboxConfig())
