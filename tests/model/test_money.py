from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossdock.model import Money, MoneyError, minor_units

CURRENCIES = ["EUR", "USD", "JPY", "KWD", "BHD", "KRW", "CLP", "GBP", "CHF", "ISK"]


def test_minor_units_follow_iso_4217() -> None:
    assert (minor_units("JPY"), minor_units("EUR"), minor_units("KWD"), minor_units("usd")) == (0, 2, 3, 2)


def test_unknown_currency_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="not an ISO 4217 currency"):
        Money.of("1", "EUX")


def test_code_without_minor_units_is_refused() -> None:
    with pytest.raises(ValueError, match="without minor units"):
        Money.of("1", "XAU")


def test_float_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="is a float"):
        Money.of(19.99, "EUR")


def test_amount_more_precise_than_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="more decimals than JPY allows"):
        Money.of("100.5", "JPY")
    with pytest.raises(ValueError, match="more decimals than EUR allows"):
        Money.of("1.005", "EUR")


def test_amounts_are_normalised_to_minor_units() -> None:
    assert Money.of("5", "EUR") == Money.of("5.00", "EUR")
    assert str(Money.of("5", "KWD").amount) == "5.000"
    assert str(Money.of("500", "JPY").amount) == "500"


def test_mixing_currencies_is_refused() -> None:
    with pytest.raises(MoneyError, match="cannot combine EUR with USD"):
        Money.of("1", "EUR") + Money.of("1", "USD")


def test_multiplication_rounds_half_to_even_at_the_minor_unit() -> None:
    assert (Money.of("0.05", "EUR") * Decimal("0.5")).amount == Decimal("0.02")
    assert (Money.of("0.15", "EUR") * Decimal("0.5")).amount == Decimal("0.08")
    assert (Money.of("5", "JPY") * Decimal("0.5")).amount == Decimal("2")
    assert (Money.of("0.005", "KWD") * Decimal("0.5")).amount == Decimal("0.002")


def amounts(currency: str) -> st.SearchStrategy[Money]:
    return st.integers(min_value=-(10**12), max_value=10**12).map(lambda n: Money.from_minor(n, currency))


@st.composite
def same_currency_pair(draw: st.DrawFn) -> tuple[Money, Money, Money]:
    currency = draw(st.sampled_from(CURRENCIES))
    return draw(amounts(currency)), draw(amounts(currency)), draw(amounts(currency))


@given(same_currency_pair())
def test_addition_is_exact_associative_and_commutative(triple: tuple[Money, Money, Money]) -> None:
    a, b, c = triple
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert (a + b).minor == a.minor + b.minor
    assert (a + b) - b == a


@given(st.sampled_from(CURRENCIES), st.integers(min_value=-(10**15), max_value=10**15))
def test_minor_units_round_trip(currency: str, minor: int) -> None:
    money = Money.from_minor(minor, currency)
    assert money.minor == minor
    assert Money.of(str(money.amount), currency) == money


@given(
    st.sampled_from(CURRENCIES),
    st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=6),
)
def test_rounding_lands_on_the_currency_minor_unit_within_half_a_unit(currency: str, raw: Decimal) -> None:
    money = Money.rounded(raw, currency)
    digits = minor_units(currency)
    assert -money.amount.as_tuple().exponent == digits  # type: ignore[operator]
    assert abs(money.amount - raw) <= Decimal(1).scaleb(-digits) / 2


@given(
    st.sampled_from(CURRENCIES),
    st.integers(min_value=0, max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).filter(lambda r: sum(r) > 0),
)
def test_allocation_never_loses_or_invents_a_minor_unit(currency: str, minor: int, ratios: list[int]) -> None:
    total = Money.from_minor(minor, currency)
    parts = total.allocate(ratios)
    assert sum(p.minor for p in parts) == minor
    assert all(p.currency == currency for p in parts)
    exact = [minor * r / sum(ratios) for r in ratios]
    assert all(abs(p.minor - e) <= 1 for p, e in zip(parts, exact, strict=True))
