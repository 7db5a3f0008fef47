"""The Shippo sandbox's state: orders, shipments, rates, transactions (labels), refunds, tracks, OAuth grants.

Objects are kept as the JSON the API returns, so what a client reads back is exactly what was stored; the few
facts the API does not show (creation instants, the base URL labels are served from) sit beside them.
Field names and enums follow goshippo/shippo-python-sdk src/shippo/models/components/*.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from crossdock.sandbox.common import DataGen, Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.shippo import rates as rating

JSON = dict[str, Any]

API_VERSION = "2018-02-08"
OWNER = "sandbox@example.com"
# Only rates younger than this can be bought (TransactionCreateRequest docs: "only rates less than 7 days old").
RATE_MAX_AGE = timedelta(days=7)

ORDER_STATUSES = ("UNKNOWN", "AWAITPAY", "PAID", "REFUNDED", "CANCELLED", "PARTIALLY_FULFILLED", "SHIPPED")
LABEL_FILE_TYPES = ("PNG", "PNG_2.3x7.5", "PDF", "PDF_2.3x7.5", "PDF_4x6", "PDF_4x8", "PDF_A4", "PDF_A5",
                    "PDF_A6", "ZPLII")  # fmt: skip
TRANSACTION_STATUSES = (
    "WAITING",
    "QUEUED",
    "SUCCESS",
    "ERROR",
    "REFUNDED",
    "REFUNDPENDING",
    "REFUNDREJECTED",
)
TRACKING_STATUSES = ("UNKNOWN", "PRE_TRANSIT", "TRANSIT", "DELIVERED", "RETURNED", "FAILURE")
# The usual life of a parcel; admin "advance" walks it one step at a time.
TRACKING_PROGRESSION = ("PRE_TRANSIT", "TRANSIT", "DELIVERED")
TRACKING_DETAILS = {
    "UNKNOWN": "The carrier has not received any information about this shipment yet.",
    "PRE_TRANSIT": "Shipping label created; the carrier is awaiting the item.",
    "TRANSIT": "Your shipment is in transit to the destination facility.",
    "DELIVERED": "Your shipment has been delivered.",
    "RETURNED": "Your shipment is being returned to the sender.",
    "FAILURE": "The carrier could not deliver your shipment.",
}
# docs.goshippo.com tracking: test-mode tracking numbers with carrier "shippo" return a fixed status.
TEST_TRACKING_NUMBERS = {f"SHIPPO_{s}": s for s in TRACKING_STATUSES}

# docs.goshippo.com/docs/api_concepts/ratelimits (test token numbers, then live): per minute, per endpoint.
RATE_LIMITS: dict[tuple[str, str], tuple[int, int]] = {
    ("default", "post"): (50, 500),
    ("default", "get_one"): (400, 4000),
    ("default", "get_list"): (10, 50),
    ("tracks", "post"): (50, 750),
    ("tracks", "get_one"): (50, 500),
}
RATE_WINDOW_S = 60.0

_TRACKING_URLS = {
    "USPS": "https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum={n}",
    "UPS": "https://www.ups.com/track?tracknum={n}",
    "DHL Express": "https://www.dhl.com/en/express/tracking.html?AWB={n}&brand=DHL",
}
_CARRIER_TOKENS = {"USPS": "usps", "UPS": "ups", "DHL Express": "dhl_express"}


class ShippoError(Exception):
    """An API refusal: the HTTP status and the JSON body Shippo would send."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def not_found() -> ShippoError:
    # Django REST framework's NotFound detail, which Shippo answers for unknown object ids.
    return ShippoError(404, {"detail": "Not found."})


