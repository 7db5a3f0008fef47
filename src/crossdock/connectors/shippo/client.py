"""The Shippo connector's runtime: rates, labels, refunds, tracking and order pushes through the engine's
RemoteClient.

Wire facts: PROTOCOLS.md section 5 and the docs.goshippo.com pages named beside each rule. Mapping lives in
`mapping.py`; this module only calls and maps.

Never buying twice: Shippo takes no idempotency key, so each purchase carries ours in the transaction's
`metadata` ("crossdock:<key>"). A purchase whose answer was lost is looked up by that metadata before anything
is sent again (`lookup_first`), here at once and by the engine through `find_label` before a retried job.
Orders take no key and no metadata either: a pushed order is found again by its order_number and placed_at
(`find_order`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from crossdock.connectors.base import PUSH_ORDERS, BoughtLabel, ConnectionContext, VoidOutcome, setting_flag
from crossdock.connectors.remote_json import PushError, json_object
from crossdock.connectors.shippo.mapping import (
    LABEL_FILE_TYPES,
    PENDING,
    label_format,
    map_rates,
    map_track,
    messages_text,
    metadata_for,
    order_number,
    order_request,
    placed_at_text,
    shipment_request,
)
from crossdock.engine.errors import ConfigurationError, PermanentError, RateLimited, RetryableError
from crossdock.engine.http import RemotePermanentError
from crossdock.engine.ratelimit import RatePolicy, per_window, shippo
from crossdock.model import Money, MoneyError, Order, Rate, Shipment, TrackingEvent

DEFAULT_BASE_URL = "https://api.goshippo.com"
# Pin the version the wire facts describe (PROTOCOLS.md 5: optional SHIPPO-API-VERSION header).
API_VERSION = "2018-02-08"
DEFAULT_LABEL_FILE_TYPE = "PDF"
# How long one call waits for a purchase Shippo is still processing (QUEUED) before the job is retried later.
LABEL_WAIT_S = 30.0
# Lists answer 25 by default and take `results` up to 100 (SDK ListTransactionsRequest.results: "max 100").
LOOKUP_PAGE_SIZE = 100
# How far back find_label looks. GET /transactions filters by rate, object_status and tracking_status only,
# not by metadata (SDK docs/models/operations/listtransactionsrequest.md), so recent transactions are paged
# through, newest first. A lookup follows an unknown outcome within minutes, so its purchase is among the most
# recent; 500 purchases in between would be 10 label jobs a second on one account.
LOOKUP_PAGES = 5
# find_order asks for the API orders (shop_app "Shippo", PROTOCOLS.md 5) placed this close to ours: GET /orders
# filters by placed_at, not by order_number (docs.goshippo.com/shippoapi/public-api/orders/listorders: page,
# results, order_status[], shop_app, start_date, end_date), and "after"/"before" leave the bounds unsaid.
ORDER_LOOKUP_WINDOW = timedelta(minutes=1)
# A purchase that holds a usable label; REFUNDREJECTED labels stay valid (the refund was refused).
USABLE = frozenset({"SUCCESS", "REFUNDREJECTED"})
# Refund states that mean the label is being, or has been, voided (SDK components/refund.py RefundStatus).
REFUND_ACCEPTED = frozenset({"QUEUED", "PENDING", "SUCCESS"})
# Carrier names Shippo reports (Rate.provider) whose tracking token is not the name in snake case.
CARRIER_TOKENS = {"evri": "hermes_uk", "hermes uk": "hermes_uk"}
REAUTH_HINT = (
    "Shippo does not accept the connection's API token: check the API token (a shippo_test_... or "
    "shippo_live_... token from Shippo's Settings > API, or an OAuth token), then update the connection's "
    "api_token secret"
)


class ShippoAuth:
    """`Authorization: ShippoToken <token>`, or `Bearer oauth.<token>` for partner OAuth tokens (PROTOCOLS.md 5;
    docs.goshippo.com authentication). Sent to the API host only: label files live on a file host (S3) whose
    signed URLs need no token, and the token must not travel there. Tokens never expire, nothing refreshes."""

    def __init__(self, token: str, api_host: str) -> None:
        self.header = f"Bearer {token}" if token.startswith("oauth.") else f"ShippoToken {token}"
        self.api_host = api_host

    def signs(self, request: httpx.Request) -> bool:
        return request.headers.get("host", "").lower() == self.api_host

    async def authorize(self, request: httpx.Request) -> None:
        if self.signs(request):
            request.headers["Authorization"] = self.header
            request.headers["SHIPPO-API-VERSION"] = API_VERSION

    async def refresh(self) -> bool:
        return False


def rate_policy(*, live: bool) -> RatePolicy:
    """The engine's Shippo buckets (create, get, list) plus tracking's own: GET /tracks is 500/50 a minute,
    live/test (docs.goshippo.com/docs/API_Concepts/RateLimits). No default bucket: label files come from the
    file host, which Shippo's limits do not cover."""
    buckets = dict(shippo(live=live).buckets)
    buckets["track"] = per_window(500 if live else 50)
    return RatePolicy(buckets)


