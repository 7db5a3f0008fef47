"""Canonical carrier names -> Shopify tracking company names.

Shopify builds tracking links for the companies in its list and wants them spelled exactly ("capitalization
matters"): shopify.dev/docs/api/admin-graphql/latest/objects/FulfillmentTrackingInfo#supported-tracking-companies
(the REST `tracking_info.company` takes the same names). Any other name is accepted as free text, so an unknown
carrier is sent as given, with the tracking URL doing the linking.
"""

from __future__ import annotations

from crossdock.connectors.carrier_names import carrier_key

# carrier_key(...) -> Shopify's spelling, from the supported-tracking-companies list cited above.
TRACKING_COMPANY: dict[str, str] = {
    "ups": "UPS",
    "usps": "USPS",
    "fedex": "FedEx",
    "dhlexpress": "DHL Express",
    "dhlecommerce": "DHL eCommerce",
    "deutschepost": "Deutsche Post",
    "royalmail": "Royal Mail",
    "canadapost": "Canada Post",
    "australiapost": "Australia Post",
    "postnl": "PostNL",
    "dpd": "DPD",
    "gls": "GLS",
    "evri": "Evri",
    "chronopost": "Chronopost",
    "colissimo": "Colissimo",
    "correos": "Correos",
    "posteitaliane": "Poste Italiane",
    "chinapost": "China Post",
    "anpost": "An Post",
    "bpost": "BPost",
}


def tracking_company(carrier: str | None) -> str | None:
    """Shopify's name for a carrier; an unknown carrier keeps its own name (Shopify accepts free text)."""
    if carrier is None or not carrier.strip():
        return None
    return TRACKING_COMPANY.get(carrier_key(carrier), carrier)
