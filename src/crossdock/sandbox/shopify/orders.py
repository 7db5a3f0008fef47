"""Shopify orders as the sandbox keeps them, and their REST JSON.

An order is split in two: `Order` holds what filters and lists need (ids, timestamps, statuses) and is cheap
enough to keep 100k of; `OrderBody` (customer, addresses, line items, money) and the fulfillment state are
derived from the seed on demand, and stored only once something changes them. So seeding 100k orders costs a
small object each, and a page of 250 renders 250 bodies.

Field names and shapes follow Shopify's REST Order, FulfillmentOrder and Fulfillment resources
(shopify.dev/docs/api/admin-rest/latest/resources/order, .../fulfillmentorder, .../fulfillment; fixtures in
Shopify/shopify_python_api test/fixtures/order.json and fulfillment_orders.json).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from crossdock.sandbox.common import CATALOG, Address, DataGen, Person, from_usd, minor_units, quantize_money

# Id ranges: 13-14 digit ids like real Shopify ones, so connectors cannot get away with 32-bit ints.
ORDER_ID_BASE = 5_600_000_000_000
LINE_ITEM_ID_BASE = 14_200_000_000_000
FULFILLMENT_ORDER_ID_BASE = 6_700_000_000_000
FO_LINE_ITEM_ID_BASE = 15_100_000_000_000
SEEDED_FULFILLMENT_ID_BASE = 4_900_000_000_000
NEW_FULFILLMENT_ID_BASE = 5_900_000_000_000
CUSTOMER_ID_BASE = 7_300_000_000_000
PRODUCT_ID_BASE = 8_100_000_000_000
VARIANT_ID_BASE = 44_300_000_000_000
INVENTORY_ITEM_ID_BASE = 46_400_000_000_000
SHOP_ID = 60_123_456_789
APP_ID = 580_111

# Per line-item / fulfillment-order slots reserved for one order in the derived id ranges.
LINES_PER_ORDER = 16
FOS_PER_ORDER = 4

FINANCIAL_STATUSES = (
    "pending",
    "authorized",
    "partially_paid",
    "paid",
    "partially_refunded",
    "refunded",
    "voided",
)

# Standard VAT/GST rates (rounded); US and CA show tax on top, the others include it in prices.
_TAX: dict[str, tuple[str, Decimal]] = {
    "US": ("State Tax", Decimal("0.0725")),
    "CA": ("HST", Decimal("0.13")),
    "GB": ("GB VAT", Decimal("0.20")),
    "DE": ("DE MwSt", Decimal("0.19")),
    "FR": ("FR TVA", Decimal("0.20")),
    "NL": ("NL btw", Decimal("0.21")),
    "ES": ("ES IVA", Decimal("0.21")),
    "PL": ("PL VAT", Decimal("0.23")),
    "SE": ("SE Moms", Decimal("0.25")),
    "GR": ("GR ΦΠΑ", Decimal("0.24")),
    "BG": ("BG ДДС", Decimal("0.20")),
    "RU": ("RU НДС", Decimal("0.20")),
    "UA": ("UA ПДВ", Decimal("0.20")),
    "JP": ("JP 消費税", Decimal("0.10")),
    "CN": ("CN VAT", Decimal("0.13")),
    "KR": ("KR VAT", Decimal("0.10")),
    "AE": ("AE VAT", Decimal("0.05")),
    "SA": ("SA VAT", Decimal("0.15")),
    "EG": ("EG VAT", Decimal("0.14")),
    "BH": ("BH VAT", Decimal("0.10")),
    "IL": ("IL VAT", Decimal("0.17")),
    "IN": ("IN IGST", Decimal("0.18")),
}
_TAX_ON_TOP = {"US", "CA"}

_CATALOG_INDEX: dict[str, int] = {sku: i for i, (sku, *_rest) in enumerate(CATALOG)}
CATALOG_USD: dict[str, Decimal] = {sku: Decimal(usd) for sku, _title, usd, _grams, _ships in CATALOG}
_CARRIERS = (
    ("UPS", "1Z{}", "https://www.ups.com/track?tracknum={}"),
    ("DHL Express", "JD01{}", "https://www.dhl.com/en/express/tracking.html?AWB={}"),
    ("USPS", "9400{}", "https://tools.usps.com/go/TrackConfirmAction?tLabels={}"),
    ("Royal Mail", "RM{}GB", "https://www.royalmail.com/track-your-item#/tracking-results/{}"),
    ("PostNL", "3S{}", "https://postnl.nl/tracktrace/?B={}"),
)


def money(amount: Decimal, currency: str) -> str:
    """Shopify money string: the amount in the currency's minor units ("24.00", "3600", "7.350")."""
    return str(quantize_money(amount, currency))


