"""Amazon SP-API's website authorization workflow (Login with Amazon): the consent URL and the code exchange.

Sources: developer-docs.amazon.com/sp-api/docs/website-authorization-workflow (the consent URL
https://sellercentral.amazon.com/apps/authorize/consent?application_id&state[&redirect_uri]; the callback
carries state, selling_partner_id and spapi_oauth_code); …/sp-api/docs/authorization-errors, MD1000 (an app
in draft needs version=beta on the consent URL); PROTOCOLS.md section 4 (POST https://api.amazon.com/auth/o2/
token, form grant_type=authorization_code&code&redirect_uri&client_id&client_secret answers the refresh_token).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from crossdock.engine.http import RemoteClient
from crossdock.security.oauth import FlowRefused, Grant, OAuthApp, callback_param, token_answer

DEFAULT_SCOPES: tuple[str, ...] = ()  # SP-API roles are chosen on the app's registration, not per consent


def missing_app_settings(app: OAuthApp) -> list[str]:
    # The consent URL names the SP-API application (amzn1.sp.solution...), not the LWA client id.
    return [] if app.application_id else ["application_id"]


def _marketplaces(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def start_details(app: OAuthApp, query: Mapping[str, str], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The marketplaces the connection reads: the `marketplace_ids` parameter, the re-authorised connection's
    own, or the app's default."""
    ids = (
        _marketplaces(query.get("marketplace_ids", ""))
        or _marketplaces(str(settings.get("marketplace_ids") or ""))
        or list(app.marketplace_ids)
    )
    if not ids:
        raise FlowRefused(
            "give the marketplaces to read, e.g. marketplace_ids=ATVPDKIKX0DER, or set "
            "oauth_apps.amazon.marketplace_ids",
            "marketplace_ids",
            status=422,
        )
    details: dict[str, Any] = {"marketplace_ids": ",".join(ids)}
    if settings.get("selling_partner_id"):
        details["selling_partner_id"] = str(settings["selling_partner_id"])
    return details


def redirect_uri(app: OAuthApp, callback_url: str) -> str:
    return callback_url


def authorization_url(app: OAuthApp, *, redirect_uri: str, state: str, details: Mapping[str, Any]) -> str:
    base = app.authorize_url or "https://sellercentral.amazon.com/apps/authorize/consent"
    query = {"application_id": app.application_id or "", "state": state, "redirect_uri": redirect_uri}
    if app.draft:
        query["version"] = "beta"
    return f"{base}?{urlencode(query)}"


def verify_callback(app: OAuthApp, query: list[tuple[str, str]]) -> None:
    """Amazon does not sign its redirect; the state and the browser cookie are what the callback is checked by."""


def callback_code(params: Mapping[str, str], details: Mapping[str, Any]) -> str:
    code = callback_param(params, "spapi_oauth_code", "Amazon")
    seller = callback_param(params, "selling_partner_id", "Amazon")
    expected = details.get("selling_partner_id")
    if expected and expected != seller:
        raise FlowRefused(
            f"Amazon answered for selling partner {seller}, but the connection is for {expected}; "
            "sign in to Seller Central with the account the connection belongs to",
            "selling_partner_id",
        )
    return code


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
        app.token_url or "https://api.amazon.com/auth/o2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": app.client_id,
            "client_secret": app.secret(),
        },
        operation="oauth.token",
    )
    body = token_answer(response, "Login with Amazon", "refresh_token")
    seller = params["selling_partner_id"]
    settings: dict[str, Any] = {
        "client_id": app.client_id,
        "marketplace_ids": str(details["marketplace_ids"]),
        "selling_partner_id": seller,
    }
    if app.token_url:
        settings["lwa_url"] = app.token_url
    return Grant(
        settings=settings,
        secrets={"client_secret": app.secret(), "refresh_token": body["refresh_token"]},
        name=f"Amazon {seller}",
        base_url=app.api_base_url,
    )
