"""Canonical carrier names -> eBay shipping carrier codes.

createShippingFulfillment's `shippingCarrierCode` takes the Trading API's ShippingCarrierCodeType values
(developer.ebay.com/api-docs/sell/fulfillment/types/sel:ShippingFulfillmentDetails, which points to
ShippingCarrierCodeType and GeteBayDetails/ShippingCarrierDetails for the current list; the values below are
in the eBay Trading WSDL enumeration, urn:ebay:apis:eBLBaseComponents ShippingCarrierCodeType). A carrier eBay
has no code for is sent as "Other".
"""

from __future__ import annotations

from crossdock.connectors.carrier_names import carrier_key

OTHER = "Other"

# carrier_key(...) -> ShippingCarrierCodeType value.
SHIPPING_CARRIER_CODE: dict[str, str] = {
    "ups": "UPS",
    "usps": "USPS",
    "fedex": "FedEx",
    "dhl": "DHL",
    "dhlexpress": "DHLEXPRESS",
    "deutschepost": "DeutschePost",
    "hermes": "Hermes",
    "royalmail": "RoyalMail",
    "parcelforce": "Parcelforce",
    "australiapost": "AustraliaPost",
    "postnl": "PostNL",
    "dpd": "DPD",
    "gls": "GLS",
    "chronopost": "Chronopost",
    "colissimo": "Colissimo",
    "laposte": "LAPOSTE",
    "correos": "Correos",
    "posteitaliane": "PosteItaliane",
    "tnt": "TNT",
    "yodel": "Yodel",
    "anpost": "AnPost",
    "swisspost": "SwissPost",
    "japanpost": "JapanPost",
    "chinapost": "ChinaPost",
}
# The codes themselves, so a name already given as an eBay code ("RoyalMail", "DHLEXPRESS") maps to itself.
_BY_CODE = {carrier_key(code): code for code in SHIPPING_CARRIER_CODE.values()}


def shipping_carrier_code(carrier: str) -> str:
    """eBay's code for a carrier, or "Other" when eBay lists no code for it."""
    key = carrier_key(carrier)
    return SHIPPING_CARRIER_CODE.get(key) or _BY_CODE.get(key) or OTHER
