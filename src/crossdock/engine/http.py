"""The one HTTP client layer every connector uses to call its remote (httpx.AsyncClient underneath).

It owns what no connector should reinvent:
- timeouts (connect / read / total);
- keep-alive connections shared by the process's clients, so that a job reuses the connection an earlier job
  opened (engine/http_pools.py);
- the outbound URL check (no loopback, private or link-local targets unless CROSSDOCK_ALLOW_PRIVATE_URLS),
  with the connection pinned to the checked address;
- the connection's rate limiter (an optional RateLimiter plus an operation name per call);
- one table mapping the remote's answer to an action (DESIGN.md, "Decisions"), raising the engine's errors
  with the remote's own words: 2xx ok; 400/404/422 (and other 4xx) permanent; 401/403 configuration, after
  the auth hook has refreshed the token once; 408/5xx retry; 429 rate limited, honouring Retry-After;
  connection errors and timeouts retry;
- a POST (or PATCH) is retried only when it carries an idempotency key or the caller says the remote object
  is looked up before the next try (`lookup_first`); otherwise an unknown outcome is a permanent error that
  says so, because a blind retry could, say, buy a second label;
- every attempt recorded in `remote_calls` (URL without secrets) and, when the order is known, on its timeline;
  prometheus counters by connector and status; logs with secrets redacted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httpx
from prometheus_client import Counter, Histogram
from sqlalchemy import Table, delete, insert, select, update

from crossdock.engine.errors import (
    ConfigurationError,
    JobError,
    PermanentError,
    RateLimited,
    RetryableError,
)
from crossdock.engine.ratelimit import RateLimiter, RatePolicy, parse_retry_after
from crossdock.hub import Hub
from crossdock.logs import REDACTED, get_logger, is_sensitive_name, redact_text, redact_url
from crossdock.security.urls import UnsafeURL, check_outbound_url, pin_outbound_url, resolve_host
from crossdock.store import tables as t
from crossdock.store.db import Database
from crossdock.store.repo import EVENTS, INSERT_EVENT, bound_columns, event_row, prefixed
from crossdock.store.types import utcnow

_CALLS = cast(Table, t.RemoteCall.__table__)
_INSERT_CALL = insert(_CALLS)
# PostgreSQL: a call's record and its event on the order's timeline in one statement (one round trip, one commit).
_INSERT_CALL_AND_EVENT = INSERT_EVENT.values(bound_columns(EVENTS, "event_")).add_cte(
    _INSERT_CALL.values(bound_columns(_CALLS, "call_")).cte("call")
)

REMOTE_CALLS = Counter(
    "crossdock_remote_calls_total",
    "Calls to remote APIs by connector and outcome (HTTP status, or timeout / connection_error)",
    ["connector", "status"],
)
REMOTE_RATE_LIMITED = Counter(
    "crossdock_remote_rate_limited_total", "Remote answers 429 Too Many Requests", ["connector"]
)
REMOTE_SECONDS = Histogram("crossdock_remote_call_seconds", "Duration of calls to remote APIs", ["connector"])

# How much of a remote's own error text a message keeps: enough to act on, not a whole HTML page.
MAX_REMOTE_WORDS = 500
UNSAFE_METHODS = frozenset({"POST", "PATCH"})  # not idempotent (RFC 9110 9.2.2)


class Action(StrEnum):
    OK = "ok"
    PERMANENT = "permanent"
    CONFIGURATION = "configuration"
    RETRY = "retryable"
    RATE_LIMITED = "rate_limited"


def action_for(status: int) -> Action:
    """The status-to-action table (DESIGN.md)."""
    if 200 <= status < 300:
        return Action.OK
    if status in (401, 403):
        return Action.CONFIGURATION
    if status == 429:
        return Action.RATE_LIMITED
    # 423: MyParcel.com answers it while a request with the same Idempotency-Key is still being processed
    # (PROTOCOLS.md section 7): asking again later is the documented way out.
    if status in (408, 423) or status >= 500:
        return Action.RETRY
    # 400/404/422 and every other answer that sending the same request again cannot fix, redirects included:
    # we never follow them (a redirect could point anywhere, including inside our network).
    return Action.PERMANENT


class AuthHook(Protocol):
    """How a connector signs its requests. `refresh` gets new credentials once after a 401/403 (e.g. an OAuth
    refresh-token grant) and returns False when it cannot. A hook that signs only some hosts also has
    `signs(request) -> bool`: a 401/403 to a request it does not sign says nothing about the credentials."""

    async def authorize(self, request: httpx.Request) -> None: ...

    async def refresh(self) -> bool: ...


def _signs(auth: AuthHook, request: httpx.Request) -> bool:
    signs = getattr(auth, "signs", None)
    return bool(signs(request)) if signs is not None else True


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0
    read_s: float = 30.0
    total_s: float = 60.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_s, connect=self.connect_s, pool=self.connect_s)


@dataclass(frozen=True)
class Target:
    """Who calls: the account, the connector and (usually) the connection."""

    account_id: uuid.UUID
    connector: str
    connection_id: uuid.UUID | None = None


# The contract's errors, carrying the HTTP status and the remote's own words for callers that branch on them.
class RemotePermanentError(PermanentError):
    def __init__(self, message: str, *, status: int | None = None, remote_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.remote_message = remote_message


class RemoteConfigurationError(ConfigurationError):
    def __init__(self, message: str, *, status: int | None = None, remote_message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.remote_message = remote_message


class RemoteRetryableError(RetryableError):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        remote_message: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.remote_message = remote_message


class RemoteRateLimited(RateLimited):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        remote_message: str | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.remote_message = remote_message


@dataclass
class _Outcome:
    action: Action
    error_kind: str | None
    message: str | None = None
    retry_after: float | None = None
    status: int | None = None
    remote_message: str | None = None
    # The remote cannot have acted on the request (refused before processing, or never reached).
    not_processed: bool = False


Sleep = Callable[[float], Awaitable[None]]


def _tracer(sent: asyncio.Event) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore `trace` extension (www.python-httpx.org/advanced/extensions/, "trace") that sets `sent` when
    the request body, empty or not, has been written: events are named "http11.send_request_body.complete" and
    "http2.send_request_body.complete"."""

    async def trace(event: str, _info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):
            sent.set()

    return trace


