"""Shipping rules: which shipping connection and service a shipment goes out with, and why.

An account keeps an ordered list of rules and a fallback. A rule matches a shipment on its destination
country, its weight band, the order's value band and the tags of its SKUs (every condition given must hold;
an empty rule matches everything). The first matching rule that can be satisfied decides, with its strategy:

- `cheapest`: the lowest price among the rates offered (in the order's currency when rates come in several);
- `fastest`: the fewest estimated transit days (rates without an estimate come last), then the lower price;
- `fixed`: one named service (`carrier:service_code`), when it is offered.

`cheapest` and `fastest` compare only quoted prices: a rate whose price is unknown (`Rate.price` None) is never
taken for zero, is left out of the comparison, and the sentence says so.

A matching rule that cannot be satisfied (no rates from its connection, the fixed service not offered) is
skipped with its reason, and the next one is tried; the fallback is tried last. The decision carries a
sentence for the order's timeline: "rule 2: cheapest for DE under 2 kg -> DHL Paket 4.99 EUR".

A rule naming a connection that buys labels but quotes no rates (MyParcel.com prices a shipment when it
registers it), passed in `unquoted`, is satisfied whenever it matches and no rates are asked of it: a `fixed`
rule ships with its own service at a price not quoted ("rule 1: dpd:dpd-classic -> dpd-classic at MyParcel.com,
price not quoted (...)"), a `cheapest` or `fastest` one, having nothing to compare, with the connection's
default service.

Pure: no I/O and no clock. Rates are asked for through a callback, once per connection, so that a rule set
naming three connections costs three rate requests at most.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

import pycountry
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crossdock.model import Money, Rate, Weight


class Strategy(StrEnum):
    CHEAPEST = "cheapest"
    FASTEST = "fastest"
    FIXED = "fixed"


def _country(code: str) -> str:
    upper = code.strip().upper()
    if pycountry.countries.get(alpha_2=upper) is None:
        raise ValueError(f"'{code}' is not an ISO 3166-1 alpha-2 country code (e.g. DE, US, GB)")
    return upper


class Match(BaseModel):
    """What a shipment must be for a rule to apply. Bands include their lower bound and exclude their upper
    one, so "under 2 kg" and "from 2 kg" never both match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    countries: list[str] = Field(default_factory=list, description="Destination countries (ISO alpha-2).")
    min_weight: Weight | None = None
    max_weight: Weight | None = None
    min_value: Money | None = None
    max_value: Money | None = None
    sku_tags: list[str] = Field(
        default_factory=list, description="Applies when any line's SKU carries one of these tags."
    )

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return [_country(c) for c in value]

    @model_validator(mode="after")
    def _bands(self) -> Match:
        if self.min_weight is not None and self.max_weight is not None and self.max_weight <= self.min_weight:
            raise ValueError("max_weight must be more than min_weight")
        if self.min_value is not None and self.max_value is not None:
            if self.min_value.currency != self.max_value.currency:
                raise ValueError("min_value and max_value must be in one currency")
            if self.max_value <= self.min_value:
                raise ValueError("max_value must be more than min_value")
        return self

    def describe(self) -> str:
        parts: list[str] = []
        if self.countries:
            parts.append("for " + ", ".join(self.countries))
        parts.extend(_band(self.min_weight, self.max_weight, _weight_text))
        parts.extend(f"order value {text}" for text in _band(self.min_value, self.max_value, _threshold_text))
        if self.sku_tags:
            parts.append("with SKUs tagged " + " or ".join(self.sku_tags))
        return " ".join(parts)


class ShippingRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    match: Match = Field(default_factory=Match)
    # The shipping connection whose rates the rule chooses from; None: every shipping connection of the account.
    connection_id: uuid.UUID | None = None
    strategy: Strategy = Strategy.CHEAPEST
    # For `fixed`: "carrier:service_code", e.g. "dhl:paket"; compared without regard to case.
    service: str | None = None

    @model_validator(mode="after")
    def _service(self) -> ShippingRule:
        if self.strategy is Strategy.FIXED:
            if not self.service or ":" not in self.service:
                raise ValueError("a fixed rule needs service as 'carrier:service_code', e.g. 'dhl:paket'")
        elif self.service is not None:
            raise ValueError(
                f"service is only for fixed rules; a {self.strategy} rule picks the service itself"
            )
        return self

    def describe(self) -> str:
        what = f"{self.service}" if self.strategy is Strategy.FIXED else self.strategy.value
        text = f"{what} {self.match.describe()}".strip()
        return f"'{self.name}', {text}" if self.name else text


