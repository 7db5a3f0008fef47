"""An OAuth access token that a connection's workers share: got by a grant, kept in the vault, replaced before
it expires and once after the remote refuses it.

A connector's auth hook subclasses CachedAccessToken and says how a request is signed (`sign`) and how a token
is granted (`grant`: Amazon's refresh-token grant, MyParcel.com's client credentials). The token is sealed into
the connection's secrets (`access_token`, `access_token_expires_at`) so every worker reuses it until
REFRESH_MARGIN before its end, instead of each asking for its own; concurrent callers share one grant (an
asyncio.Lock). A credential the grant refuses for good is remembered (`stopped`): nobody asks again, and the
engine marks the connection as needing new credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableSet
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crossdock.connectors.base import ConnectionContext
from crossdock.engine.http import RemoteRetryableError
from crossdock.logs import get_logger

# A token this close to its end is replaced before use, so a call never starts with one about to expire.
REFRESH_MARGIN = timedelta(minutes=5)

# The token the current task's last request was signed with: refresh() compares it with the cached one to tell
# "my token was refused" (get a new one) from "another caller already replaced it" (just try again).
_signed_with: ContextVar[str | None] = ContextVar("access_token_signed_with", default=None)


def parse_expiry(text: str | None) -> datetime | None:
    """`access_token_expires_at` as an aware UTC datetime; None when absent or unreadable (then: a new grant)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_token(response: httpx.Response, *, remote: str, default_ttl_s: float) -> tuple[str, float]:
    """`access_token` and `expires_in` from a token answer (RFC 6749 5.1); `default_ttl_s` when it gives no
    lifetime. An answer without a token is retryable."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    expires_in = body.get("expires_in") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise RemoteRetryableError(
            f"{remote} answered the token request without an access_token; it will be asked again"
        )
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = default_ttl_s
    return token, float(expires_in)


class CachedAccessToken:
    """A RemoteClient AuthHook: `authorize` signs with the cached token (granting one when needed), `refresh`
    replaces a refused one. Subclasses implement `sign` and `grant`, and say whether the credential behind the
    grant was refused for good (`stopped`)."""

    # Who grants the tokens, for the log ("Login with Amazon", "MyParcel.com's auth server").
    remote = "the remote"

    def __init__(
        self,
        ctx: ConnectionContext,
        scrub: MutableSet[str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ctx = ctx
        self._scrub = scrub
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = ctx.secrets.get("access_token") or None
        self._expires_at = parse_expiry(ctx.secrets.get("access_token_expires_at"))
        if self._token is not None:
            scrub.add(self._token)

    # What a subclass provides ------------------------------------------------------------------------------
    def sign(self, request: httpx.Request, token: str) -> None:
        raise NotImplementedError

    async def grant(self) -> tuple[str, float] | None:
        """A new token and its lifetime in seconds, or None when the credential is refused for good (after
        setting what `stopped` reads). Called with the lock held."""
        raise NotImplementedError

    @property
    def stopped(self) -> bool:
        return False

    # AuthHook ----------------------------------------------------------------------------------------------
    async def authorize(self, request: httpx.Request) -> None:
        token = await self._current()
        _signed_with.set(token)
        if token is not None:
            self.sign(request, token)
        # With no token (the credential was refused) the request goes unsigned: the remote refuses it, refresh()
        # says False without asking again, and the engine marks the connection as needing new credentials.

    async def refresh(self) -> bool:
        """A new token after the remote refused one. False when the credential behind it is refused."""
        refused = _signed_with.get()
        async with self._lock:
            if self.stopped:
                return False
            if self._token is not None and self._token != refused and self._fresh():
                return True  # another caller already replaced the refused token
            return await self._fetch()

    # Token cache -------------------------------------------------------------------------------------------
    def _fresh(self) -> bool:
        return (
            self._token is not None
            and self._expires_at is not None
            and self._clock() < self._expires_at - REFRESH_MARGIN
        )

    async def _current(self) -> str | None:
        if self._fresh():
            return self._token
        async with self._lock:
            if self._fresh():
                return self._token
            if self.stopped:
                return None
            granted = await self._fetch()
            return self._token if granted or self._fresh() else None

    async def _fetch(self) -> bool:
        granted = await self.grant()
        if granted is None:
            return False
        token, expires_in = granted
        self._token = token
        self._expires_at = self._clock() + timedelta(seconds=expires_in)
        self._scrub.add(token)
        try:
            await self._ctx.save_secrets(
                {"access_token": token, "access_token_expires_at": self._expires_at.isoformat()}
            )
        except Exception as exc:  # the token works all the same: other workers will ask for their own
            get_logger(__name__).warning(
                "could not keep the access token in the vault",
                remote=self.remote,
                connection=str(self._ctx.connection_id),
                error=type(exc).__name__,
            )
        return True