async def discard(task: asyncio.Task[Any] | None) -> None:
    """A request started with `RemoteClient.start` whose answer is no longer wanted: cancelled (if it has not
    ended), and waited for, so that nothing is left running and no error of it goes unretrieved."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class RemoteClient:
    """One connection's door to its remote. Use as `async with RemoteClient(...) as client:`.

    Never call it inside an open database transaction: it records each attempt in its own short transaction
    and may sleep for rate-limit budget.
    """

    hub: Hub
    target: Target
    base_url: str = ""
    auth: AuthHook | None = None
    limiter: RateLimiter | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    headers: Mapping[str, str] = field(default_factory=dict)
    # Literal secret values (tokens, passwords) scrubbed from anything we store or raise, in case the remote
    # echoes them back in an error.
    secrets: Collection[str] = ()
    idempotency_header: str = "Idempotency-Key"
    # What the user does when the remote refuses the connection's credentials (401/403), by status: added to
    # the error and to the reason the connection is marked needs_reauth with.
    reauth_hint: Callable[[int | None], str] | None = None
    # Tries within one call for retryable outcomes whose wait is short; longer waits go back to the job queue.
    attempts: int = 3
    backoff_base_s: float = 0.5
    max_inline_wait_s: float = 10.0
    transport: httpx.AsyncBaseTransport | None = None
    sleep: Sleep = asyncio.sleep
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)
    # Resolves a host name to its addresses (blocking; run in a thread). Tests give a fixed table.
    resolver: Callable[[str], list[str]] = resolve_host
    _sent_secrets: set[str] = field(default_factory=set, init=False, repr=False)

    @classmethod
    def for_connection(
        cls,
        hub: Hub,
        connection: t.Connection,
        *,
        default_base_url: str = "",
        policy: RatePolicy | None = None,
        **kwargs: Any,
    ) -> RemoteClient:
        """The usual way a connector gets its client: the connection's base URL (or the connector's default)
        and, given the connector's rate policy, the connection's shared limiter."""
        limiter = (
            RateLimiter(hub.db, account_id=connection.account_id, connection_id=connection.id, policy=policy)
            if policy is not None
            else None
        )
        return cls(
            hub,
            Target(connection.account_id, connection.connector, connection.id),
            base_url=connection.base_url or default_base_url,
            limiter=limiter,
            **kwargs,
        )

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Over the process's keep-alive connections (engine/http_pools.py), unless a transport was given.
            self._client = self.hub.remote_pools.client(
                transport=self.transport,
                base_url=self.base_url,
                timeout=self.timeouts.httpx(),
                follow_redirects=False,
                headers=dict(self.headers),
            )
        return self._client

    # Convenience verbs ------------------------------------------------------------------------------------
    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        operation: str | None = None,
        order_id: uuid.UUID | None = None,
        idempotency_key: str | None = None,
        lookup_first: bool = False,
        sent: asyncio.Event | None = None,
    ) -> httpx.Response:
        """Send one request; returns the 2xx response or raises the engine error for what happened.

        `idempotency_key` is sent in the connector's idempotency header; `lookup_first=True` says the caller
        looks the remote object up before trying again, so a POST whose outcome is unknown may be retried.
        `sent` is set once the request's last byte is written to the connection (see `start`).
        """
        method = method.upper()
        client = self._http()
        send_headers = dict(headers or {})
        if idempotency_key is not None:
            send_headers[self.idempotency_header] = idempotency_key
        has_key = any(k.lower() == self.idempotency_header.lower() for k in send_headers)
        retry_safe = method not in UNSAFE_METHODS or has_key or lookup_first
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            request = client.build_request(
                method, url, params=params, json=json, data=data, content=content, headers=send_headers
            )
            if sent is not None:
                request.extensions = {**request.extensions, "trace": _tracer(sent)}
            shown_url = self._shown_url(request.url)
            unresolved = await self._pin(request, method, shown_url)
            if unresolved is not None:
                response, outcome, duration = None, unresolved, 0.0
            else:
                if self.limiter is not None:
                    await self.limiter.acquire(operation)
                signed = self.auth is not None and _signs(self.auth, request)
                if self.auth is not None:
                    await self.auth.authorize(request)
                credentialed = signed or self._carries_credentials(request)
                self._remember_sent_secrets(request)
                response, outcome, duration = await self._send(client, request, method, shown_url)
                if outcome.action is Action.CONFIGURATION and not credentialed:
                    # Refused without any of the connection's credentials (a signed file link that expired, a host
                    # the auth hook does not sign for): not a sign that the connection's credentials are wrong.
                    words = f": {outcome.remote_message}" if outcome.remote_message else ""
                    outcome = replace(
                        outcome,
                        action=Action.PERMANENT,
                        error_kind="permanent",
                        message=f"{self.target.connector} refused {shown_url} (HTTP {outcome.status}){words}, a request "
                        "that carried none of the connection's credentials: a signed link may have expired; fetch "
                        "the object that gave the link again",
                    )
            if response is not None and self.limiter is not None:
                await self.limiter.observe(operation, response)
            await self._record(method, shown_url, operation, order_id, attempt, response, outcome, duration)
            if outcome.action is Action.OK:
                assert response is not None
                return response
            if outcome.action is Action.CONFIGURATION and self.auth is not None and not refreshed:
                refreshed = True
                if await self.auth.refresh():
                    attempt -= 1  # a refreshed token earns the call its try back
                    continue
            error = self._error(outcome, method, retry_safe)
            # A POST without an idempotency key is never sent twice here: with lookup_first the caller looks
            # the remote object up before the next try (the job's retry), which an inline retry would skip.
            inline_retry = method not in UNSAFE_METHODS or has_key or outcome.not_processed
            if not isinstance(error, RetryableError) or attempt >= self.attempts or not inline_retry:
                if isinstance(error, ConfigurationError):
                    await self._needs_reauth(error.message)
                raise error
            wait = self._backoff(attempt, outcome.retry_after)
            if wait > self.max_inline_wait_s:
                raise error
            await self.sleep(wait)

    async def start(self, method: str, url: str, **kwargs: Any) -> asyncio.Task[httpx.Response]:
        """`request` in a task of its own, returned once the request has been written to the connection (or
        the call has ended, by an error included): the caller works on something else while the remote answers,
        then awaits the task. Waiting for the request to leave matters: before it, the call reserves its
        rate-limit slot in the database and may open a connection, and a caller busy with CPU work gives the
        event loop back too seldom for that to happen meanwhile. A transport that reports no progress (httpx's
        MockTransport) returns when the call has ended. Whoever holds the task hands it to `discard` when the
        answer is no longer wanted."""
        sent = asyncio.Event()
        task = asyncio.create_task(self.request(method, url, sent=sent, **kwargs))
        left = asyncio.create_task(sent.wait())
        try:
            await asyncio.wait({task, left}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            left.cancel()
        return task

    # Steps ------------------------------------------------------------------------------------------------
    def _shown_url(self, url: httpx.URL) -> str:
        return self._scrub(redact_url(str(url)))

    async def _pin(self, request: httpx.Request, method: str, shown_url: str) -> _Outcome | None:
        """The outbound URL check. The request is then sent to the very address that was checked (its Host
        header and TLS SNI keep the name), so a DNS answer that changes after the check (rebinding) cannot
        send it inside our network. A host's checked addresses are reused for a minute, by every client of the
        process (engine/http_pools.py): a job does not resolve again the name an earlier job resolved.

        An internal address raises a permanent error; a name that does not resolve (often a passing DNS
        fault) is returned as a retryable outcome, before anything was sent."""
        if self.hub.settings.allow_private_urls:
            return None
        host = request.url.host
        try:  # internal names (localhost, *.internal) are refused before anything is resolved
            check_outbound_url(str(request.url), allow_private=False, resolve=False)
        except UnsafeURL as exc:
            raise self._refused(shown_url, exc) from None
        pools = self.hub.remote_pools
        addresses = pools.addresses(self.resolver, host)
        if addresses is None:
            addresses = await asyncio.to_thread(_resolve_quietly, self.resolver, host)
            if addresses:
                pools.remember_addresses(self.resolver, host, addresses)
        if not addresses and not _is_ip(host):
            REMOTE_CALLS.labels(self.target.connector, "connection_error").inc()
            return _Outcome(
                Action.RETRY,
                "connection",
                f"could not reach {self.target.connector} for {method} {_path(shown_url)}: "
                f"the host name '{host}' does not resolve",
                not_processed=True,
            )
        try:
            target, name = pin_outbound_url(
                str(request.url), allow_private=False, resolver=lambda _host: addresses
            )
        except UnsafeURL as exc:
            pools.forget_addresses(self.resolver, host)
            raise self._refused(shown_url, exc) from None
        if name is not None:
            # httpx set the Host header from the original URL when it built the request; it stays.
            request.url = httpx.URL(target)
            if request.url.scheme == "https":
                request.extensions["sni_hostname"] = name
        return None

    def _refused(self, shown_url: str, exc: UnsafeURL) -> RemotePermanentError:
        return RemotePermanentError(
            f"{self.target.connector}: refused to call {shown_url}: {self._scrub(redact_text(str(exc)))}"
        )

    async def _send(
        self, client: httpx.AsyncClient, request: httpx.Request, method: str, shown_url: str
    ) -> tuple[httpx.Response | None, _Outcome, float]:
        connector = self.target.connector
        where = f"{method} {_path(shown_url)}"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeouts.total_s):
                response = await client.send(request)
        except (TimeoutError, httpx.TimeoutException) as exc:
            duration = time.perf_counter() - started
            phases: dict[type[BaseException], str] = {
                httpx.ConnectTimeout: "connect",
                httpx.ReadTimeout: "read",
                httpx.WriteTimeout: "write",
                httpx.PoolTimeout: "pool",
            }
            phase = phases.get(type(exc), "total")
            limit = {
                "connect": self.timeouts.connect_s,
                "read": self.timeouts.read_s,
                "pool": self.timeouts.connect_s,
            }.get(phase, self.timeouts.total_s)
            REMOTE_CALLS.labels(connector, "timeout").inc()
            return (
                None,
                _Outcome(
                    Action.RETRY,
                    "timeout",
                    f"{connector} did not answer {where} within {limit:g} s ({phase} timeout)",
                    # Nothing was sent when the connection (or a pooled one) was never had.
                    not_processed=phase in {"connect", "pool"},
                ),
                duration,
            )
        except httpx.TransportError as exc:
            duration = time.perf_counter() - started
            REMOTE_CALLS.labels(connector, "connection_error").inc()
            reason = self._scrub(redact_text(str(exc) or type(exc).__name__))
            return (
                None,
                _Outcome(
                    Action.RETRY,
                    "connection",
                    f"could not reach {connector} for {where}: {reason}",
                    not_processed=isinstance(exc, httpx.ConnectError),
                ),
                duration,
            )
        duration = time.perf_counter() - started
        REMOTE_CALLS.labels(connector, str(response.status_code)).inc()
        REMOTE_SECONDS.labels(connector).observe(duration)
        return response, self._classify(response, where), duration

    def _classify(self, response: httpx.Response, where: str) -> _Outcome:
        status = response.status_code
        action = action_for(status)
        if action is Action.OK:
            return _Outcome(Action.OK, None, status=status)
        connector = self.target.connector
        words = self._scrub(remote_words(response))
        heard = (
            f" (HTTP {status} {_phrase(status)}): {words}" if words else f" (HTTP {status} {_phrase(status)})"
        )
        if action is Action.RATE_LIMITED:
            REMOTE_RATE_LIMITED.labels(connector).inc()
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            message = f"{connector} is rate limiting {where}{heard}"
            if retry_after is not None:
                message += f"; retrying after {retry_after:g} s"
            return _Outcome(action, "rate_limited", message, retry_after, status, words, not_processed=True)
        if action is Action.CONFIGURATION:
            message = (
                f"{connector} refused the connection's credentials for {where}{heard}; "
                "re-authorise the connection or update its secrets"
            )
            return _Outcome(action, "configuration", message, None, status, words, not_processed=True)
        if action is Action.RETRY:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            message = f"{connector} failed {where}{heard}"
            return _Outcome(
                action, "retryable", message, retry_after, status, words, not_processed=status == 408
            )
        if 300 <= status < 400:
            location = self._scrub(redact_url(response.headers.get("location", "")))
            message = f"{connector} redirected {where} to {location or 'another address'} (HTTP {status}); check the connection's base URL"
        else:
            message = f"{connector} refused {where}{heard}"
        return _Outcome(action, "permanent", message, None, status, words)

    def _error(self, outcome: _Outcome, method: str, retry_safe: bool) -> JobError:
        message = outcome.message or "remote call failed"
        if outcome.action is Action.CONFIGURATION:
            hint = self.reauth_hint(outcome.status) if self.reauth_hint is not None else ""
            return RemoteConfigurationError(
                f"{message}. {hint}" if hint else message,
                status=outcome.status,
                remote_message=outcome.remote_message,
            )
        if outcome.action is Action.PERMANENT:
            return RemotePermanentError(message, status=outcome.status, remote_message=outcome.remote_message)
        if not retry_safe and not outcome.not_processed:
            return RemotePermanentError(
                f"{message}. The outcome is unknown and {method} is not retried without an idempotency key "
                "(it may have taken effect): check the remote before retrying this job",
                status=outcome.status,
                remote_message=outcome.remote_message,
            )
        if outcome.action is Action.RATE_LIMITED:
            return RemoteRateLimited(
                message,
                retry_after=outcome.retry_after,
                status=outcome.status,
                remote_message=outcome.remote_message,
            )
        return RemoteRetryableError(
            message,
            retry_after=outcome.retry_after,
            status=outcome.status,
            remote_message=outcome.remote_message,
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        backoff = random.uniform(0, self.backoff_base_s * 2 ** (attempt - 1))
        return max(backoff, retry_after or 0.0)

    def _carries_credentials(self, request: httpx.Request) -> bool:
        """Whether the request presents a credential of ours: an auth header, or one of the connection's secrets
        in its URL or body (a token grant's client secret)."""
        if any(is_sensitive_name(name) for name in request.headers):
            return True
        try:
            body = request.content
        except httpx.RequestNotRead:  # a streamed body: only its URL is looked at
            body = b""
        where = str(request.url).encode() + b" " + body
        return any(len(secret) >= 6 and secret.encode() in where for secret in self.secrets)

    def _remember_sent_secrets(self, request: httpx.Request) -> None:
        """Credentials this request carries (auth headers, secret query parameters): a remote that echoes one
        back in an error must not get it into our records, logs or exceptions."""
        for name, value in request.headers.items():
            if is_sensitive_name(name):
                self._sent_secrets.add(value)
                self._sent_secrets.update(value.split()[1:])  # "Bearer <token>": the token alone too
        for name, value in request.url.params.multi_items():
            if is_sensitive_name(name):
                self._sent_secrets.add(value)

    def _scrub(self, text: str) -> str:
        # Longest first, so a value that contains another is replaced whole.
        for secret in sorted({*self.secrets, *self._sent_secrets}, key=len, reverse=True):
            if secret and len(secret) >= 6:
                text = text.replace(secret, REDACTED)
        return text

    async def _record(
        self,
        method: str,
        shown_url: str,
        operation: str | None,
        order_id: uuid.UUID | None,
        attempt: int,
        response: httpx.Response | None,
        outcome: _Outcome,
        duration: float,
    ) -> None:
        status = response.status_code if response is not None else None
        duration_ms = round(duration * 1000)
        log = get_logger(__name__)
        # Every call is in remote_calls; the log carries the ones an operator may want to see as they happen.
        (log.debug if outcome.action is Action.OK else log.info)(
            "remote call",
            connector=self.target.connector,
            method=method,
            url=shown_url,
            status=status,
            duration_ms=duration_ms,
            attempt=attempt,
            error_kind=outcome.error_kind,
        )
        try:
            # A record of what happened needs no transaction around it: it commits as it is written, without a
            # BEGIN and a COMMIT besides; on PostgreSQL the call and its timeline event are one statement. Core
            # inserts of statements built once: the ORM's unit of work cost twice the statement's own CPU, and
            # every remote call is recorded.
            async with self.hub.db.autocommit() as conn:
                call = {
                    "id": uuid.uuid4(),
                    "at": utcnow(),
                    "account_id": self.target.account_id,
                    "connection_id": self.target.connection_id,
                    "order_id": order_id,
                    "connector": self.target.connector,
                    "operation": operation,
                    "method": method,
                    "url": shown_url[:2000],
                    "status": status,
                    "duration_ms": duration_ms,
                    "attempt": attempt,
                    "error_kind": outcome.error_kind,
                    "error": (outcome.message or None) and outcome.message[:2000],
                }
                if order_id is None:
                    await conn.execute(_INSERT_CALL, call)
                else:
                    code = str(status) if status is not None else outcome.error_kind
                    summary = (
                        f"{self.target.connector}: {method} {_path(shown_url)} -> {code} in {duration_ms} ms"
                    )
                    if outcome.message:
                        summary = outcome.message
                    event = event_row(
                        self.target.account_id,
                        order_id,
                        "remote.call",
                        summary,
                        {
                            "connector": self.target.connector,
                            "method": method,
                            "url": shown_url,
                            "status": status,
                            "duration_ms": duration_ms,
                            "attempt": attempt,
                            "error_kind": outcome.error_kind,
                        },
                        severity="info" if outcome.action is Action.OK else "warning",
                    )
                    if conn.dialect.name == "postgresql":  # one statement: the call in a WITH query
                        await conn.execute(
                            _INSERT_CALL_AND_EVENT, {**prefixed("call_", call), **prefixed("event_", event)}
                        )
                    else:
                        await conn.execute(_INSERT_CALL, call)
                        await conn.execute(INSERT_EVENT, event)
        except Exception as exc:  # the call's outcome matters more than its record: never mask it
            log.warning("could not record a remote call", error=f"{type(exc).__name__}: {exc}")

    async def needs_reauth(self, reason: str) -> None:
        """Mark the connection as needing re-authorisation with `reason` (what the user must do)."""
        await self._needs_reauth(reason)

    async def _needs_reauth(self, reason: str) -> None:
        if self.target.connection_id is None:
            return
        async with self.hub.db.transaction() as session:
            await session.execute(
                update(t.Connection)
                .where(
                    t.Connection.id == self.target.connection_id,
                    t.Connection.account_id == self.target.account_id,
                )
                .values(status="needs_reauth", status_reason=reason[:2000], updated_at=utcnow())
            )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve_quietly(resolver: Callable[[str], list[str]], host: str) -> list[str]:
    """Addresses of a host name; none for an IP literal or a name that does not resolve."""
    if _is_ip(host):
        return []
    try:
        return resolver(host)
    except UnsafeURL:
        return []


def remote_words(response: httpx.Response) -> str:
    """The remote's own error text from the common JSON error shapes, else the start of its body (redacted)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        text = " ".join(response.text.split())
        if text.lstrip().startswith("<"):  # an HTML error page says nothing a user can act on
            return ""
        return redact_text(text[:MAX_REMOTE_WORDS])
    words = _words(body)
    return redact_text(words[:MAX_REMOTE_WORDS])


def _words(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return "; ".join(w for w in (_words(item) for item in body) if w)
    if not isinstance(body, dict):
        return json.dumps(body)[:MAX_REMOTE_WORDS] if body is not None else ""
    # {"errors": "Not Found"} / {"errors": {"field": ["msg"]}} (Shopify), {"errors": [{"code", "message",
    # "details"}]} (SP-API, eBay), [{"title", "detail", "source"}] (JSON:API: MyParcel.com).
    if body.get("errors"):
        return _error_list(body["errors"])
    # {"error": {"code", "message"}} (EasyPost); {"error": "invalid_grant", "error_description"} (OAuth 2.0).
    if body.get("error"):
        error = body["error"]
        if isinstance(error, dict):
            return _one_error(error)
        description = body.get("error_description")
        return f"{error}: {description}" if description else str(error)
    # {"code", "message", "data"} (WooCommerce), {"detail"} (Shippo, problem+json), {"message"}.
    if "message" in body and isinstance(body["message"], str):
        code = body.get("code")
        return f"{code}: {body['message']}" if isinstance(code, str) and code else body["message"]
    if "detail" in body or "title" in body:
        return _one_error(body)
    # Shippo transactions: {"messages": [{"source", "code", "text"}]}.
    if isinstance(body.get("messages"), list):
        return "; ".join(str(m.get("text", m)) if isinstance(m, dict) else str(m) for m in body["messages"])
    return json.dumps(body)[:MAX_REMOTE_WORDS]


def _error_list(errors: Any) -> str:
    if isinstance(errors, str):
        return errors
    if isinstance(errors, dict):
        parts = []
        for name, messages in errors.items():
            text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            parts.append(f"{name}: {text}" if name != "base" else text)
        return "; ".join(parts)
    if isinstance(errors, list):
        return "; ".join(_one_error(e) if isinstance(e, dict) else str(e) for e in errors)
    return str(errors)


def _one_error(error: Mapping[str, Any]) -> str:
    message = error.get("message") or error.get("detail") or error.get("title") or error.get("text")
    if not message:
        return json.dumps(error)[:MAX_REMOTE_WORDS]
    text = str(message)
    details = error.get("details")
    if details and isinstance(details, str) and details not in text:
        text += f" ({details})"
    pointer = (error.get("source") or {}).get("pointer") if isinstance(error.get("source"), dict) else None
    if pointer:
        text = f"{pointer}: {text}"
    code = error.get("code")
    if code and isinstance(code, str) and code not in text:
        text = f"{code}: {text}"
    return text


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path or "/"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# Retention --------------------------------------------------------------------------------------------------
async def prune_remote_calls(db: Database, *, keep_days: float, batch: int = 5000) -> int:
    """Delete remote-call records older than `keep_days`, in batches so no transaction grows large."""
    from datetime import timedelta

    cutoff = utcnow() - timedelta(days=keep_days)
    removed = 0
    while True:
        async with db.transaction() as session:
            ids = (
                await session.scalars(select(t.RemoteCall.id).where(t.RemoteCall.at < cutoff).limit(batch))
            ).all()
            if not ids:
                return removed
            await session.execute(delete(t.RemoteCall).where(t.RemoteCall.id.in_(ids)))
            removed += len(ids)
