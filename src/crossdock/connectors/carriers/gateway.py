"""A connection's settings and secrets as a karrio gateway, and the rate limits of the carriers' APIs.

A karrio carrier is a plugin (the karrio-<carrier> package) whose `Settings` class names the credentials it
needs: UPS and USPS `client_id`/`client_secret`, FedEx `api_key`/`secret_key`, Canada Post `username`/
`password`, DHL Parcel DE all four (karrioapi/karrio: modules/connectors/*/karrio/mappers/*/settings.py). The
connection's two secrets fill the carrier's first pair; `credentials` (a JSON object, secret) and
`carrier_config` (a JSON object, not secret) set any other field by karrio's own name, so a carrier karrio
supports needs its package installed and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from crossdock.engine.errors import ConfigurationError
from crossdock.engine.ratelimit import RatePolicy, per_window, token_bucket

# Where the connection's client id and secret go, by the carrier's own field names (first present wins).
CLIENT_ID_FIELDS = ("client_id", "api_key", "username", "user_id", "api_user")
CLIENT_SECRET_FIELDS = ("client_secret", "secret_key", "password", "api_secret")
# Fields karrio sets on a gateway itself, or that crossdock sets from its own settings.
RESERVED_FIELDS = frozenset({"id", "carrier_id", "metadata", "tracer", "cache", "system_config"})

# FedEx: 1,400 transactions per 10 seconds per project (developer.fedex.com/api/en-us/guides/ratelimits.html).
FEDEX = RatePolicy({"api": per_window(1400, 10.0)}, default="api")
# USPS: 60 calls an hour per API on the default product (PROTOCOLS.md section 8; developers.usps.com
# getting-started, "quotas"); each API (oauth2, prices, labels, tracking, ...) is its own bucket.
USPS_APIS = (
    "oauth2",
    "payments",
    "prices",
    "shipments",
    "labels",
    "tracking",
    "addresses",
    "international-labels",
)
USPS = RatePolicy({api: per_window(60, 3600.0) for api in (*USPS_APIS, "other")}, default="other")
# UPS publishes no fixed call rate for its REST APIs (developer.ups.com answers 429 with Retry-After when one
# is exceeded, which the limiter follows); 10 calls a second, 20 at once, keeps one account from bursting.
# The same modest bucket serves every other karrio carrier until its documented limit is added here.
DEFAULT = RatePolicy({"api": token_bucket(10.0, 20)}, default="api")
POLICIES: dict[str, RatePolicy] = {"fedex": FEDEX, "usps": USPS}


def rate_policy(carrier: str) -> RatePolicy:
    return POLICIES.get(carrier, DEFAULT)


def bucket_of(carrier: str) -> Any:
    """The limiter bucket of a carrier URL: USPS counts per API (the first path segment), others per account."""

    def usps(url: str) -> str:
        segment = urlsplit(url).path.strip("/").split("/", 1)[0]
        return segment if segment in USPS_APIS else "other"

    def single(_url: str) -> str:
        return "api"

    return usps if carrier == "usps" else single


def json_object(raw: Any, name: str) -> dict[str, Any]:
    """A setting or secret holding a JSON object (or already an object); {} when empty."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"the connection's '{name}' is not valid JSON ({exc.msg}); give a JSON object"
        ) from None
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"the connection's '{name}' must be a JSON object, not {type(value).__name__}"
        )
    return value


def truthy(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    return str(raw or "").strip().lower() in {"1", "true", "yes", "on"}


def carrier_settings(
    carrier: str, field_names: list[str], settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> dict[str, Any]:
    """The values of karrio's `Settings` for this carrier: the connection's credentials under the carrier's
    names, then account number and test mode, then `carrier_config` and `credentials` verbatim."""
    known = set(field_names)
    values: dict[str, Any] = {"id": carrier, "carrier_id": carrier}
    for ours, theirs in (("client_id", CLIENT_ID_FIELDS), ("client_secret", CLIENT_SECRET_FIELDS)):
        value = secrets.get(ours)
        target = next((name for name in theirs if name in known), None)
        if value and target is not None:
            values[target] = value
    if settings.get("account_number") and "account_number" in known:
        values["account_number"] = str(settings["account_number"])
    if "test_mode" in known:
        values["test_mode"] = truthy(settings.get("test_mode"))
    for name, extra in (
        ("carrier_config", json_object(settings.get("carrier_config"), "carrier_config")),
        ("credentials", json_object(secrets.get("credentials"), "credentials")),
    ):
        unknown = sorted(k for k in extra if k not in known or k in RESERVED_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(known - RESERVED_FIELDS))
            raise ConfigurationError(
                f"karrio's {carrier} settings have no field {', '.join(unknown)} (from '{name}'); "
                f"its fields are: {allowed}"
            )
        values.update(extra)
    return values


# UPS's Shipping API lists GIF, ZPL, EPL and SPL as a label's LabelImageFormat.Code (UPS-API/api-documentation
# Shipping.yaml, ShipmentRequest.LabelSpecification.LabelImageFormat: "for image formats use GIF"; "for shipments
# without return service the valid value is GIF, ZPL, EPL and SPL"). karrio asks for PNG when a PDF is wanted
# (karrio/providers/ups/units.py, LabelType.PDF_6x4) and turns whatever image comes back into the PDF itself
# (shipment/create.py, _process_label: any format but ZPL goes through image_to_pdf), so asking for GIF gives
# the same PDF with a code UPS documents for every shipment.
_UPS_IMAGE_CODES = {"PNG": "GIF"}


def _ups_ship_request(url: str, body: bytes) -> bytes | None:
    path = urlsplit(url).path
    if not (path.startswith("/api/shipments/") and path.endswith("/ship")):
        return None
    try:
        document = json.loads(body)
        label = document["ShipmentRequest"]["LabelSpecification"]["LabelImageFormat"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(label, dict) or label.get("Code") not in _UPS_IMAGE_CODES:
        return None
    code = _UPS_IMAGE_CODES[label["Code"]]
    label["Code"] = code
    if "Description" in label:
        label["Description"] = code
    return json.dumps(document).encode()


def adjust_request(carrier: str) -> Callable[[str, bytes], bytes | None] | None:
    """What crossdock changes in a carrier's request before it is sent, where karrio asks for something the
    carrier does not document (None: send karrio's request as it is). Given the URL and body, it returns the
    new body, or None to leave this request alone."""
    return _ups_ship_request if carrier == "ups" else None
