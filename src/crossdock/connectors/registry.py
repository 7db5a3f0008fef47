"""The connectors crossdock knows, by name. Adding a connector is adding its package and one entry here."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from crossdock.connectors.base import Capability as C
from crossdock.connectors.base import ConnectionContext, ConnectorSpec, Field, Role

SPECS: dict[str, ConnectorSpec] = {}


def register(spec: ConnectorSpec) -> ConnectorSpec:
    if spec.name in SPECS:
        raise ValueError(f"connector '{spec.name}' is registered twice")
    SPECS[spec.name] = spec
    return spec


def load_factory(spec: ConnectorSpec) -> Callable[[ConnectionContext], Any]:
    """The connector's runtime class, imported on first use (a connector's HTTP code loads only when needed)."""
    if not spec.factory:
        raise LookupError(f"connector '{spec.name}' cannot be opened yet: it has no runtime")
    module_name, _, attr = spec.factory.partition(":")
    return cast("Callable[[ConnectionContext], Any]", getattr(importlib.import_module(module_name), attr))


def get_spec(name: str) -> ConnectorSpec:
    try:
        return SPECS[name]
    except KeyError:
        known = ", ".join(sorted(SPECS))
        raise KeyError(f"unknown connector '{name}'; known connectors: {known}") from None


# Facts about each remote (base URLs, auth material) come from ../shared/PROTOCOLS.md.
register(
    ConnectorSpec(
        name="shopify",
        title="Shopify",
        role=Role.CHANNEL,
        capabilities=frozenset(
            {C.ORDERS_PULL, C.ORDERS_WEBHOOK, C.FULFILLMENTS_PUSH, C.INVENTORY_PUSH, C.CATALOG_PULL}
        ),
        default_base_url="https://{shop}",
        settings=(
            Field("shop", "Shop domain", help="your-shop.myshopify.com"),
            Field("api_version", "Admin API version", required=False, help="YYYY-MM, e.g. 2025-01"),
        ),
        secrets=(
            Field("access_token", "Admin API access token"),
            Field("api_secret", "API secret key (signs webhooks)", required=False),
            # While the app's client secret is being rotated Shopify may sign with either (PROTOCOLS.md
            # section 1; shopify.dev "Rotate or revoke client credentials", step 2): the old one stays
            # accepted here until it is removed (set it to an empty value).
            Field("api_secret_previous", "previous API secret, accepted during a rotation", required=False),
        ),
        factory="crossdock.connectors.shopify.client:ShopifyConnector",
    )
)
register(
    ConnectorSpec(
        name="ebay",
        title="eBay",
        role=Role.CHANNEL,
        capabilities=frozenset({C.ORDERS_PULL, C.FULFILLMENTS_PUSH}),
        default_base_url="https://api.ebay.com",
        settings=(
            Field("client_id", "App ID (client id)"),
            Field("ru_name", "RuName (redirect URL name)", required=False),
            Field(
                "scopes",
                "OAuth scopes",
                required=False,
                help="space separated; asked for when the access token is renewed, so they must be among the "
                "scopes the seller consented to (default: https://api.ebay.com/oauth/api_scope/sell.fulfillment)",
            ),
        ),
        secrets=(
            Field("client_secret", "Cert ID (client secret)"),
            Field("refresh_token", "User refresh token", required=False),
            # Kept by the connector itself when it renews the ~2-hour user token with the refresh token.
            Field("access_token", "User access token", required=False, help="renewed automatically"),
            Field(
                "access_token_expires_at",
                "User access token expiry",
                required=False,
                help="ISO 8601 UTC; the token is renewed 5 minutes before it",
            ),
        ),
        factory="crossdock.connectors.ebay.client:EbayConnector",
    )
)
register(
    ConnectorSpec(
        name="amazon",
        title="Amazon Selling Partner API",
        role=Role.CHANNEL,
        capabilities=frozenset({C.ORDERS_PULL, C.FULFILLMENTS_PUSH}),
        default_base_url="https://sellingpartnerapi-na.amazon.com",
        settings=(
            Field("client_id", "LWA client id"),
            Field("marketplace_ids", "Marketplace ids", help="comma separated, e.g. ATVPDKIKX0DER"),
            Field("lwa_url", "LWA token URL", required=False),
            Field(
                "selling_partner_id",
                "Selling partner id",
                required=False,
                help="the seller who authorised the app (from the authorization callback)",
            ),
        ),
        secrets=(
            Field("client_secret", "LWA client secret"),
            Field("refresh_token", "LWA refresh token"),
            Field(
                "access_token",
                "LWA access token",
                required=False,
                help="kept by crossdock: the current one-hour token, shared by every worker",
            ),
            Field(
                "access_token_expires_at",
                "LWA access token expiry",
                required=False,
                help="kept by crossdock: when the access token above expires (ISO 8601)",
            ),
        ),
        factory="crossdock.connectors.amazon.client:AmazonConnector",
    )
)
register(
    ConnectorSpec(
        name="shippo",
        title="Shippo",
        role=Role.SHIPPING,
        capabilities=frozenset({C.SHIPPING_RATES, C.SHIPPING_LABELS, C.TRACKING_WEBHOOK, C.ORDERS_PUSH}),
        default_base_url="https://api.goshippo.com",
        settings=(
            # Not required to connect (check() needs no origin); rates and labels refuse without it.
            Field(
                "from_address",
                "Ship-from address",
                required=False,
                help="where parcels ship from: Shippo address fields as a JSON object (name, street1, city, "
                "state, zip, country, ...) or a Shippo address object_id; see docs/shipping.md",
            ),
            Field(
                "label_file_type",
                "Label file type",
                required=False,
                help="PDF (default), PDF_4x6, PDF_A4, ..., PNG or ZPLII",
            ),
            Field(
                "push_orders",
                "Push orders to Shippo",
                required=False,
                help="true: each paid order is created once in Shippo's Orders, for labels bought in Shippo's "
                "dashboard; false (default): none are; see docs/shipping.md",
            ),
        ),
        secrets=(
            Field("api_token", "API token (shippo_test_... or shippo_live_...) or OAuth token"),
            Field("webhook_token", "Webhook URL token", required=False),
            Field(
                "webhook_hmac_secret",
                "Webhook signing secret",
                required=False,
                help="the secret Shippo signs webhooks with (Shippo-Auth-Signature), where Shippo set one up for "
                "the account; see docs/shipping.md",
            ),
        ),
        factory="crossdock.connectors.shippo.client:ShippoConnector",
    )
)
register(
    ConnectorSpec(
        name="myparcelcom",
        title="MyParcel.com",
        role=Role.SHIPPING,
        capabilities=frozenset({C.SHIPPING_LABELS, C.TRACKING_POLL, C.SHIPMENTS_SERVE}),
        default_base_url="https://api.myparcel.com",
        settings=(
            Field("client_id", "Client id"),
            Field("shop_id", "Shop id (UUID)"),
            Field(
                "auth_url",
                "Auth host",
                required=False,
                help="default: https://auth.myparcel.com, or https://sandbox-auth.myparcel.com when the base URL "
                "is https://sandbox-api.myparcel.com",
            ),
            Field(
                "default_service",
                "Default service",
                required=False,
                help="MyParcel.com service code for labels bought without a rate, e.g. dpd-classic",
            ),
            Field(
                "sender_address",
                "Sender address",
                required=False,
                help="MyParcel.com address fields as a JSON object (street_1, street_number, postal_code, city, "
                "country_code, company, ...); default: the shop's sender address; see docs/myparcelcom.md",
            ),
        ),
        secrets=(
            Field("client_secret", "Client secret"),
            Field(
                "access_token",
                "Access token",
                required=False,
                help="kept by crossdock: the current client-credentials token, shared by every worker",
            ),
            Field(
                "access_token_expires_at",
                "Access token expiry",
                required=False,
                help="kept by crossdock: when the access token above expires (ISO 8601)",
            ),
        ),
        factory="crossdock.connectors.myparcelcom.client:MyParcelComConnector",
    )
)
register(
    ConnectorSpec(
        name="carriers",
        title="Carriers (UPS, FedEx, USPS and more through karrio)",
        role=Role.SHIPPING,
        capabilities=frozenset({C.SHIPPING_RATES, C.SHIPPING_LABELS, C.TRACKING_POLL}),
        default_base_url="",
        # docs/carriers.md: what each karrio carrier needs in these fields.
        settings=(
            Field("carrier", "karrio carrier name", help="ups, fedex, usps, or any installed karrio carrier"),
            Field(
                "account_number",
                "Account number",
                required=False,
                help="UPS shipper number, FedEx or USPS account",
            ),
            Field(
                "test_mode",
                "Test mode",
                required=False,
                help="true: the carrier's test host (UPS CIE, FedEx sandbox, USPS TEM)",
            ),
            Field(
                "shipper_address",
                "Ship-from address",
                required=False,
                help="JSON address (company, line1, city, postal_code, subdivision, country, phone); needed for rates and labels",
            ),
            Field("label_format", "Label format", required=False, help="pdf (default), zpl or png"),
            Field(
                "default_service",
                "Default service",
                required=False,
                help="karrio service name, e.g. ups_ground",
            ),
            Field(
                "services", "Services to rate", required=False, help="comma separated karrio service names"
            ),
            Field(
                "carrier_config",
                "Other karrio settings",
                required=False,
                help='JSON object by karrio\'s field names, e.g. {"CRID": "...", "MID": "..."} for USPS',
            ),
        ),
        secrets=(
            Field(
                "client_id", "Client id", help="UPS/USPS client id, FedEx API key, Canada Post API username"
            ),
            Field(
                "client_secret", "Client secret", help="client secret, FedEx secret key, Canada Post password"
            ),
            Field(
                "credentials",
                "Other karrio credentials",
                required=False,
                help="JSON object by karrio's field names",
            ),
        ),
        factory="crossdock.connectors.carriers.client:CarriersConnector",
    )
)