def iso(dt: datetime) -> str:
    """Shippo's timestamp form, e.g. 2014-07-09T02:19:13.174Z."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(value: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass
class OAuthGrant:
    code: str
    client_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class ShippoState:
    config: SandboxConfig
    faults: Faults
    webhooks: WebhookSender
    token: str = ""
    oauth_tokens: set[str] = field(default_factory=set)
    oauth_grants: dict[str, OAuthGrant] = field(default_factory=dict)
    orders: dict[str, JSON] = field(default_factory=dict)
    shipments: dict[str, JSON] = field(default_factory=dict)
    rates: dict[str, JSON] = field(default_factory=dict)
    transactions: dict[str, JSON] = field(default_factory=dict)
    refunds: dict[str, JSON] = field(default_factory=dict)
    # tracking number -> Track object (the transaction's own track or one registered by POST /tracks).
    tracks: dict[str, JSON] = field(default_factory=dict)
    # Every address and parcel object made along the way, so later requests may name them by object_id.
    addresses: dict[str, JSON] = field(default_factory=dict)
    parcels: dict[str, JSON] = field(default_factory=dict)
    # Every webhook event emitted, whether or not a webhook URL is configured: (event, data).
    events: list[tuple[str, JSON]] = field(default_factory=list)
    clock_offset: timedelta = timedelta(0)
    _created: dict[str, datetime] = field(default_factory=dict)
    _label_base: dict[str, str] = field(default_factory=dict)
    _counter: int = 0
    _hits: dict[tuple[str, str, str], deque[float]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Parsed parcels of shipments whose rates are still being computed (async shipments).
    _pending_parcels: dict[str, list[rating.ParcelSpec]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.datagen = DataGen(self.config.seed)
        if not self.token:
            digest = hashlib.sha256(f"shippo-token|{self.config.seed}".encode()).hexdigest()
            self.token = self.config.token or f"shippo_test_{digest[:40]}"
        self.async_delay_s = float(self.config.extra.get("async_delay_s", "0.2"))
        self.hmac_secret = self.config.extra.get("hmac_secret") or None
        self.origin = self.datagen.address("US")
        for _ in range(self.config.orders):
            self.seed_order()

    # -- ids, time, limits ---------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def new_id(self, kind: str) -> str:
        """32 hex digits like Shippo's object_ids, stable for a seed and the order of creation."""
        self._counter += 1
        return hashlib.sha256(f"{self.config.seed}|{kind}|{self._counter}".encode()).hexdigest()[:32]

    def is_live(self, token: str) -> bool:
        return token.startswith("shippo_live_")

    def check_rate_limit(self, token: str, resource: str, kind: str) -> None:
        test_limit, live_limit = RATE_LIMITS.get((resource, kind)) or RATE_LIMITS[("default", kind)]
        limit = live_limit if self.is_live(token) else test_limit
        if self.config.fast_limits:
            limit *= 100
        hits = self._hits.setdefault((token, resource, kind), deque())
        now = time.monotonic()
        while hits and hits[0] <= now - RATE_WINDOW_S:
            hits.popleft()
        if len(hits) >= limit:
            wait = max(1, math.ceil(hits[0] + RATE_WINDOW_S - now))
            # Django REST framework's throttle answer (Shippo is a DRF API: its 401 details are DRF's).
            raise ShippoError(429, {"detail": throttled_detail(wait)}, {"Retry-After": str(wait)})
        hits.append(now)

    # -- background work -----------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (test helper with a deadline)
        """Wait for queued shipments, labels and refunds to finish (tests)."""
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*list(self._tasks)), timeout)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()

    # -- webhooks --------------------------------------------------------------------------------------------
    def emit(self, event: str, data: JSON) -> None:
        """Queue a webhook with Shippo's envelope {"event", "test", "data"} (SDK WebhookPayload*)."""
        self.events.append((event, data))
        url = self.config.webhook_url
        if not url:
            return
        body = json.dumps({"event": event, "test": not self.is_live(self.token), "data": data}).encode()
        headers = {"Content-Type": "application/json", "Shippo-API-Version": API_VERSION}
        if self.hmac_secret:
            headers["Shippo-Auth-Signature"] = sign_webhook(self.hmac_secret, body, int(time.time()))
        self.webhooks.enqueue(url, body, headers)

    # -- orders ------------------------------------------------------------------------------------------------
    def seed_order(self) -> JSON:
        gen = self.datagen
        address = gen.address()
        currency = gen.currency_for(address.country_code)
        items = gen.line_items(currency)
        placed = gen.instant(self.now() - timedelta(days=30), self.now())
        subtotal = sum((i.unit_price * i.quantity for i in items), Decimal(0))
        body: JSON = {
            "placed_at": iso(placed),
            "order_number": f"#{1000 + len(self.orders) + 1}",
            "order_status": "PAID",
            "to_address": {
                "name": f"{address.first_name} {address.last_name}",
                "company": address.company or "",
                "street1": address.line1,
                "street2": address.line2 or "",
                "city": address.city,
                "state": (address.province_code or "").split("-")[-1],
                "zip": address.postal_code or "",
                "country": address.country_code,
                "phone": address.phone or "",
            },
            "from_address": self.origin_address_input(),
            "line_items": [
                {
                    "title": i.title,
                    "sku": i.sku,
                    "quantity": i.quantity,
                    "total_price": str(i.unit_price * i.quantity),
                    "currency": currency,
                    "weight": str(i.grams),
                    "weight_unit": "g",
                }
                for i in items
            ],
            "currency": currency,
            "subtotal_price": str(subtotal),
            "total_price": str(subtotal),
            "total_tax": "0",
            "weight": str(sum(i.grams * i.quantity for i in items)),
            "weight_unit": "g",
        }
        return self.create_order(body)

    def origin_address_input(self) -> JSON:
        o = self.origin
        return {
            "name": f"{o.first_name} {o.last_name}",
            "company": "Crossdock Sandbox Warehouse",
            "street1": o.line1,
            "city": o.city,
            "state": o.province_code or "",
            "zip": o.postal_code or "",
            "country": "US",
            "phone": o.phone or "",
            "email": "warehouse@example.com",
        }

    def create_order(self, body: JSON) -> JSON:
        now = self.now()
        order_id = self.new_id("order")
        order: JSON = {
            "object_id": order_id,
            "object_owner": OWNER,
            "placed_at": body["placed_at"],
            "order_number": body.get("order_number"),
            "order_status": body.get("order_status") or "UNKNOWN",
            "to_address": self.address_object(body["to_address"]),
            "from_address": self.address_object(body["from_address"]) if body.get("from_address") else None,
            "line_items": [
                dict(item, object_id=self.new_id("line_item")) for item in body.get("line_items") or []
            ],
            "shop_app": "Shippo",
            "transactions": [],
            "test": True,
        }
        for key in ("currency", "notes", "shipping_cost", "shipping_cost_currency", "shipping_method",
                    "subtotal_price", "total_price", "total_tax", "weight", "weight_unit"):  # fmt: skip
            if body.get(key) is not None:
                order[key] = (
                    str(body[key]) if key not in ("notes", "shipping_method", "currency") else body[key]
                )
        self.orders[order_id] = order
        self._created[order_id] = now
        return order

    def address_object(self, data: JSON) -> JSON:
        if data.get("object_id") in self.addresses:
            # Named by object_id in the request: the stored address is used as it is.
            return self.addresses[data["object_id"]]
        now = iso(self.now())
        address = {k: data.get(k, "") for k in ("name", "company", "street1", "street2", "street3", "street_no",
                                                "city", "state", "zip", "country", "phone", "email")}  # fmt: skip
        address.update(
            object_id=self.new_id("address"),
            object_owner=OWNER,
            object_created=now,
            object_updated=now,
            is_complete=address_is_complete(data),
            is_residential=data.get("is_residential"),
            metadata=data.get("metadata", ""),
            validation_results={},
            test=True,
        )
        self.addresses[address["object_id"]] = address
        return address

    # -- shipments and rates -------------------------------------------------------------------------------
    def create_shipment(self, body: JSON, parcels: list[rating.ParcelSpec]) -> JSON:
        now = self.now()
        shipment_id = self.new_id("shipment")
        address_from = self.address_object(body["address_from"])
        address_return = self.address_object(body["address_return"]) if body.get("address_return") else None
        parcel_objects = []
        for raw in body["parcels"]:
            parcel: JSON = {
                k: str(raw[k]) for k in ("length", "width", "height", "distance_unit", "weight", "mass_unit")
            }
            parcel.update(
                object_id=self.new_id("parcel"),
                object_owner=OWNER,
                object_state="VALID",
                object_created=iso(now),
                object_updated=iso(now),
                metadata=raw.get("metadata", ""),
                extra=raw.get("extra") or {},
                test=True,
            )
            parcel_objects.append(parcel)
            self.parcels[parcel["object_id"]] = parcel
        shipment: JSON = {
            "object_id": shipment_id,
            "object_owner": OWNER,
            "object_created": iso(now),
            "object_updated": iso(now),
            "status": "QUEUED",
            "address_from": address_from,
            "address_to": self.address_object(body["address_to"]),
            "address_return": address_return or address_from,
            "parcels": parcel_objects,
            "shipment_date": body.get("shipment_date") or iso(now),
            "carrier_accounts": list(body.get("carrier_accounts") or []),
            "extra": body.get("extra") or {},
            "customs_declaration": body.get("customs_declaration"),
            "messages": [],
            "metadata": body.get("metadata") or "",
            "rates": [],
            "test": True,
        }
        self.shipments[shipment_id] = shipment
        self._created[shipment_id] = now
        self._pending_parcels[shipment_id] = parcels
        return shipment

    def rate_shipment(self, shipment_id: str) -> JSON:
        """Compute the shipment's rates and mark it SUCCESS (what Shippo does once carriers have answered)."""
        shipment = self.shipments[shipment_id]
        parcels = self._pending_parcels.pop(shipment_id, [])
        a_from, a_to = shipment["address_from"], shipment["address_to"]
        quotes = rating.quote(a_from["country"], a_to["country"], a_from.get("zip") or "", a_to.get("zip") or "",
                              parcels)  # fmt: skip
        now = self.now()
        local_currency = self.datagen.currency_for(a_from["country"])
        if local_currency not in rating.FX_PER_USD:
            local_currency = "USD"
        rate_objects = []
        for q in quotes:
            rate_id = self.new_id("rate")
            rate: JSON = {
                "object_id": rate_id,
                "object_owner": OWNER,
                "object_created": iso(now),
                "shipment": shipment_id,
                "attributes": [],
                "amount": str(q.amount_usd),
                "currency": "USD",
                "amount_local": str(rating.convert(q.amount_usd, local_currency)),
                "currency_local": local_currency,
                "provider": q.service.provider,
                "provider_image_75": f"https://shippo-static.s3.amazonaws.com/providers/75/{q.service.provider}.png",
                "provider_image_200": f"https://shippo-static.s3.amazonaws.com/providers/200/{q.service.provider}.png",
                "servicelevel": {
                    "name": q.service.name,
                    "token": q.service.token,
                    "terms": "",
                    "extended_token": q.service.token,
                    "parent_servicelevel": None,
                },
                "estimated_days": q.estimated_days,
                "arrives_by": None,
                "duration_terms": q.duration_terms,
                "messages": [],
                "carrier_account": hashlib.sha256(
                    f"{self.config.seed}|{q.service.provider}".encode()
                ).hexdigest()[:32],
                "zone": q.zone,
                "included_insurance_price": None,
                "test": True,
            }
            self.rates[rate_id] = rate
            self._created[rate_id] = now
            rate_objects.append(rate)
        _mark_attributes(rate_objects)
        shipment["rates"] = rate_objects
        shipment["status"] = "SUCCESS"
        shipment["object_updated"] = iso(now)
        if not rate_objects:
            shipment["messages"] = [
                {
                    "source": "Shippo",
                    "code": "no_rates",
                    "text": "No carrier serves this origin and destination.",
                }
            ]
        return shipment

    async def rate_later(self, shipment_id: str) -> None:
        await asyncio.sleep(self.async_delay_s)
        self.rate_shipment(shipment_id)

    # -- transactions (label purchase) ---------------------------------------------------------------------
    def create_transaction(self, rate_id: str, body: JSON, base_url: str) -> JSON:
        now = self.now()
        rate = self.rates[rate_id]
        shipment = self.shipments[rate["shipment"]]
        transaction_id = self.new_id("transaction")
        transaction: JSON = {
            "object_id": transaction_id,
            "object_owner": OWNER,
            "object_created": iso(now),
            "object_updated": iso(now),
            "object_state": "VALID",
            "status": "QUEUED",
            # The SDK's Transaction.rate decodes the CoreRate object (as in the documented list example).
            "rate": {
                "object_id": rate_id,
                "amount": rate["amount"],
                "currency": rate["currency"],
                "amount_local": rate["amount_local"],
                "currency_local": rate["currency_local"],
                "provider": rate["provider"],
                "carrier_account": rate["carrier_account"],
                "servicelevel_name": rate["servicelevel"]["name"],
                "servicelevel_token": rate["servicelevel"]["token"],
            },
            "parcel": shipment["parcels"][0]["object_id"],
            "label_file_type": body.get("label_file_type") or "PDF_4x6",
            "metadata": body.get("metadata") or "",
            "tracking_number": None,
            "tracking_status": None,
            "tracking_url_provider": None,
            "eta": None,
            "label_url": None,
            "commercial_invoice_url": None,
            "qr_code_url": None,
            # Null for labels bought through the API with a token (SDK Transaction.created_by docs); the SDK
            # cannot decode a transaction that lacks the key.
            "created_by": None,
            "messages": [],
            "test": True,
        }
        self.transactions[transaction_id] = transaction
        self._created[transaction_id] = now
        self._label_base[transaction_id] = base_url
        order_id = body.get("order")
        if order_id and order_id in self.orders:
            self.orders[order_id]["transactions"].append(transaction_id)
        return transaction

    def finish_transaction(self, transaction_id: str) -> JSON:
        """Buy the label: SUCCESS with tracking number and label URL, or ERROR with the carrier's message."""
        transaction = self.transactions[transaction_id]
        rate = self.rates[transaction["rate"]["object_id"]]
        shipment = self.shipments[rate["shipment"]]
        now = self.now()
        provider = rate["provider"]
        error = self._purchase_error(rate, shipment)
        transaction["object_updated"] = iso(now)
        if error is not None:
            transaction.update(status="ERROR", object_state="INVALID", messages=[error])
            return transaction
        number = self._tracking_number(provider, transaction_id)
        ext = label_extension(transaction["label_file_type"])
        base = self._label_base.get(transaction_id, "")
        eta = now + timedelta(days=int(rate.get("estimated_days") or 3))
        transaction.update(
            status="SUCCESS",
            tracking_number=number,
            tracking_status="PRE_TRANSIT",
            tracking_url_provider=_TRACKING_URLS[provider].format(n=number),
            eta=iso(eta),
            label_url=f"{base}/labels/{transaction_id}.{ext}",
            commercial_invoice_url=(
                f"{base}/labels/{transaction_id}-invoice.pdf"
                if shipment["address_from"]["country"] != shipment["address_to"]["country"]
                else None
            ),
        )
        # Labels bought in Shippo get a tracking webhook automatically (docs.goshippo.com tracking/webhooks).
        self.tracks[number] = self._new_track(
            _CARRIER_TOKENS[provider], number, transaction, shipment, rate, eta
        )
        return transaction

    def _purchase_error(self, rate: JSON, shipment: JSON) -> JSON | None:
        created = self._created[rate["object_id"]]
        if self.now() - created >= RATE_MAX_AGE:
            return {
                "source": "Shippo",
                "code": "rate_expired",
                "text": "This rate is older than 7 days and can no longer be purchased; create a new shipment.",
            }
        if not shipment["address_to"].get("is_complete"):
            return {
                "source": rate["provider"],
                "code": "address_incomplete",
                "text": "The recipient address needs name, street1, city, zip and country to purchase a label.",
            }
        if self.config.extra.get("fail_labels") in ("1", "true", "yes"):
            return {
                "source": rate["provider"],
                "code": "carrier_timeout",
                "text": f"{rate['provider']} did not answer in time; please try again in a few minutes.",
            }
        return None

    def _tracking_number(self, provider: str, transaction_id: str) -> str:
        digits = str(int(hashlib.sha256(transaction_id.encode()).hexdigest(), 16))
        if provider == "USPS":
            return "9400" + digits[:18]
        if provider == "UPS":
            return "1Z" + transaction_id[:6].upper() + "03" + digits[:8]
        return digits[:10]

    async def finish_later(self, transaction_id: str) -> None:
        await asyncio.sleep(self.async_delay_s)
        transaction = self.finish_transaction(transaction_id)
        self.emit("transaction_updated", dict(transaction))

    # -- tracking ----------------------------------------------------------------------------------------------
    def _new_track(
        self, carrier: str, number: str, transaction: JSON, shipment: JSON, rate: JSON, eta: datetime
    ) -> JSON:
        def place(address: JSON) -> JSON:
            return {k: address.get(k) or None for k in ("city", "state", "zip", "country")}

        track: JSON = {
            "carrier": carrier,
            "tracking_number": number,
            "address_from": place(shipment["address_from"]),
            "address_to": place(shipment["address_to"]),
            "eta": iso(eta),
            "original_eta": iso(eta),
            "servicelevel": {"name": rate["servicelevel"]["name"], "token": rate["servicelevel"]["token"]},
            "metadata": None,
            "messages": [],
            "transaction": transaction["object_id"],
            "tracking_status": None,
            "tracking_history": [],
            "test": True,
        }
        self._push_status(track, "PRE_TRANSIT")
        return track

    def _push_status(self, track: JSON, status: str) -> None:
        now = self.now()
        if track["tracking_history"]:
            # A parcel's scans happen one after another: two steps within one millisecond (Shippo's timestamps'
            # precision) would tie, and a history ordered by time could put the later step first.
            last = parse_instant(track["tracking_history"][-1]["status_date"])
            if last is not None and now < last + timedelta(milliseconds=1):
                now = last + timedelta(milliseconds=1)
        location = track["address_to"] if status in ("DELIVERED", "FAILURE") else track["address_from"]
        entry = {
            "object_id": self.new_id("tracking_status"),
            "object_created": iso(now),
            "object_updated": iso(now),
            "status": status,
            "status_details": TRACKING_DETAILS[status],
            "status_date": iso(now),
            "location": location,
            "substatus": None,
        }
        track["tracking_status"] = entry
        track["tracking_history"].append(entry)

    def test_track(self, carrier: str, number: str) -> JSON:
        """A track for a number the sandbox did not issue: the fixed test numbers, else UNKNOWN."""
        status = TEST_TRACKING_NUMBERS.get(number.upper(), "UNKNOWN") if carrier == "shippo" else "UNKNOWN"
        now = self.now()
        empty = {"city": None, "state": None, "zip": None, "country": None}
        entry = {
            "object_id": hashlib.sha256(f"{carrier}|{number}".encode()).hexdigest()[:32],
            "object_created": iso(now),
            "object_updated": iso(now),
            "status": status,
            "status_details": TRACKING_DETAILS[status],
            "status_date": iso(now),
            "location": empty,
            "substatus": None,
        }
        return {
            "carrier": carrier,
            "tracking_number": number,
            "address_from": empty,
            "address_to": empty,
            "eta": None,
            "original_eta": None,
            "servicelevel": {"name": None, "token": None},
            "metadata": None,
            "messages": [],
            "transaction": None,
            "tracking_status": entry,
            "tracking_history": [entry] if status != "UNKNOWN" else [],
            "test": True,
        }

    def advance_track(self, number: str, status: str | None = None) -> JSON:
        """Move a label's tracking one step along PRE_TRANSIT -> TRANSIT -> DELIVERED (or to `status`)."""
        track = self.tracks[number]
        current = track["tracking_status"]["status"] if track["tracking_status"] else "UNKNOWN"
        if status is None:
            if current not in TRACKING_PROGRESSION or current == TRACKING_PROGRESSION[-1]:
                raise ValueError(f"tracking {number} is {current}; it does not advance further")
            status = TRACKING_PROGRESSION[TRACKING_PROGRESSION.index(current) + 1]
        if status not in TRACKING_STATUSES:
            raise ValueError(f"unknown tracking status {status!r}; one of {', '.join(TRACKING_STATUSES)}")
        self._push_status(track, status)
        transaction_id = track.get("transaction")
        if transaction_id in self.transactions:
            self.transactions[transaction_id]["tracking_status"] = status
            self.transactions[transaction_id]["object_updated"] = iso(self.now())
        self.emit("track_updated", dict(track))
        return track

    # -- refunds -------------------------------------------------------------------------------------------
    def create_refund(self, transaction_id: str) -> JSON:
        now = self.now()
        refund_id = self.new_id("refund")
        refund = {
            "object_id": refund_id,
            "object_owner": OWNER,
            "object_created": iso(now),
            "object_updated": iso(now),
            "status": "QUEUED",
            "transaction": transaction_id,
            "test": True,
        }
        self.refunds[refund_id] = refund
        transaction = self.transactions[transaction_id]
        transaction.update(status="REFUNDPENDING", object_updated=iso(now))
        return refund

    def finish_refund(self, refund_id: str) -> JSON:
        refund = self.refunds[refund_id]
        now = iso(self.now())
        refund.update(status="SUCCESS", object_updated=now)
        transaction = self.transactions[refund["transaction"]]
        transaction.update(status="REFUNDED", object_updated=now)
        return refund

    async def refund_later(self, refund_id: str) -> None:
        await asyncio.sleep(self.async_delay_s)
        refund = self.finish_refund(refund_id)
        self.emit("transaction_updated", dict(self.transactions[refund["transaction"]]))

    # -- OAuth ------------------------------------------------------------------------------------------------
    def grant_code(self, client_id: str, redirect_uri: str) -> str:
        code = secrets.token_urlsafe(24)
        # Authorization codes are short-lived and single-use (RFC 6749 section 4.1.2 recommends 10 minutes).
        self.oauth_grants[code] = OAuthGrant(code, client_id, redirect_uri, time.monotonic() + 600)
        return code

    def redeem_code(self, code: str, client_id: str) -> str | None:
        grant = self.oauth_grants.get(code)
        if grant is None or grant.used or grant.client_id != client_id or time.monotonic() > grant.expires_at:
            return None
        grant.used = True
        token = f"oauth.{secrets.token_urlsafe(32)}"
        self.oauth_tokens.add(token)
        return token


