"""REST API for checkout rates: `POST /api/v1/rates/quote`.

A shop's checkout (an OroCommerce shipping method, a storefront's cart page) sends a destination and the cart's
items; the answer lists what every shipping connection of the account offers, packed as the account packs
parcels, and which service the account's rules would choose, with the rules' own sentence. Nothing is stored:
no order, no shipment. Rates are gathered within a time budget; connections that are late, refuse or cannot be
used are listed in `left_out` with the reason, never waited for past the budget.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossdock import model as m
from crossdock.api.deps import CallerDep, HubDep
from crossdock.api.problems import invalid
from crossdock.flows.catalog import Catalog, sku_tags, variants_by_sku, weighed
from crossdock.flows.parcels import ParcelError, PlannedParcel, plan
from crossdock.flows.policy import load_policy
from crossdock.flows.rating import rates_source
from crossdock.flows.rules import Facts, decide, service_text
from crossdock.hub import Hub
from crossdock.model.address import check_country
from crossdock.model.money import check_currency
from crossdock.store.repo import Tenant

router = APIRouter(prefix="/api/v1/rates", tags=["shipping"])

DEFAULT_BUDGET_MS = 2500
# A checkout waits for the answer; beyond this a shopper has left, and a worker is better spent elsewhere.
MAX_BUDGET_MS = 10_000
MAX_ITEMS = 500


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: str = Field(description="ISO 3166-1 alpha-2 country code, e.g. DE, US, GB.")
    postal_code: str | None = None
    city: str | None = None
    subdivision: str | None = Field(default=None, description="State or province, e.g. CA or US-CA.")
    lines: list[str] = Field(
        default_factory=list, max_length=3, description="Street lines, first line first."
    )

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        return check_country(value)

    @field_validator("postal_code", "city", "subdivision")
    @classmethod
    def _blank(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("lines")
    @classmethod
    def _lines(cls, value: list[str]) -> list[str]:
        return [line for line in value if line.strip()]

    def address(self) -> m.Address:
        if self.lines and self.city:
            return m.Address(
                line1=self.lines[0],
                line2=self.lines[1] if len(self.lines) > 1 else None,
                line3=self.lines[2] if len(self.lines) > 2 else None,
                city=self.city,
                postal_code=self.postal_code,
                subdivision=self.subdivision,
                country=self.country,
            )
        # A checkout often knows only the country and postal code before the shopper types the street. Carriers
        # rate by those; the street and city stay empty (connectors send only the fields that have a value).
        # The country was checked above; nothing else here needs Address's checks.
        return m.Address.model_construct(
            line1=self.lines[0] if self.lines else "",
            city=self.city or "",
            postal_code=self.postal_code,
            subdivision=self.subdivision,
            country=self.country,
        )


class QuoteItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=255)
    title: str | None = Field(default=None, max_length=500)
    quantity: int = Field(gt=0, le=100_000)
    weight: m.Weight | None = Field(
        default=None,
        description="One unit's weight. Without it: the catalog's weight for the SKU, then the account's default "
        "item weight.",
    )
    price: m.Money = Field(description="One unit's price.")

    @field_validator("quantity", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("quantity must be a whole number")
        return value


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destination: Destination
    items: list[QuoteItem] = Field(min_length=1, max_length=MAX_ITEMS)
    currency: str | None = Field(
        default=None, description="The cart's currency (ISO 4217); default: the items' prices' currency."
    )
    budget_ms: int = Field(
        default=DEFAULT_BUDGET_MS,
        ge=1,
        le=MAX_BUDGET_MS,
        description="How long to wait for rates, in milliseconds; connections that have not answered by then "
        "are left out.",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        return None if value is None else check_currency(value)


class ParcelItemOut(BaseModel):
    sku: str | None
    quantity: int


class ParcelOut(BaseModel):
    weight: m.Weight
    dimensions: m.Dimensions | None
    items: list[ParcelItemOut]


class RateOut(BaseModel):
    connection_id: uuid.UUID
    connector: str | None
    carrier: str
    service: str = Field(description="The carrier's service code, as a fixed rule names it after 'carrier:'.")
    service_name: str = Field(description="The service as shoppers read it, e.g. 'USPS Priority Mail'.")
    price: m.Money
    estimated_days: int | None


class ChosenOut(BaseModel):
    rate: RateOut
    rule_number: int | None = Field(
        description="1-based position of the deciding rule; null for the fallback."
    )
    explanation: str


class LeftOutOut(BaseModel):
    connection_id: uuid.UUID
    connector: str | None
    reason: str


class QuoteOut(BaseModel):
    parcels: list[ParcelOut]
    rates: list[RateOut] = Field(description="Cheapest first.")
    chosen: ChosenOut | None = Field(
        description="What the account's shipping rules choose; null when none can."
    )
    not_chosen: str | None = Field(description="Why the rules chose nothing, when they did not.")
    left_out: list[LeftOutOut] = Field(
        description="Shipping connections whose rates are missing, with the reason (too slow, refused, paused)."
    )
    elapsed_ms: int


@dataclass
class Quoted:
    answer: QuoteOut
    # Why each rule before the deciding one did not decide (all of them when none did), for a reader's detail.
    skipped: list[str]


@router.post("/quote", response_model=QuoteOut)
async def quote(body: QuoteIn, caller: CallerDep, hub: HubDep) -> QuoteOut:
    """Rates for a cart, from every shipping connection that offers rates, within `budget_ms`; and the service
    the account's shipping rules choose. 422 names the field at fault, including an item that cannot be packed
    (no weight anywhere, heavier than a parcel may be)."""
    return (await quote_cart(hub, caller.tenant, body)).answer


async def quote_cart(hub: Hub, tenant: Tenant, body: QuoteIn) -> Quoted:
    """The quote for a cart (the API's answer and the panel's "try it"). Raises the API's 422 Problem naming the
    item at fault. Commits the session's transaction before rates are asked."""
    started = time.monotonic()
    session = tenant.session
    currency = _currency(body)
    policy, _version = await load_policy(session, tenant.account_id)
    catalog = await variants_by_sku(tenant, (item.sku for item in body.items))
    lines = [_line(item, catalog) for item in body.items]
    for index, line in enumerate(lines):
        if line.weight is None and policy.packing.default_item_weight is None:
            raise invalid(
                f"items[{index}].weight",
                f"item {line.sku} has no weight: send its weight, give the product {line.sku} a weight in the "
                "catalog, or set the account's default item weight in the shipping policy",
            )
    try:
        parcels = plan(lines, policy.packing)
    except ParcelError as exc:
        raise invalid(_parcel_field(str(exc)), str(exc)) from None
    connectors = {row.id: row.connector for row in await tenant.list_connections()}
    # Rates take seconds; the request's transaction (which may hold the token's last-use write) must not stay
    # open while remotes answer: each connector call records itself in its own transaction.
    await session.commit()

    total = sum((line.total for line in lines if line.total is not None), m.Money.zero(currency))
    order = m.Order(
        currency=currency,
        shipping_address=body.destination.address(),
        lines=lines,
        totals=m.Totals(subtotal=total, total=total),
    )
    # No order id: a quote stores nothing, and connectors record their calls against no order.
    shipment = m.Shipment(order_id=None, parcels=[p.to_model() for p in parcels])
    budget_s = body.budget_ms / 1000
    source = rates_source(hub, tenant.account_id, shipment, order, budget_s=budget_s)
    offered = await source(None)
    # A rule naming a connection outside the ones just asked (paused, not rating) needs no remote call; should
    # one need it all the same, it gets only what is left of the budget.
    source.budget_s = max(0.0, budget_s - (time.monotonic() - started))
    facts = Facts(
        country=body.destination.country,
        weight=_total_weight(parcels),
        value=total,
        sku_tags=sku_tags(lines, catalog),
    )
    decision = await decide(policy.rules, policy.fallback, facts, source)

    rates = sorted(offered, key=lambda r: (_price(r).currency != currency, _price(r).amount, _days(r)))
    chosen = None
    if decision.rate is not None:
        chosen = ChosenOut(
            rate=_rate_out(decision.rate, connectors),
            rule_number=decision.rule_number,
            explanation=decision.explanation,
        )
    answer = QuoteOut(
        parcels=[_parcel_out(p) for p in parcels],
        rates=[_rate_out(rate, connectors) for rate in rates],
        chosen=chosen,
        not_chosen=None if chosen is not None else decision.explanation,
        left_out=[
            LeftOutOut(connection_id=cid, connector=connectors.get(cid), reason=reason)
            for cid, reason in source.left_out.items()
        ],
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )
    return Quoted(answer, decision.skipped)


