"""Money: a Decimal amount with its ISO 4217 currency. No float ever touches an amount."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Self

from iso4217 import Currency
from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


@lru_cache(maxsize=512)
def minor_units(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 currency (JPY 0, EUR 2, KWD 3)."""
    code = currency.upper()
    try:
        cur = Currency(code)
    except ValueError:
        raise MoneyError(f"'{currency}' is not an ISO 4217 currency code (e.g. EUR, USD, JPY)") from None
    if cur.exponent is None:
        # Funds, metals and testing codes (XAU, XTS, ...) have no minor unit: they are not prices.
        raise MoneyError(f"'{code}' is an ISO 4217 code without minor units and cannot be used for prices")
    return int(cur.exponent)


def check_currency(currency: str) -> str:
    minor_units(currency)
    return currency.upper()


def to_decimal(value: Any) -> Decimal:
    """Accept Decimal, int or a decimal string; refuse float, which cannot hold cents exactly."""
    if isinstance(value, bool):
        raise MoneyError("a boolean is not an amount")
    if isinstance(value, float):
        raise MoneyError(f'amount {value!r} is a float; send it as a string such as "{value}"')
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise MoneyError(f"amount {value!r} is not a decimal number") from None
    else:
        raise MoneyError(f"amount of type {type(value).__name__} is not a decimal number")
    if not result.is_finite():
        raise MoneyError(f"amount {value!r} is not a finite number")
    return result


class Money(BaseModel):
    """An exact amount in one currency, never more precise than the currency's minor unit."""

    model_config = ConfigDict(frozen=True)

    amount: Decimal
    currency: str

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: Any) -> Decimal:
        return to_decimal(value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return check_currency(value)

    @model_validator(mode="after")
    def _precision(self) -> Self:
        digits = minor_units(self.currency)
        quantum = _quantum(digits)
        # Normalise to exactly the currency's minor units so 5 and 5.00 EUR are one value.
        normal = self.amount.quantize(quantum)
        exponent = self.amount.as_tuple().exponent
        assert isinstance(exponent, int)  # finite, checked above
        if -exponent > digits and self.amount != normal:
            raise MoneyError(
                f"amount {self.amount} has more decimals than {self.currency} allows ({digits}); "
                f"send it rounded to {digits} decimal{'s' if digits != 1 else ''}, e.g. "
                f'"{self.amount.quantize(quantum, rounding=ROUND_HALF_EVEN)}"'
            )
        object.__setattr__(self, "amount", normal)
        return self

    @classmethod
    def of(cls, amount: Any, currency: str) -> Money:
        return cls(amount=amount, currency=currency)

    @classmethod
    def rounded(cls, amount: Any, currency: str, rounding: str = ROUND_HALF_EVEN) -> Money:
        """Round a computed amount to the currency's minor unit (banker's rounding by default)."""
        digits = minor_units(currency)
        return cls(amount=to_decimal(amount).quantize(_quantum(digits), rounding=rounding), currency=currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=Decimal(0), currency=currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        digits = minor_units(currency)
        return cls(amount=Decimal(minor).scaleb(-digits), currency=currency)

    @property
    def minor(self) -> int:
        """The amount in minor units (cents), as integer APIs such as MyParcel.com expect."""
        return int(self.amount.scaleb(minor_units(self.currency)))

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}; convert first")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def __mul__(self, factor: int | Decimal) -> Money:
        if isinstance(factor, float | bool) or not isinstance(factor, int | Decimal):
            raise TypeError("multiply Money by an int or a Decimal only")
        return Money.rounded(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(amount=-self.amount, currency=self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def allocate(self, ratios: list[int]) -> list[Money]:
        """Split into parts proportional to ratios without losing or inventing a minor unit."""
        if not ratios or any(r < 0 for r in ratios) or sum(ratios) == 0:
            raise MoneyError("allocate needs non-negative ratios with a positive sum")
        total_minor = self.minor
        total = sum(ratios)
        shares = [total_minor * r // total for r in ratios]
        remainder = total_minor - sum(shares)
        for i in range(abs(remainder)):
            shares[i % len(shares)] += 1 if remainder > 0 else -1
        return [Money.from_minor(s, self.currency) for s in shares]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@lru_cache(maxsize=16)
def _quantum(digits: int) -> Decimal:
    return Decimal(1).scaleb(-digits)
