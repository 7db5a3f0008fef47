"""Logs never carry credentials: OAuth callbacks in the server's access log, tokens in URLs and messages."""

from __future__ import annotations

import logging

import pytest

from crossdock.logs import configure_logging, redact_text


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        (
            "GET /oauth/shopify/callback?code=c0de&hmac=ab12&state=n0nce&shop=a.myshopify.com",
            ["c0de", "ab12", "n0nce"],
        ),
        (
            "GET /oauth/amazon/callback?spapi_oauth_code=c0de&state=n0nce&selling_partner_id=A1",
            ["c0de", "n0nce"],
        ),
        ("GET /hooks/1?token=shippo-hook-secret", ["shippo-hook-secret"]),
        ("POST /identity/v1/oauth2/token refresh_token=v^1.1#i^1", ["v^1.1#i^1"]),
    ],
)
def test_credentials_in_urls_are_redacted(line: str, hidden: list[str]) -> None:
    shown = redact_text(line)
    for secret in hidden:
        assert secret not in shown
    assert shown.startswith(line.split("?")[0].split("=")[0])  # the path stays readable


def test_the_servers_access_log_shows_the_callback_without_its_code(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("INFO")
    access = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        # uvicorn's own call: '%s - "%s %s HTTP/%s" %d' with the path and query as one argument.
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/oauth/ebay/callback?code=v%5E1.1%23i%5E1&state=n0nce",
            "1.1",
            302,
        )
    message = caplog.records[-1].getMessage()
    assert "/oauth/ebay/callback?code=" in message
    assert "v%5E1.1" not in message and "n0nce" not in message


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: BEARER abc.def", "abc.def"),
        ("authorization: bearer abc.def", "abc.def"),
        ("ShippoToken shippo_live_abc", "shippo_live_abc"),
        ("Basic dXNlcjpwdw==", "dXNlcjpwdw"),
        ("postgresql://crossdock:pw@db.internal/crossdock", "crossdock:pw"),
        # Not ASCII: U+017F, the long s, is an "s" to the pattern's case-insensitive match, not to str.lower().
        ("Ba\u017fic c2VjcmV0", "c2VjcmV0"),
        ("héllo, bearer abc.def", "abc.def"),
    ],
)
def test_tokens_and_passwords_in_any_text_are_redacted(line: str, secret: str) -> None:
    shown = redact_text(line)
    assert secret not in shown and "[redacted]" in shown


def test_text_with_nothing_to_hide_comes_back_as_it_was() -> None:
    for text in (
        "application/json",
        "orders/create",
        "Shopify-Captain-Hook",
        '127.0.0.1:5000 - "POST /hooks/1"',
    ):
        assert redact_text(text) is text