def throttled_detail(wait: int) -> str:
    return f"Request was throttled. Expected available in {wait} second{'' if wait == 1 else 's'}."


def address_is_complete(data: JSON) -> bool:
    """Complete = everything a label purchase needs (SDK Address docs: name, street1, city, zip "required
    for purchase"; state for US, CA and AU)."""
    needed = ["name", "street1", "city", "zip", "country"]
    if str(data.get("country", "")).upper() in ("US", "CA", "AU"):
        needed.append("state")
    return all(str(data.get(k) or "").strip() for k in needed)


def label_extension(label_file_type: str) -> str:
    if label_file_type.startswith("PNG"):
        return "png"
    if label_file_type == "ZPLII":
        return "zpl"
    return "pdf"


def label_page_size(label_file_type: str) -> str:
    size = label_file_type.removeprefix("PDF").lstrip("_")
    return size if size in ("4x6", "4x8", "2.3x7.5", "A4", "A5", "A6") else "4x6"


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (verify: Shippo provisions HMAC on request and does
    not publish the scheme; this follows what integrators report)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def _mark_attributes(rates: list[JSON]) -> None:
    """CHEAPEST, FASTEST and BESTVALUE (cheapest among the fastest half), as Shippo tags its rates."""
    if not rates:
        return
    cheapest = min(rates, key=lambda r: (Decimal(r["amount"]), r["estimated_days"]))
    fastest = min(rates, key=lambda r: (r["estimated_days"], Decimal(r["amount"])))
    by_speed = sorted(rates, key=lambda r: r["estimated_days"])
    quick_half = by_speed[: max(1, (len(by_speed) + 1) // 2)]
    best = min(quick_half, key=lambda r: Decimal(r["amount"]))
    cheapest["attributes"].append("CHEAPEST")
    fastest["attributes"].append("FASTEST")
    best["attributes"].append("BESTVALUE")


def decimal_field(value: Any) -> Decimal | None:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None
