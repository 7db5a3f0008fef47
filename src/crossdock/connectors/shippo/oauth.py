"""Shippo's partner OAuth: a merchant's Shippo account connected through the platform's partner app.

Sources: goshippo.com/docs/oauth/ and docs.goshippo.com/docs/OAuth_Integrations/OAuth (PROTOCOLS.md section 5):
the consent page is https://goshippo.com/oauth/authorize?response_type=code&client_id=<partner id>&scope=*
&state=<random> ("*" is the only scope); the browser comes back to the callback URL registered with Shippo
with `code` (or `error`) and `state`; POST https://goshippo.com/oauth/access_token with the form client_id,
client_secret, code, grant_type=authorization_code answers {access_token: "oauth.…", token_type: "bearer",
scope}. The token never expires and there is no refresh token. API calls send it as `Authorization: Bearer`
(the connector chooses the scheme by the token's `oauth.` prefix).

The callback URL is registered with Shippo when the partner app is made, not sent on the consent URL: register
`<public_url>/oauth/shippo/callback` (docs/shipping.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from crossdock.engine.http import RemoteClient
from crossdock.security.oauth import FlowRefused, Grant, OAuthApp, callback_param, token_answer

DEFAULT_SCOPES = ("*",)


def missing_app_settings(app: OAuthApp) -> list[str]:
    return []


def start_details(app: OAuthApp, query: Mapping[str, str], settings: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def redirect_uri(app: OAuthApp, callback_url: str) -> str:
    return callback_url


def authorization_url(app: OAuthApp, *, redirect_uri: str, state: str, details: Mapping[str, Any]) -> str:
    base = app.authorize_url or "https://goshippo.com/oauth/authorize"
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "scope": " ".join(app.scopes or DEFAULT_SCOPES),
        "state": state,
    }
    return f"{base}?{urlencode(query)}"


def verify_callback(app: OAuthApp, query: list[tuple[str, str]]) -> None:
    """Shippo does not sign its redirect; the state and the browser cookie are what the callback is checked by."""


def callback_code(params: Mapping[str, str], details: Mapping[str, Any]) -> str:
    return callback_param(params, "code", "Shippo")


async def exchange(
    client: RemoteClient,
    app: OAuthApp,
    *,
    code: str,
    redirect_uri: str,
    params: Mapping[str, str],
    details: Mapping[str, Any],
) -> Grant:
    response = await client.post(
        app.token_url or "https://goshippo.com/oauth/access_token",
        data={
            "client_id": app.client_id,
            "client_secret": app.secret(),
            "code": code,
            "grant_type": "authorization_code",
        },
        operation="oauth.token",
    )
    body = token_answer(response, "Shippo", "access_token")
    token = str(body["access_token"])
    if not token.startswith("oauth."):
        raise FlowRefused(
            "Shippo answered an access token that is not an OAuth token (it should start with 'oauth.'); "
            "check the partner app's token URL",
            status=502,
        )
    values = {"api_token": token}
    if not details.get("connection_id"):
        # A new connection takes Shippo's webhooks at its hook URL with this token (?token=...); a connection
        # authorised again keeps the token its registered webhook URL already carries.
        values["webhook_token"] = secrets.token_urlsafe(24)
    return Grant(settings={}, secrets=values, name="Shippo", base_url=app.api_base_url)