def money_set(amount: Decimal, currency: str) -> dict[str, dict[str, str]]:
    # Shop and presentment currency are the same in the sandbox (no multi-currency checkout).
    value = {"amount": money(amount, currency), "currency_code": currency}
    return {"shop_money": dict(value), "presentment_money": dict(value)}


def catalog_ids(sku: str | None) -> tuple[int | None, int | None, int | None]:
    """(product_id, variant_id, inventory_item_id) of a catalog SKU; (None, None, None) for custom items."""
    if sku is None or sku not in _CATALOG_INDEX:
        return None, None, None
    i = _CATALOG_INDEX[sku]
    return PRODUCT_ID_BASE + i * 7, VARIANT_ID_BASE + i * 3, INVENTORY_ITEM_ID_BASE + i * 3


@dataclass
class Line:
    id: int
    sku: str | None
    title: str
    variant_title: str | None
    quantity: int
    price: Decimal
    grams: int
    requires_shipping: bool
    product_id: int | None
    variant_id: int | None
    inventory_item_id: int | None
    vendor: str | None = "Crossdock Demo Goods"


@dataclass
class OrderBody:
    email: str
    phone: str | None
    customer_id: int
    customer: Person
    shipping_address: Address | None
    billing_address: Address
    currency: str
    lines: list[Line]
    shipping_title: str
    shipping_price: Decimal
    discount_code: str | None
    discount: Decimal
    tax_title: str | None
    tax_rate: Decimal
    taxes_included: bool
    token: str
    browser_ip: str
    locale: str
    note: str | None = None
    tags: str = ""

    @property
    def line_items_total(self) -> Decimal:
        return sum((line.price * line.quantity for line in self.lines), Decimal(0))

    @property
    def subtotal(self) -> Decimal:
        return self.line_items_total - self.discount

    @property
    def total_tax(self) -> Decimal:
        if self.tax_rate == 0:
            return Decimal(0)
        taxable = self.subtotal + self.shipping_price
        if self.taxes_included:
            return quantize_money(taxable * self.tax_rate / (1 + self.tax_rate), self.currency)
        return quantize_money(taxable * self.tax_rate, self.currency)

    @property
    def total(self) -> Decimal:
        extra = Decimal(0) if self.taxes_included else self.total_tax
        return self.subtotal + self.shipping_price + extra

    @property
    def total_weight(self) -> int:
        return sum(line.grams * line.quantity for line in self.lines)


@dataclass
class FOLine:
    id: int
    line_item_id: int
    inventory_item_id: int | None
    variant_id: int | None
    quantity: int
    remaining: int


@dataclass
class FulfillmentOrder:
    id: int
    status: str  # open | in_progress | closed | cancelled (FulfillmentOrderStatus)
    location_id: int
    lines: list[FOLine]
    created_ts: float
    updated_ts: float


@dataclass
class Fulfillment:
    id: int
    name: str
    created_ts: float
    updated_ts: float
    location_id: int
    tracking_company: str | None
    tracking_number: str | None
    tracking_url: str | None
    lines: list[tuple[int, int]]  # (line_item_id, quantity)
    status: str = "success"
    shipment_status: str | None = None


