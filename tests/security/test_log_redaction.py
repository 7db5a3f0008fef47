"""Logs never carry credentials: OAuth callbacks in the server's access log, tokens in URLs and messages."""

from __future__ import annotations

import json
import logging

import pytest
from uvicorn.logging import AccessFormatter as UvicornAccessFormatter

from crossdock.logs import AccessLogFormatter, configure_logging, redact_text


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


def _access_record(path: str, status: int = 200) -> logging.LogRecord:
    # Made as uvicorn makes its access log records, through the record factory configure_logging installs.
    configure_logging("INFO")
    return logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", path, "1.1", status),
        None,
    )


def test_a_redacted_access_record_keeps_its_arguments_so_uvicorns_own_formatter_still_writes_it() -> None:
    record = _access_record("/hooks/0b5c1f8e-1234-4a4a-9c9c-1234567890ab?token=shippo-hook-secret")
    assert record.args == (
        "127.0.0.1:5000",
        "POST",
        "/hooks/0b5c1f8e-1234-4a4a-9c9c-1234567890ab?token=[redacted]",
        "1.1",
        200,
    )
    # uvicorn's formatter unpacks the arguments: a record redacted as a whole (no arguments) made it raise.
    line = UvicornAccessFormatter(
        "%(client_addr)s - %(request_line)s %(status_code)s", use_colors=False
    ).format(record)
    assert (
        line
        == "127.0.0.1:5000 - POST /hooks/0b5c1f8e-1234-4a4a-9c9c-1234567890ab?token=[redacted] HTTP/1.1 200 OK"
    )


def test_a_secret_that_only_the_whole_message_reveals_is_redacted_in_the_message() -> None:
    configure_logging("INFO")
    # "token=" in the format and the value in the argument: redacting the arguments alone would miss it.
    record = logging.getLogger("crossdock.test").makeRecord(
        "crossdock.test",
        logging.INFO,
        __file__,
        0,
        "calling %s?token=%s",
        ("https://x.example/cb", "s3cr3t"),
        None,
    )
    assert record.getMessage() == "calling https://x.example/cb?token=[redacted]" and record.args is None


def test_the_servers_console_access_line_reads_as_uvicorns() -> None:
    record = _access_record("/healthz?x=1", status=404)
    ours = AccessLogFormatter().format(record)
    theirs = UvicornAccessFormatter(
        '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    ).format(record)
    assert ours == theirs == 'INFO:     127.0.0.1:5000 - "POST /healthz?x=1 HTTP/1.1" 404 Not Found'


def test_the_servers_json_access_line_has_the_request_as_fields_and_no_secret() -> None:
    record = _access_record("/oauth/shopify/callback?code=c0de&shop=a.myshopify.com", status=302)
    line = json.loads(AccessLogFormatter(json_lines=True).format(record))
    assert line.pop("timestamp").endswith("Z")
    assert line == {
        "event": "request",
        "client": "127.0.0.1:5000",
        "method": "POST",
        "path": "/oauth/shopify/callback?code=[redacted]&shop=a.myshopify.com",
        "http_version": "1.1",
        "status": 302,
        "level": "info",
        "logger": "uvicorn.access",
    }
