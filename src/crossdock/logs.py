"""Structured logging (structlog). Anything that looks like a credential is redacted before it is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SENSITIVE_KEY = re.compile(r"(secret|token|password|authorization|api[_-]?key|hmac|signature|cookie)", re.I)
# Query parameters that carry credentials: OAuth (code, tokens), WooCommerce's consumer_key/consumer_secret
# fallback (PROTOCOLS.md section 2), Shippo's ?token= webhook URLs, presigned AWS URLs (X-Amz-Signature...).
_HIDDEN_PARAMS = (
    r"access_token|refresh_token|id_token|client_secret|consumer_key|consumer_secret|token|code|password|passwd"
    # OAuth callbacks: the state nonce and Amazon's authorization code (SP-API website authorization workflow).
    r"|state|spapi_oauth_code"
    r"|secret|api_?key|apikey|key|signature|sig|hmac|x-amz-signature|x-amz-credential|x-amz-security-token"
)
# A value ends at the next parameter, space or quote. Not at "#": eBay refresh tokens contain it (v^1.1#i^1#...).
_SENSITIVE_QUERY = re.compile(rf"(?i)(?<![\w-])((?:{_HIDDEN_PARAMS})=)[^&\s\"']+")
_BEARER = re.compile(r"(?i)\b(bearer|shippotoken|basic)\s+[A-Za-z0-9._~+/=|-]+")
REDACTED = "[redacted]"


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def _may_hide(text: str) -> bool:
    """Whether a pattern above could match: each needs "=", "@" or one of _BEARER's words. Every log record and
    every stored webhook header goes through redact_text, and almost none holds anything to hide; this look is a
    tenth of the three scans. Text that is not ASCII is scanned in full (its case folding is the regex's own)."""
    if "=" in text or "@" in text or not text.isascii():
        return True
    lowered = text.lower()
    return "bearer" in lowered or "basic" in lowered or "shippotoken" in lowered


def redact_text(text: str) -> str:
    if not _may_hide(text):
        return text
    text = _SENSITIVE_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def is_sensitive_name(name: str) -> bool:
    """Whether a header, field or query parameter of this name carries a credential."""
    return bool(_SENSITIVE_KEY.search(name) or re.fullmatch(f"(?i)(?:{_HIDDEN_PARAMS})", name))


def redact_url(url: str) -> str:
    """A URL fit for logs and records: credentials in the user part or in the query are replaced."""
    return redact_text(url)


def redact(value: Any, key: str | None = None) -> Any:
    if key is not None and _SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_stdlib_records() -> None:
    """Redact every stdlib log record as it is made, so a library that logs a URL with a query secret (or an
    Authorization header) cannot leak it through whichever handler is attached. Installed once."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_crossdock_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string is the caller's bug; leave the record as it was
            return record
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return record

    factory._crossdock_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _redactor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: (v if k in {"timestamp", "level"} else redact(v, k)) for k, v in event.items()}


class _StderrLogger(structlog.PrintLogger):
    """Prints to sys.stderr as it is when a line is written, not when the logger was made: loggers are cached
    on first use, and whoever swapped the stream since (a test runner capturing output, a daemon redirecting
    it) gets the lines."""

    def __init__(self) -> None:
        super().__init__(file=sys.stderr)

    @property
    def _file(self) -> TextIO:
        return sys.stderr

    @_file.setter
    def _file(self, _value: TextIO) -> None:
        pass


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return _StderrLogger()


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    _redact_stdlib_records()
    # httpx narrates every request, full URL included, at INFO; crossdock records remote calls itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic narrates every step at INFO; only its warnings matter to an operator.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
