import unicodedata

import pytest
from pydantic import ValidationError

from crossdock.model import Address


def make(**kw: object) -> Address:
    base: dict[str, object] = {"line1": "1 Main St", "city": "Springfield", "country": "US"}
    base.update(kw)
    return Address.model_validate(base)


def test_unknown_country_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        make(country="XX")
    assert info.value.errors()[0]["loc"] == ("country",)
    assert "ISO 3166-1 alpha-2" in str(info.value)


def test_country_is_normalised_to_upper_case() -> None:
    assert make(country="de").country == "DE"


def test_phone_is_normalised_to_e164_when_it_parses() -> None:
    assert make(country="DE", phone="030 1234567").phone == "+49301234567"
    assert make(country="US", phone="(202) 555-0143").phone == "+12025550143"


def test_phone_that_does_not_parse_is_kept_as_given() -> None:
    assert make(phone="call the front desk").phone == "call the front desk"


def test_unicode_is_kept_exactly_as_given() -> None:
    decomposed = unicodedata.normalize("NFD", "Zoë Ångström")
    address = make(first_name=decomposed, line1="ул. Тверская, д. 7", city="Москва", country="RU")
    assert address.first_name == decomposed
    assert address.first_name != unicodedata.normalize("NFC", decomposed)
    assert address.line1 == "ул. Тверская, д. 7"
    arabic = make(line1="شارع الملك فهد", city="الرياض", country="SA")
    assert arabic.city == "الرياض"


def test_blank_optional_fields_become_none_and_required_ones_are_refused() -> None:
    assert make(line2="  ", company="").line2 is None
    with pytest.raises(ValidationError) as info:
        make(city="  ")
    assert info.value.errors()[0]["loc"] == ("city",)


def test_subdivision_iso_code_when_known() -> None:
    assert make(subdivision="CA").subdivision_iso == "US-CA"
    assert make(subdivision="Bavaria", country="DE").subdivision_iso is None


def test_bad_email_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        make(email="not-an-email")
    assert info.value.errors()[0]["loc"] == ("email",)