@dataclass
class FulfillmentState:
    orders: list[FulfillmentOrder]
    fulfillments: list[Fulfillment] = field(default_factory=list)


class Order:
    """The always-resident part of an order: what lists filter on."""

    __slots__ = (
        "body",
        "cancel_reason",
        "cancelled_ts",
        "closed_ts",
        "created_ts",
        "financial_status",
        "fulfillment",
        "fulfillment_status",
        "id",
        "index",
        "number",
        "seed_fulfillment",
        "updated_ts",
    )

    def __init__(self, id_: int, index: int, number: int, created_ts: float) -> None:
        self.id = id_
        self.index = index
        self.number = number
        self.created_ts = created_ts
        self.updated_ts = created_ts
        self.cancelled_ts: float | None = None
        self.cancel_reason: str | None = None
        self.closed_ts: float | None = None
        self.financial_status = "paid"
        self.fulfillment_status: str | None = None
        # What the seed says was fulfilled before the sandbox started ("fulfilled", "partial" or None).
        self.seed_fulfillment: str | None = None
        # None: derive from the seed when needed (not stored until something changes it).
        self.body: OrderBody | None = None
        self.fulfillment: FulfillmentState | None = None


# -- generating -------------------------------------------------------------------------------------------------


def _split_title(title: str) -> tuple[str, str | None]:
    product, sep, variant = title.partition(" - ")
    return (product, variant) if sep else (title, None)


def make_line(
    line_id: int,
    sku: str | None,
    title: str,
    quantity: int,
    price: Decimal,
    grams: int,
    requires_shipping: bool,
) -> Line:
    product_id, variant_id, inventory_item_id = catalog_ids(sku)
    product_title, variant_title = _split_title(title)
    return Line(
        line_id,
        sku,
        product_title if variant_id else title,
        variant_title if variant_id else None,
        quantity,
        price,
        grams,
        requires_shipping,
        product_id,
        variant_id,
        inventory_item_id,
    )


def generate_body(seed: int, index: int, country: str | None = None) -> OrderBody:
    """The deterministic customer, addresses, items and money of seeded order number `index`."""
    gen = DataGen((seed << 24) ^ (index * 2_654_435_761 % (1 << 32)))
    rng = gen.rng
    address = gen.address(country)
    currency = gen.currency_for(address.country_code)
    person = Person(
        address.first_name,
        address.last_name,
        f"{address.first_name} {address.last_name}",
        gen.person(address.country_code).email,
        address.phone,
        address.company,
        "",
    )
    lines = [
        make_line(
            LINE_ITEM_ID_BASE + index * LINES_PER_ORDER + j,
            item.sku,
            item.title,
            item.quantity,
            item.unit_price,
            item.grams,
            item.requires_shipping,
        )
        for j, item in enumerate(gen.line_items(currency))
    ]
    ships = any(line.requires_shipping for line in lines)
    # Some customers pay to a different billing address; most use the shipping one.
    billing = address if rng.random() < 0.8 else gen.address(address.country_code)
    subtotal = sum((line.price * line.quantity for line in lines), Decimal(0))
    discount_code = None
    discount = Decimal(0)
    if rng.random() < 0.15:
        discount_code = rng.choice(("WELCOME10", "SPRING10", "VIP10"))
        discount = quantize_money(subtotal * Decimal("0.10"), currency)
    if not ships:
        shipping_title, shipping_usd = "Digital delivery", Decimal(0)
    else:
        shipping_title, shipping_usd = rng.choice(
            (
                ("Standard Shipping", Decimal("4.95")),
                ("Express", Decimal("14.95")),
                ("Free Shipping", Decimal(0)),
            )
        )
    tax_title, tax_rate = _TAX.get(address.country_code, (None, Decimal(0)))
    return OrderBody(
        email=person.email,
        phone=address.phone,
        customer_id=CUSTOMER_ID_BASE + index * 3,
        customer=person,
        shipping_address=address if ships else None,
        billing_address=billing,
        currency=currency,
        lines=lines,
        shipping_title=shipping_title,
        shipping_price=from_usd(shipping_usd, currency),
        discount_code=discount_code,
        discount=discount,
        tax_title=tax_title,
        tax_rate=tax_rate,
        taxes_included=address.country_code not in _TAX_ON_TOP,
        token=f"{rng.getrandbits(128):032x}",
        browser_ip=f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        locale=_LOCALES.get(address.country_code, "en"),
    )


