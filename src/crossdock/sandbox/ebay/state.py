"""The eBay sandbox's state: OAuth grants and tokens, orders, line items and shipping fulfillments.

Field names and shapes follow eBay's Sell Fulfillment API v1 (developer.ebay.com/api-docs/sell/fulfillment;
OpenAPI contract sell_fulfillment_v1_oas3, mirrored in APIs-guru/openapi-directory under
APIs/ebay.com/sell-fulfillment).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crossdock.sandbox.common import Address, DataGen, SandboxConfig, quantize_money

# OAuth scopes of the Fulfillment API (developer.ebay.com/api-docs/sell/fulfillment, "OAuth scope").
SCOPE_FULFILLMENT = "https://api.ebay.com/oauth/api_scope/sell.fulfillment"
SCOPE_FULFILLMENT_READONLY = "https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly"
SCOPE_PUBLIC = "https://api.ebay.com/oauth/api_scope"
SCOPE_PREFIX = "https://api.ebay.com/oauth/api_scope"

# eBay: user access tokens live ~2 hours, refresh tokens ~18 months, authorization codes 299 s
# (developer.ebay.com/api-docs/static/oauth-auth-code-grant-request.html, oauth-refresh-token-request.html).
ACCESS_TOKEN_TTL_S = 7200
REFRESH_TOKEN_TTL_S = 47_304_000
AUTH_CODE_TTL_S = 299

# The Sell Fulfillment API returns orders up to two years old; without a date filter, the last 90 days.
MAX_ORDER_AGE = timedelta(days=730)
DEFAULT_WINDOW = timedelta(days=90)

# Marketplace -> currency of its listings (ba:MarketplaceIdEnum).
MARKETPLACE_CURRENCY: dict[str, str] = {
    "EBAY_US": "USD",
    "EBAY_GB": "GBP",
    "EBAY_DE": "EUR",
    "EBAY_FR": "EUR",
    "EBAY_IT": "EUR",
    "EBAY_ES": "EUR",
    "EBAY_NL": "EUR",
    "EBAY_AU": "AUD",
    "EBAY_CA": "CAD",
    "EBAY_PL": "PLN",
    "EBAY_CH": "CHF",
}
MARKETPLACE_COUNTRY: dict[str, str] = {
    "EBAY_US": "US",
    "EBAY_GB": "GB",
    "EBAY_DE": "DE",
    "EBAY_FR": "FR",
    "EBAY_IT": "IT",
    "EBAY_ES": "ES",
    "EBAY_NL": "NL",
    "EBAY_AU": "AU",
    "EBAY_CA": "CA",
    "EBAY_PL": "PL",
    "EBAY_CH": "CH",
}
_SERVICES = (
    ("USPS", "USPSPriority"),
    ("USPS", "USPSFirstClass"),
    ("UPS", "UPSGround"),
    ("FEDEX", "FedExHomeDelivery"),
    ("DHL", "DHLPaket"),
)
_DELIVERY = ("0.00", "4.99", "6.50", "9.95", "14.00")


def ebay_time(value: datetime) -> str:
    """eBay timestamps: UTC with milliseconds, e.g. 2015-08-04T19:09:02.768Z."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _to_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"value": str(quantize_money(amount, currency)), "currency": currency}


@dataclass
class LineItem:
    line_item_id: str
    legacy_item_id: str
    sku: str
    title: str
    quantity: int
    unit_price: Decimal
    fulfilled: int = 0

    @property
    def cost(self) -> Decimal:
        return self.unit_price * self.quantity

    @property
    def fulfillment_status(self) -> str:
        if self.fulfilled <= 0:
            return "NOT_STARTED"
        return "FULFILLED" if self.fulfilled >= self.quantity else "IN_PROGRESS"


