"""eBay user access tokens: signing API calls and keeping the token fresh with the refresh-token grant.

An eBay user access token lives about two hours; the refresh token that renews it about 18 months
(developer.ebay.com/api-docs/static/oauth-refresh-token-request.html). The OAuth callback stores the secrets
`refresh_token`, `access_token` and `access_token_expires_at` (ISO 8601, UTC); this hook renews the access
token ahead of its expiry, keeps the new one in the vault, and tells the engine when the seller has to connect
the eBay account again.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
from collections.abc import Awaitable, Callable, Mapping, MutableSet
from datetime import UTC, datetime, timedelta

import httpx

from crossdock.connectors.access_tokens import parse_expiry
from crossdock.engine.errors import ConfigurationError, RetryableError
from crossdock.engine.http import RemoteClient, RemotePermanentError

# Source: developer.ebay.com/api-docs/static/oauth-refresh-token-request.html ("Setting the target endpoint":
# POST https://api.ebay.com/identity/v1/oauth2/token, and api.sandbox.ebay.com for the Sandbox).
GRANT_PATH = "/identity/v1/oauth2/token"
# The scope getOrders and createShippingFulfillment need (developer.ebay.com/api-docs/sell/fulfillment,
# "OAuth scope"; PROTOCOLS.md section 3).
SCOPE_FULFILLMENT = "https://api.ebay.com/oauth/api_scope/sell.fulfillment"
# Renew when less than this is left, so no call goes out with a token that expires on the way.
REFRESH_AHEAD = timedelta(minutes=5)

# The access token the current task's request was signed with: refresh() after a 401 compares it with the
# current one, so a call that failed with a token another call has since replaced does not refresh again.
_signed_with: contextvars.ContextVar[str | None] = contextvars.ContextVar("ebay_signed_with", default=None)

Clock = Callable[[], datetime]


def reconnect_message(detail: str) -> str:
    return (
        f"eBay refused the connection's refresh token ({detail}): the seller must connect the eBay account "
        "again (a refresh token lasts about 18 months, and ends earlier when the seller revokes the "
        "application's access or changes the eBay password)"
    )


class EbayUserAuth:
    """The AuthHook of an eBay connection: `Authorization: Bearer <user access token>`, renewed ahead of expiry
    and once after a 401, with two concurrent calls that both need a new token sharing one refresh."""

    def __init__(
        self,
        *,
        token_client: RemoteClient,
        client_id: str,
        secrets: Mapping[str, str],
        save_secrets: Callable[[Mapping[str, str]], Awaitable[None]],
        scopes: str = SCOPE_FULFILLMENT,
        scrub: MutableSet[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        # The token call goes through its own RemoteClient (recorded, URL-checked) without this hook.
        self._token_client = token_client
        self._client_id = client_id
        self._client_secret = secrets.get("client_secret", "")
        self._refresh_token = secrets.get("refresh_token", "")
        self._access_token = secrets.get("access_token") or None
        self._expires_at = parse_expiry(secrets.get("access_token_expires_at"))
        self._save_secrets = save_secrets
        self._scopes = scopes
        # Values the API client scrubs from what it records: every access token we mint joins it.
        self._scrub = scrub
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = asyncio.Lock()
        # Why the refresh token cannot work any more (set once eBay refused it): no further token calls.
        self.refused: str | None = None

    # AuthHook ---------------------------------------------------------------------------------------------
    async def authorize(self, request: httpx.Request) -> None:
        if self._needs_refresh():
            async with self._lock:
                if self._needs_refresh():  # another call may have refreshed while we waited for the lock
                    await self._refresh_ahead()
        token = self._access_token
        _signed_with.set(token)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"

    async def refresh(self) -> bool:
        """After a 401/403: a new access token once. False when eBay refused the refresh token (or there is
        none), so the engine marks the connection as needing re-authorisation."""
        used = _signed_with.get()
        async with self._lock:
            if self._access_token and self._access_token != used:
                return True  # another call refreshed since this one was signed: try again with its token
            if not self._can_refresh():
                return False
            return await self._grant()

    # Steps ------------------------------------------------------------------------------------------------
    def _needs_refresh(self) -> bool:
        if self.refused is not None or not self._refresh_token:
            return False  # nothing to refresh with: the call goes out as is and a 401 says why
        if not self._access_token or self._expires_at is None:
            return True
        return self._expires_at - self._clock() < REFRESH_AHEAD

    def _can_refresh(self) -> bool:
        if self.refused is not None:
            return False
        if not self._refresh_token:
            self.refused = (
                "the eBay connection has no refresh token (or its access token no longer works): the seller "
                "must connect the eBay account to crossdock again"
            )
            return False
        return True

    async def _refresh_ahead(self) -> None:
        """Refresh before the call. A passing fault of the token endpoint is not fatal while the current token
        still works; without a usable token it is the call's error."""
        try:
            await self._grant()
        except RetryableError:
            if self._access_token and self._expires_at is not None and self._expires_at > self._clock():
                return
            raise

    async def _grant(self) -> bool:
        """The refresh-token grant. Returns False when eBay refuses the refresh token (invalid_grant) or the
        request (invalid_scope and the like): no later call asks again."""
        # Source: developer.ebay.com/api-docs/static/oauth-refresh-token-request.html ("Configuring the HTTP
        # request headers" and "Configuring the request payload"): Content-Type
        # application/x-www-form-urlencoded, Authorization: Basic base64(<client_id>:<client_secret>), payload
        # grant_type=refresh_token, refresh_token, and scope (the URL-encoded, space-separated scopes of the
        # original consent, or a subset of them).
        basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
        try:
            response = await self._token_client.post(
                GRANT_PATH,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": self._refresh_token,
                    "scope": self._scopes,
                },
                headers={"Authorization": f"Basic {basic}"},
                operation="refreshToken",
                # The request mints an access token; the refresh token is long-lived and stays as it is (same
                # page, "About refresh tokens"): a repeated grant only mints another, so the POST may be tried
                # again when its answer is lost (lookup_first).
                lookup_first=True,
            )
        except RemotePermanentError as exc:
            words = exc.remote_message or exc.message
            if "invalid_grant" in words:
                self.refused = reconnect_message(words)
            else:
                self.refused = (
                    f"eBay refused to renew the access token ({words}); check the connection's client id, "
                    "scopes and secrets, then connect the eBay account again"
                )
            return False
        except ConfigurationError as exc:
            # 401 invalid_client: the App ID / Cert ID pair is wrong. The token client has flagged the
            # connection already; the message says what to fix.
            self.refused = exc.message
            raise
        try:
            body = response.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in", 7200))
        except (ValueError, KeyError, TypeError):
            raise RetryableError(
                "eBay answered the token refresh without an access token; it will be tried again"
            ) from None
        if not isinstance(token, str) or not token:
            raise RetryableError(
                "eBay answered the token refresh with an empty access token; it will be tried again"
            )
        expires_at = self._clock() + timedelta(seconds=expires_in)
        if self._scrub is not None:
            self._scrub.add(token)
        self._access_token, self._expires_at = token, expires_at
        await self._save_secrets(
            {"access_token": token, "access_token_expires_at": expires_at.isoformat(timespec="seconds")}
        )
        return True
