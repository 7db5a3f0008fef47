"""Signature checks for what remotes send us: Shopify's webhook deliveries and OAuth (install and callback)
redirects, and Shippo's provisioned webhook HMAC.

- Webhooks: header X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(client secret, raw body)), checked on the raw
  bytes before any JSON parsing (shopify.dev/docs/apps/build/webhooks/verify-deliveries).
- OAuth install and callback queries: `hmac` = hex HMAC-SHA256 over the other parameters, sorted and joined as
  k=v with & after escaping %, & and = (shopify.dev/docs/apps/build/authentication-authorization/access-tokens/
  authorization-code-grant, step "Verify the installation request"; the official Python SDK does the same,
  Shopify/shopify_python_api shopify/session.py). The request must be under 24 hours old and `shop` a
  *.myshopify.com domain (PROTOCOLS.md section 1).

Every check accepts several secrets, so a secret can be rotated without refusing deliveries signed with the old
one; comparisons are constant-time. The helpers that sign are for tests and emulators.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

# A shop's permanent domain (PROTOCOLS.md section 1; shopify.dev authorization-code-grant, "Security checks").
SHOP_DOMAIN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com")
# Install and callback requests older than this are replays (shopify_python_api Session.validate_params).
MAX_QUERY_AGE = timedelta(hours=24)

# The raw query string (best), (name, value) pairs such as Starlette's query_params.multi_items(), or a mapping
# whose repeated `name[]` parameters hold lists.
Query = str | Mapping[str, str] | Mapping[str, list[str]] | Sequence[tuple[str, str]]


class SignatureError(ValueError):
    """A signed request that must be refused; the message says why."""


def _usable(secrets: Iterable[str]) -> list[bytes]:
    # An empty secret would make a signature anyone can compute: never accept one.
    return [secret.encode() for secret in secrets if secret]


# -- webhooks ------------------------------------------------------------------------------------------------


def shopify_webhook_signature(body: bytes, secret: str) -> str:
    """The X-Shopify-Hmac-Sha256 value for a raw body: base64 of the HMAC-SHA256 digest."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_shopify_webhook(body: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """Whether `signature` (the X-Shopify-Hmac-Sha256 header) signs these exact bytes with one of `secrets`."""
    if not isinstance(body, bytes | bytearray):
        raise TypeError("verify the raw request body (bytes), not parsed or re-serialised JSON")
    if not signature:
        return False
    received = signature.strip().encode()
    matched = False
    for secret in _usable(secrets):
        expected = base64.b64encode(hmac.new(secret, bytes(body), hashlib.sha256).digest())
        # No early exit: the time taken does not depend on which secret matched.
        matched |= hmac.compare_digest(expected, received)
    return matched


# -- OAuth install and callback queries ----------------------------------------------------------------------


def is_shop_domain(shop: str) -> bool:
    """Whether `shop` is a shop's myshopify.com domain (and nothing else: no path, port or trailing newline)."""
    return SHOP_DOMAIN.fullmatch(shop) is not None


