"""Shopify webhook and OAuth query signatures: what verifies, what does not, and the sandbox agrees."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import shopify
from starlette.applications import Starlette

from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.shopify import ShopState, create_app
from crossdock.security.signatures import (
    SignatureError,
    check_shopify_oauth_query,
    is_shop_domain,
    shopify_query_signature,
    shopify_webhook_signature,
    sign_shopify_query,
    verify_shopify_oauth_query,
    verify_shopify_webhook,
)

SECRET = "shpss_current"
OLD_SECRET = "shpss_previous"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHOP = "crossdock-demo.myshopify.com"


def callback_params(**overrides: str) -> dict[str, str]:
    params = {
        "code": "0907a61c0c8d55e99db179b68161bc00",
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvY3Jvc3Nkb2NrLWRlbW8",
        "shop": SHOP,
        "state": "nonce-123",
        "timestamp": str(int(NOW.timestamp())),
    }
    params.update(overrides)
    return params


# -- webhooks ------------------------------------------------------------------------------------------------


def test_valid_webhook_signature_passes() -> None:
    body = WEBHOOK_BODY
    assert verify_shopify_webhook(body, shopify_webhook_signature(body, SECRET), [SECRET])


def test_forged_signature_fails() -> None:
    forged = shopify_webhook_signature(WEBHOOK_BODY, "not-the-app-secret")
    assert not verify_shopify_webhook(WEBHOOK_BODY, forged, [SECRET])


def test_tampered_body_fails() -> None:
    signature = shopify_webhook_signature(WEBHOOK_BODY, SECRET)
    tampered = WEBHOOK_BODY.replace(b'"total_price":"24.00"', b'"total_price":"0.01"')
    assert tampered != WEBHOOK_BODY
    assert not verify_shopify_webhook(tampered, signature, [SECRET])


def test_signature_over_reserialised_json_fails() -> None:
    # Parsing and dumping again changes spacing and escapes the Cyrillic name: the bytes are no longer signed.
    signature = shopify_webhook_signature(WEBHOOK_BODY, SECRET)
    reserialised = json.dumps(json.loads(WEBHOOK_BODY)).encode()
    assert json.loads(reserialised) == json.loads(WEBHOOK_BODY)
    assert not verify_shopify_webhook(reserialised, signature, [SECRET])


def test_missing_or_empty_signature_fails() -> None:
    assert not verify_shopify_webhook(WEBHOOK_BODY, None, [SECRET])
    assert not verify_shopify_webhook(WEBHOOK_BODY, "", [SECRET])


def test_rotated_secrets_accept_old_and_new_webhook_signatures() -> None:
    secrets = [SECRET, OLD_SECRET]
    assert verify_shopify_webhook(WEBHOOK_BODY, shopify_webhook_signature(WEBHOOK_BODY, OLD_SECRET), secrets)
    assert verify_shopify_webhook(WEBHOOK_BODY, shopify_webhook_signature(WEBHOOK_BODY, SECRET), secrets)
    retired = shopify_webhook_signature(WEBHOOK_BODY, "shpss_retired")
    assert not verify_shopify_webhook(WEBHOOK_BODY, retired, secrets)


def test_empty_secret_never_verifies() -> None:
    # Anyone can compute an HMAC with an empty key; a missing secret must not turn into one.
    assert not verify_shopify_webhook(WEBHOOK_BODY, shopify_webhook_signature(WEBHOOK_BODY, ""), [""])
    assert not verify_shopify_webhook(WEBHOOK_BODY, shopify_webhook_signature(WEBHOOK_BODY, SECRET), [])


def test_parsed_body_is_refused_outright() -> None:
    with pytest.raises(TypeError, match="raw request body"):
        verify_shopify_webhook(WEBHOOK_BODY.decode(), "x", [SECRET])  # type: ignore[arg-type]


def test_surrounding_whitespace_in_header_is_tolerated() -> None:
    signature = shopify_webhook_signature(WEBHOOK_BODY, SECRET)
    assert verify_shopify_webhook(WEBHOOK_BODY, f" {signature}\t", [SECRET])


# -- OAuth install and callback queries ----------------------------------------------------------------------


def test_genuine_callback_query_passes() -> None:
    query = urlencode(sign_shopify_query(callback_params(), SECRET))
    params = check_shopify_oauth_query(query, [SECRET], now=NOW)
    assert params["shop"] == SHOP and params["code"] == "0907a61c0c8d55e99db179b68161bc00"
    assert verify_shopify_oauth_query("?" + query, [SECRET], now=NOW)


def test_query_signature_matches_the_official_sdk() -> None:
    params = callback_params(state="a=b&c%d")
    shopify.Session.setup(api_key="client-id", secret=SECRET)
    try:
        assert shopify_query_signature(params, SECRET) == shopify.Session.calculate_hmac(params)
        with_list = {"shop": SHOP, "timestamp": "1", "ids[]": ["2", "10"]}
        assert shopify_query_signature(with_list, SECRET) == shopify.Session.calculate_hmac(with_list)
    finally:
        shopify.Session.setup(api_key=None, secret=None)


def test_array_parameters_are_signed_as_json_lists() -> None:
    raw = f"ids%5B%5D=2&ids%5B%5D=10&shop={SHOP}&timestamp={int(NOW.timestamp())}"
    signature = shopify_query_signature(raw, SECRET)
    assert check_shopify_oauth_query(f"{raw}&hmac={signature}", [SECRET], now=NOW)["ids[]"] == "2,10"


def test_old_timestamp_fails() -> None:
    stale = NOW - timedelta(hours=24, seconds=1)
    query = sign_shopify_query(callback_params(timestamp=str(int(stale.timestamp()))), SECRET)
    with pytest.raises(SignatureError, match="older than"):
        check_shopify_oauth_query(query, [SECRET], now=NOW)


def test_timestamp_just_inside_a_day_passes() -> None:
    recent = NOW - timedelta(hours=23, minutes=59)
    query = sign_shopify_query(callback_params(timestamp=str(int(recent.timestamp()))), SECRET)
    assert verify_shopify_oauth_query(query, [SECRET], now=NOW)


def test_far_future_timestamp_fails() -> None:
    future = NOW + timedelta(days=2)
    query = sign_shopify_query(callback_params(timestamp=str(int(future.timestamp()))), SECRET)
    with pytest.raises(SignatureError, match="future"):
        check_shopify_oauth_query(query, [SECRET], now=NOW)


def test_missing_timestamp_fails() -> None:
    params = callback_params()
    del params["timestamp"]
    with pytest.raises(SignatureError, match="timestamp"):
        check_shopify_oauth_query(sign_shopify_query(params, SECRET), [SECRET], now=NOW)


def test_forged_query_signature_fails() -> None:
    query = sign_shopify_query(callback_params(), "not-the-app-secret")
    with pytest.raises(SignatureError, match="does not match"):
        check_shopify_oauth_query(query, [SECRET], now=NOW)


def test_tampered_parameter_fails() -> None:
    query = sign_shopify_query(callback_params(), SECRET)
    query["shop"] = "attacker.myshopify.com"
    assert not verify_shopify_oauth_query(query, [SECRET], now=NOW)


def test_missing_hmac_fails() -> None:
    with pytest.raises(SignatureError, match="no hmac"):
        check_shopify_oauth_query(callback_params(), [SECRET], now=NOW)


def test_escaped_delimiters_cannot_pose_as_another_parameter() -> None:
    # Without escaping, state="x&code=evil" and state="x" + code="evil" would sign the same text.
    one = shopify_query_signature({"shop": SHOP, "state": "x&code=evil"}, SECRET)
    two = shopify_query_signature({"shop": SHOP, "state": "x", "code": "evil"}, SECRET)
    assert one != two


def test_repeated_parameter_fails() -> None:
    signed = urlencode(sign_shopify_query(callback_params(), SECRET))
    with pytest.raises(SignatureError, match="more than once"):
        check_shopify_oauth_query(f"{signed}&shop=attacker.myshopify.com", [SECRET], now=NOW)


def test_rotated_secrets_accept_old_and_new_oauth_signatures() -> None:
    for secret in (SECRET, OLD_SECRET):
        query = sign_shopify_query(callback_params(), secret)
        assert verify_shopify_oauth_query(query, [SECRET, OLD_SECRET], now=NOW)


def test_uppercase_hex_signature_still_verifies() -> None:
    query = sign_shopify_query(callback_params(), SECRET)
    query["hmac"] = query["hmac"].upper()
    assert verify_shopify_oauth_query(query, [SECRET], now=NOW)


@pytest.mark.parametrize(
    "shop",
    [
        "evil.com",
        "crossdock-demo.myshopify.com.evil.com",
        "crossdock-demo.myshopify.com/admin",
        "crossdock-demo.myshopify.com\n",
        "-leading-dash.myshopify.com",
        "sub.crossdock-demo.myshopify.com",
        "crossdock_demo.myshopify.com",
        "",
    ],
)
def test_shop_outside_myshopify_fails(shop: str) -> None:
    assert not is_shop_domain(shop)
    query = sign_shopify_query(callback_params(shop=shop), SECRET)
    with pytest.raises(SignatureError, match="shop"):
        check_shopify_oauth_query(query, [SECRET], now=NOW)


def test_shop_domains_that_pass() -> None:
    assert is_shop_domain("crossdock-demo.myshopify.com")
    assert is_shop_domain("Shop123.myshopify.com")


# -- the Shopify sandbox signs like Shopify ------------------------------------------------------------------

SANDBOX_SECRET = "sandbox-client-secret"


def make_sandbox(**kwargs: object) -> Starlette:
    return create_app(SandboxConfig(token="shpat_test", fast_limits=True, **kwargs))  # type: ignore[arg-type]


def sandbox_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"https://{SHOP}")


async def test_sandbox_webhook_signatures_verify() -> None:
    app = make_sandbox(webhook_url="https://hub.test/hooks/1")
    state: ShopState = app.state.sandbox
    received: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    state.sender.transport = httpx.MockTransport(receive)
    async with sandbox_client(app) as c:
        created = await c.post("/_sandbox/orders", json={"shipping_address": {"country_code": "UA"}})
        order_id = created.json()["order"]["id"]
        await c.post(f"/_sandbox/orders/{order_id}/cancel", json={"reason": "customer"})
    await state.sender.drain()
    await state.sender.stop()
    assert {r.headers["X-Shopify-Topic"] for r in received} >= {"orders/create", "orders/cancelled"}
    for request in received:
        signature = request.headers["X-Shopify-Hmac-Sha256"]
        assert verify_shopify_webhook(request.content, signature, [SANDBOX_SECRET])
        assert verify_shopify_webhook(request.content, signature, ["rotated-new-secret", SANDBOX_SECRET])
        assert not verify_shopify_webhook(request.content, signature, ["another-app-secret"])
        reserialised = json.dumps(json.loads(request.content)).encode()
        assert not verify_shopify_webhook(reserialised, signature, [SANDBOX_SECRET])


async def test_sandbox_oauth_callback_verifies() -> None:
    app = make_sandbox()
    async with sandbox_client(app) as c:
        page = await c.get(
            "/admin/oauth/authorize",
            params={
                "client_id": "sandbox-client-id",
                "scope": "read_orders,write_fulfillments",
                "redirect_uri": "https://hub.test/oauth/shopify/callback",
                "state": "nonce-123",
            },
        )
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        decision = await c.post("/admin/oauth/authorize", data={**form, "decision": "install"})
        install = await c.get("/_sandbox/install", params={"app_url": "https://hub.test/oauth/shopify/start"})
    callback_query = urlsplit(decision.headers["location"]).query
    params = check_shopify_oauth_query(callback_query, [SANDBOX_SECRET])
    assert params["state"] == "nonce-123" and params["shop"] == SHOP and params["code"]
    assert not verify_shopify_oauth_query(callback_query, ["another-app-secret"])
    install_query = urlsplit(install.json()["url"]).query
    assert check_shopify_oauth_query(install_query, [SANDBOX_SECRET])["shop"] == SHOP
    tomorrow = datetime.now(UTC) + timedelta(hours=25)
    with pytest.raises(SignatureError, match="older than"):
        check_shopify_oauth_query(install_query, [SANDBOX_SECRET], now=tomorrow)


# -- fixtures ------------------------------------------------------------------------------------------------

# A webhook body as Shopify sends it: compact JSON, UTF-8 kept unescaped (orders/create, trimmed).
WEBHOOK_BODY = (
    '{"id":5600000001009,"name":"#1001","currency":"UAH","total_price":"24.00",'
    '"shipping_address":{"first_name":"Олена","last_name":"Шевченко","city":"Київ","country_code":"UA"}}'
).encode()