@dataclass(frozen=True)
class Facts:
    """What the rules look at, for one shipment."""

    country: str | None
    weight: Weight
    value: Money | None
    sku_tags: frozenset[str] = frozenset()


def matches(match: Match, facts: Facts) -> str | None:
    """None when the shipment matches; else the first condition it fails, in words."""
    if match.countries and (facts.country or "") not in match.countries:
        return f"goes to {facts.country or 'no country'}, not {', '.join(match.countries)}"
    if match.min_weight is not None and facts.weight < match.min_weight:
        return f"weighs {_weight_text(facts.weight)}, under {_weight_text(match.min_weight)}"
    if match.max_weight is not None and not facts.weight < match.max_weight:
        return f"weighs {_weight_text(facts.weight)}, not under {_weight_text(match.max_weight)}"
    for bound, below in ((match.min_value, True), (match.max_value, False)):
        if bound is None:
            continue
        if facts.value is None:
            return "has no known order value"
        if facts.value.currency != bound.currency:
            return f"is valued in {facts.value.currency}, the rule in {bound.currency}"
        if below and facts.value < bound:
            return f"is worth {_money_text(facts.value)}, under {_money_text(bound)}"
        if not below and not facts.value < bound:
            return f"is worth {_money_text(facts.value)}, not under {_money_text(bound)}"
    if match.sku_tags and not facts.sku_tags.intersection(match.sku_tags):
        return f"has no SKU tagged {' or '.join(match.sku_tags)}"
    return None


def pick(rule: ShippingRule, rates: list[Rate], currency: str | None) -> tuple[Rate | None, str]:
    """The rate the rule's strategy picks, or None with the reason."""
    if not rates:
        return None, "no rates were offered"
    if rule.strategy is Strategy.FIXED:
        carrier, code = _fixed(rule)
        for rate in rates:
            if rate.carrier.lower() == carrier.lower() and rate.service_code.lower() == code.lower():
                return rate, ""
        return None, f"{rule.service} was not offered"
    priced = [(rate, rate.price) for rate in rates if rate.price is not None]
    if not priced:
        return None, "no rate offered had a quoted price to compare"
    comparable, note = _one_currency(priced, currency)
    unknown = len(rates) - len(priced)
    if unknown:
        without = f"{unknown} rate{'s' if unknown > 1 else ''} without a quoted price not compared"
        note = f"{note}; {without}" if note else without
    if rule.strategy is Strategy.CHEAPEST:
        return min(comparable, key=lambda rp: (rp[1].amount, _days(rp[0])))[0], note
    return min(comparable, key=lambda rp: (_days(rp[0]), rp[1].amount))[0], note


def unquoted_rate(rule: ShippingRule, connection_id: uuid.UUID) -> Rate | None:
    """The rate a fixed rule ships with through a connection that quotes no rates: its own service, at a price
    not known until the label is bought. None for the other strategies, which have nothing to compare."""
    if rule.strategy is not Strategy.FIXED:
        return None
    carrier, code = _fixed(rule)
    return Rate(carrier=carrier, service_code=code, price=None, connection_id=connection_id)


def _fixed(rule: ShippingRule) -> tuple[str, str]:
    assert rule.service is not None  # a fixed rule is validated to name its service
    carrier, _, code = rule.service.partition(":")
    return carrier, code


@dataclass
class Decision:
    rate: Rate | None
    # 1-based position of the deciding rule; None for the fallback (or when nothing could be chosen).
    rule_number: int | None
    explanation: str
    # Why each rule before the deciding one did not decide, for the timeline's detail.
    skipped: list[str] = field(default_factory=list)
    # The connection the shipment goes out with: the rate's, or, when a rule named a connection that quotes no
    # rates and has no service of its own, that connection (its default service is used). None: nothing chosen.
    connection_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if self.connection_id is None and self.rate is not None:
            self.connection_id = self.rate.connection_id


RatesFor = Callable[[uuid.UUID | None], Awaitable[list[Rate]]]


