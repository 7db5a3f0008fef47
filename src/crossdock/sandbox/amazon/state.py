"""The Amazon SP-API sandbox's state: LWA tokens, Orders v0 orders and items, shipment confirmations, limits.

Shapes follow the official model amzn/selling-partner-api-models models/orders-api-model/ordersV0.json
(Order, OrderItem, Money, Address, ConfirmShipmentRequest) and the LWA token contract
(developer-docs.amazon.com/sp-api/docs/connecting-to-the-selling-partner-api).
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crossdock.sandbox.common import Address, DataGen, SandboxConfig, quantize_money

# LWA access tokens live one hour (expires_in 3600 in the token response).
ACCESS_TOKEN_TTL_S = 3600
# "The spapi_oauth_code value expires after five minutes" (SP-API authorization workflow guide).
AUTH_CODE_TTL_S = 300

# Usage plans from ordersV0.json (rate in requests per second, burst).
USAGE_PLANS: dict[str, tuple[Decimal, int]] = {
    "getOrders": (Decimal("0.0167"), 20),
    "getOrder": (Decimal("0.5"), 30),
    "getOrderItems": (Decimal("0.5"), 30),
    "confirmShipment": (Decimal("2"), 10),
}

# Marketplace id -> (country, currency, sales channel, first two digits of its order ids).
MARKETPLACES: dict[str, tuple[str, str, str, str]] = {
    "ATVPDKIKX0DER": ("US", "USD", "Amazon.com", "11"),
    "A2EUQ1WTGCTBG2": ("CA", "CAD", "Amazon.ca", "70"),
    "A1F83G8C2ARO7P": ("GB", "GBP", "Amazon.co.uk", "20"),
    "A1PA6795UKMFR9": ("DE", "EUR", "Amazon.de", "30"),
    "A13V1IB3VIYZZH": ("FR", "EUR", "Amazon.fr", "40"),
    "A1RKKUPIHCS9HS": ("ES", "EUR", "Amazon.es", "40"),
    "A1805IZSGTT6HS": ("NL", "EUR", "Amazon.nl", "40"),
    "A1C3SOZRARQ6R3": ("PL", "PLN", "Amazon.pl", "40"),
    "A2NODRKZP88ZB9": ("SE", "SEK", "Amazon.se", "40"),
    "A1VC38T7YXB528": ("JP", "JPY", "Amazon.co.jp", "50"),
    "A2VIGQ35RCS4UG": ("AE", "AED", "Amazon.ae", "40"),
}
# Sales tax is shown separately in North America; elsewhere item prices include VAT and ItemTax is zero here.
_TAX_RATE: dict[str, Decimal] = {"USD": Decimal("0.07"), "CAD": Decimal("0.13")}
_SHIPPED_STATES = ("Unshipped", "PartiallyShipped", "Shipped", "InvoiceUnconfirmed")
_SHIP_LEVELS = (
    ("Standard", "Std US D2D Dom"),
    ("Expedited", "Exp US D2D Dom"),
    ("NextDay", "NextDay US D2D"),
)


def amazon_time(value: datetime) -> str:
    """SP-API timestamps: ISO 8601 UTC without fractions, e.g. 2017-01-20T19:49:35Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"CurrencyCode": currency, "Amount": str(quantize_money(amount, currency))}


class TokenBucket:
    """SP-API usage plan: `burst` requests at once, refilled at `rate` per second (token bucket)."""

    def __init__(self, rate: Decimal, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * float(self.rate))
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def header(self) -> str:
        return format(self.rate.normalize(), "f")


