"""Login with Amazon (LWA) access tokens for the Selling Partner API.

An SP-API call carries an LWA access token in `x-amz-access-token`; the token comes from the refresh-token grant
and lives one hour. AWS Signature Version 4 is no longer needed: "Starting October 2, 2023, SP-API no longer
requires the use of AWS Identity and Access Management (IAM) or AWS Signature Version 4" (Source:
developer-docs.amazon.com/sp-api/changelog/sp-api-will-no-longer-require-aws-iam-or-aws-signature-version-4).

The token is cached in the connector and sealed into the vault (`access_token`, `access_token_expires_at`) so
that every worker reuses it until shortly before it expires, instead of each asking LWA for its own. Concurrent
callers share one refresh (an asyncio.Lock). A refresh token LWA no longer accepts (`invalid_grant`) is
remembered: no caller asks again, and the engine marks the connection as needing re-authorisation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableSet
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from crossdock.connectors.base import ConnectionContext
from crossdock.engine.http import (
    RemoteClient,
    RemoteConfigurationError,
    RemotePermanentError,
    RemoteRetryableError,
)
from crossdock.logs import get_logger

# Source: developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api (Step 1, LWA token URL).
LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 (a URL, not a secret)
# Source: developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api (Step 2, request headers).
ACCESS_TOKEN_HEADER = "x-amz-access-token"  # noqa: S105 (a header name)
# A token this close to its end is refreshed before use, so a call never starts with one about to expire.
REFRESH_MARGIN = timedelta(minutes=5)

REAUTHORISE = (
    "Amazon no longer accepts this connection's refresh token (Login with Amazon answered invalid_grant: the "
    "seller removed the app's authorisation, or it expired). Authorise the app again in Seller Central "
    "(Apps and Services > Manage Your Apps, or reconnect the Amazon connection in crossdock to go through "
    "Seller Central's consent page); until then nothing can be read from or sent to Amazon"
)
BAD_CLIENT = (
    "Login with Amazon refused the app's LWA client id or client secret (invalid_client). Check the "
    "connection's client_id setting and client_secret secret against the app's LWA credentials in Seller "
    "Central (Develop Apps > View LWA credentials); a rotated client secret must be entered again"
)

# The access token the current task's last request was signed with: refresh() compares it with the cached one
# to tell "my token was refused" (refresh) from "another caller refreshed meanwhile" (just try again).
_signed_with: ContextVar[str | None] = ContextVar("amazon_lwa_signed_with", default=None)


class LwaAuth:
    """The RemoteClient AuthHook of an SP-API connection: `authorize` signs, `refresh` gets a new token."""

    def __init__(
        self,
        ctx: ConnectionContext,
        lwa: RemoteClient,
        scrub: MutableSet[str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ctx = ctx
        self._lwa = lwa
        self._scrub = scrub
        self._clock = clock
        self._lock = asyncio.Lock()
        self.url = str(ctx.settings.get("lwa_url") or LWA_TOKEN_URL)
        self.revoked = False
        self.bad_client = False
        self._token: str | None = ctx.secrets.get("access_token") or None
        self._expires_at = _parse_time(ctx.secrets.get("access_token_expires_at"))
        if self._token is not None:
            scrub.add(self._token)

    # AuthHook ---------------------------------------------------------------------------------------------
    async def authorize(self, request: httpx.Request) -> None:
        token = await self._current()
        _signed_with.set(token)
        if token is not None:
            request.headers[ACCESS_TOKEN_HEADER] = token
        # With no token (the refresh token was refused) the request goes unsigned: SP-API answers 403, refresh()
        # says False without asking LWA again, and the engine marks the connection as needing re-authorisation.

    async def refresh(self) -> bool:
        """A fresh access token after SP-API refused one (403). False when LWA refuses the refresh token."""
        refused = _signed_with.get()
        async with self._lock:
            if self.revoked or self.bad_client:
                return False
            if self._token is not None and self._token != refused and self._fresh():
                return True  # another caller already replaced the refused token
            return await self._fetch()

    # Token cache ------------------------------------------------------------------------------------------
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
            if self.revoked or self.bad_client:
                return None
            await self._fetch()
            return self._token if self._fresh() else None

    async def _fetch(self) -> bool:
        """The refresh-token grant (Source: developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-
        partner-api, Step 1: form grant_type, refresh_token, client_id, client_secret -> access_token,
        expires_in). Called with the lock held."""
        refresh_token = self._ctx.secrets.get("refresh_token")
        client_id = self._ctx.settings.get("client_id")
        client_secret = self._ctx.secrets.get("client_secret")
        if not refresh_token:
            self.revoked = True
            return False
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": str(client_id or ""),
            "client_secret": client_secret or "",
        }
        try:
            response = await self._lwa.post(self.url, data=form, operation="lwa.token")
        except RemotePermanentError as exc:
            # LWA answers a refused refresh token with 400 {"error": "invalid_grant", ...} (OAuth 2.0, RFC 6749
            # 5.2); RemoteClient keeps those words in remote_message.
            if exc.status == 400 and "invalid_grant" in (exc.remote_message or ""):
                self.revoked = True
                return False
            raise
        except RemoteConfigurationError:
            # 401 {"error": "invalid_client"}: the app's client id or secret is wrong; asking again cannot help.
            self.bad_client = True
            raise
        token, expires_in = _read_token(response)
        self._token = token
        self._expires_at = self._clock() + timedelta(seconds=expires_in)
        self._scrub.add(token)
        try:
            await self._ctx.save_secrets(
                {"access_token": token, "access_token_expires_at": self._expires_at.isoformat()}
            )
        except Exception as exc:  # the token works all the same: other workers will ask LWA for their own
            get_logger(__name__).warning(
                "could not keep the Amazon access token in the vault",
                connection=str(self._ctx.connection_id),
                error=type(exc).__name__,
            )
        return True


def _read_token(response: httpx.Response) -> tuple[str, float]:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    expires_in = body.get("expires_in") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise RemoteRetryableError(
            "Login with Amazon answered the token request without an access_token; it will be asked again"
        )
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = 3600  # "An LWA access token expires one hour after it is issued" (same page, Step 1)
    return token, float(expires_in)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None
