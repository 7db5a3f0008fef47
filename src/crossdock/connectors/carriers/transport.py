"""karrio's HTTP, sent through the connection's RemoteClient.

karrio is synchronous: its carrier proxies call `karrio.lib.request`, which builds a `urllib.request.Request`
and opens it with `karrio.core.utils.helpers._urlopen_with_span` (karrioapi/karrio: modules/sdk/karrio/core/
utils/helpers.py, `request` and `request_with_response`). That one function is where every carrier request
leaves karrio, so it is where crossdock takes over: `install()` points it at `dispatch`, which hands the request
to the RemoteClient of the connection whose karrio call is running (a context variable says which), on the
event loop that called karrio from a worker thread. Each carrier request so gets what every connector's calls
get: the outbound URL check, the connection's rate limiter, the status-to-action table, a row in remote_calls
(and on the order's timeline), secrets scrubbed. karrio's own code is not changed, only the function it opens
URLs with; outside a crossdock carrier call `dispatch` refuses, so nothing can bypass those checks.

karrio fixes each carrier's host (production or test, by `test_mode`). A connection with a `base_url` (a
regional gateway, a proxy, a stand-in for the carrier) has every request's scheme and host replaced by it, the
carrier's path and query kept (`rebase`), the way every other connector's base URL points it elsewhere.

Outcomes go back to karrio as urllib would give them, with one difference: only a carrier's refusal of the
request (4xx other than 401/403/429) reaches karrio as an HTTPError with the carrier's body, so that karrio's
parser turns the carrier's own error shape into messages. Everything else the RemoteClient decided
(credentials refused, rate limited, 5xx, timeouts, an unknown outcome) is kept on the Exchange and karrio is
stopped with `Stopped`, which karrio's retry loop does not catch (it retries HTTPError and OSError only):
retries are the RemoteClient's and the job queue's, never karrio's, so a label POST is not repeated blindly.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit, urlunsplit
from urllib.request import Request

import httpx

from crossdock.engine.errors import ConfigurationError, JobError, PermanentError, RetryableError
from crossdock.engine.http import RemoteClient, RemoteConfigurationError, RemotePermanentError

_lock = threading.Lock()
_installed = False


class Stopped(Exception):
    """Raised into karrio when the RemoteClient already decided the call's fate (kept on the Exchange)."""


@dataclass
class Exchange:
    """One karrio operation (rates, a label, tracking, a void) and what its HTTP calls met.

    `retry_safe` says the operation has no side effect at the carrier (rates, tracking, voids), so a POST
    whose outcome is unknown may be tried again by the job; a label purchase is not, and its unknown outcome
    is a permanent error telling the user to check the carrier first (crossdock.engine.http)."""

    client: RemoteClient
    loop: asyncio.AbstractEventLoop
    bucket_of: Callable[[str], str | None]
    retry_safe: bool
    order_id: uuid.UUID | None = None
    timeout_s: float = 120.0
    # The connection's base URL: sent to instead of the carrier's host karrio chose (see `rebase`).
    base_url: str | None = None
    # Changes the carrier's request body before it is sent (gateway.adjust_request); None keeps karrio's.
    adjust: Callable[[str, bytes], bytes | None] | None = None
    # The engine error that stopped the operation; raised by the connector once karrio returns.
    error: JobError | None = None
    # The carrier's last refusal (4xx), kept in case karrio's parser finds no message in the body.
    refusal: RemotePermanentError | None = None
    closed: bool = False
    calls: int = 0
    _last: list[httpx.Response] = field(default_factory=list, repr=False)

    def send(self, request: Request) -> _Response:
        if self.closed:
            raise Stopped("the carrier call was stopped (its time ran out)")
        self.calls += 1
        method = request.get_method()
        try:
            url = rebase(request.full_url, self.base_url)
        except ConfigurationError as exc:
            self.error = exc
            raise Stopped(exc.message) from None
        headers = dict(request.header_items())
        body = request.data if isinstance(request.data, bytes | bytearray) else None
        if body is not None and self.adjust is not None:
            adjusted = self.adjust(request.full_url, bytes(body))
            if adjusted is not None:
                body = adjusted
                headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        token_request = is_token_request(body)
        seen: list[httpx.Response] = []
        self._last = seen
        captured = _CAPTURE.set(seen)
        try:
            # The coroutine's task copies this thread's context, so the transport below finds `seen`.
            future = asyncio.run_coroutine_threadsafe(
                self.client.request(
                    method,
                    url,
                    content=bytes(body) if body is not None else None,
                    headers=headers,
                    # The carrier's own path names the limiter bucket, whatever host the call goes to.
                    operation=self.bucket_of(request.full_url),
                    order_id=self.order_id,
                    # An OAuth token request, rates, tracking and voids change nothing when repeated.
                    lookup_first=self.retry_safe or token_request,
                ),
                self.loop,
            )
        finally:
            _CAPTURE.reset(captured)
        try:
            response = future.result(timeout=self.timeout_s)
        except JobError as exc:
            raise self._stop_or_refuse(exc, url, seen, token_request) from None
        except TimeoutError:
            future.cancel()
            self.error = self.error or timed_out(self.retry_safe)
            raise Stopped(self.error.message) from None
        return _Response(response.status_code, response.headers, response.content)

    def _stop_or_refuse(
        self, exc: JobError, url: str, seen: list[httpx.Response], token_request: bool
    ) -> Exception:
        answer = seen[-1] if seen else None
        refused = (
            isinstance(exc, RemotePermanentError) and answer is not None and 400 <= answer.status_code < 500
        )
        if refused and token_request:
            # OAuth 2.0 token endpoints answer 400 for invalid_client / invalid_grant (RFC 6749 5.2): the
            # connection's credentials are wrong, whatever status the carrier chose.
            self.error = RemoteConfigurationError(
                f"{exc.message}; check the connection's client id and secret",
                status=answer.status_code if answer is not None else None,
                remote_message=getattr(exc, "remote_message", None),
            )
            return Stopped(self.error.message)
        if refused and answer is not None and isinstance(exc, RemotePermanentError):
            self.refusal = exc
            headers = Message()
            for name, value in answer.headers.items():
                headers[name] = value
            return HTTPError(
                url, answer.status_code, answer.reason_phrase, headers, io.BytesIO(answer.content)
            )
        self.error = exc
        return Stopped(exc.message)