@dataclass
class AmazonItem:
    order_item_id: str
    asin: str
    sku: str
    title: str
    quantity: int
    unit_price: Decimal
    shipping_price: Decimal
    tax_rate: Decimal
    shipped: int = 0

    @property
    def item_price(self) -> Decimal:
        # ItemPrice is the selling price times the quantity ordered (ordersV0.json, OrderItem.ItemPrice).
        return self.unit_price * self.quantity

    def to_json(self, currency: str, *, priced: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ASIN": self.asin,
            "SellerSKU": self.sku,
            "OrderItemId": self.order_item_id,
            "Title": self.title,
            "QuantityOrdered": self.quantity,
            "QuantityShipped": self.shipped,
            "ProductInfo": {"NumberOfItems": "1"},
        }
        # While an order is Pending, getOrderItems returns no pricing, taxes, shipping charges or gift status.
        if priced:
            body.update(
                {
                    "ItemPrice": money(self.item_price, currency),
                    "ShippingPrice": money(self.shipping_price, currency),
                    "ItemTax": money(self.item_price * self.tax_rate, currency),
                    "ShippingTax": money(self.shipping_price * self.tax_rate, currency),
                    "ShippingDiscount": money(Decimal(0), currency),
                    "PromotionDiscount": money(Decimal(0), currency),
                    "PromotionDiscountTax": money(Decimal(0), currency),
                    "PromotionIds": [],
                    "IsGift": "false",
                }
            )
        body.update(
            {
                "ConditionId": "New",
                "ConditionSubtypeId": "New",
                "IsTransparency": False,
                "SerialNumberRequired": False,
            }
        )
        return body

    @property
    def total(self) -> Decimal:
        c = self.item_price + self.shipping_price
        return c + c * self.tax_rate


@dataclass
class Confirmation:
    amazon_order_id: str
    marketplace_id: str
    package_reference_id: str
    carrier_code: str
    carrier_name: str | None
    shipping_method: str | None
    tracking_number: str
    ship_date: datetime
    items: list[tuple[str, int]]
    received_at: datetime
    # How many times the package was edited (confirmShipment again with its packageReferenceId).
    edits: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "amazonOrderId": self.amazon_order_id,
            "marketplaceId": self.marketplace_id,
            "packageReferenceId": self.package_reference_id,
            "carrierCode": self.carrier_code,
            "carrierName": self.carrier_name,
            "shippingMethod": self.shipping_method,
            "trackingNumber": self.tracking_number,
            "shipDate": amazon_time(self.ship_date),
            "orderItems": [{"orderItemId": i, "quantity": q} for i, q in self.items],
            "receivedAt": amazon_time(self.received_at),
            "edits": self.edits,
        }