@dataclass
class ShippingFulfillment:
    fulfillment_id: str
    line_items: list[tuple[str, int]]
    shipped_date: datetime
    tracking_number: str | None
    carrier_code: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "fulfillmentId": self.fulfillment_id,
            "lineItems": [{"lineItemId": i, "quantity": q} for i, q in self.line_items],
            "shippedDate": ebay_time(self.shipped_date),
        }
        if self.tracking_number is not None:
            body["shipmentTrackingNumber"] = self.tracking_number
        if self.carrier_code is not None:
            body["shippingCarrierCode"] = self.carrier_code
        return body


@dataclass
class EbayOrder:
    order_id: str
    legacy_order_id: str
    created: datetime
    modified: datetime
    marketplace_id: str
    currency: str
    buyer_username: str
    buyer_email: str
    ship_to: Address
    ship_to_name: str
    line_items: list[LineItem]
    delivery_cost: Decimal
    carrier_code: str
    service_code: str
    sales_record_reference: str
    payment_status: str = "PAID"
    cancel_state: str = "NONE_REQUESTED"
    checkout_notes: str | None = None
    fulfillments: list[ShippingFulfillment] = field(default_factory=list)

    @property
    def fulfillment_status(self) -> str:
        statuses = {li.fulfillment_status for li in self.line_items}
        if statuses == {"FULFILLED"}:
            return "FULFILLED"
        if statuses == {"NOT_STARTED"}:
            return "NOT_STARTED"
        return "IN_PROGRESS"

    def line_item(self, line_item_id: str) -> LineItem | None:
        return next((li for li in self.line_items if li.line_item_id == line_item_id), None)

    def fulfillment(self, fulfillment_id: str) -> ShippingFulfillment | None:
        return next((f for f in self.fulfillments if f.fulfillment_id == fulfillment_id), None)

    def to_json(self, api_base: str) -> dict[str, Any]:
        """The Order resource as getOrder/getOrders return it."""
        c = self.currency
        subtotal = sum((li.cost for li in self.line_items), Decimal(0))
        total = subtotal + self.delivery_cost
        # Marketplace fee: eBay's final value fee is roughly 13 % of the total in most categories.
        fee = total * Decimal("0.1325")
        a = self.ship_to
        contact: dict[str, Any] = {"addressLine1": a.line1}
        if a.line2:
            contact["addressLine2"] = a.line2
        contact["city"] = a.city
        if a.province_code or a.province:
            contact["stateOrProvince"] = a.province_code or a.province
        if a.postal_code:
            contact["postalCode"] = a.postal_code
        contact["countryCode"] = a.country_code
        ship_to: dict[str, Any] = {"fullName": self.ship_to_name, "contactAddress": contact}
        if a.company:
            ship_to["companyName"] = a.company
        if a.phone:
            ship_to["primaryPhone"] = {"phoneNumber": a.phone}
        ship_to["email"] = self.buyer_email
        delivery_min = self.created + timedelta(days=3)
        delivery_max = self.created + timedelta(days=7)
        line_items = []
        for index, li in enumerate(self.line_items):
            line_delivery = self.delivery_cost if index == 0 else Decimal(0)
            line_items.append(
                {
                    "lineItemId": li.line_item_id,
                    "legacyItemId": li.legacy_item_id,
                    "sku": li.sku,
                    "title": li.title,
                    "lineItemCost": money(li.cost, c),
                    "quantity": li.quantity,
                    "soldFormat": "FIXED_PRICE",
                    "listingMarketplaceId": self.marketplace_id,
                    "purchaseMarketplaceId": self.marketplace_id,
                    "lineItemFulfillmentStatus": li.fulfillment_status,
                    "total": money(li.cost + line_delivery, c),
                    "deliveryCost": {"shippingCost": money(line_delivery, c)},
                    "appliedPromotions": [],
                    "taxes": [],
                    "properties": {"buyerProtection": True},
                    "lineItemFulfillmentInstructions": {
                        "minEstimatedDeliveryDate": ebay_time(delivery_min),
                        "maxEstimatedDeliveryDate": ebay_time(delivery_max),
                        "shipByDate": ebay_time(self.created + timedelta(days=2)),
                        "guaranteedDelivery": False,
                    },
                    "refunds": [],
                }
            )
        body: dict[str, Any] = {
            "orderId": self.order_id,
            "legacyOrderId": self.legacy_order_id,
            "creationDate": ebay_time(self.created),
            "lastModifiedDate": ebay_time(self.modified),
            "orderFulfillmentStatus": self.fulfillment_status,
            "orderPaymentStatus": self.payment_status,
            "sellerId": "sandbox_seller",
            "buyer": {
                "username": self.buyer_username,
                "taxAddress": {
                    k: v
                    for k, v in (
                        ("city", a.city),
                        ("stateOrProvince", a.province_code or a.province),
                        ("postalCode", a.postal_code),
                        ("countryCode", a.country_code),
                    )
                    if v
                },
            },
            "pricingSummary": {
                "priceSubtotal": money(subtotal, c),
                "deliveryCost": money(self.delivery_cost, c),
                "total": money(total, c),
            },
            "cancelStatus": {"cancelState": self.cancel_state, "cancelRequests": []},
            "paymentSummary": {
                "totalDueSeller": money(total, c),
                "refunds": [],
                "payments": [
                    {
                        "paymentMethod": "EBAY",
                        "paymentReferenceId": f"{self.order_id.replace('-', '')}P",
                        "paymentDate": ebay_time(self.created),
                        "amount": money(total, c),
                        "paymentStatus": self.payment_status,
                    }
                ],
            },
            "fulfillmentStartInstructions": [
                {
                    "fulfillmentInstructionsType": "SHIP_TO",
                    "minEstimatedDeliveryDate": ebay_time(delivery_min),
                    "maxEstimatedDeliveryDate": ebay_time(delivery_max),
                    "ebaySupportedFulfillment": False,
                    "shippingStep": {
                        "shipTo": ship_to,
                        "shippingCarrierCode": self.carrier_code,
                        "shippingServiceCode": self.service_code,
                    },
                }
            ],
            "fulfillmentHrefs": [
                f"{api_base}/order/{self.order_id}/shipping_fulfillment/{f.fulfillment_id}"
                for f in self.fulfillments
            ],
            "lineItems": line_items,
            "salesRecordReference": self.sales_record_reference,
            "totalFeeBasisAmount": money(total, c),
            "totalMarketplaceFee": money(fee, c),
        }
        if self.checkout_notes:
            body["buyerCheckoutNotes"] = self.checkout_notes
        return body


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    expires_at: datetime
    used: bool = False


