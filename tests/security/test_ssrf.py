"""No call into the hub's own network: every spelling of an internal address is refused where a URL is given (the
REST API's connections and webhook endpoints, `crossdock connections add`) and again where it is used (the
remote client and the outbound webhook sender), and neither follows a redirect, so a public URL cannot bounce a
request inside. CROSSDOCK_ALLOW_PRIVATE_URLS=1 lifts the rule (sandboxes, a hub in a private network).

Names are resolved by the system resolver at creation (socket.getaddrinfo, replaced here by a fixed table so no
test depends on real DNS) and by the client's own resolver seam at send time.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from crossdock.api.app import create_app
from crossdock.cli import app as cli_app
from crossdock.engine import webhooks_out as wh
from crossdock.engine.errors import PermanentError
from crossdock.engine.http import RemoteClient, Target
from crossdock.hub import Hub
from crossdock.security.urls import UnsafeURL, check_outbound_url, pin_outbound_url
from crossdock.store import tables as t
from tests.engine.remote_support import local_server, new_owner
from tests.support import Tenant

# Every way we know of writing an address inside the hub's network. The comment says what it reaches.
INTERNAL_URLS = [
    "http://127.0.0.1:9000/",  # loopback
    "http://127.9.9.9/",  # loopback, the whole /8
    "http://10.1.2.3/",  # RFC 1918
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",  # cloud instance metadata (link-local)
    "http://100.100.100.200/latest/meta-data/",  # carrier-grade NAT range, another cloud's metadata
    "http://0.0.0.0/",  # "this host"
    "http://[::1]/",
    "http://[fc00::1]/",  # unique local (fc00::/7)
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, mapped and in hex
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://2130706433/",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/",  # hexadecimal, short form
    "http://0177.0.0.1/",  # octal
    "http://127.1/",  # short form
    "http://0/",
    "http://localhost:8080/",
    "http://LOCALHOST/",
    "http://localhost./",  # the same name with the root's dot
    "http://api.localhost/",
    "http://metadata.google.internal/",
    "http://printer.local/",
    "http://intranet.example.test/",  # a public-looking name that resolves inside (RESOLVES below)
    "http://both.example.test/",  # one public and one internal answer: the internal one decides
]
PUBLIC = "https://shop.example.test/"
RESOLVES = {
    "shop.example.test": ["93.184.216.34"],
    "intranet.example.test": ["10.20.30.40"],
    "both.example.test": ["93.184.216.35", "192.168.0.7"],
}
SHOPIFY = {
    "connector": "shopify",
    "name": "Shop",
    "settings": {"shop": "acme.myshopify.com"},
    "secrets": {"access_token": "shpat_ssrf_test"},
}


@pytest.fixture(autouse=True)
def fixed_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system resolver answers from RESOLVES for *.example.test and as usual for numeric spellings (which
    glibc reads itself, never asking DNS); any other name does not resolve."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in RESOLVES:
            family = {4: socket.AF_INET, 6: socket.AF_INET6}
            return [
                (family[6 if ":" in a else 4], socket.SOCK_STREAM, 6, "", (a, port or 0))
                for a in RESOLVES[name]
            ]
        if name.endswith((".test", ".internal", ".local", ".")) or name.isalpha():
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def strict(hub: Hub) -> Hub:
    hub.settings.allow_private_urls = False
    return hub


def api(hub: Hub) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub.test")


async def count(hub: Hub, table: Any) -> int:
    async with hub.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_the_url_check_refuses_every_spelling_of_an_internal_address(url: str) -> None:
    with pytest.raises(UnsafeURL) as refused:
        check_outbound_url(url, allow_private=False)
    assert "CROSSDOCK_ALLOW_PRIVATE_URLS" in str(refused.value) or "does not resolve" in str(refused.value)
    # At send time too (the pinning check), with the same table as the resolver.
    with pytest.raises(UnsafeURL):
        pin_outbound_url(url, allow_private=False)
    assert check_outbound_url(url, allow_private=True) == url


def test_a_public_address_passes_and_is_pinned() -> None:
    assert check_outbound_url(PUBLIC, allow_private=False) == PUBLIC
    pinned, host = pin_outbound_url(PUBLIC, allow_private=False, resolver=lambda host: RESOLVES[host])
    assert (pinned, host) == ("https://93.184.216.34/", "shop.example.test")


async def test_the_api_refuses_internal_connection_and_webhook_urls_naming_the_field(
    hub: Hub, acme: Tenant
) -> None:
    async with api(strict(hub)) as client:
        existing = await client.post(
            "/api/v1/connections", json=SHOPIFY | {"base_url": PUBLIC}, headers=acme.headers
        )
        assert existing.status_code == 201, existing.text
        endpoint = await client.post("/api/v1/webhook-endpoints", json={"url": PUBLIC}, headers=acme.headers)
        assert endpoint.status_code == 201, endpoint.text
        wrong: list[str] = []
        for url in INTERNAL_URLS:
            calls = [
                ("POST", "/api/v1/connections", SHOPIFY | {"base_url": url}, "base_url"),
                ("PATCH", f"/api/v1/connections/{existing.json()['id']}", {"base_url": url}, "base_url"),
                ("POST", "/api/v1/webhook-endpoints", {"url": url}, "url"),
                ("PATCH", f"/api/v1/webhook-endpoints/{endpoint.json()['id']}", {"url": url}, "url"),
            ]
            for method, path, body, field in calls:
                r = await client.request(method, path, json=body, headers=acme.headers)
                if r.status_code != 422 or r.json()["errors"][0]["field"] != field:
                    wrong.append(f"{method} {path} {url}: {r.status_code} {r.text[:200]}")
        assert wrong == []
        listed = (await client.get("/api/v1/connections", headers=acme.headers)).json()["items"]
        assert [c["base_url"] for c in listed] == [PUBLIC]
    assert await count(hub, t.WebhookEndpoint) == 1
    # The operator's switch lets the same URLs in.
    hub.settings.allow_private_urls = True
    async with api(hub) as client:
        r = await client.post(
            "/api/v1/connections", json=SHOPIFY | {"base_url": "http://10.1.2.3/"}, headers=acme.headers
        )
        assert r.status_code == 201, r.text


runner = CliRunner()


def test_the_cli_refuses_an_internal_base_url_even_without_a_check(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CROSSDOCK_ALLOW_PRIVATE_URLS", raising=False)
    made = runner.invoke(cli_app, ["accounts", "create", "Acme", "--json"])
    account = json.loads(made.stdout)["id"]
    add = [
        "connections", "add", "shopify", "--account", account, "--shop-url", "https://acme.myshopify.com",
        "--access-token", "shpat_cli_ssrf", "--no-check", "--json", "--base-url",
    ]  # fmt: skip
    for url in ("http://169.254.169.254/latest/", "http://0x7f.1/", "http://[::ffff:10.0.0.1]/"):
        result = runner.invoke(cli_app, [*add, url])
        assert result.exit_code != 0, (url, result.output)
        assert "--base-url" in result.output and "CROSSDOCK_ALLOW_PRIVATE_URLS" in result.output, (
            result.output
        )
        assert "shpat_cli_ssrf" not in result.output
    listed = runner.invoke(cli_app, ["connections", "list", "--account", account, "--json"])
    assert json.loads(listed.stdout) == []

    monkeypatch.setenv("CROSSDOCK_ALLOW_PRIVATE_URLS", "1")
    allowed = runner.invoke(cli_app, [*add, "http://10.0.0.1/"])
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["base_url"] == "http://10.0.0.1/"


async def test_the_remote_client_refuses_internal_spellings_at_send_time_and_sends_nothing(hub: Hub) -> None:
    owner = await new_owner(hub)
    sent: list[httpx.Request] = []
    client = RemoteClient(
        strict(hub),
        Target(owner.account_id, "shopify", owner.connection_id),
        base_url=PUBLIC,
        transport=httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200, json={})),
    )
    async with client:
        for url in INTERNAL_URLS:
            try:
                await client.get(url)
            except PermanentError as exc:
                assert "refused to call" in exc.message, url
            except httpx.InvalidURL:
                # httpx itself will not build some spellings (an octal part over 3 digits): nothing is sent.
                assert url == "http://0177.0.0.1/"
            else:
                raise AssertionError(f"{url} was called")
        await client.get("/admin/shop.json")
    assert [(r.url.host, r.headers["host"]) for r in sent] == [("93.184.216.34", "shop.example.test")]


def redirecting_app(target: str, hits: list[str]) -> Starlette:
    async def bounce(request: Request) -> Response:
        hits.append(request.url.path)
        return RedirectResponse(target, status_code=302)

    return Starlette(routes=[Route("/{path:path}", bounce, methods=["GET", "POST"])])


def counting_app(hits: list[str]) -> Starlette:
    async def answer(request: Request) -> Response:
        hits.append(request.url.path)
        return JSONResponse({"inside": True})

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


async def test_a_redirect_is_not_followed_by_the_remote_client(hub: Hub) -> None:
    owner = await new_owner(hub)
    outer: list[str] = []
    inner: list[str] = []
    with (
        local_server(counting_app(inner)) as inside,
        local_server(redirecting_app(f"{inside}/secret", outer)) as url,
    ):
        async with RemoteClient(
            hub, Target(owner.account_id, "shopify", owner.connection_id), base_url=url
        ) as client:
            with pytest.raises(PermanentError) as caught:
                await client.get("/admin/shop.json")
    assert outer == ["/admin/shop.json"] and inner == []
    assert "redirected" in caught.value.message and "base URL" in caught.value.message


async def test_a_redirect_is_not_followed_by_the_webhook_sender(hub: Hub, acme: Tenant) -> None:
    outer: list[str] = []
    inner: list[str] = []
    with (
        local_server(counting_app(inner)) as inside,
        local_server(redirecting_app(f"{inside}/secret", outer)) as url,
    ):
        async with api(hub) as client:  # private URLs allowed here: the sandboxes listen on 127.0.0.1
            created = await client.post(
                "/api/v1/webhook-endpoints", json={"url": f"{url}/hook"}, headers=acme.headers
            )
            assert created.status_code == 201, created.text
        async with hub.db.transaction() as session:
            (delivery_id,) = await wh.emit(
                session, account_id=uuid.UUID(acme.id), event_type="order.created", data={"id": "ord_1"}
            )
        outcome = await wh.deliver(hub, delivery_id, attempt=1)
    assert outer == ["/hook"] and inner == []
    assert outcome != "succeeded"
    async with hub.db.session() as session:
        (attempt,) = (await session.scalars(select(t.WebhookAttempt))).all()
    assert attempt.response_status == 302


async def test_a_webhook_endpoint_whose_name_now_resolves_inside_is_refused_at_delivery(
    hub: Hub, acme: Tenant
) -> None:
    """Created while its name resolved publicly; by delivery time DNS answers an internal address."""
    answers: dict[str, list[str]] = {"hooks.example.test": ["93.184.216.36"]}
    RESOLVES["hooks.example.test"] = answers["hooks.example.test"]
    try:
        async with api(strict(hub)) as client:
            created = await client.post(
                "/api/v1/webhook-endpoints",
                json={"url": "https://hooks.example.test/in"},
                headers=acme.headers,
            )
            assert created.status_code == 201, created.text
    finally:
        del RESOLVES["hooks.example.test"]
    async with hub.db.transaction() as session:
        (delivery_id,) = await wh.emit(
            session, account_id=uuid.UUID(acme.id), event_type="order.created", data={"id": "ord_1"}
        )
    sent: list[httpx.Request] = []
    rebound: Callable[[str], list[str]] = lambda host: ["169.254.169.254"]  # noqa: E731
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    assert await wh.deliver(hub, delivery_id, attempt=1, transport=transport, resolver=rebound) == "refused"
    assert sent == []
    async with hub.db.session() as session:
        (attempt,) = (await session.scalars(select(t.WebhookAttempt))).all()
    assert "169.254.169.254" in (attempt.error or "")