@dataclass
class AmazonOrder:
    amazon_order_id: str
    purchase_date: datetime
    last_update: datetime
    status: str
    fulfillment_channel: str
    marketplace_id: str
    currency: str
    sales_channel: str
    level_category: str
    ship_service_level: str
    address: Address
    buyer_name: str
    buyer_email: str
    items: list[AmazonItem]
    is_prime: bool = False
    is_business: bool = False
    confirmations: list[Confirmation] = field(default_factory=list)

    @property
    def priced(self) -> bool:
        return self.status not in ("Pending", "PendingAvailability")

    def item(self, order_item_id: str) -> AmazonItem | None:
        return next((i for i in self.items if i.order_item_id == order_item_id), None)

    def refresh_status(self) -> None:
        """Shipped when every unit went out, PartiallyShipped when some did."""
        shipped = sum(i.shipped for i in self.items)
        ordered = sum(i.quantity for i in self.items)
        if shipped >= ordered:
            self.status = "Shipped"
        elif shipped > 0:
            self.status = "PartiallyShipped"

    def to_json(self) -> dict[str, Any]:
        c = self.currency
        body: dict[str, Any] = {
            "AmazonOrderId": self.amazon_order_id,
            "PurchaseDate": amazon_time(self.purchase_date),
            "LastUpdateDate": amazon_time(self.last_update),
            "OrderStatus": self.status,
            "FulfillmentChannel": self.fulfillment_channel,
            "SalesChannel": self.sales_channel,
            "ShipServiceLevel": self.ship_service_level,
        }
        if self.priced:
            body["OrderTotal"] = money(sum((i.total for i in self.items), Decimal(0)), c)
        # The model's Pending example reports 0/0; counts appear once payment is authorised.
        if self.priced and self.status != "Canceled":
            shipped = sum(i.shipped for i in self.items)
            unshipped = sum(i.quantity - i.shipped for i in self.items)
        else:
            shipped = unshipped = 0
        body.update(
            {
                "NumberOfItemsShipped": shipped,
                "NumberOfItemsUnshipped": unshipped,
                "PaymentMethod": "Other",
                "PaymentMethodDetails": ["Standard"],
                "IsReplacementOrder": False,
                "MarketplaceId": self.marketplace_id,
                "ShipmentServiceLevelCategory": self.level_category,
                "OrderType": "StandardOrder",
                "EarliestShipDate": amazon_time(self.purchase_date + timedelta(hours=2)),
                "LatestShipDate": amazon_time(self.purchase_date + timedelta(days=2)),
            }
        )
        if self.status not in ("Pending", "PendingAvailability", "Canceled"):
            body["EarliestDeliveryDate"] = amazon_time(self.purchase_date + timedelta(days=3))
            body["LatestDeliveryDate"] = amazon_time(self.purchase_date + timedelta(days=7))
        body.update(
            {
                "IsBusinessOrder": self.is_business,
                "IsPrime": self.is_prime,
                "IsAccessPointOrder": False,
                "IsGlobalExpressEnabled": False,
                "IsPremiumOrder": False,
                "IsSoldByAB": False,
                "IsIBA": False,
                "IsISPU": False,
            }
        )
        # ShippingAddress is only returned for Unshipped, PartiallyShipped, Shipped and InvoiceUnconfirmed.
        if self.status in _SHIPPED_STATES:
            a = self.address
            address: dict[str, Any] = {"Name": self.buyer_name, "AddressLine1": a.line1}
            if a.line2:
                address["AddressLine2"] = a.line2
            if a.company:
                address["CompanyName"] = a.company
            address["City"] = a.city
            if a.province_code or a.province:
                address["StateOrRegion"] = a.province_code or a.province
            if a.postal_code:
                address["PostalCode"] = a.postal_code
            address["CountryCode"] = a.country_code
            # The buyer's phone is suppressed for FBA orders.
            if a.phone and self.fulfillment_channel == "MFN":
                address["Phone"] = a.phone
            address["AddressType"] = "Commercial" if a.company else "Residential"
            body["ShippingAddress"] = address
        body["BuyerInfo"] = {"BuyerEmail": self.buyer_email}
        body["AutomatedShippingSettings"] = {"HasAutomatedShippingSettings": False}
        return body


@dataclass
class LwaToken:
    token: str
    expires_at: datetime | None
    # "seller" tokens come from a refresh token; "grantless" ones (client_credentials) reach no seller data.
    kind: str = "seller"


@dataclass
class AuthCode:
    code: str
    expires_at: datetime
    used: bool = False


