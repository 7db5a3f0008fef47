"""MyParcel.com API access tokens: the OAuth 2.0 client credentials grant, cached in the connection's vault.

Wire facts (PROTOCOLS.md section 7; MyParcelCOM/docs content/api/authentication/client-credentials-grant.md):
`POST {auth host}/access-token` with the JSON body `{"grant_type": "client_credentials", "client_id",
"client_secret", "scope"}` answers `{"token_type": "Bearer", "expires_in": 86400, "access_token": "<JWT>"}`; API
calls then carry `Authorization: Bearer <token>`. The auth host is `https://auth.myparcel.com`
(`https://sandbox-auth.myparcel.com` for the MyParcel.com sandbox API).

The token is cached and shared by the connection's workers as connectors/access_tokens.py describes; a 401
from the API gets one new token (RemoteClient calls `refresh` once). Client credentials the auth host refuses
are remembered: nobody asks again, and the engine marks the connection as needing new credentials.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSet
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from crossdock.connectors.access_tokens import CachedAccessToken, read_token
from crossdock.connectors.base import ConnectionContext
from crossdock.engine.http import RemoteClient, RemoteConfigurationError

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
BAD_CLIENT = (
    "MyParcel.com's auth server refused the connection's client credentials: check the client_id setting and "
    "the client_secret secret against the API client in MyParcel.com (a rotated secret must be entered again "
    "with `crossdock connections update <id> --secret client_secret=...`)"
)


def auth_base_url(setting: Any, api_base_url: str) -> str:
    """Where tokens come from: the `auth_url` setting; else the auth host of MyParcel.com's own API hosts; else
    (a local sandbox or a proxy in front of both) the API base URL itself."""
    if isinstance(setting, str) and setting.strip():
        return setting.strip().rstrip("/")
    host = (urlsplit(api_base_url).hostname or "").lower()
    return AUTH_HOSTS.get(host, api_base_url.rstrip("/"))


class ClientCredentialsAuth(CachedAccessToken):
    """The RemoteClient AuthHook of a MyParcel.com connection: `Authorization: Bearer <token>`."""

    remote = "MyParcel.com's auth server"

    def __init__(
        self,
        ctx: ConnectionContext,
        token_client: RemoteClient,
        auth_url: str,
        scrub: MutableSet[str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(ctx, scrub, clock=clock)
        self._tokens = token_client
        self.token_url = f"{auth_url}{TOKEN_PATH}"
        self.bad_client = False

    @property
    def stopped(self) -> bool:
        return self.bad_client

    def sign(self, request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = f"Bearer {token}"

    async def grant(self) -> tuple[str, float] | None:
        """The client credentials grant."""
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
        return read_token(response, remote=self.remote, default_ttl_s=DEFAULT_TTL_S)