@dataclass
class AccessToken:
    token: str
    scopes: tuple[str, ...]
    # None: never expires (the configured fixed token).
    expires_at: datetime | None
    # "user" tokens act for the seller; "application" tokens (client_credentials) only reach public APIs.
    kind: str = "user"


@dataclass
class RefreshToken:
    token: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: datetime


class EbayState:
    """Everything the eBay sandbox remembers; reachable as `app.state.sandbox`."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.marketplace_id = config.extra.get("marketplace_id", "EBAY_US")
        if self.marketplace_id not in MARKETPLACE_CURRENCY:
            known = ", ".join(MARKETPLACE_CURRENCY)
            raise ValueError(f"ebay sandbox: unknown marketplace_id {self.marketplace_id!r} (known: {known})")
        self.currency = MARKETPLACE_CURRENCY[self.marketplace_id]
        self.access_token_ttl = int(config.extra.get("access_token_ttl", ACCESS_TOKEN_TTL_S))
        # The RuName a seller's consent redirects through, and the URL eBay maps it to ("auth accepted URL").
        self.ru_name = config.extra.get("ru_name", "sandbox-RuName")
        self.accept_url = config.extra.get("accept_url")
        self._clock_offset = timedelta(0)
        self.datagen = DataGen(config.seed)
        # Separate stream for ids and tokens so that adding a field to the data does not reshuffle every id.
        self._ids = random.Random(f"ebay-ids-{config.seed}")
        self._tokens = random.Random(f"ebay-tokens-{config.seed}")
        self.orders: dict[str, EbayOrder] = {}
        # Orders sorted by creation date (ascending) for range queries over 10k+ orders.
        self._by_created: list[EbayOrder] = []
        self._created_keys: list[datetime] = []
        self._sales_record = 1000
        self.auth_codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.token = config.token or self._new_token("v^1.1#i^1#p^3#I^3#r^0#f^0#t^H4sI")
        self.access_tokens[self.token] = AccessToken(self.token, (SCOPE_FULFILLMENT,), None)
        self.seed_orders(config.orders)

    # -- clock -----------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """Wall clock plus the offset the admin API may add (to expire tokens without waiting), to the
        millisecond: eBay's timestamps carry milliseconds, and its date filters compare what it reports."""
        return _to_ms(datetime.now(UTC) + self._clock_offset)

    def advance_clock(self, seconds: float) -> datetime:
        self._clock_offset += timedelta(seconds=seconds)
        return self.now()

    # -- ids and tokens --------------------------------------------------------------------------------------
    def _digits(self, n: int) -> str:
        return str(self._ids.randrange(10 ** (n - 1), 10**n))

    def _new_order_id(self) -> str:
        while True:
            # eBay REST order ids look like 12-34567-89012.
            r = self._ids.randrange
            oid = f"{r(1, 100):02d}-{r(10**5):05d}-{r(10**5):05d}"
            if oid not in self.orders:
                return oid

    def _new_token(self, prefix: str) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return prefix + "".join(self._tokens.choice(alphabet) for _ in range(96)) + "="

    def issue_auth_code(self, client_id: str, redirect_uri: str, scopes: tuple[str, ...]) -> AuthCode:
        code = AuthCode(
            code=self._new_token("v^1.1#i^1#I^3#f^0#p^3#r^1#t^Ul41Xz"),
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            expires_at=self.now() + timedelta(seconds=AUTH_CODE_TTL_S),
        )
        self.auth_codes[code.code] = code
        return code

    def issue_access_token(self, scopes: tuple[str, ...], kind: str = "user") -> AccessToken:
        token = AccessToken(
            token=self._new_token("v^1.1#i^1#f^0#p^3#I^3#r^0#t^H4sI"),
            scopes=scopes,
            expires_at=self.now() + timedelta(seconds=self.access_token_ttl),
            kind=kind,
        )
        self.access_tokens[token.token] = token
        return token

    def issue_refresh_token(self, client_id: str, scopes: tuple[str, ...]) -> RefreshToken:
        token = RefreshToken(
            token=self._new_token("v^1.1#i^1#r^1#I^3#f^0#p^3#t^Ul4x"),
            client_id=client_id,
            scopes=scopes,
            expires_at=self.now() + timedelta(seconds=REFRESH_TOKEN_TTL_S),
        )
        self.refresh_tokens[token.token] = token
        return token

    def valid_access_token(self, token: str) -> AccessToken | None:
        found = self.access_tokens.get(token)
        if found is None or (found.expires_at is not None and found.expires_at <= self.now()):
            return None
        return found

    # -- orders ----------------------------------------------------------------------------------------------
    def seed_orders(self, count: int) -> None:
        if count <= 0:
            return
        now = self.now()
        days = int(self.config.extra.get("days", "60"))
        start = now - timedelta(days=days)
        created = sorted(self.datagen.instant(start, now) for _ in range(count))
        for instant in created:
            order = self._generate_order(instant)
            roll = self.datagen.rng.random()
            # A realistic mix: most recent orders are unshipped, older ones mostly shipped, a few cancelled.
            age_days = (now - instant).days
            if roll < 0.03:
                order.cancel_state = "CANCELED"
            elif roll < 0.06:
                order.payment_status = "PENDING"
            elif age_days > 3 and roll < 0.70:
                self._seed_fulfillment(order, partial=roll > 0.66)
            # A seeded order was last changed before the sandbox started: eBay never reports a lastModifiedDate
            # in the future (an order placed just before `now` would otherwise show one up to ten minutes ahead).
            order.modified = min(order.modified, now)
            self._add(order)

    def _seed_fulfillment(self, order: EbayOrder, *, partial: bool) -> None:
        items = order.line_items[:1] if partial and len(order.line_items) > 1 else order.line_items
        shipped = order.created + timedelta(hours=self.datagen.rng.randrange(6, 72))
        tracking = "9400" + self._digits(18)
        order.fulfillments.append(
            ShippingFulfillment(
                fulfillment_id=tracking,
                line_items=[(li.line_item_id, li.quantity) for li in items],
                shipped_date=shipped,
                tracking_number=tracking,
                carrier_code=order.carrier_code,
                created_at=shipped,
            )
        )
        for li in items:
            li.fulfilled = li.quantity
        order.modified = max(order.modified, shipped)

    def _generate_order(
        self,
        created: datetime,
        *,
        country: str | None = None,
        n_items: int | None = None,
    ) -> EbayOrder:
        gen = self.datagen
        home = MARKETPLACE_COUNTRY[self.marketplace_id]
        # Most buyers are domestic; eBay's international buyers give names and addresses in many scripts.
        if country is None:
            country = home if gen.rng.random() < 0.6 else gen.country()
        person = gen.person(country)
        address = gen.address(country, person)
        items = gen.line_items(self.currency, n_items)
        line_items = [
            LineItem(
                line_item_id=self._digits(14),
                legacy_item_id=self._digits(12),
                sku=item.sku,
                title=item.title,
                quantity=item.quantity,
                unit_price=item.unit_price,
            )
            for item in items
        ]
        carrier, service = gen.rng.choice(_SERVICES)
        self._sales_record += 1
        order_id = self._new_order_id()
        username = person.email.split("@", 1)[0].replace(".", "_")
        return EbayOrder(
            order_id=order_id,
            legacy_order_id=f"{line_items[0].legacy_item_id}-{self._digits(13)}",
            created=created,
            modified=created + timedelta(seconds=gen.rng.randrange(1, 600)),
            marketplace_id=self.marketplace_id,
            currency=self.currency,
            buyer_username=username,
            # eBay relays buyer mail through an anonymised address.
            buyer_email=f"{self._ids.getrandbits(40):010x}@members.ebay.com",
            ship_to=address,
            ship_to_name=person.full_name,
            line_items=line_items,
            delivery_cost=quantize_money(Decimal(gen.rng.choice(_DELIVERY)), self.currency),
            carrier_code=carrier,
            service_code=service,
            sales_record_reference=str(self._sales_record),
        )

    def _add(self, order: EbayOrder) -> None:
        # Seeded times come from a generator with microseconds; eBay keeps milliseconds.
        order.created, order.modified = _to_ms(order.created), _to_ms(order.modified)
        self.orders[order.order_id] = order
        index = bisect.bisect_right(self._created_keys, order.created)
        self._created_keys.insert(index, order.created)
        self._by_created.insert(index, order)

    def create_order(
        self,
        *,
        country: str | None = None,
        n_items: int | None = None,
        payment_status: str = "PAID",
    ) -> EbayOrder:
        now = self.now()
        order = self._generate_order(now, country=country, n_items=n_items)
        order.modified = now
        order.payment_status = payment_status
        self._add(order)
        return order

    def orders_created_between(self, start: datetime, end: datetime) -> list[EbayOrder]:
        lo = bisect.bisect_left(self._created_keys, start)
        hi = bisect.bisect_right(self._created_keys, end)
        return self._by_created[lo:hi]

    def all_orders(self) -> list[EbayOrder]:
        return list(self._by_created)

    def touch(self, order: EbayOrder) -> None:
        # lastModifiedDate never goes backwards, even when two changes land in the same millisecond.
        order.modified = max(self.now(), order.modified + timedelta(milliseconds=1))

    def new_fulfillment_id(self) -> str:
        return "FF" + self._digits(16)