def _currency(body: QuoteIn) -> str:
    currency = body.currency or body.items[0].price.currency
    for index, item in enumerate(body.items):
        if item.price.currency != currency:
            raise invalid(
                f"items[{index}].price.currency",
                f"the price is in {item.price.currency} but the cart is in {currency}: send every price in one "
                "currency",
            )
    return currency


def _line(item: QuoteItem, catalog: Catalog) -> m.OrderLine:
    line = m.OrderLine(
        sku=item.sku,
        title=item.title or item.sku,
        quantity=item.quantity,
        unit_price=item.price,
        weight=item.weight,
    )
    return weighed(line, catalog)


_LINE = re.compile(r"^line (\d+) ")


def _parcel_field(message: str) -> str:
    """The item a packing error is about: plan() names lines 1-based, as "line 2 (SKU) ..."."""
    found = _LINE.match(message)
    return f"items[{int(found.group(1)) - 1}].weight" if found else "items"


def _total_weight(parcels: list[PlannedParcel]) -> m.Weight:
    return m.Weight.grams(sum((p.weight.in_grams for p in parcels), Decimal(0)))


def _days(rate: m.Rate) -> int:
    return rate.estimated_days if rate.estimated_days is not None else 10**6


def _price(rate: m.Rate) -> m.Money:
    # Gathered rates are quoted ones, each with its price (flows/rating.py drops any that has none), and the
    # rules are not told of connections that quote none, so they choose among gathered rates only.
    assert rate.price is not None
    return rate.price


def _rate_out(rate: m.Rate, connectors: dict[uuid.UUID, str]) -> RateOut:
    assert rate.connection_id is not None
    return RateOut(
        connection_id=rate.connection_id,
        connector=connectors.get(rate.connection_id),
        carrier=rate.carrier,
        service=rate.service_code,
        service_name=service_text(rate),
        price=_price(rate),
        estimated_days=rate.estimated_days,
    )


def _parcel_out(parcel: PlannedParcel) -> ParcelOut:
    return ParcelOut(
        weight=parcel.weight,
        dimensions=parcel.dimensions,
        items=[ParcelItemOut(sku=item.sku, quantity=item.quantity) for item in parcel.items],
    )
