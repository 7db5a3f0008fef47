"""Weights and lengths that carry their unit. Canonical units are grams and millimetres.

The conversion factors are exact by definition (international yard and pound agreement, 1959):
1 lb = 453.59237 g, 1 oz = 1/16 lb = 28.349523125 g, 1 in = 25.4 mm.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, field_validator

from crossdock.model.money import to_decimal

# Enough digits that a conversion to another unit and back agrees to well below a milligram.
_PRECISION = 34


class WeightUnit(StrEnum):
    G = "g"
    KG = "kg"
    OZ = "oz"
    LB = "lb"


class LengthUnit(StrEnum):
    MM = "mm"
    CM = "cm"
    M = "m"
    IN = "in"


GRAMS_PER: dict[WeightUnit, Fraction] = {
    WeightUnit.G: Fraction(1),
    WeightUnit.KG: Fraction(1000),
    WeightUnit.LB: Fraction("453.59237"),
    WeightUnit.OZ: Fraction("453.59237") / 16,
}
MM_PER: dict[LengthUnit, Fraction] = {
    LengthUnit.MM: Fraction(1),
    LengthUnit.CM: Fraction(10),
    LengthUnit.M: Fraction(1000),
    LengthUnit.IN: Fraction("25.4"),
}


def _decimal(value: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        result = Decimal(value.numerator) / Decimal(value.denominator)
    if result == result.to_integral_value():
        return result.quantize(Decimal(1))
    return result.normalize()


def _non_negative(value: Any, what: str) -> Decimal:
    number = to_decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    if not number.is_finite():
        raise ValueError(f"{what} must be a finite number (got {value!r})")
    if number < 0:
        raise ValueError(f"{what} cannot be negative (got {number})")
    return number


class Weight(BaseModel):
    """A non-negative weight. Compare and add through exact grams."""

    model_config = ConfigDict(frozen=True)

    value: Decimal
    unit: WeightUnit = WeightUnit.G

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Decimal:
        # Weights are measurements, not money: a float such as 0.5 is accepted through its shortest repr.
        return _non_negative(value, "weight")

    @classmethod
    def grams(cls, value: Any) -> Weight:
        return cls(value=value, unit=WeightUnit.G)

    @property
    def exact_grams(self) -> Fraction:
        return Fraction(self.value) * GRAMS_PER[self.unit]

    @property
    def in_grams(self) -> Decimal:
        return _decimal(self.exact_grams)

    def to(self, unit: WeightUnit | str) -> Weight:
        target = WeightUnit(unit)
        return Weight(value=_decimal(self.exact_grams / GRAMS_PER[target]), unit=target)

    def rounded_grams(self) -> int:
        """Whole grams, as APIs that take integer grams (MyParcel.com, Shopify) need."""
        return int(self.in_grams.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

    def __add__(self, other: Weight) -> Weight:
        return Weight(value=_decimal(self.exact_grams + other.exact_grams), unit=WeightUnit.G)

    def __mul__(self, factor: int) -> Weight:
        return Weight(value=_decimal(self.exact_grams * factor), unit=WeightUnit.G)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Weight) and self.exact_grams == other.exact_grams

    def __hash__(self) -> int:
        return hash(self.exact_grams)

    def __lt__(self, other: Weight) -> bool:
        return self.exact_grams < other.exact_grams

    def __le__(self, other: Weight) -> bool:
        return self.exact_grams <= other.exact_grams

    def __str__(self) -> str:
        return f"{self.value} {self.unit.value}"


class Length(BaseModel):
    """A non-negative length. Compare through exact millimetres."""

    model_config = ConfigDict(frozen=True)

    value: Decimal
    unit: LengthUnit = LengthUnit.MM

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Decimal:
        return _non_negative(value, "length")

    @classmethod
    def mm(cls, value: Any) -> Length:
        return cls(value=value, unit=LengthUnit.MM)

    @property
    def exact_mm(self) -> Fraction:
        return Fraction(self.value) * MM_PER[self.unit]

    @property
    def in_mm(self) -> Decimal:
        return _decimal(self.exact_mm)

    def to(self, unit: LengthUnit | str) -> Length:
        target = LengthUnit(unit)
        return Length(value=_decimal(self.exact_mm / MM_PER[target]), unit=target)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Length) and self.exact_mm == other.exact_mm

    def __hash__(self) -> int:
        return hash(self.exact_mm)

    def __lt__(self, other: Length) -> bool:
        return self.exact_mm < other.exact_mm

    def __le__(self, other: Length) -> bool:
        return self.exact_mm <= other.exact_mm

    def __str__(self) -> str:
        return f"{self.value} {self.unit.value}"


class Dimensions(BaseModel):
    model_config = ConfigDict(frozen=True)

    length: Length
    width: Length
    height: Length

    def sorted_mm(self) -> tuple[Decimal, Decimal, Decimal]:
        a, b, c = sorted((self.length.in_mm, self.width.in_mm, self.height.in_mm), reverse=True)
        return a, b, c

    def with_unit(self, unit: LengthUnit) -> Self:
        return type(self)(length=self.length.to(unit), width=self.width.to(unit), height=self.height.to(unit))