def rebase(url: str, base_url: str | None) -> str:
    """`url` sent to `base_url` instead: its scheme and host (and path prefix, if any) replace the carrier's,
    the carrier's path and query stay. Unchanged without a base URL."""
    if not base_url:
        return url
    base = urlsplit(base_url)
    if not base.scheme or not base.netloc:
        raise ConfigurationError(
            f"the connection's base URL '{base_url}' is not an absolute URL; give one such as "
            "https://ups-gateway.example.com, or leave it empty for the carrier's own host"
        )
    parts = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))


def timed_out(retry_safe: bool) -> JobError:
    if retry_safe:
        return RetryableError("the carrier did not answer in time; the call will be retried")
    return PermanentError(
        "the carrier did not answer the label purchase in time: the label may have been bought. Check the "
        "carrier's account before retrying this job"
    )


class _Response:
    """What karrio reads of an urllib response: status, headers, read(), and `with` support."""

    def __init__(self, status: int, headers: httpx.Headers, content: bytes) -> None:
        self.status = status
        self.code = status
        self.headers = dict(headers.items())
        self.url: str | None = None
        self._content = content

    def read(self, *_args: Any) -> bytes:
        return self._content

    def getcode(self) -> int:
        return self.status

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


def is_token_request(body: bytes | bytearray | None) -> bool:
    """An OAuth 2.0 token request (RFC 6749 4.4.2: a form with grant_type)."""
    if not body:
        return False
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return False
    if text.lstrip().startswith("{"):
        return '"grant_type"' in text
    return "grant_type" in parse_qs(text)


_ACTIVE: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "crossdock_karrio_exchange", default=None
)
_CAPTURE: contextvars.ContextVar[list[httpx.Response] | None] = contextvars.ContextVar(
    "crossdock_karrio_capture", default=None
)


def dispatch(request: Request, timeout: float | None = None) -> _Response:
    """karrio's `_urlopen_with_span(req, timeout)`, routed to the running operation's RemoteClient."""
    exchange = _ACTIVE.get()
    if exchange is None:
        host = urlsplit(request.full_url).hostname
        raise Stopped(
            f"karrio tried to call {host} outside a crossdock carrier connection; carrier calls go through "
            "crossdock.connectors.carriers so that they are checked, rate limited and recorded"
        )
    return exchange.send(request)


def run_in_exchange(exchange: Exchange, work: Callable[[], Any]) -> Any:
    """Run `work` (a blocking karrio call, in a worker thread) with its HTTP routed through `exchange`."""
    token = _ACTIVE.set(exchange)
    try:
        return work()
    finally:
        _ACTIVE.reset(token)


class _ContextExecutor(ThreadPoolExecutor):
    """karrio runs some carrier calls in a thread pool (`exec_parrallel`, used by UPS tracking); threads do
    not inherit context variables, so each task runs in a copy of the submitting thread's context."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)


class CapturingTransport(httpx.AsyncBaseTransport):
    """Keeps the carrier's answer for the running karrio request (the RemoteClient raises on a 4xx, and
    karrio needs the body to read the carrier's error)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        seen = _CAPTURE.get()
        if seen is not None:
            seen.append(response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def install() -> None:
    """Route karrio's HTTP through `dispatch` (once per process) and silence karrio's own log, which
    writes request payloads (addresses, phone numbers) to stderr; crossdock records the calls itself."""
    global _installed
    with _lock:
        if _installed:
            return
        import karrio.core.utils.helpers as helpers
        from loguru import logger

        if not hasattr(helpers, "_urlopen_with_span") or not hasattr(helpers, "ThreadPoolExecutor"):
            raise ConfigurationError(
                "this karrio version opens URLs differently than crossdock expects; install the karrio "
                "version pinned in crossdock's constraints.txt"
            )
        helpers._urlopen_with_span = dispatch
        helpers.ThreadPoolExecutor = _ContextExecutor
        logger.disable("karrio")
        _installed = True
