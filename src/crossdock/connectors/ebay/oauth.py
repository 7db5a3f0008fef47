"""eBay's authorization-code grant for a seller's User access token: the consent URL and the code exchange.

Source: developer.ebay.com/api-docs/static/oauth-authorization-code-grant.html and
…/oauth-auth-code-grant-request.html (PROTOCOLS.md section 3): the consent page is
https://auth.ebay.com/oauth2/authorize?client_id&redirect_uri=<RuName>&response_type=code&scope=<space separated>
&state; the callback carries code and state (or error=access_denied); POST
https://api.ebay.com/identity/v1/oauth2/token with Basic base64(client_id:client_secret) and the form
grant_type=authorization_code&code&redirect_uri=<RuName> answers access_token, expires_in (about 2 hours),
refresh_token (about 18 months), refresh_token_expires_in. Refreshing is the connector runtime's work.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from crossdock.engine.http import RemoteClient
from crossdock.security.oauth import Grant, OAuthApp, callback_param, token_answer

# Reading orders and pushing shipping fulfillments (developer.ebay.com/api-docs/sell/fulfillment/resources/
# order/methods/getOrders, "OAuth scope").
DEFAULT_SCOPES = ("https://api.ebay.com/oauth/api_scope/sell.fulfillment",)


def missing_app_settings(app: OAuthApp) -> list[str]:
    # eBay's redirect_uri is the RuName eBay made for the callback URL, not the URL itself.
    return [] if app.ru_name else ["ru_name"]


def start_details(app: OAuthApp, query: Mapping[str, str], settings: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def redirect_uri(app: OAuthApp, callback_url: str) -> str:
    return app.ru_name or callback_url


def authorization_url(app: OAuthApp, *, redirect_uri: str, state: str, details: Mapping[str, Any]) -> str:
    base = app.authorize_url or "https://auth.ebay.com/oauth2/authorize"
    query = {
        "client_id": app.client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": " ".join(app.scopes or DEFAULT_SCOPES),
        "state": state,
    }
    # Spaces between scopes as %20, as eBay's examples show.
    return f"{base}?{urlencode(query, quote_via=quote)}"


def verify_callback(app: OAuthApp, query: list[tuple[str, str]]) -> None:
    """eBay does not sign its redirect; the state and the browser cookie are what the callback is checked by."""


def callback_code(params: Mapping[str, str], details: Mapping[str, Any]) -> str:
    return callback_param(params, "code", "eBay")


async def exchange(
    client: RemoteClient,
    app: OAuthApp,
    *,
    code: str,
    redirect_uri: str,
    params: Mapping[str, str],
    details: Mapping[str, Any],
) -> Grant:
    basic = base64.b64encode(f"{app.client_id}:{app.secret()}".encode()).decode()
    response = await client.post(
        app.token_url or "https://api.ebay.com/identity/v1/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        headers={"Authorization": f"Basic {basic}"},
        operation="oauth.token",
    )
    body = token_answer(response, "eBay", "access_token", "refresh_token")
    try:
        lifetime = float(body.get("expires_in") or 7200)
    except (TypeError, ValueError):
        lifetime = 7200.0
    expires_at = datetime.now(UTC) + timedelta(seconds=lifetime)
    # The runtime asks for these scopes when it renews the access token: they must be the ones consented to.
    settings: dict[str, Any] = {"client_id": app.client_id, "scopes": " ".join(app.scopes or DEFAULT_SCOPES)}
    if app.ru_name:
        settings["ru_name"] = app.ru_name
    return Grant(
        settings=settings,
        secrets={
            "client_secret": app.secret(),
            "refresh_token": body["refresh_token"],
            "access_token": body["access_token"],
            "access_token_expires_at": expires_at.isoformat(timespec="seconds"),
        },
        name="eBay",
        base_url=app.api_base_url,
    )
