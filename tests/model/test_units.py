from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossdock.model import Length, LengthUnit, Weight, WeightUnit


def test_defined_factors_are_exact() -> None:
    assert Weight(value="1", unit="lb").in_grams == Decimal("453.59237")
    assert Weight(value="16", unit="oz") == Weight(value="1", unit="lb")
    assert Weight(value="1", unit="oz").in_grams == Decimal("28.349523125")
    assert Length(value="1", unit="in").in_mm == Decimal("25.4")
    assert Weight(value="2.5", unit="kg").to("g").value == Decimal("2500")


def test_negative_and_non_finite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        Weight(value="-1", unit="g")
    with pytest.raises(ValueError, match="finite"):
        Length(value=float("nan"), unit="mm")


def test_rounded_grams_for_integer_gram_apis() -> None:
    assert Weight(value="1", unit="lb").rounded_grams() == 454
    assert Weight(value="0.5", unit="oz").rounded_grams() == 14


values = st.decimals(min_value=0, max_value=10**7, allow_nan=False, allow_infinity=False, places=4)


@given(values, st.sampled_from(list(WeightUnit)), st.sampled_from(list(WeightUnit)))
def test_weight_round_trip_returns_the_original_at_its_precision(
    value: Decimal, unit: WeightUnit, other: WeightUnit
) -> None:
    original = Weight(value=value, unit=unit)
    back = original.to(other).to(unit)
    assert back.value.quantize(Decimal("0.0001")) == value.quantize(Decimal("0.0001"))
    # The stored canonical value (grams) is exact: a rational multiple, never a float.
    assert (
        original.exact_grams
        == Fraction(value)
        * {
            WeightUnit.G: 1,
            WeightUnit.KG: 1000,
            WeightUnit.LB: Fraction("453.59237"),
            WeightUnit.OZ: Fraction("453.59237") / 16,
        }[unit]
    )


@given(values, st.sampled_from(list(LengthUnit)), st.sampled_from(list(LengthUnit)))
def test_length_round_trip_returns_the_original_at_its_precision(
    value: Decimal, unit: LengthUnit, other: LengthUnit
) -> None:
    original = Length(value=value, unit=unit)
    back = original.to(other).to(unit)
    assert back.value.quantize(Decimal("0.0001")) == value.quantize(Decimal("0.0001"))


@given(values, values)
def test_weights_add_exactly_in_grams(a: Decimal, b: Decimal) -> None:
    total = Weight(value=a, unit="kg") + Weight(value=b, unit="g")
    assert total.exact_grams == Fraction(a) * 1000 + Fraction(b)


@given(values, st.sampled_from(list(WeightUnit)), st.sampled_from([WeightUnit.G, WeightUnit.KG]))
def test_conversion_between_metric_units_is_exact(
    value: Decimal, unit: WeightUnit, metric: WeightUnit
) -> None:
    weight = Weight(value=value, unit=unit)
    assert weight.to(metric) == weight