class ShippoConnector:
    """One Shippo account (a connection): shipping.rates, shipping.labels, tracking, orders.push."""

    # find_label finds a purchase by the metadata it was sent with (see ShippingLabels in connectors/base.py).
    finds_labels = True

    def __init__(self, ctx: ConnectionContext) -> None:
        self.ctx = ctx
        token = (ctx.secrets.get("api_token") or "").strip()
        if not token:
            raise ConfigurationError(
                "the Shippo connection has no api_token: paste an API token from Shippo's Settings > API "
                "(shippo_test_... to try things out, shippo_live_... to buy real labels) into the connection"
            )
        self.label_file_type = _label_file_type(ctx.settings.get("label_file_type"))
        self.address_from = _address_from(ctx.settings.get("from_address"))
        try:
            # Read by the order push flow; checked here so that connecting refuses a value that is not a yes/no.
            self.push_orders = setting_flag(ctx.settings, PUSH_ORDERS)
        except ValueError as exc:
            raise ConfigurationError(f"the Shippo connection's {exc}") from None
        # Partner OAuth tokens belong to real merchant accounts: live limits.
        self.live = not token.startswith("shippo_test_")
        base = ctx.base_url or DEFAULT_BASE_URL
        api_host = httpx.URL(base).netloc.decode("ascii").lower()
        self.client = ctx.make_client(
            default_base_url=DEFAULT_BASE_URL,
            auth=ShippoAuth(token, api_host),
            policy=rate_policy(live=self.live),
            reauth_hint=lambda _status: REAUTH_HINT,
        )
        self.label_wait_s = LABEL_WAIT_S
        self.lookup_page_size = LOOKUP_PAGE_SIZE

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- plumbing -----------------------------------------------------------------------------------------------

    async def _json(
        self, method: str, path: str, *, operation: str, order_id: uuid.UUID | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self.client.request(method, path, operation=operation, order_id=order_id, **kwargs)
        return json_object(response, "Shippo", f"{method} {path}")

    def _require_origin(self) -> str | dict[str, Any]:
        if self.address_from is None:
            raise ConfigurationError(
                "the Shippo connection has no from_address: set it to the address parcels ship from, as a "
                'JSON object such as {"name": "Acme Warehouse", "street1": "215 Clayton St.", "city": '
                '"San Francisco", "state": "CA", "zip": "94117", "country": "US"}, or to the object_id of an '
                "address saved in Shippo (see docs/shipping.md)"
            )
        return self.address_from

    # -- check --------------------------------------------------------------------------------------------------

    async def check(self) -> str:
        """GET /transactions?results=1: authenticated, changes nothing, answers for every account."""
        page = await self._json("GET", "/transactions", operation="list", params={"results": 1})
        mode = "live" if self.live else "test"
        owner = next((t.get("object_owner") for t in page.get("results") or [] if isinstance(t, dict)), None)
        return f"Shippo account {owner} ({mode} token)" if owner else f"Shippo account ({mode} token)"

    # -- shipping.rates -----------------------------------------------------------------------------------------

    async def rates(self, shipment: Shipment, order: Order) -> list[Rate]:
        """POST /shipments with `async: false` returns the rates inline. Creating a shipment buys nothing, so a
        retry after a lost answer is safe (an unused shipment is all it can leave behind)."""
        origin = self._require_origin()
        try:
            body = shipment_request(shipment, order, origin)
        except PushError as exc:
            raise PermanentError(f"cannot ask Shippo for rates: {exc.field}: {exc.reason}") from None
        created = await self._json(
            "POST", "/shipments", operation="create", order_id=shipment.order_id, json=body, lookup_first=True
        )
        if created.get("status") in PENDING and isinstance(created.get("object_id"), str):
            created = await self._wait_for("shipments", created, shipment.order_id, "rates")
        if created.get("status") == "ERROR":
            raise PermanentError(
                f"Shippo could not rate this shipment: {messages_text(created.get('messages')) or 'no reason given'}"
            )
        read = map_rates(created)
        if not read.rates:
            words = messages_text(created.get("messages"))
            if words or read.problems:
                unread = "; ".join(f"{p.field} {p.reason}" for p in read.problems)
                raise PermanentError(
                    f"Shippo offered no usable rates for this shipment: {'; '.join(w for w in (words, unread) if w)}"
                )
        return read.rates

    # -- shipping.labels ----------------------------------------------------------------------------------------

    async def buy_label(
        self, shipment: Shipment, order: Order, rate: Rate | None, idempotency_key: str
    ) -> BoughtLabel:
        """POST /transactions {rate, label_file_type, async: false, metadata}
        (docs.goshippo.com/api-reference/transactions/create-a-shipping-label)."""
        if rate is None or not rate.remote_id:
            raise PermanentError(
                "Shippo buys a label for one of its rates: ask this connection for rates first and pick one"
            )
        metadata = metadata_for(idempotency_key)
        body = {
            "rate": rate.remote_id,
            "label_file_type": self.label_file_type,
            "async": False,
            "metadata": metadata,
        }
        order_id = shipment.order_id
        try:
            transaction = await self._json(
                "POST", "/transactions", operation="create", order_id=order_id, json=body, lookup_first=True
            )
        except RetryableError as exc:
            if isinstance(exc, RateLimited):
                raise  # refused before anything was bought
            # The outcome is unknown (timeout, 5xx): Shippo may have bought the label. Look before trying again.
            found = await self._find_transaction(metadata, order_id)
            if found is None:
                raise
            transaction = found
        return await self._label(transaction, order_id, rate)

    async def find_label(self, idempotency_key: str) -> BoughtLabel | None:
        """The label bought with this key: a usable one first; one Shippo is still processing is waited for (and
        is a RetryableError past the wait, never None: None would buy a second label). A failed or refunded
        purchase left no label, so it counts as none."""
        found = await self._find_transaction(metadata_for(idempotency_key), None)
        if found is None:
            return None
        if found.get("status") not in USABLE | PENDING:
            return None
        return await self._label(found, None, None)

    async def _find_transaction(self, metadata: str, order_id: uuid.UUID | None) -> dict[str, Any] | None:
        """The transaction carrying this metadata among the most recent, preferring one with a label."""
        matches: list[dict[str, Any]] = []
        for page in range(1, LOOKUP_PAGES + 1):
            listed = await self._json(
                "GET",
                "/transactions",
                operation="list",
                order_id=order_id,
                params={"results": self.lookup_page_size, "page": page},
            )
            results = listed.get("results")
            if not isinstance(results, list):
                raise RetryableError("Shippo answered GET /transactions without a results list; try again")
            matches += [t for t in results if isinstance(t, dict) and t.get("metadata") == metadata]
            if not listed.get("next"):
                break
        for wanted in (USABLE, PENDING):
            for transaction in matches:
                if transaction.get("status") in wanted:
                    return transaction
        return matches[0] if matches else None

    async def _label(
        self, transaction: dict[str, Any], order_id: uuid.UUID | None, rate: Rate | None
    ) -> BoughtLabel:
        """A purchase's outcome: wait while Shippo is processing it, then the label file, or Shippo's refusal."""
        transaction_id = transaction.get("object_id")
        if not isinstance(transaction_id, str) or not transaction_id:
            raise RetryableError(
                "Shippo answered the label purchase without its object_id; it will be looked up"
            )
        if transaction.get("status") in PENDING:
            transaction = await self._wait_for("transactions", transaction, order_id, "the label")
        status = transaction.get("status")
        if status == "ERROR":
            words = (messages_text(transaction.get("messages")) or "no reason given").rstrip(". ")
            raise PermanentError(
                f"Shippo could not buy the label (transaction {transaction_id}): {words}. Correct the shipment "
                "(addresses, parcel) or choose another rate, then try again"
            )
        if status not in USABLE:
            raise PermanentError(
                f"Shippo's transaction {transaction_id} is {status}, not a label that can be used"
            )
        label_url = transaction.get("label_url")
        if not isinstance(label_url, str) or not label_url:
            raise RetryableError(f"Shippo's transaction {transaction_id} has no label_url yet; try again")
        file_type = transaction.get("label_file_type")
        file_format = label_format(file_type if isinstance(file_type, str) else self.label_file_type)
        # The label file host is not the API: no token goes there (ShippoAuth) and no API bucket is used.
        response = await self.client.request("GET", label_url, operation="label_file", order_id=order_id)
        if not response.content:
            raise RetryableError(
                f"the label file of Shippo's transaction {transaction_id} was empty; try again"
            )
        bought = transaction.get("rate") if isinstance(transaction.get("rate"), dict) else {}
        assert isinstance(bought, dict)
        carrier = bought.get("provider") or (rate.carrier if rate else None)
        service = bought.get("servicelevel_token") or (rate.service_code if rate else None)
        tracking_url = transaction.get("tracking_url_provider")
        return BoughtLabel(
            remote_id=transaction_id,
            carrier=str(carrier or ""),
            service_code=str(service or ""),
            tracking_number=transaction.get("tracking_number") or None,
            tracking_url=tracking_url if isinstance(tracking_url, str) and tracking_url else None,
            file=response.content,
            file_format=file_format,
            price=_price(bought) or (rate.price if rate else None),
            raw=transaction,
        )

    async def _wait_for(
        self, kind: str, current: dict[str, Any], order_id: uuid.UUID | None, what: str
    ) -> dict[str, Any]:
        """Poll GET /{kind}/{id} while Shippo says WAITING or QUEUED, within `label_wait_s`; past it the job is
        retried later (the purchase is found again by its metadata, so nothing is bought twice)."""
        object_id = str(current["object_id"])
        deadline = time.monotonic() + self.label_wait_s
        pause = 0.25
        while current.get("status") in PENDING:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RetryableError(
                    f"Shippo is still working on {what} ({kind[:-1]} {object_id} is {current.get('status')}); "
                    "crossdock will look again when the job is retried",
                    retry_after=30.0,
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 2.0)
            current = await self._json(
                "GET", f"/{kind}/{_segment(object_id)}", operation="get", order_id=order_id
            )
        return current

    async def void_label(self, remote_id: str) -> VoidOutcome:
        """POST /refunds {transaction, async: false} (SDK RefundRequestBody). A refund QUEUED, PENDING or
        SUCCESS voids the label; a refusal is reported in Shippo's words."""
        try:
            refund = await self._json(
                "POST",
                "/refunds",
                operation="create",
                json={"transaction": remote_id, "async": False},
                lookup_first=True,
            )
        except RemotePermanentError as exc:
            # A retried refund whose first try went through is refused as existing: the label is being voided.
            already = await self._refund_under_way(remote_id)
            if already is not None:
                return already
            return VoidOutcome(
                False, f"Shippo refused to void the label: {exc.remote_message or exc.message}"
            )
        status = refund.get("status")
        refund_id = refund.get("object_id")
        if status in REFUND_ACCEPTED:
            done = "refunded" if status == "SUCCESS" else "is refunding"
            return VoidOutcome(True, f"Shippo {done} the label (refund {refund_id}, {status})")
        return VoidOutcome(False, f"Shippo did not void the label (refund {refund_id}, {status})")

    async def _refund_under_way(self, remote_id: str) -> VoidOutcome | None:
        try:
            transaction = await self._json("GET", f"/transactions/{_segment(remote_id)}", operation="get")
        except RemotePermanentError:
            return None
        status = transaction.get("status")
        if status == "REFUNDED":
            return VoidOutcome(True, f"Shippo has refunded the label (transaction {remote_id} is REFUNDED)")
        if status == "REFUNDPENDING":
            return VoidOutcome(
                True, f"Shippo is refunding the label (transaction {remote_id} is REFUNDPENDING)"
            )
        return None

    # -- orders.push -------------------------------------------------------------------------------------------

    async def push_order(self, order: Order) -> str:
        """POST /orders (PROTOCOLS.md 5; docs.goshippo.com/docs/orders/orders, "Creating an order"): the order as
        Shippo's dashboard shows it, ready for a label to be bought there. Returns the order's object_id."""
        number = _order_number(order)
        origin = self.address_from if isinstance(self.address_from, dict) else None
        try:
            body = order_request(order, origin)
        except PushError as exc:
            raise PermanentError(
                f"order {number} cannot be sent to Shippo: {exc.field}: {exc.reason}"
            ) from None
        try:
            created = await self._json(
                "POST", "/orders", operation="create", order_id=order.id, json=body, lookup_first=True
            )
        except RemotePermanentError as exc:
            words = (exc.remote_message or exc.message).rstrip(". ")
            raise PermanentError(
                f"Shippo refused order {number} (HTTP {exc.status}): {words}. Correct the order, then retry the "
                "failed job"
            ) from None
        except RetryableError as exc:
            if isinstance(exc, RateLimited):
                raise  # refused before anything was created
            # The outcome is unknown (timeout, 5xx): Shippo may have created the order. Look before trying again.
            found = await self.find_order(order)
            if found is None:
                raise
            return found
        object_id = created.get("object_id")
        if not isinstance(object_id, str) or not object_id:
            raise RetryableError(
                "Shippo answered POST /orders without the order's object_id; it will be looked up"
            )
        return object_id

    async def find_order(self, order: Order) -> str | None:
        """The object_id of the API order Shippo has with this order's order_number and placed_at (to the
        second), among the API orders placed within a minute of it. None when there is none."""
        number = _order_number(order)
        if order.placed_at is None:
            raise PermanentError(f"order {number} has no placed_at, so Shippo cannot be searched for it")
        placed = order.placed_at.replace(microsecond=0)
        params: dict[str, Any] = {
            "shop_app": "Shippo",
            "start_date": placed_at_text(placed - ORDER_LOOKUP_WINDOW),
            "end_date": placed_at_text(placed + ORDER_LOOKUP_WINDOW),
            "results": self.lookup_page_size,
        }
        for page in range(1, LOOKUP_PAGES + 1):
            listed = await self._json(
                "GET", "/orders", operation="list", order_id=order.id, params={**params, "page": page}
            )
            results = listed.get("results")
            if not isinstance(results, list):
                raise RetryableError("Shippo answered GET /orders without a results list; try again")
            for found in results:
                if (
                    isinstance(found, dict)
                    and found.get("order_number") == number
                    and _instant(found.get("placed_at")) == placed
                    and isinstance(found.get("object_id"), str)
                    and found["object_id"]
                ):
                    return str(found["object_id"])
            if not listed.get("next"):
                return None
        raise PermanentError(
            f"Shippo has more than {LOOKUP_PAGES * self.lookup_page_size} API orders placed within a minute of "
            f"order {number}, so crossdock cannot tell whether it was created there. Look for order {number} in "
            "Shippo's Orders: if it is not there, retry the failed job"
        )

    # -- tracking -----------------------------------------------------------------------------------------------

    async def track(self, shipment: Shipment) -> list[TrackingEvent]:
        """GET /tracks/{carrier}/{tracking_number} (PROTOCOLS.md 5): the track's history, oldest first."""
        if not shipment.tracking_number:
            raise PermanentError("the shipment has no tracking number yet: buy its label first")
        if not shipment.carrier:
            raise PermanentError("the shipment names no carrier, so Shippo cannot track it")
        path = f"/tracks/{_segment(carrier_token(shipment.carrier))}/{_segment(shipment.tracking_number)}"
        track = await self._json("GET", path, operation="track", order_id=shipment.order_id)
        read = map_track(track)
        if read.problems and not read.events:
            unread = "; ".join(f"{p.field} {p.reason}" for p in read.problems)
            raise PermanentError(
                f"Shippo's tracking for {shipment.tracking_number} could not be read: {unread}"
            )
        return read.events


# -- helpers ------------------------------------------------------------------------------------------------------


def carrier_token(carrier: str) -> str:
    """Shippo's carrier token for tracking from the provider name a rate gave ("USPS" -> "usps",
    "DHL Express" -> "dhl_express", "Canada Post" -> "canada_post"); a token passes through unchanged."""
    folded = carrier.strip().lower()
    if folded in CARRIER_TOKENS:
        return CARRIER_TOKENS[folded]
    return re.sub(r"[^0-9a-z]+", "_", folded).strip("_")


def _segment(value: str) -> str:
    """One URL path segment: ids come from our records, but never let one change the path."""
    return quote(value, safe="")


def _order_number(order: Order) -> str:
    try:
        return order_number(order)
    except PushError as exc:
        raise PermanentError(f"the order cannot be sent to Shippo: {exc.field}: {exc.reason}") from None


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 time Shippo gave back, to the second; None when it is not one (or has no offset)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(microsecond=0) if parsed.tzinfo is not None else None


def _price(rate: dict[str, Any]) -> Money | None:
    try:
        return Money.of(rate["amount"], rate["currency"])
    except (KeyError, TypeError, MoneyError, ValueError):
        return None


def _label_file_type(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_LABEL_FILE_TYPE
    text = str(value).strip()
    for known in LABEL_FILE_TYPES:
        if text.lower() == known.lower():
            return known
    raise ConfigurationError(
        f"the Shippo label_file_type {value!r} is not one Shippo prints: use one of {', '.join(LABEL_FILE_TYPES)}"
    )


def _address_from(value: Any) -> str | dict[str, Any] | None:
    """The from_address setting: an address object, that object as JSON text, or a Shippo address object_id."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
                raise ConfigurationError(
                    f"the Shippo from_address {text!r} is neither an address object nor a Shippo address "
                    "object_id (32 hexadecimal digits): see docs/shipping.md"
                )
            return text
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(
                f"the Shippo from_address is not valid JSON ({exc}): see docs/shipping.md"
            ) from None
    if not isinstance(value, dict):
        raise ConfigurationError("the Shippo from_address must be an address object: see docs/shipping.md")
    missing = [k for k in ("name", "street1", "city", "country") if not str(value.get(k) or "").strip()]
    if missing:
        raise ConfigurationError(
            f"the Shippo from_address lacks {', '.join(missing)}: a label needs the sender's name, street, "
            "city and country (and state and zip where the country has them)"
        )
    return {str(k): v for k, v in value.items() if v not in (None, "")}
