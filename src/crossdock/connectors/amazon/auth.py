"""Login with Amazon (LWA) access tokens for the Selling Partner API.

An SP-API call carries an LWA access token in `x-amz-access-token`; the token comes from the refresh-token grant
and lives one hour. AWS Signature Version 4 is no longer needed: "Starting October 2, 2023, SP-API no longer
requires the use of AWS Identity and Access Management (IAM) or AWS Signature Version 4" (Source:
developer-docs.amazon.com/sp-api/changelog/sp-api-will-no-longer-require-aws-iam-or-aws-signature-version-4).

The token is cached and shared by the connection's workers as connectors/access_tokens.py describes. A refresh
token LWA no longer accepts (`invalid_grant`) is remembered: no caller asks again, and the engine marks the
connection as needing re-authorisation.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSet
from datetime import UTC, datetime

import httpx

from crossdock.connectors.access_tokens import CachedAccessToken, read_token
from crossdock.connectors.base import ConnectionContext
from crossdock.engine.http import (
    RemoteClient,
    RemoteConfigurationError,
    RemotePermanentError,
)

# Source: developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api (Step 1, LWA token URL).
LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 (a URL, not a secret)
# Source: developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api (Step 2, request headers).
ACCESS_TOKEN_HEADER = "x-amz-access-token"  # noqa: S105 (a header name)
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


class LwaAuth(CachedAccessToken):
    """The RemoteClient AuthHook of an SP-API connection: the LWA access token in `x-amz-access-token`."""

    remote = "Login with Amazon"

    def __init__(
        self,
        ctx: ConnectionContext,
        lwa: RemoteClient,
        scrub: MutableSet[str],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(ctx, scrub, clock=clock)
        self._lwa = lwa
        self.url = str(ctx.settings.get("lwa_url") or LWA_TOKEN_URL)
        self.revoked = False
        self.bad_client = False

    @property
    def stopped(self) -> bool:
        return self.revoked or self.bad_client

    def sign(self, request: httpx.Request, token: str) -> None:
        request.headers[ACCESS_TOKEN_HEADER] = token

    async def grant(self) -> tuple[str, float] | None:
        """The refresh-token grant (Source: developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-
        partner-api, Step 1: form grant_type, refresh_token, client_id, client_secret -> access_token,
        expires_in). "An LWA access token expires one hour after it is issued" (same page): the lifetime when
        the answer gives none."""
        refresh_token = self._ctx.secrets.get("refresh_token")
        client_id = self._ctx.settings.get("client_id")
        client_secret = self._ctx.secrets.get("client_secret")
        if not refresh_token:
            self.revoked = True
            return None
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": str(client_id or ""),
            "client_secret": client_secret or "",
        }
        try:
            # The refresh token is long-lived and stays as it is; a repeated grant only issues another access
            # token (developer-docs.amazon.com/sp-api, "Connect to the SP-API", step 1), so the POST may be tried
            # again when its answer is lost (lookup_first).
            response = await self._lwa.post(self.url, data=form, operation="lwa.token", lookup_first=True)
        except RemotePermanentError as exc:
            # LWA answers a refused refresh token with 400 {"error": "invalid_grant", ...} (OAuth 2.0, RFC 6749
            # 5.2); RemoteClient keeps those words in remote_message.
            if exc.status == 400 and "invalid_grant" in (exc.remote_message or ""):
                self.revoked = True
                return None
            raise
        except RemoteConfigurationError:
            # 401 {"error": "invalid_client"}: the app's client id or secret is wrong; asking again cannot help.
            self.bad_client = True
            raise
        return read_token(response, remote=self.remote, default_ttl_s=3600)
