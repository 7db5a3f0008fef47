"""Shopify's authorization-code install: the authorize URL, the callback's checks and the code exchange.

Source: shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
(PROTOCOLS.md section 1): redirect to https://{shop}/admin/oauth/authorize with client_id, scope, redirect_uri
and state; the callback carries code, hmac, shop, state and timestamp, signed with the app's secret as a hex
HMAC over the sorted query; POST https://{shop}/admin/oauth/access_token with client_id, client_secret and code
answers {"access_token", "scope"} (an offline token: it does not expire and has no refresh token).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from crossdock.engine.http import RemoteClient
from crossdock.security.oauth import FlowRefused, Grant, OAuthApp, callback_param, token_answer
from crossdock.security.signatures import SignatureError, check_shopify_oauth_query, is_shop_domain

# What the connector's capabilities need (shopify.dev/docs/api/usage/access-scopes): orders, fulfillment orders
# merchant-managed by this app's fulfillment service or the shop, inventory levels at locations, products.
DEFAULT_SCOPES = (
    "read_orders",
    "write_merchant_managed_fulfillment_orders",
    "write_inventory",
    "read_locations",
    "read_products",
)


def _for_shop(template: str, shop: str) -> str:
    return template.replace("{shop}", shop)


def start_details(app: OAuthApp, query: Mapping[str, str], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The shop the flow is for: the `shop` parameter, or the re-authorised connection's shop setting.

    A start that carries Shopify's own install signature (`hmac`, from the app's install link in the Shopify
    admin) must verify, like every request Shopify signs."""
    if "hmac" in query:
        try:
            check_shopify_oauth_query(list(query.items()), [app.secret()])
        except SignatureError as exc:
            raise FlowRefused(
                f"{exc}; open the app from the Shopify admin again", "hmac", status=403
            ) from None
    shop = (query.get("shop") or str(settings.get("shop") or "")).strip().lower()
    if not shop:
        raise FlowRefused("give the shop to connect, e.g. shop=your-shop.myshopify.com", "shop", status=422)
    if not is_shop_domain(shop):
        raise FlowRefused(f"{shop!r} is not a shop domain like your-shop.myshopify.com", "shop", status=422)
    if settings.get("shop") and settings["shop"] != shop:
        raise FlowRefused(
            f"the connection is for {settings['shop']}, not {shop}; start a new connection for another shop",
            "shop",
            status=422,
        )
    return {"shop": shop}


def authorization_url(app: OAuthApp, *, redirect_uri: str, state: str, details: Mapping[str, Any]) -> str:
    shop = str(details["shop"])
    base = _for_shop(app.authorize_url or "https://{shop}/admin/oauth/authorize", shop)
    query = {
        "client_id": app.client_id,
        "scope": ",".join(app.scopes or DEFAULT_SCOPES),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return f"{base}?{urlencode(query)}"


def verify_callback(app: OAuthApp, query: list[tuple[str, str]]) -> None:
    """Before the state is looked at: the hmac must verify, the request be under 24 hours old, `shop` a shop
    domain (security/signatures.py); a forged callback learns nothing and spends no state."""
    try:
        check_shopify_oauth_query(query, [app.secret()])
    except SignatureError as exc:
        status = 403 if "hmac" in str(exc) else 400
        raise FlowRefused(f"Shopify's callback was refused: {exc}", "hmac", status=status) from None


def callback_code(params: Mapping[str, str], details: Mapping[str, Any]) -> str:
    shop = params.get("shop", "")
    if shop != details.get("shop"):
        raise FlowRefused(
            f"Shopify answered for {shop}, but the connection was started for {details.get('shop')}",
            "shop",
        )
    return callback_param(params, "code", "Shopify")


def token_url(app: OAuthApp, details: Mapping[str, Any]) -> str:
    return _for_shop(app.token_url or "https://{shop}/admin/oauth/access_token", str(details["shop"]))


async def exchange(
    client: RemoteClient,
    app: OAuthApp,
    *,
    code: str,
    redirect_uri: str,
    params: Mapping[str, str],
    details: Mapping[str, Any],
) -> Grant:
    """Trade the code for the shop's offline access token. The app's secret is stored with the connection too:
    it signs the shop's webhooks (PROTOCOLS.md section 1), which `/hooks/{connection_id}` verifies."""
    shop = str(details["shop"])
    response = await client.post(
        token_url(app, details),
        json={"client_id": app.client_id, "client_secret": app.secret(), "code": code},
        operation="oauth.access_token",
    )
    token = token_answer(response, "Shopify", "access_token")["access_token"]
    base_url = _for_shop(app.api_base_url, shop) if app.api_base_url else None
    return Grant(
        settings={"shop": shop},
        secrets={"access_token": token, "api_secret": app.secret()},
        name=shop,
        base_url=base_url,
    )


def missing_app_settings(app: OAuthApp) -> list[str]:
    return []


def redirect_uri(app: OAuthApp, callback_url: str) -> str:
    return callback_url
