"""Shipping rules, table-driven: for each shipment, the rule and rate chosen and the sentence that explains it
on the order's timeline; rules that match but cannot be satisfied give way to the next; rules are validated
with messages that say what to write instead."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from crossdock.flows.rules import Decision, Facts, Match, ShippingRule, Strategy, decide
from crossdock.model import Money, Rate, Weight

A = uuid.UUID("00000000-0000-0000-0000-00000000000a")  # a MyParcel.com-like connection: DHL and DPD
B = uuid.UUID("00000000-0000-0000-0000-00000000000b")  # a Shippo-like connection: UPS, GLS, USPS
EMPTY = uuid.UUID("00000000-0000-0000-0000-0000000000ee")  # a connection that offers nothing


def rate(carrier: str, code: str, name: str, amount: str, currency: str, days: int | None) -> Rate:
    return Rate(
        carrier=carrier,
        service_code=code,
        service_name=name,
        price=Money.of(amount, currency),
        estimated_days=days,
    )


DHL_PAKET = rate("DHL", "paket", "DHL Paket", "4.99", "EUR", 2)
DHL_EXPRESS = rate("DHL", "express", "Express", "12.90", "EUR", 1)
DPD_CLASSIC = rate("DPD", "classic", "Classic", "5.49", "EUR", 3)
UPS_STANDARD = rate("UPS", "standard", "UPS Standard", "6.10", "EUR", 2)
GLS_PARCEL = rate("GLS", "parcel", "Parcel", "4.50", "EUR", None)
USPS_PRIORITY = rate("USPS", "priority", "Priority Mail", "9.45", "USD", 3)
OFFERED = {
    A: [DHL_PAKET, DHL_EXPRESS, DPD_CLASSIC],
    B: [UPS_STANDARD, GLS_PARCEL, USPS_PRIORITY],
    EMPTY: [],
}

RULES = [
    ShippingRule(match=Match(countries=["DE"], max_weight=Weight.grams(2000)), connection_id=A),
    ShippingRule(
        match=Match(countries=["DE"], min_weight=Weight.grams(2000)),
        connection_id=A,
        strategy=Strategy.FASTEST,
    ),
    ShippingRule(
        match=Match(sku_tags=["fragile"]), connection_id=B, strategy=Strategy.FIXED, service="ups:standard"
    ),
    ShippingRule(
        match=Match(countries=["US"]), connection_id=B, strategy=Strategy.FIXED, service="usps:priority"
    ),
    ShippingRule(match=Match(min_value=Money.of("500", "EUR")), strategy=Strategy.FASTEST),
    ShippingRule(match=Match(countries=["AT"]), connection_id=EMPTY),
    ShippingRule(
        name="Swiss post only",
        match=Match(countries=["CH"]),
        connection_id=A,
        strategy=Strategy.FIXED,
        service="post:priority",
    ),
    ShippingRule(match=Match(countries=["FR"], max_value=Money.of("50", "EUR")), connection_id=B),
]
FALLBACK = ShippingRule(connection_id=A)


def facts(
    country: str | None = "DE",
    grams: int = 1000,
    value: str | None = "40",
    currency: str = "EUR",
    tags: tuple[str, ...] = (),
) -> Facts:
    return Facts(
        country=country,
        weight=Weight.grams(grams),
        value=Money.of(value, currency) if value is not None else None,
        sku_tags=frozenset(tags),
    )


CASES = [
    # (id, facts, rule number or None for the fallback, chosen rate, words the explanation holds)
    ("de-light-cheapest", facts(), 1, DHL_PAKET, "rule 1: cheapest for DE under 2 kg -> DHL Paket 4.99 EUR"),
    ("de-just-under-2kg", facts(grams=1999), 1, DHL_PAKET, "rule 1"),
    (
        "de-exactly-2kg-is-heavy",
        facts(grams=2000),
        2,
        DHL_EXPRESS,
        "rule 2: fastest for DE from 2 kg -> DHL Express",
    ),
    ("de-heavy-fastest", facts(grams=15000), 2, DHL_EXPRESS, "12.90 EUR"),
    (
        "fragile-anywhere-fixed",
        facts(country="NL", tags=("fragile",)),
        3,
        UPS_STANDARD,
        "rule 3: ups:standard with SKUs tagged fragile -> UPS Standard 6.10 EUR",
    ),
    ("fragile-to-de-first-rule-wins", facts(tags=("fragile",)), 1, DHL_PAKET, "rule 1"),
    ("fragile-among-other-tags", facts(country="NL", tags=("mugs", "fragile")), 3, UPS_STANDARD, "rule 3"),
    (
        "us-fixed-in-usd",
        facts(country="US", value="80", currency="USD"),
        4,
        USPS_PRIORITY,
        "-> USPS Priority Mail 9.45 USD",
    ),
    (
        "us-fixed-case-insensitive",
        facts(country="US", grams=30000),
        4,
        USPS_PRIORITY,
        "rule 4: usps:priority for US",
    ),
    (
        "valuable-fastest-everywhere",
        facts(country="NL", value="750"),
        5,
        DHL_EXPRESS,
        "rule 5: fastest order value from 500 EUR",
    ),
    ("valuable-exactly-500", facts(country="NL", value="500"), 5, DHL_EXPRESS, "rule 5"),
    (
        "value-499.99-not-valuable",
        facts(country="NL", value="499.99"),
        None,
        DHL_PAKET,
        "fallback: cheapest -> DHL Paket 4.99 EUR",
    ),
    (
        "value-in-usd-not-compared-with-eur-band",
        facts(country="NL", value="900", currency="USD"),
        None,
        DHL_PAKET,
        "fallback",
    ),
    ("no-value-skips-value-rules", facts(country="NL", value=None), None, DHL_PAKET, "fallback"),
    ("at-no-rates-falls-through", facts(country="AT"), None, DHL_PAKET, "fallback"),
    ("ch-fixed-not-offered-falls-through", facts(country="CH"), None, DHL_PAKET, "fallback"),
    (
        "fr-cheap-order-cheapest-of-b",
        facts(country="FR", value="20"),
        8,
        GLS_PARCEL,
        "rule 8: cheapest for FR order value under 50 EUR -> GLS Parcel 4.50 EUR (rates in USD not compared)",
    ),
    ("fr-exactly-50-not-under", facts(country="FR", value="50"), None, DHL_PAKET, "fallback"),
    ("no-country", facts(country=None), None, DHL_PAKET, "fallback"),
    ("zero-weight-matches-under-2kg", facts(grams=0), 1, DHL_PAKET, "rule 1"),
    ("gb-fallback", facts(country="GB", grams=500), None, DHL_PAKET, "fallback: cheapest -> DHL Paket"),
    ("us-fragile-rule-3-before-rule-4", facts(country="US", tags=("fragile",)), 3, UPS_STANDARD, "rule 3"),
]


async def _decide(
    f: Facts, rules: list[ShippingRule] = RULES, fallback: ShippingRule | None = FALLBACK
) -> tuple[Decision, list[uuid.UUID | None]]:
    asked: list[uuid.UUID | None] = []

    async def rates_for(connection_id: uuid.UUID | None) -> list[Rate]:
        asked.append(connection_id)
        if connection_id is None:
            return [r for offered in OFFERED.values() for r in offered]
        return OFFERED[connection_id]

    return await decide(rules, fallback, f, rates_for), asked


@pytest.mark.parametrize(
    ("f", "number", "chosen", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_the_rule_and_rate_chosen_and_how_it_is_explained(
    f: Facts, number: int | None, chosen: Rate, words: str
) -> None:
    decision, asked = await _decide(f)
    assert decision.rate == chosen
    assert decision.rule_number == number
    assert words in decision.explanation
    assert len(asked) == len(set(asked))  # each connection's rates asked for once


async def test_skipped_rules_say_why() -> None:
    decision, _ = await _decide(facts(country="CH"))
    assert decision.skipped[0] == "rule 1: the shipment goes to CH, not DE"
    assert "rule 5: the shipment is worth 40.00 EUR, under 500.00 EUR" in decision.skipped
    assert "rule 7: post:priority was not offered" in decision.skipped
    at, _ = await _decide(facts(country="AT"))
    assert "rule 6: no rates were offered" in at.skipped


async def test_nothing_to_choose_is_a_decision_without_a_rate_that_says_why() -> None:
    decision, _ = await _decide(facts(country="AT"), rules=RULES[5:6], fallback=None)
    assert decision.rate is None and decision.rule_number is None
    assert decision.explanation == "no shipping rule could choose a service: rule 1: no rates were offered"
    none, _ = await _decide(facts(), rules=[], fallback=None)
    assert none.explanation == "no shipping rule could choose a service: there are no shipping rules"


async def test_a_named_rule_is_named_in_the_explanation() -> None:
    rules = [ShippingRule(name="EU parcels", match=Match(countries=["DE", "FR"]), connection_id=A)]
    decision, _ = await _decide(facts(), rules=rules, fallback=None)
    assert decision.explanation == "rule 1: 'EU parcels', cheapest for DE, FR -> DHL Paket 4.99 EUR"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"match": {"countries": ["Germany"]}}, "'Germany' is not an ISO 3166-1 alpha-2 country code"),
        (
            {"match": {"min_weight": {"value": 2, "unit": "kg"}, "max_weight": {"value": 1, "unit": "kg"}}},
            "max_weight must be more than min_weight",
        ),
        (
            {
                "match": {
                    "min_value": {"amount": "10", "currency": "EUR"},
                    "max_value": {"amount": "5", "currency": "USD"},
                }
            },
            "one currency",
        ),
        ({"strategy": "fixed"}, "a fixed rule needs service as 'carrier:service_code'"),
        ({"strategy": "cheapest", "service": "dhl:paket"}, "service is only for fixed rules"),
        ({"strategy": "slowest"}, "strategy"),
        ({"match": {"country": ["DE"]}}, "country"),
    ],
)
def test_rules_are_validated_with_messages_that_say_what_to_write(
    rule: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ShippingRule.model_validate(rule)
    assert message in str(refused.value)


def test_countries_are_normalised() -> None:
    assert Match(countries=["de", " fr "]).countries == ["DE", "FR"]


# Connections that quote no rates, and rates whose price is unknown ---------------------------------------------
M = uuid.UUID("00000000-0000-0000-0000-00000000000c")  # a MyParcel.com connection: labels, no rates
P = uuid.UUID("00000000-0000-0000-0000-00000000000d")  # rates, one of them without a price
U = uuid.UUID("00000000-0000-0000-0000-00000000000f")  # rates, none of them with a price
UNQUOTED = {M: "MyParcel.com"}
DHL_EXPRESS_UNPRICED = Rate(
    carrier="DHL",
    service_code="express",
    service_name="Express",
    price=None,
    estimated_days=1,
    connection_id=P,
)
GLS_ECONOMY_UNPRICED = Rate(
    carrier="GLS",
    service_code="economy",
    service_name="Economy",
    price=None,
    estimated_days=5,
    connection_id=U,
)
# As a rates source gives them: each rate marked with the connection that offered it.
PAKET_AT_P = DHL_PAKET.model_copy(update={"connection_id": P})
OFFERED_UNPRICED = {
    P: [
        DHL_EXPRESS_UNPRICED,
        DPD_CLASSIC.model_copy(update={"connection_id": P}),
        PAKET_AT_P,
        USPS_PRIORITY.model_copy(update={"connection_id": P}),
    ],
    U: [GLS_ECONOMY_UNPRICED],
}
PRICED_LATER = "(priced by MyParcel.com when the label is bought)"


def on_m(service: str) -> Rate:
    carrier, _, code = service.partition(":")
    return Rate(carrier=carrier, service_code=code, price=None, connection_id=M)


UNQUOTED_RULES = [
    ShippingRule(
        match=Match(countries=["GB"]),
        connection_id=M,
        strategy=Strategy.FIXED,
        service="parcelforce:parcelforce-express-48",
    ),
    ShippingRule(match=Match(countries=["NL"]), connection_id=M),
    ShippingRule(match=Match(countries=["BE"]), connection_id=M, strategy=Strategy.FASTEST),
    ShippingRule(match=Match(countries=["DE"]), connection_id=P),
    ShippingRule(match=Match(countries=["AT"]), connection_id=P, strategy=Strategy.FASTEST),
    ShippingRule(match=Match(countries=["CH"]), connection_id=U),
    ShippingRule(match=Match(countries=["CH"]), connection_id=U, strategy=Strategy.FASTEST),
    ShippingRule(
        match=Match(countries=["CH"]), connection_id=P, strategy=Strategy.FIXED, service="dhl:express"
    ),
    ShippingRule(
        match=Match(countries=["IT"], max_weight=Weight.grams(1000)),
        connection_id=M,
        strategy=Strategy.FIXED,
        service="dpd:dpd-classic",
    ),
]
UNQUOTED_FALLBACK = ShippingRule(connection_id=M)

UNQUOTED_CASES = [
    # (id, facts, rule number or None for the fallback, chosen rate, connection shipped with, the explanation)
    (
        "fixed-service-on-a-connection-without-rates",
        facts(country="GB"),
        1,
        on_m("parcelforce:parcelforce-express-48"),
        M,
        "rule 1: parcelforce:parcelforce-express-48 for GB -> parcelforce-express-48 at MyParcel.com, "
        f"price not quoted {PRICED_LATER}",
    ),
    (
        "cheapest-on-a-connection-without-rates-takes-its-default-service",
        facts(country="NL"),
        2,
        None,
        M,
        f"rule 2: for NL -> MyParcel.com with the connection's default service {PRICED_LATER}",
    ),
    (
        "fastest-on-a-connection-without-rates-takes-its-default-service",
        facts(country="BE"),
        3,
        None,
        M,
        f"rule 3: for BE -> MyParcel.com with the connection's default service {PRICED_LATER}",
    ),
    (
        "cheapest-never-takes-an-unknown-price-for-zero",
        facts(country="DE"),
        4,
        PAKET_AT_P,
        P,
        "rule 4: cheapest for DE -> DHL Paket 4.99 EUR "
        "(rates in USD not compared; 1 rate without a quoted price not compared)",
    ),
    (
        "fastest-compares-only-rates-with-a-price",
        facts(country="AT"),
        5,
        PAKET_AT_P,
        P,
        "rule 5: fastest for AT -> DHL Paket 4.99 EUR "
        "(rates in USD not compared; 1 rate without a quoted price not compared)",
    ),
    (
        "only-unknown-prices-give-way-to-a-fixed-service-whose-price-is-not-quoted",
        facts(country="CH"),
        8,
        DHL_EXPRESS_UNPRICED,
        P,
        "rule 8: dhl:express for CH -> DHL Express, price not quoted",
    ),
    (
        "fixed-service-on-a-connection-without-rates-in-its-weight-band",
        facts(country="IT", grams=900),
        9,
        on_m("dpd:dpd-classic"),
        M,
        f"rule 9: dpd:dpd-classic for IT under 1 kg -> dpd-classic at MyParcel.com, price not quoted {PRICED_LATER}",
    ),
    (
        "outside-the-band-the-fallback-on-a-connection-without-rates",
        facts(country="IT", grams=1000),
        None,
        None,
        M,
        f"fallback: every shipment -> MyParcel.com with the connection's default service {PRICED_LATER}",
    ),
]


@pytest.mark.parametrize(
    ("f", "number", "chosen", "connection", "explanation"),
    [c[1:] for c in UNQUOTED_CASES],
    ids=[c[0] for c in UNQUOTED_CASES],
)
async def test_connections_without_rates_and_unknown_prices(
    f: Facts, number: int | None, chosen: Rate | None, connection: uuid.UUID, explanation: str
) -> None:
    asked: list[uuid.UUID | None] = []

    async def rates_for(connection_id: uuid.UUID | None) -> list[Rate]:
        asked.append(connection_id)
        assert connection_id is not None
        return OFFERED_UNPRICED[connection_id]

    decision = await decide(UNQUOTED_RULES, UNQUOTED_FALLBACK, f, rates_for, UNQUOTED)
    assert decision.rate == chosen
    assert decision.rule_number == number
    assert decision.connection_id == connection
    assert decision.explanation == explanation
    assert M not in asked  # a connection that quotes no rates is never asked for them
    assert len(asked) == len(set(asked))


async def test_rules_that_find_only_unknown_prices_say_so() -> None:
    async def rates_for(connection_id: uuid.UUID | None) -> list[Rate]:
        assert connection_id is not None
        return OFFERED_UNPRICED[connection_id]

    decision = await decide(UNQUOTED_RULES, UNQUOTED_FALLBACK, facts(country="CH"), rates_for, UNQUOTED)
    assert "rule 6: no rate offered had a quoted price to compare" in decision.skipped
    assert "rule 7: no rate offered had a quoted price to compare" in decision.skipped


async def test_without_being_told_a_connection_quotes_no_rates_its_rule_is_skipped() -> None:
    """The checkout quote does not tell the rules: a shopper is shown priced rates only."""

    async def rates_for(connection_id: uuid.UUID | None) -> list[Rate]:
        return []

    decision = await decide(UNQUOTED_RULES[:1], None, facts(country="GB"), rates_for)
    assert decision.rate is None and decision.connection_id is None
    assert decision.skipped == ["rule 1: no rates were offered"]