_LOCALES = {
    "DE": "de",
    "FR": "fr",
    "NL": "nl",
    "ES": "es",
    "PL": "pl",
    "SE": "sv",
    "RU": "ru",
    "UA": "uk",
    "BG": "bg",
    "GR": "el",
    "JP": "ja",
    "CN": "zh-CN",
    "KR": "ko",
    "AE": "ar",
    "SA": "ar",
    "EG": "ar",
    "KW": "ar",
    "BH": "ar",
    "IL": "he",
    "IN": "hi",
}


def initial_fulfillment(order: Order, body: OrderBody, location_id: int, seed: int) -> FulfillmentState:
    """Fulfillment orders (and, for orders seeded as shipped, the fulfillment) an order starts with."""
    fo_id = FULFILLMENT_ORDER_ID_BASE + order.index * FOS_PER_ORDER
    lines = [
        FOLine(
            FO_LINE_ITEM_ID_BASE + order.index * LINES_PER_ORDER + j,
            line.id,
            line.inventory_item_id,
            line.variant_id,
            line.quantity,
            line.quantity,
        )
        for j, line in enumerate(body.lines)
    ]
    fo = FulfillmentOrder(fo_id, "open", location_id, lines, order.created_ts, order.created_ts)
    state = FulfillmentState([fo])
    if order.cancelled_ts is not None:
        fo.status = "closed" if order.seed_fulfillment else "cancelled"
    if not order.seed_fulfillment:
        return state
    rng = random.Random((seed << 20) ^ order.index ^ 0xF00D)
    shipped = lines if order.seed_fulfillment == "fulfilled" else lines[:1]
    company, number_format, url_format = rng.choice(_CARRIERS)
    tracking = number_format.format("".join(str(rng.randrange(10)) for _ in range(12)))
    for fo_line in shipped:
        fo_line.remaining = 0
    fo.status = "closed" if all(line.remaining == 0 for line in lines) else "in_progress"
    fo.updated_ts = order.updated_ts
    state.fulfillments.append(
        Fulfillment(
            id=SEEDED_FULFILLMENT_ID_BASE + order.index * FOS_PER_ORDER,
            name=f"#{order.number + 1000}.1",
            created_ts=order.updated_ts,
            updated_ts=order.updated_ts,
            location_id=location_id,
            tracking_company=company,
            tracking_number=tracking,
            tracking_url=url_format.format(tracking),
            lines=[(fo_line.line_item_id, fo_line.quantity) for fo_line in shipped],
        )
    )
    return state


# -- rendering --------------------------------------------------------------------------------------------------


