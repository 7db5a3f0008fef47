"""Structured logging (structlog). Anything that looks like a credential is redacted before it is written."""

from __future__ import annotations

import http
import json
import logging
import re
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
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
            record.msg, record.args = _redacted_parts(record, redacted)
        return record

    factory._crossdock_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _redacted_parts(record: logging.LogRecord, redacted: str) -> tuple[Any, Any]:
    """The record's format and arguments once redacted: each text argument redacted on its own where that gives
    the same message as redacting the whole (formatters that read the arguments, as uvicorn's access log does,
    then still find them), else the redacted message with no arguments."""
    args = record.args
    if isinstance(args, tuple) and args:
        parts = tuple(redact_text(arg) if isinstance(arg, str) else arg for arg in args)
        try:
            if str(record.msg) % parts == redacted:
                return record.msg, parts
        except (TypeError, ValueError):
            pass
    return redacted, None


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


# The standard library's records, and uvicorn's ---------------------------------------------------------------
# crossdock's own events go through structlog (below); libraries and the HTTP server log through the standard
# library. These formatters write those in the same format (CROSSDOCK_LOG_FORMAT), so that a JSON log is JSON on
# every line.

_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


def _timestamp(created: float) -> str:
    # As structlog's TimeStamper(fmt="iso", utc=True) writes crossdock's own events.
    return datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")


class JsonLogFormatter(logging.Formatter):
    """A standard library record as one JSON object: timestamp, level, logger and event (the message), and the
    exception's traceback, redacted, if it has one."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record, {"event": record.getMessage()}))

    def fields(self, record: logging.LogRecord, fields: dict[str, Any]) -> dict[str, Any]:
        fields.update(
            level=record.levelname.lower(), logger=record.name, timestamp=_timestamp(record.created)
        )
        if record.exc_info:
            fields["exception"] = redact_text(self.formatException(record.exc_info))
        return fields


class AccessLogFormatter(JsonLogFormatter):
    """uvicorn's access log, one line per request: uvicorn logs '%s - "%s %s HTTP/%s" %d' with the client's
    address, the method, the path with its query, the HTTP version and the status.

    Console lines read as uvicorn's own (`INFO:     127.0.0.1:5000 - "GET /healthz HTTP/1.1" 200 OK`, without
    colours); JSON lines carry the same as fields (event "request", client, method, path, http_version, status).
    uvicorn's own formatter copies every record and looks its status up in an enum: more than half of the
    access log's cost per request (bench/webhook_ingest.py). A record whose arguments are not those five (another
    caller's, or one redacted as a whole) is written with its message."""

    def __init__(self, json_lines: bool = False) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5):
            if self.json_lines:
                return super().format(record)
            return f"{_level_prefix(record.levelname)} {record.getMessage()}"
        client, method, path, version, status = args
        if self.json_lines:
            line = {
                "event": "request",
                "client": client,
                "method": method,
                "path": path,
                "http_version": version,
                "status": status,
            }
            return json.dumps(self.fields(record, line))
        phrase = _PHRASES.get(status, "") if isinstance(status, int) else ""
        return (
            f'{_level_prefix(record.levelname)} {client} - "{method} {path} HTTP/{version}" {status} {phrase}'
        )


def _level_prefix(level: str) -> str:
    # uvicorn's: "INFO:" and spaces to the width of the longest level name.
    return f"{level}:".ljust(9)


def server_log_config(fmt: str) -> dict[str, Any]:
    """uvicorn's logging for crossdock's servers, as `logging.config.dictConfig` takes it: its messages to stderr,
    its access log to stdout, as uvicorn has them, in `fmt` (CROSSDOCK_LOG_FORMAT). In the console format
    uvicorn's own messages keep uvicorn's formatter."""
    json_lines = fmt == "json"
    default: dict[str, Any] = (
        {"()": JsonLogFormatter}
        if json_lines
        else {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": default, "access": {"()": AccessLogFormatter, "json_lines": json_lines}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
            "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter("%(message)s"))
    # Does nothing where the root logger has handlers already (a test runner's, an embedding application's).
    logging.basicConfig(handlers=[handler], level=level.upper())
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
