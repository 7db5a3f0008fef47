"""schemathesis against the hub's own OpenAPI document: no 5xx, and every answer is one the document declares.

The schema is the running app's (`create_app(hub).openapi()`, what `/openapi.json` serves). Every call carries a
real API token of a seeded account that has an order, connections with fake credentials and a webhook endpoint,
and path parameters are steered to those objects half the time, so that handlers get past "not found" and into
their real work. Both valid and invalid requests are generated (schemathesis's positive and negative modes); for
each answer schemathesis checks that it is not a 5xx, that its status code and content type are declared for the
operation, and that its body matches the declared schema.

The hub and every request run on one event loop owned by this module (an anyio blocking portal), because the
database engine must not be shared between loops; requests go in-process through httpx's ASGI transport and
schemathesis validates the httpx responses (`Case.validate_response` accepts them). The test drives each
operation's strategy (`APIOperation.as_strategy`) itself rather than through `schemathesis.pytest.from_fixture`,
whose lazy tests fail under pytest 9.2 ("'Function' object has no attribute '_nodeid'", schemathesis 4.32.5).
The in-CI run is bounded (a few examples per operation and mode); `--runslow` runs many more.

schemathesis 4 Python API: https://schemathesis.readthedocs.io/en/stable/reference/python/ (loaders,
`as_strategy`, `validate_response`, checks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from crossdock.api.app import create_app
from crossdock.api.schemas import OrderCreate
from crossdock.engine import webhooks_out as wh
from crossdock.hub import Hub
from crossdock.store import repo
from tests.conftest import _truncate, make_settings
from tests.support import Tenant, new_account, order_body

BASE_URL = "http://hub.test"
# A port nothing listens on: the seeded connection's remote refuses at once, so quotes and syncs fail fast.
DEAD_REMOTE = "http://127.0.0.1:9"
SHIPPO_HOOK_TOKEN = "not-a-real-hook-token"
SHOPIFY_SECRET = "not-a-real-shopify-secret"

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NO_5XX_ONLY = [not_a_server_error]
# OAuth callbacks and the MyParcel.com contract answer the remote's protocol (redirects, HTML consent pages,
# signed or token-authenticated JSON shaped by PROTOCOLS.md), not the API's problem+json, and most of what they
# do needs a valid state or signature that random input never has: only "no 5xx" is checked there.
SIGNED_PREFIXES = ("/oauth/", "/integrations/")


@dataclass
class Target:
    portal: BlockingPortal
    client: httpx.AsyncClient
    tenant: Tenant
    app_schema: dict[str, Any]
    ids: dict[str, str]


async def _seed(hub: Hub, tenant: Tenant) -> dict[str, str]:
    """An order, a Shippo and a Shopify connection with fake credentials and a webhook endpoint; their ids by the
    path parameter names that address them."""
    account_id = uuid.UUID(tenant.id)
    async with hub.db.transaction() as session:
        t = repo.Tenant(session, account_id)
        order = await t.create_order(OrderCreate.model_validate(order_body()).to_model(), source="manual")
        connection = await t.create_connection(
            connector="shippo",
            name="Fuzz on Shippo",
            vault=hub.vault,
            base_url=DEAD_REMOTE,
            secrets={"api_token": "shippo_test_not_a_real_token", "webhook_token": SHIPPO_HOOK_TOKEN},
        )
        shop = await t.create_connection(
            connector="shopify",
            name="Fuzz on Shopify",
            vault=hub.vault,
            settings={"shop": "fuzz.myshopify.com"},
            base_url=DEAD_REMOTE,
            secrets={"access_token": "shpat_not_a_real_token", "api_secret": SHOPIFY_SECRET},
        )
        endpoint, _secret = wh.new_endpoint(
            hub.vault, account_id, url=f"{DEAD_REMOTE}/events", event_types=[wh.ALL_EVENTS]
        )
        session.add(endpoint)
        await session.flush()
        return {
            "order_id": str(order.id),
            "connection_id": str(connection.id),
            "endpoint_id": str(endpoint.id),
            "shop_connection_id": str(shop.id),
        }


def _no_outside_network(real: Callable[..., Any]) -> Callable[..., Any]:
    """getaddrinfo that answers only for loopback: whatever connection the fuzzer creates (a connector's default
    base URL, a random host), the hub cannot reach the internet from this test."""

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in {"127.0.0.1", "::1", "localhost"}:
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: the fuzz test allows no outside network")
        return real(host, *args, **kwargs)

    return guarded


@pytest.fixture
def target(
    backend: str,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_migrated: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Target]:
    monkeypatch.setattr(socket, "getaddrinfo", _no_outside_network(socket.getaddrinfo))
    home = tmp_path / "home"
    home.mkdir()
    with start_blocking_portal() as portal:
        hub = Hub.from_settings(make_settings(backend, home, sqlite_template, postgres_migrated))
        if backend == "postgres":
            portal.call(_truncate, hub.db)
        tenant = portal.call(new_account, hub, "Fuzz")
        ids = portal.call(_seed, hub, tenant)
        app = create_app(hub)
        # An unhandled error is then seen as the 500 a client would get, which schemathesis reports with a curl.
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=BASE_URL
        )
        try:
            yield Target(portal, client, tenant, app.openapi(), ids)
        finally:
            portal.call(client.aclose)
            portal.call(hub.close)


def _send(target: Target, case: schemathesis.Case) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=dict(target.tenant.headers))
    headers = dict(kwargs.get("headers") or {})
    if kwargs.get("cookies"):
        # httpx deprecates per-request cookies; the header carries the same thing.
        headers["cookie"] = "; ".join(f"{name}={value}" for name, value in kwargs["cookies"].items())
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": headers,
        "params": kwargs.get("params"),
    }
    if kwargs.get("json") is not None:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        request["content" if isinstance(data, (bytes, str)) else "data"] = data
    if kwargs.get("files"):
        request["files"] = kwargs["files"]
    return target.portal.call(partial(target.client.request, **request))


def _fuzz(target: Target, max_examples: int) -> list[str]:
    """Run every operation in both modes; the failures, one paragraph per operation and mode."""
    loaded = schemathesis.openapi.from_dict(target.app_schema)
    failures: list[str] = []
    for result in loaded.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=max_examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode), real_ids=st.booleans())
            def run(case: schemathesis.Case, real_ids: bool) -> None:
                if real_ids:
                    for name in case.path_parameters or {}:
                        if name in target.ids:
                            case.path_parameters[name] = target.ids[name]
                checks = NO_5XX_ONLY if operation.path.startswith(SIGNED_PREFIXES) else CONFORMANCE
                case.validate_response(_send(target, case), checks=checks)

            try:
                run()
            except Unsatisfiable:
                pass  # no parameters and no body: there is nothing to make invalid
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def test_every_operation_answers_as_documented(target: Target) -> None:
    failures = _fuzz(target, max_examples=5)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_every_operation_answers_as_documented_at_length(target: Target) -> None:
    failures = _fuzz(target, max_examples=150)
    assert not failures, "\n\n".join(failures)


# /hooks/{connection_id} is left out of the OpenAPI document (the remotes, not API clients, call it) and is
# authenticated by signatures over the raw body, so it has no schema to conform to; garbage must still never get
# a 5xx, whichever connection it names and whether or not it carries the right Shippo token.
HOOK_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "content-type",
            "x-shopify-hmac-sha256",
            "x-shopify-topic",
            "x-shopify-webhook-id",
            "x-shippo-signature",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
)


def _hook_garbage(target: Target, max_examples: int) -> None:
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        connection=st.sampled_from(
            [target.ids["connection_id"], target.ids["shop_connection_id"], str(uuid.uuid4()), "not-a-uuid"]
        ),
        token=st.sampled_from([None, SHIPPO_HOOK_TOKEN, "wrong"]),
        body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
        headers=HOOK_HEADERS,
        signed=st.booleans(),
    )
    def run(connection: str, token: str | None, body: bytes, headers: dict[str, str], signed: bool) -> None:
        if signed:
            # A valid Shopify signature over the garbage gets it past the check and into the inbox's parsing:
            # base64 of the HMAC-SHA256 of the raw body with the app secret (shopify.dev/docs/apps/build/webhooks/verify-deliveries).
            digest = hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()
            headers = {**headers, "x-shopify-hmac-sha256": base64.b64encode(digest).decode()}
        params = {"token": token} if token is not None else None
        call = partial(
            target.client.post, f"/hooks/{connection}", params=params, content=body, headers=headers
        )
        response = target.portal.call(call)
        assert response.status_code < 500, (response.status_code, response.text)

    run()


def test_inbound_hooks_never_answer_5xx_to_garbage(target: Target) -> None:
    _hook_garbage(target, max_examples=100)


@pytest.mark.slow
def test_inbound_hooks_never_answer_5xx_to_garbage_at_length(target: Target) -> None:
    _hook_garbage(target, max_examples=1000)