class AmazonState:
    """Everything the SP-API sandbox remembers; reachable as `app.state.sandbox`."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        ids = [
            m.strip() for m in config.extra.get("marketplace_ids", "ATVPDKIKX0DER").split(",") if m.strip()
        ]
        unknown = [m for m in ids if m not in MARKETPLACES]
        if unknown or not ids:
            raise ValueError(
                f"amazon sandbox: unknown marketplace ids {unknown} (known: {', '.join(MARKETPLACES)})"
            )
        self.marketplace_ids = ids
        self.access_token_ttl = int(config.extra.get("access_token_ttl", ACCESS_TOKEN_TTL_S))
        self.items_page_size = int(config.extra.get("order_items_page_size", "30"))
        # getOrders returns at most MaxResultsPerPage orders a page; this caps pages lower so that tests can page
        # through a handful of orders (a client must follow NextToken whatever a page holds).
        self.orders_page_size = int(config.extra.get("orders_page_size", "100"))
        self.application_id = config.extra.get("application_id", "amzn1.sp.solution.sandbox")
        self.selling_partner_id = config.extra.get("selling_partner_id", "A3SANDBOXSELLER")
        self._clock_offset = timedelta(0)
        self.datagen = DataGen(config.seed)
        self._ids = random.Random(f"amazon-ids-{config.seed}")
        self._tokens = random.Random(f"amazon-tokens-{config.seed}")
        self._request_ids = random.Random(f"amazon-requests-{config.seed}")
        scale = Decimal(100) if config.fast_limits else Decimal(1)
        self.buckets = {op: TokenBucket(rate * scale, burst) for op, (rate, burst) in USAGE_PLANS.items()}
        self.orders: dict[str, AmazonOrder] = {}
        self._by_purchase: list[AmazonOrder] = []
        self._purchase_keys: list[datetime] = []
        self.access_tokens: dict[str, LwaToken] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self.refresh_tokens: set[str] = set()
        self.refresh_token = config.extra.get("refresh_token") or self._new_token("Atzr|IwEBI")
        self.refresh_tokens.add(self.refresh_token)
        self.token = config.token or self._new_token("Atza|IwEBI")
        self.access_tokens[self.token] = LwaToken(self.token, None)
        self.confirmations: list[Confirmation] = []
        self.seed_orders(config.orders)

    # -- clock, ids, tokens ----------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance_clock(self, seconds: float) -> datetime:
        self._clock_offset += timedelta(seconds=seconds)
        return self.now()

    def new_request_id(self) -> str:
        return str(uuid.UUID(int=self._request_ids.getrandbits(128), version=4))

    def _digits(self, n: int) -> str:
        return "".join(str(self._ids.randrange(10)) for _ in range(n))

    def _new_token(self, prefix: str) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return prefix + "".join(self._tokens.choice(alphabet) for _ in range(120))

    def issue_access_token(self, kind: str = "seller") -> LwaToken:
        token = LwaToken(
            self._new_token("Atza|IwEBI"), self.now() + timedelta(seconds=self.access_token_ttl), kind
        )
        self.access_tokens[token.token] = token
        return token

    def issue_refresh_token(self) -> str:
        token = self._new_token("Atzr|IwEBI")
        self.refresh_tokens.add(token)
        return token

    def issue_auth_code(self) -> AuthCode:
        code = AuthCode(self._new_token("ANDGx"), self.now() + timedelta(seconds=AUTH_CODE_TTL_S))
        self.auth_codes[code.code] = code
        return code

    # -- orders ----------------------------------------------------------------------------------------------
    def _new_order_id(self, marketplace_id: str) -> str:
        prefix = MARKETPLACES[marketplace_id][3]
        while True:
            oid = f"{prefix}{self._ids.randrange(1, 10)}-{self._digits(7)}-{self._digits(7)}"
            if oid not in self.orders:
                return oid

    def _generate_order(
        self,
        purchased: datetime,
        *,
        status: str = "Pending",
        channel: str = "MFN",
        country: str | None = None,
        n_items: int | None = None,
    ) -> AmazonOrder:
        gen = self.datagen
        marketplace_id = gen.rng.choice(self.marketplace_ids)
        home, currency, sales_channel, _ = MARKETPLACES[marketplace_id]
        if country is None:
            # Mostly domestic buyers, some cross-border (names and addresses in other scripts).
            country = home if gen.rng.random() < 0.85 else gen.country()
        person = gen.person(country)
        address = gen.address(country, person)
        if n_items is None:
            items = gen.line_items(currency)
        else:
            # The catalogue is small: large orders repeat products as distinct SKUs (variants).
            items = []
            while len(items) < n_items:
                batch = gen.line_items(currency, min(n_items - len(items), 8))
                round_no = len(items) // 8
                items.extend(
                    replace(item, sku=f"{item.sku}-V{round_no}") if round_no else item for item in batch
                )
        tax = _TAX_RATE.get(currency, Decimal(0))
        shipping = quantize_money(Decimal(gen.rng.choice(("0", "3.99", "5.99"))), currency)
        amazon_items = [
            AmazonItem(
                order_item_id=self._digits(14),
                asin="B0" + "".join(self._ids.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8)),
                sku=item.sku,
                title=item.title,
                quantity=item.quantity,
                unit_price=item.unit_price,
                shipping_price=shipping if index == 0 else Decimal(0),
                tax_rate=tax,
            )
            for index, item in enumerate(items)
        ]
        category, level = gen.rng.choice(_SHIP_LEVELS)
        return AmazonOrder(
            amazon_order_id=self._new_order_id(marketplace_id),
            purchase_date=purchased,
            last_update=purchased,
            status=status,
            fulfillment_channel=channel,
            marketplace_id=marketplace_id,
            currency=currency,
            sales_channel=sales_channel,
            level_category=category,
            ship_service_level=level,
            address=address,
            buyer_name=person.full_name,
            # Amazon relays buyer e-mail through an anonymised marketplace address.
            buyer_email=f"{self._digits(12)}@marketplace.amazon.com",
            items=amazon_items,
            is_prime=gen.rng.random() < 0.3,
            is_business=gen.rng.random() < 0.05,
        )

    def seed_orders(self, count: int) -> None:
        if count <= 0:
            return
        gen = self.datagen
        now = self.now()
        days = int(self.config.extra.get("days", "30"))
        instants = sorted(
            gen.instant(now - timedelta(days=days), now - timedelta(minutes=5)) for _ in range(count)
        )
        for purchased in instants:
            roll = gen.rng.random()
            age = now - purchased
            # Payment authorisation usually takes minutes; recent orders may still be Pending.
            channel = "AFN" if roll < 0.05 else "MFN"
            n_items = gen.rng.randrange(35, 61) if 0.05 <= roll < 0.07 else None
            order = self._generate_order(purchased, channel=channel, n_items=n_items)
            order.last_update = purchased + timedelta(seconds=gen.rng.randrange(60, 1800))
            if channel == "AFN":
                order.status = "Unshipped"
                self._ship_all(order, purchased + timedelta(hours=gen.rng.randrange(2, 30)))
            elif age < timedelta(hours=1) and roll > 0.5:
                order.status = "Pending"
                order.last_update = purchased
            elif roll > 0.97:
                order.status = "Canceled"
            elif age > timedelta(days=2) and roll > 0.35:
                order.status = "Unshipped"
                self._ship_all(order, purchased + timedelta(hours=gen.rng.randrange(6, 48)))
            else:
                order.status = "Unshipped"
            order.last_update = min(order.last_update, now - timedelta(minutes=3))
            self._add(order)

    def _ship_all(self, order: AmazonOrder, when: datetime) -> None:
        for item in order.items:
            item.shipped = item.quantity
        order.refresh_status()
        order.last_update = max(order.last_update, when)

    def _add(self, order: AmazonOrder) -> None:
        self.orders[order.amazon_order_id] = order
        index = bisect.bisect_right(self._purchase_keys, order.purchase_date)
        self._purchase_keys.insert(index, order.purchase_date)
        self._by_purchase.insert(index, order)

    def create_order(
        self,
        *,
        status: str = "Pending",
        channel: str = "MFN",
        country: str | None = None,
        n_items: int | None = None,
    ) -> AmazonOrder:
        now = self.now().replace(microsecond=0)
        order = self._generate_order(now, status=status, channel=channel, country=country, n_items=n_items)
        self._add(order)
        return order

    def orders_purchased_between(self, start: datetime, end: datetime) -> list[AmazonOrder]:
        lo = bisect.bisect_left(self._purchase_keys, start)
        hi = bisect.bisect_right(self._purchase_keys, end)
        return self._by_purchase[lo:hi]

    def all_orders(self) -> list[AmazonOrder]:
        return list(self._by_purchase)

    def touch(self, order: AmazonOrder) -> None:
        # Whole seconds, as on the wire; never backwards, never ahead of the clock.
        order.last_update = max(self.now().replace(microsecond=0), order.last_update)