async def decide(
    rules: Iterable[ShippingRule],
    fallback: ShippingRule | None,
    facts: Facts,
    rates_for: RatesFor,
    unquoted: Mapping[uuid.UUID, str] | None = None,
) -> Decision:
    """The first matching rule that can be satisfied, then the fallback. `rates_for(connection_id)` gives
    the rates offered through a connection (None: every shipping connection of the account); each is asked
    once. `unquoted` maps the connections that buy labels but quote no rates to their titles ("MyParcel.com"):
    a rule naming one is never asked rates for, and decides whenever it matches (see the module's words)."""
    cache: dict[uuid.UUID | None, list[Rate]] = {}
    unquoted = unquoted or {}

    async def offered(connection_id: uuid.UUID | None) -> list[Rate]:
        if connection_id not in cache:
            cache[connection_id] = await rates_for(connection_id)
        return cache[connection_id]

    currency = facts.value.currency if facts.value is not None else None
    skipped: list[str] = []
    candidates: list[tuple[int | None, ShippingRule]] = [(i + 1, rule) for i, rule in enumerate(rules)]
    if fallback is not None:
        candidates.append((None, fallback))
    for number, rule in candidates:
        label = f"rule {number}" if number is not None else "fallback"
        if number is not None:
            why_not = matches(rule.match, facts)
            if why_not is not None:
                skipped.append(f"{label}: the shipment {why_not}")
                continue
        if rule.connection_id is not None and rule.connection_id in unquoted:
            return _without_rates(
                label, number, rule, rule.connection_id, unquoted[rule.connection_id], skipped
            )
        rate, note = pick(rule, await offered(rule.connection_id), currency)
        if rate is None:
            skipped.append(f"{label}: {note}")
            continue
        sentence = f"{label}: {rule.describe()} -> {service_text(rate)}{_price_words(rate.price)}"
        if note:
            sentence += f" ({note})"
        return Decision(rate, number, sentence, skipped)
    reasons = "; ".join(skipped) or "there are no shipping rules"
    return Decision(None, None, f"no shipping rule could choose a service: {reasons}", skipped)


def _without_rates(
    label: str,
    number: int | None,
    rule: ShippingRule,
    connection_id: uuid.UUID,
    title: str,
    skipped: list[str],
) -> Decision:
    """A matching rule naming a connection that quotes no rates: its fixed service, else the connection's
    default one, priced by the remote when the label is bought."""
    rate = unquoted_rate(rule, connection_id)
    priced_later = f"priced by {title} when the label is bought"
    if rate is None:
        where = rule.match.describe() or "every shipment"
        sentence = f"{label}: {where} -> {title} with the connection's default service ({priced_later})"
    else:
        sentence = f"{label}: {rule.describe()} -> {service_text(rate)} at {title}, price not quoted ({priced_later})"
    return Decision(rate, number, sentence, skipped, connection_id)


def service_text(rate: Rate) -> str:
    """ "DHL Paket": the carrier, then the service's name unless it already names the carrier."""
    return service_words(rate.carrier, rate.service_name or rate.service_code)


def service_words(carrier: str, name: str) -> str:
    return name if name.lower().startswith(carrier.lower()) else f"{carrier} {name}"


def _days(rate: Rate) -> int:
    return rate.estimated_days if rate.estimated_days is not None else 10**6


def _one_currency(
    priced: list[tuple[Rate, Money]], currency: str | None
) -> tuple[list[tuple[Rate, Money]], str]:
    """Prices in different currencies cannot be compared without exchange rates, which crossdock does not
    guess: compare those in the order's currency, else those in the most common one, and say so."""
    counts = Counter(price.currency for _, price in priced)
    if len(counts) == 1:
        return priced, ""
    chosen = currency if currency in counts else counts.most_common(1)[0][0]
    left = sorted(c for c in counts if c != chosen)
    return [rp for rp in priced if rp[1].currency == chosen], f"rates in {', '.join(left)} not compared"


def _weight_text(weight: Weight) -> str:
    grams = weight.in_grams
    if grams >= 1000:
        return f"{_plain(grams / 1000)} kg"
    return f"{_plain(grams)} g"


def _money_text(money: Money) -> str:
    return f"{money.amount} {money.currency}"


def _price_words(price: Money | None) -> str:
    """What follows the service in a decision's sentence: " 4.99 EUR"; a price not known until the label is
    bought is said to be so, never shown as a number."""
    return ", price not quoted" if price is None else f" {_money_text(price)}"


def _threshold_text(money: Money) -> str:
    """A band's bound as people write it: "500 EUR", "49.99 EUR"."""
    amount = money.amount
    return f"{_plain(amount) if amount == amount.to_integral_value() else amount} {money.currency}"


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f")


T = TypeVar("T")


def _band(low: T | None, high: T | None, text: Callable[[T], str]) -> list[str]:
    if low is not None and high is not None:
        return [f"from {text(low)} under {text(high)}"]
    if low is not None:
        return [f"from {text(low)}"]
    if high is not None:
        return [f"under {text(high)}"]
    return []
