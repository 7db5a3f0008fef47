"""MyParcel.com API access tokens: the OAuth 2.0 client credentials grant, cached in the connection's vault.

Wire facts (PROTOCOLS.md section 7; MyParcelCOM/docs content/api/authentication/client-credentials-grant.md):
`POST {auth host}/access-token` with the JSON body `{"grant_type": "client_credentials", "client_id",
"client_secret", "scope"}` answers `{"token_type": "Bearer", "expires_in": 86400, "access_token": "<JWT>"}`; API
calls then carry `Authorization: Bearer <token>`. The auth host is `https://auth.myparcel.com`
(`https://sandbox-auth.myparcel.com` for the MyParcel.com sandbox API).

The token is kept in the vault (`access_token`, `access_token_expires_at`) so every worker reuses it until five
minutes before it expires, instead of each asking the auth host for its own; concurrent callers share one
request (an asyncio.Lock). A 401 from the API gets one new token (RemoteClient calls `refresh` once). Client
credentials the auth host refuses are remembered: nobody asks again, and the engine marks the connection as
needing new credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableSet
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from crossdock.connectors.base import ConnectionContext
from crossdock.engine.http import RemoteClient, RemoteConfigurationError, RemoteRetryableError
from crossdock.logs import get_logger

# PROTOCOLS.md section 7: the API host and its auth host, live and sandbox.
AUTH_HOSTS = {
    "api.myparcel.com": "https://auth.myparcel.com",
    "sandbox-api.myparcel.com": "https://sandbox-auth.myparcel.com",
}
TOKEN_PATH = "/access-token"  # noqa: S105 (a path, not a secret)
# "*" asks for every scope the client has (docs: authentication/scopes.md); shipments need shipments.manage.
SCOPE = "*"
# docs client-credentials-grant.md: "expires_in": 86400. Used when an answer does not say.
DEFAULT_TTL_S = 86400
# A token this close to its end is replaced before use, so a call never starts with one about to expire.
REFRESH_MARGIN = timedelta(minutes=5)

BAD_CLIENT = (
    "MyParcel.com's auth server refused the connection's client credentials: check the client_id setting and "
    "the client_secret secret against the API client in MyParcel.com (a rotated secret must be entered again "
    "with `crossdock connections update <id> --secret client_secret=...`)"
)

# The token the current task's last request was signed with: refresh() compares it with the cached one to tell
# "my token was refused" (get a new one) from "another caller already replaced it" (just try again).
_signed_with: ContextVar[str | None] = ContextVar("myparcelcom_signed_with", default=None)


def auth_base_url(setting: Any, api_base_url: str) -> str:
    """Where tokens come from: the `auth_url` setting; else the auth host of MyParcel.com's own API hosts; else
    (a local sandbox or a proxy in front of both) the API base URL itself."""
    if isinstance(setting, str) and setting.strip():
        return setting.strip().rstrip("/")
    host = (urlsplit(api_base_url).hostname or "").lower()
    return AUTH_HOSTS.get(host, api_base_url.rstrip("/"))


class ClientCredentialsAuth:
    """The RemoteClient AuthHook of a MyParcel.com connection: `authorize` signs, `refresh` gets a new token."""

    def __init__(
        self,
        ctx: ConnectionContext,
        token_client: RemoteClient,
        auth_url: str,
        scrub: MutableSet[str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ctx = ctx
        self._tokens = token_client
        self._scrub = scrub
        self._clock = clock
        self._lock = asyncio.Lock()
        self.token_url = f"{auth_url}{TOKEN_PATH}"
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
            request.headers["Authorization"] = f"Bearer {token}"

    async def refresh(self) -> bool:
        """A new token after the API refused one (401). False when the auth server refuses the client."""
        refused = _signed_with.get()
        async with self._lock:
            if self.bad_client:
                return False
            if self._token is not None and self._token != refused and self._fresh():
                return True  # another caller already replaced the refused token
            await self._fetch()
            return True

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
            if self.bad_client:
                return None
            await self._fetch()
            return self._token

    async def _fetch(self) -> None:
        """The client credentials grant; called with the lock held."""
        body = {
            "grant_type": "client_credentials",
            "client_id": str(self._ctx.settings.get("client_id") or ""),
            "client_secret": self._ctx.secrets.get("client_secret") or "",
            "scope": SCOPE,
        }
        try:
            # A repeated grant only issues another token: the POST may be tried again (lookup_first).
            response = await self._tokens.post(
                self.token_url, json=body, operation="token", lookup_first=True
            )
        except RemoteConfigurationError as exc:
            # json-api InvalidClientException: 403 "The supplied client credentials are invalid ..." (the
            # sandbox follows it). Asking again cannot help until the credentials change.
            self.bad_client = True
            raise RemoteConfigurationError(
                f"{BAD_CLIENT} ({exc.remote_message or f'HTTP {exc.status}'})",
                status=exc.status,
                remote_message=exc.remote_message,
            ) from None
        token, expires_in = _read_token(response)
        self._token = token
        self._expires_at = self._clock() + timedelta(seconds=expires_in)
        self._scrub.add(token)
        try:
            await self._ctx.save_secrets(
                {"access_token": token, "access_token_expires_at": self._expires_at.isoformat()}
            )
        except Exception as exc:  # the token works all the same: other workers will ask for their own
            get_logger(__name__).warning(
                "could not keep the MyParcel.com access token in the vault",
                connection=str(self._ctx.connection_id),
                error=type(exc).__name__,
            )


def _read_token(response: httpx.Response) -> tuple[str, float]:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    token = body.get("access_token") if isinstance(body, dict) else None
    expires_in = body.get("expires_in") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise RemoteRetryableError(
            "MyParcel.com's auth server answered the token request without an access_token; it will be asked again"
        )
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = DEFAULT_TTL_S
    return token, float(expires_in)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None