class Renderer:
    """Turns orders into Shopify REST JSON, with timestamps in the shop's time zone like Shopify does."""

    def __init__(self, tz: tzinfo, shop_domain: str) -> None:
        self.tz = tz
        self.shop_domain = shop_domain

    def ts(self, ts: float | None) -> str | None:
        if ts is None:
            return None
        return datetime.fromtimestamp(ts, self.tz).isoformat(timespec="seconds")

    @staticmethod
    def address(address: Address | None) -> dict[str, Any] | None:
        if address is None:
            return None
        return {
            "first_name": address.first_name,
            "address1": address.line1,
            "phone": address.phone,
            "city": address.city,
            "zip": address.postal_code,
            "province": address.province,
            "country": address.country_name,
            "last_name": address.last_name,
            "address2": address.line2,
            "company": address.company,
            # The sandbox does not geocode.
            "latitude": None,
            "longitude": None,
            "name": f"{address.first_name} {address.last_name}",
            "country_code": address.country_code,
            "province_code": address.province_code,
        }

    def line_item(self, line: Line, body: OrderBody, fulfilled: int) -> dict[str, Any]:
        currency = body.currency
        remaining = line.quantity - fulfilled
        status = None if fulfilled == 0 else ("fulfilled" if remaining == 0 else "partial")
        line_total = line.price * line.quantity
        tax_lines = []
        if body.tax_rate and body.tax_title:
            if body.taxes_included:
                tax = line_total * body.tax_rate / (1 + body.tax_rate)
            else:
                tax = line_total * body.tax_rate
            tax_lines.append(
                {
                    "price": money(tax, currency),
                    "rate": float(body.tax_rate),
                    "title": body.tax_title,
                    "price_set": money_set(tax, currency),
                    "channel_liable": False,
                }
            )
        name = f"{line.title} - {line.variant_title}" if line.variant_title else line.title
        return {
            "id": line.id,
            "admin_graphql_api_id": f"gid://shopify/LineItem/{line.id}",
            "attributed_staffs": [],
            "current_quantity": line.quantity,
            "fulfillable_quantity": remaining,
            "fulfillment_service": "manual",
            "fulfillment_status": status,
            "gift_card": line.sku is not None and line.sku.startswith("GIFTCARD"),
            "grams": line.grams,
            "name": name,
            "price": money(line.price, currency),
            "price_set": money_set(line.price, currency),
            "product_exists": line.product_id is not None,
            "product_id": line.product_id,
            "properties": [],
            "quantity": line.quantity,
            "requires_shipping": line.requires_shipping,
            "sku": line.sku,
            "taxable": True,
            "title": line.title,
            "total_discount": money(Decimal(0), currency),
            "total_discount_set": money_set(Decimal(0), currency),
            "variant_id": line.variant_id,
            "variant_inventory_management": "shopify" if line.variant_id else None,
            "variant_title": line.variant_title,
            "vendor": line.vendor,
            "tax_lines": tax_lines,
            "duties": [],
            "discount_allocations": [],
        }

    def fulfillment(self, f: Fulfillment, order: Order, body: OrderBody) -> dict[str, Any]:
        by_id = {line.id: line for line in body.lines}
        items = []
        for line_item_id, quantity in f.lines:
            line = by_id[line_item_id]
            item = self.line_item(line, body, line.quantity)
            item["quantity"] = quantity
            items.append(item)
        return {
            "id": f.id,
            "admin_graphql_api_id": f"gid://shopify/Fulfillment/{f.id}",
            "created_at": self.ts(f.created_ts),
            "location_id": f.location_id,
            "name": f.name,
            "order_id": order.id,
            "origin_address": {},
            "receipt": {},
            "service": "manual",
            "shipment_status": f.shipment_status,
            "status": f.status,
            "tracking_company": f.tracking_company,
            "tracking_number": f.tracking_number,
            "tracking_numbers": [f.tracking_number] if f.tracking_number else [],
            "tracking_url": f.tracking_url,
            "tracking_urls": [f.tracking_url] if f.tracking_url else [],
            "updated_at": self.ts(f.updated_ts),
            "line_items": items,
        }

    def fulfillment_order(
        self, fo: FulfillmentOrder, order: Order, body: OrderBody, location: dict[str, Any]
    ) -> dict[str, Any]:
        destination = body.shipping_address or body.billing_address
        actions = ["create_fulfillment", "hold", "move"] if fo.status in ("open", "in_progress") else []
        return {
            "id": fo.id,
            "created_at": self.ts(fo.created_ts),
            "updated_at": self.ts(fo.updated_ts),
            "shop_id": SHOP_ID,
            "order_id": order.id,
            "assigned_location_id": fo.location_id,
            "request_status": "unsubmitted",
            "status": fo.status,
            "fulfill_at": self.ts(order.created_ts),
            "fulfill_by": None,
            "supported_actions": actions,
            "destination": {
                "id": fo.id + 1,
                "address1": destination.line1,
                "address2": destination.line2,
                "city": destination.city,
                "company": destination.company,
                "country": destination.country_name,
                "email": body.email,
                "first_name": destination.first_name,
                "last_name": destination.last_name,
                "phone": destination.phone,
                "province": destination.province,
                "zip": destination.postal_code,
            },
            "line_items": [
                {
                    "id": line.id,
                    "shop_id": SHOP_ID,
                    "fulfillment_order_id": fo.id,
                    "quantity": line.quantity,
                    "line_item_id": line.line_item_id,
                    "inventory_item_id": line.inventory_item_id,
                    "fulfillable_quantity": line.remaining if fo.status in ("open", "in_progress") else 0,
                    "variant_id": line.variant_id,
                }
                for line in fo.lines
            ],
            "international_duties": None,
            "fulfillment_holds": [],
            "delivery_method": {
                "id": fo.id + 2,
                "method_type": "shipping" if body.shipping_address else "none",
                "min_delivery_date_time": None,
                "max_delivery_date_time": None,
            },
            "assigned_location": {
                "address1": location["address1"],
                "address2": None,
                "city": location["city"],
                "country_code": location["country_code"],
                "location_id": location["id"],
                "name": location["name"],
                "phone": None,
                "province": location["province"],
                "zip": location["zip"],
            },
            "merchant_requests": [],
        }

    def order(self, order: Order, body: OrderBody, state: FulfillmentState) -> dict[str, Any]:
        c = body.currency
        fulfilled: dict[int, int] = {}
        for f in state.fulfillments:
            if f.status == "success":
                for line_item_id, quantity in f.lines:
                    fulfilled[line_item_id] = fulfilled.get(line_item_id, 0) + quantity
        tax = body.total_tax
        customer = body.customer
        created = self.ts(order.created_ts)
        tax_lines = (
            [
                {
                    "price": money(tax, c),
                    "rate": float(body.tax_rate),
                    "title": body.tax_title,
                    "price_set": money_set(tax, c),
                    "channel_liable": False,
                }
            ]
            if body.tax_rate and body.tax_title
            else []
        )
        zero = Decimal(0)
        return {
            "id": order.id,
            "admin_graphql_api_id": f"gid://shopify/Order/{order.id}",
            "app_id": APP_ID,
            "browser_ip": body.browser_ip,
            "buyer_accepts_marketing": False,
            "cancel_reason": order.cancel_reason,
            "cancelled_at": self.ts(order.cancelled_ts),
            "cart_token": None,
            "checkout_id": order.id + 11,
            "checkout_token": body.token[::-1],
            "client_details": {
                "accept_language": body.locale,
                "browser_height": None,
                "browser_ip": body.browser_ip,
                "browser_width": None,
                "session_hash": None,
                "user_agent": "Mozilla/5.0",
            },
            "closed_at": self.ts(order.closed_ts),
            "confirmation_number": _confirmation(order.id),
            "confirmed": True,
            "contact_email": body.email,
            "created_at": created,
            "currency": c,
            "current_subtotal_price": money(body.subtotal, c),
            "current_subtotal_price_set": money_set(body.subtotal, c),
            "current_total_discounts": money(body.discount, c),
            "current_total_discounts_set": money_set(body.discount, c),
            "current_total_price": money(body.total, c),
            "current_total_price_set": money_set(body.total, c),
            "current_total_tax": money(tax, c),
            "current_total_tax_set": money_set(tax, c),
            "customer_locale": body.locale,
            "discount_codes": (
                [{"code": body.discount_code, "amount": money(body.discount, c), "type": "percentage"}]
                if body.discount_code
                else []
            ),
            "email": body.email,
            "estimated_taxes": False,
            "financial_status": order.financial_status,
            "fulfillment_status": order.fulfillment_status,
            "landing_site": "/",
            "name": f"#{order.number + 1000}",
            "note": body.note,
            "note_attributes": [],
            "number": order.number,
            "order_number": order.number + 1000,
            "order_status_url": f"https://{self.shop_domain}/{SHOP_ID}/orders/{body.token}/authenticate",
            "payment_gateway_names": ["shopify_payments"],
            "phone": body.phone,
            "presentment_currency": c,
            "processed_at": created,
            "reference": None,
            "source_identifier": None,
            "source_name": "web",
            "subtotal_price": money(body.subtotal, c),
            "subtotal_price_set": money_set(body.subtotal, c),
            "tags": body.tags,
            "tax_lines": tax_lines,
            "taxes_included": body.taxes_included,
            "test": False,
            "token": body.token,
            "total_discounts": money(body.discount, c),
            "total_discounts_set": money_set(body.discount, c),
            "total_line_items_price": money(body.line_items_total, c),
            "total_line_items_price_set": money_set(body.line_items_total, c),
            "total_outstanding": money(
                body.total if order.financial_status in ("pending", "authorized") else zero, c
            ),
            "total_price": money(body.total, c),
            "total_price_set": money_set(body.total, c),
            "total_shipping_price_set": money_set(body.shipping_price, c),
            "total_tax": money(tax, c),
            "total_tax_set": money_set(tax, c),
            "total_tip_received": money(zero, c),
            "total_weight": body.total_weight,
            "updated_at": self.ts(order.updated_ts),
            "user_id": None,
            "billing_address": self.address(body.billing_address),
            "customer": {
                "id": body.customer_id,
                "email": body.email,
                "created_at": created,
                "updated_at": created,
                "first_name": customer.first_name,
                "last_name": customer.last_name,
                "state": "disabled",
                "note": None,
                "verified_email": True,
                "multipass_identifier": None,
                "tax_exempt": False,
                "phone": customer.phone,
                "currency": c,
                "tags": "",
                "admin_graphql_api_id": f"gid://shopify/Customer/{body.customer_id}",
                "default_address": {
                    **(self.address(body.billing_address) or {}),
                    "id": body.customer_id + 1,
                    "customer_id": body.customer_id,
                    "default": True,
                },
            },
            "discount_applications": (
                [
                    {
                        "target_type": "line_item",
                        "type": "discount_code",
                        "value": "10.0",
                        "value_type": "percentage",
                        "allocation_method": "across",
                        "target_selection": "all",
                        "code": body.discount_code,
                    }
                ]
                if body.discount_code
                else []
            ),
            "fulfillments": [self.fulfillment(f, order, body) for f in state.fulfillments],
            "line_items": [self.line_item(line, body, fulfilled.get(line.id, 0)) for line in body.lines],
            "payment_terms": None,
            "refunds": [],
            "shipping_address": self.address(body.shipping_address),
            "shipping_lines": [
                {
                    "id": order.id + 7,
                    "carrier_identifier": None,
                    "code": body.shipping_title,
                    "discounted_price": money(body.shipping_price, c),
                    "discounted_price_set": money_set(body.shipping_price, c),
                    "phone": None,
                    "price": money(body.shipping_price, c),
                    "price_set": money_set(body.shipping_price, c),
                    "requested_fulfillment_service_id": None,
                    "source": "shopify",
                    "title": body.shipping_title,
                    "tax_lines": [],
                    "discount_allocations": [],
                }
            ]
            if body.shipping_address
            else [],
        }


def _confirmation(order_id: int) -> str:
    # Shopify's confirmation numbers are 9 characters from an unambiguous upper-case alphabet.
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    n = order_id * 2_654_435_761 % (32**9)
    return "".join(alphabet[(n >> (5 * i)) & 31] for i in range(9))


def parse_money(value: Any, currency: str, field_name: str) -> Decimal:
    """A price from admin JSON (string or number) in the currency's minor units; ValueError names the field."""
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{field_name}: {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{field_name}: {value!r} must be a non-negative amount")
    places = minor_units(currency)
    if -amount.as_tuple().exponent > places:  # type: ignore[operator]
        raise ValueError(f"{field_name}: {value!r} has more decimals than {currency} allows ({places})")
    return quantize_money(amount, currency)
