"""Canonical carrier names -> Amazon SP-API carrier codes.

confirmShipment's `packageDetail.carrierCode` takes the CarrierCode values of Amazon's amzn-base.xsd, which
ordersV0.json (PackageDetail.carrierCode) links to; Seller Central must show the same spelling
(amzn/selling-partner-api-docs#772). An unlisted carrier is sent as "Other" with its name in `carrierName`
(amzn/selling-partner-api-docs#413; ordersV0.json requires carrierName in that case).
"""

from __future__ import annotations

from crossdock.connectors.carrier_names import carrier_key

OTHER = "Other"

# carrier_key(...) -> amzn-base.xsd CarrierCode value.
CARRIER_CODE: dict[str, str] = {
    "ups": "UPS",
    "upsmailinnovations": "UPS Mail Innovations",
    "usps": "USPS",
    "fedex": "FedEx",
    "fedexsmartpost": "FedEx SmartPost",
    "dhl": "DHL",
    "dhlexpress": "DHL",
    "dhlglobalmail": "DHL Global Mail",
    "deutschepost": "Deutsche Post",
    "royalmail": "Royal Mail",
    "parcelforce": "Parcelforce",
    "canadapost": "Canada Post",
    "dpd": "DPD",
    "gls": "GLS",
    "hermes": "Hermes Logistik Gruppe",
    "tnt": "TNT",
    "chronopost": "Chronopost",
    "laposte": "La Poste",
    "posteitaliane": "Poste Italiane",
    "ontrac": "OnTrac",
    "lasership": "Lasership",
    "yodel": "Yodel",
    "yamato": "YamatoTransport",
    "sagawa": "SagawaExpress",
    "indiapost": "India Post",
    "bluedart": "BlueDart",
    "aramex": "Aramex",
}
_BY_CODE = {carrier_key(code): code for code in CARRIER_CODE.values()}


def carrier_code(carrier: str) -> str:
    """Amazon's CarrierCode for a carrier, or "Other" (then send the carrier's own name as carrierName)."""
    key = carrier_key(carrier)
    return CARRIER_CODE.get(key) or _BY_CODE.get(key) or OTHER