def _pairs(query: Query) -> list[tuple[str, str]]:
    if isinstance(query, str):
        return parse_qsl(query.removeprefix("?"), keep_blank_values=True)
    if isinstance(query, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in query.items():
            values = value if isinstance(value, list) else [value]
            pairs.extend((str(key), str(v)) for v in values)
        return pairs
    return [(str(k), str(v)) for k, v in query]


def _params(query: Query) -> dict[str, str | list[str]]:
    """Query parameters by name; `name[]` repeats into a list, any other repeated name is refused."""
    params: dict[str, str | list[str]] = {}
    for key, value in _pairs(query):
        if key.endswith("[]"):
            listed = params.setdefault(key, [])
            if isinstance(listed, list):
                listed.append(value)
            continue
        if key in params:
            raise SignatureError(
                f"parameter {key!r} appears more than once, so the signed value is ambiguous"
            )
        params[key] = value
    return params


def shopify_query_message(query: Query) -> str:
    """The text Shopify signs: every parameter but hmac, escaped, as sorted k=v pairs joined with &.

    `ids[]=1&ids[]=2` is signed as `ids=["1", "2"]` (a JSON list with ", " between items).
    """
    entries: list[str] = []
    for key, value in _params(query).items():
        if key == "hmac":
            continue
        if isinstance(value, list):
            key, value = key.removesuffix("[]"), json.dumps(value)
        # Escape the delimiters so that no value can pose as another parameter.
        name = key.replace("%", "%25").replace("=", "%3D")
        entries.append(f"{name}={value.replace('%', '%25')}".replace("&", "%26"))
    return "&".join(sorted(entries))


def shopify_query_signature(query: Query, secret: str) -> str:
    """The hex `hmac` Shopify puts on an install or callback query."""
    return hmac.new(secret.encode(), shopify_query_message(query).encode(), hashlib.sha256).hexdigest()


def sign_shopify_query(params: Mapping[str, str], secret: str) -> dict[str, str]:
    """`params` plus the `hmac` Shopify would add (for tests and emulators)."""
    return {**params, "hmac": shopify_query_signature(dict(params), secret)}


def check_shopify_oauth_query(
    query: Query,
    secrets: Iterable[str],
    *,
    now: datetime | None = None,
    max_age: timedelta = MAX_QUERY_AGE,
) -> dict[str, str]:
    """Check a Shopify install or OAuth callback query; its parameters when genuine, else SignatureError.

    Order of checks: signature first (a forged request learns nothing else), then age, then the shop domain.
    """
    params = _params(query)
    received = params.get("hmac")
    if not isinstance(received, str) or not received:
        raise SignatureError("the request has no hmac parameter, so it cannot come from Shopify")
    message = shopify_query_message(query).encode()
    matched = False
    for secret in _usable(secrets):
        expected = hmac.new(secret, message, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, received.strip().lower().encode())
    if not matched:
        raise SignatureError("the hmac does not match: the request was not signed with this app's secret")

    timestamp = params.get("timestamp")
    if not isinstance(timestamp, str) or not timestamp.isdigit():
        raise SignatureError("the request has no numeric timestamp, so its age cannot be checked")
    moment = datetime.fromtimestamp(int(timestamp), UTC)
    current = now or datetime.now(UTC)
    if current - moment > max_age:
        raise SignatureError(f"the request is older than {max_age}; start the install again from Shopify")
    if moment - current > max_age:
        raise SignatureError("the request's timestamp lies in the future; check this server's clock")

    shop = params.get("shop")
    if not isinstance(shop, str) or not is_shop_domain(shop):
        raise SignatureError(f"shop {shop!r} is not a shop domain like your-shop.myshopify.com")
    return {k: v if isinstance(v, str) else ",".join(v) for k, v in params.items()}


def verify_shopify_oauth_query(
    query: Query,
    secrets: Iterable[str],
    *,
    now: datetime | None = None,
    max_age: timedelta = MAX_QUERY_AGE,
) -> bool:
    """Whether a Shopify install or OAuth callback query is genuine, fresh and names a shop domain."""
    try:
        check_shopify_oauth_query(query, secrets, now=now, max_age=max_age)
    except SignatureError:
        return False
    return True


# Shippo ----------------------------------------------------------------------------------------------------------
# The provisioned HMAC's header, `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`: Shippo's page does not
# publish the scheme, which is as integrators report it (PROTOCOLS.md section 5, marked verify).
def shippo_signature(body: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_shippo_signature(body: bytes, header: str | None, secret: str) -> bool:
    """Whether one of the header's v1 signatures signs `t` and this body. No time window: a replayed delivery
    has the body of one already stored, which the inbox takes as a duplicate."""
    if not header:
        return False
    parts = [p.strip().partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    expected = shippo_signature(body, secret, int(stamps[0])).rpartition("v1=")[2].encode()
    return any(k == "v1" and hmac.compare_digest(v.encode(), expected) for k, _, v in parts)
