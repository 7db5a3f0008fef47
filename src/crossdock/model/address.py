"""Postal addresses: ISO countries checked, phones normalised where they parse, text kept exactly as given."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, field_validator, model_validator


def country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return country.name if country else code


def check_country(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code (e.g. DE, US, JP)")
    return code


# Both checks are pure and cost a tenth of a millisecond or more each; one order repeats the same e-mail
# address (email, contact_email, customer.email, then the model's own check) and usually the same phone
# (shipping and billing address), so a small cache spares most of that work in an import.
_CACHE_SIZE = 4096


@lru_cache(maxsize=_CACHE_SIZE)
def normalise_phone(raw: str, country: str | None) -> str:
    """E.164 when the number parses and is possible for the region; otherwise the text as given."""
    try:
        parsed = phonenumbers.parse(raw, country)
    except phonenumbers.NumberParseException:
        return raw
    if not phonenumbers.is_possible_number(parsed):
        return raw
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=_CACHE_SIZE)
def check_email(value: str) -> str:
    try:
        # Deliverability needs DNS, which an import must not wait on; syntax is what we can vouch for.
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"'{value}' is not an email address: {exc}") from None
    return result.normalized


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class Address(BaseModel):
    """A postal address. Names and lines are unicode kept byte for byte as the source gave them."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=False)

    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    line1: str
    line2: str | None = None
    line3: str | None = None
    city: str
    postal_code: str | None = None
    subdivision: str | None = None
    country: str
    phone: str | None = None
    email: str | None = None

    @field_validator(
        "first_name",
        "last_name",
        "company",
        "line2",
        "line3",
        "postal_code",
        "subdivision",
        "phone",
        "email",
        mode="before",
    )
    @classmethod
    def _optional(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("line1", "city")
    @classmethod
    def _required_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        return check_country(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else check_email(value)

    @model_validator(mode="after")
    def _phone(self) -> Address:
        if self.phone is not None:
            object.__setattr__(self, "phone", normalise_phone(self.phone, self.country))
        return self

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def country_name(self) -> str:
        return country_name(self.country)

    @property
    def subdivision_iso(self) -> str | None:
        """ISO 3166-2 code ("US-CA") when the subdivision is a known code for the country, else None."""
        if not self.subdivision:
            return None
        candidate = self.subdivision.strip().upper()
        if "-" not in candidate:
            candidate = f"{self.country}-{candidate}"
        found = pycountry.subdivisions.get(code=candidate)
        return found.code if found else None
