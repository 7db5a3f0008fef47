"""Keep-alive connections to remotes, and the addresses their names resolved to, shared by every RemoteClient of
a process.

A job opens its connector, sends one to three calls and closes it. When each RemoteClient had a connection pool
of its own, every job opened a new TCP connection to its remote and closed it at the end; against HTTPS that is
a TLS handshake per job besides, two more round trips to the remote before the first byte of the request and
the handshake's CPU on both sides. Here the pools outlive the clients: a client sends through `RemotePools`, and
closing the client closes nothing shared.

What a pooled connection may be reused for:
- one pool per event loop (a connection belongs to the loop that opened it) and per origin as the request is
  sent, its scheme, host, port and TLS server name. RemoteClient pins a request to the address it checked
  (engine/http.py `_pin`): the URL then holds that address and `sni_hostname` the name. A TLS connection was
  verified for its name, so two names behind one address (a platform's shops behind one load balancer) never
  share one;
- a connection carries no credentials or cookies of its own (they are in each request's headers and in each
  client), so the connections to a host are shared between the accounts and connections of the process, as
  any HTTP client shares a keep-alive connection between requests;
- an idle connection is reused for at most `KEEPALIVE_S`, below the idle timeout common servers close at,
  so that it is seldom closed by the server just as a request goes out on it (which the caller could not tell
  from a request lost after it was received). httpcore also drops an idle connection the server has closed
  before reusing it (it checks whether the socket has become readable).

A host name's addresses, resolved and checked by RemoteClient (engine/http.py `_pin`), are kept for
`ADDRESSES_S` in the same way: a job does not resolve again (a DNS query, and a hop to a thread for the blocking
call) the name an earlier job resolved. A name that did not resolve is not kept.

Each origin's pool holds at most 100 connections (httpx's default; a request waits for one as long as the
connect timeout, then fails as a timeout that sent nothing) and keeps at most 20 idle. A pool that has had no
request for `IDLE_CLOSE_S` is closed with its connections: the process may talk to thousands of hosts (one per
shop), and a pool's expired connections are otherwise closed only when that pool is used again.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from crossdock.logs import get_logger

log = get_logger(__name__)

# Below the 5 s idle timeout of uvicorn (`--timeout-keep-alive`, www.uvicorn.org/settings), Apache httpd
# (KeepAliveTimeout, httpd.apache.org/docs/2.4/mod/core.html) and Node.js's releases before its default became
# 65 s (server.keepAliveTimeout, nodejs.org/api/http.html), and far below nginx's 75 s (keepalive_timeout).
KEEPALIVE_S = 4.0
IDLE_CLOSE_S = 60.0
# How long a host name's resolved addresses are used before it is resolved again.
ADDRESSES_S = 60.0
# Past this many names kept, the expired ones are dropped when another is kept.
ADDRESSES_KEPT = 1024
# How often, at most, the pools of a loop are looked over for idle ones.
SWEEP_EVERY_S = 10.0

# Resolves a host name to its addresses (blocking), as security.urls.resolve_host.
Resolver = Callable[[str], list[str]]
# (scheme, host, port, TLS server name): the host is an address once the request is pinned.
Origin = tuple[str, str, int | None, str | None]


def origin_of(request: httpx.Request) -> Origin:
    sni = request.extensions.get("sni_hostname")
    return (request.url.scheme, request.url.host, request.url.port, sni if isinstance(sni, str) else None)


@dataclass
class _Pool:
    transport: httpx.AsyncBaseTransport
    busy: int = 0  # requests sent whose responses are not closed yet
    last_used: float = 0.0


class _Loop:
    def __init__(self) -> None:
        self.pools: dict[Origin, _Pool] = {}
        self.swept = 0.0


class RemotePools:
    """The process's connection pools to remotes (one per event loop and origin) and the addresses of the names
    its clients resolved; `transport()` is what a client sends through. Close with `aclose()` when the process
    stops (Hub.close does)."""

    def __init__(
        self,
        *,
        keepalive_s: float = KEEPALIVE_S,
        idle_close_s: float = IDLE_CLOSE_S,
        clock: Callable[[], float] = time.monotonic,
        make_transport: Callable[[httpx.Limits], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.limits = httpx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=keepalive_s
        )
        self.idle_close_s = idle_close_s
        self.clock = clock
        self._make_transport = make_transport or _verified_transport
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = weakref.WeakKeyDictionary()
        # (resolver, host name) -> (addresses, until when): by resolver too, as tests give clients tables of their
        # own; every RemoteClient of a deployment resolves with security.urls.resolve_host.
        self._addresses: dict[tuple[Resolver, str], tuple[list[str], float]] = {}

    def addresses(self, resolver: Resolver, host: str) -> list[str] | None:
        """The addresses `host` resolved to within the last `ADDRESSES_S`, or None."""
        kept = self._addresses.get((resolver, host))
        if kept is None or kept[1] <= self.clock():
            return None
        return kept[0]

    def remember_addresses(self, resolver: Resolver, host: str, addresses: list[str]) -> None:
        now = self.clock()
        if len(self._addresses) >= ADDRESSES_KEPT:
            for key in [key for key, (_, until) in self._addresses.items() if until <= now]:
                del self._addresses[key]
        self._addresses[(resolver, host)] = (list(addresses), now + ADDRESSES_S)

    def forget_addresses(self, resolver: Resolver, host: str) -> None:
        self._addresses.pop((resolver, host), None)

    def transport(self) -> httpx.AsyncBaseTransport:
        """A transport for one client: it sends through the shared pools, and its `aclose` closes nothing."""
        return _Borrowed(self)

    def client(
        self, *, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> httpx.AsyncClient:
        """An httpx client (`options` as httpx.AsyncClient takes them) that sends through the shared pools, or
        through `transport` where one is given (tests). It verifies TLS with the process's one context, for the
        proxies httpx mounts from the environment too: a client left to httpx's default builds its own context,
        which reads the CA bundle again (about 20 ms of CPU)."""
        return httpx.AsyncClient(
            transport=transport if transport is not None else self.transport(),
            verify=tls_context(),
            **options,
        )

    def origins(self) -> list[Origin]:
        """The origins this event loop holds a pool for."""
        found = self._loops.get(asyncio.get_running_loop())
        return list(found.pools) if found else []

    async def send(self, request: httpx.Request) -> httpx.Response:
        here = self._loops.get(asyncio.get_running_loop())
        if here is None:
            here = self._loops[asyncio.get_running_loop()] = _Loop()
        now = self.clock()
        if now - here.swept >= SWEEP_EVERY_S:
            here.swept = now
            await self._close_idle(here, now)
        origin = origin_of(request)
        pool = here.pools.get(origin)
        if pool is None:
            pool = here.pools[origin] = _Pool(self._make_transport(self.limits))
        pool.busy += 1
        pool.last_used = now
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            self._release(pool)
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Released(response.stream, lambda: self._release(pool)),
            extensions=response.extensions,
        )

    def _release(self, pool: _Pool) -> None:
        pool.busy -= 1
        pool.last_used = self.clock()

    async def _close_idle(self, here: _Loop, now: float) -> None:
        idle = [
            origin
            for origin, pool in here.pools.items()
            if pool.busy == 0 and now - pool.last_used >= self.idle_close_s
        ]
        for origin in idle:
            pool = here.pools.pop(origin)
            await _close_quietly(pool.transport, origin)

    async def aclose(self) -> None:
        """Close this event loop's pools; forget those of other loops (their connections cannot be closed from
        here, and go with their loop)."""
        here = self._loops.pop(asyncio.get_running_loop(), None)
        self._loops.clear()
        if here is None:
            return
        for origin, pool in list(here.pools.items()):
            await _close_quietly(pool.transport, origin)
        here.pools.clear()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context remotes are verified with, made once per process (httpx's default: the certifi bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR). Each client used to build its own, which loads the CA bundle again: about
    20 ms of CPU for every client, and a job opens one per connector it calls."""
    return httpx.create_ssl_context()


def _verified_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=tls_context(), limits=limits)


async def _close_quietly(transport: httpx.AsyncBaseTransport, origin: Origin) -> None:
    try:
        await transport.aclose()
    except Exception as exc:  # a connection that fails to close is gone either way
        log.debug("closing a remote connection pool failed", host=origin[1], error=type(exc).__name__)


class _Borrowed(httpx.AsyncBaseTransport):
    def __init__(self, pools: RemotePools) -> None:
        self.pools = pools

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.pools.send(request)

    async def aclose(self) -> None:
        """The client is done with the pools; they stay open for the next client."""


class _Released(httpx.AsyncByteStream):
    """A response's body, which calls `release` once, when it is closed (the connection is back in its pool)."""

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, release: Callable[[], None]
    ) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self.stream = stream
        self.release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.stream.aclose()
        finally:
            release, self.release = self.release, None
            if release is not None:
                release()
