"""Reading untrusted remote JSON into canonical values, collecting problems instead of raising.

Every channel mapper walks a payload it did not write. A `Reader` hands out typed values and, when a value is
missing or malformed, records a MappingProblem naming the remote field path ("line_items[2].price") and a
reason a merchant can act on, then returns None so the mapper carries on and reports every problem at once. The other direction, building a
request body from canonical data, raises `PushError` when the data cannot be sent. This module is shared by
connectors; it knows no remote system.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from crossdock.connectors.base import Mapped, MappingProblem
from crossdock.engine.errors import RetryableError
from crossdock.model import Address, Money, MoneyError, Order, check_country
from crossdock.model.address import check_email
from crossdock.model.money import check_currency, to_decimal

T = TypeVar("T")

# The field named when a mapper itself fails: a bug in crossdock, never the remote's fault.
INTERNAL = "(crossdock)"
# No order line or total comes near a quadrillion; bigger numbers are garbage and would overflow Decimal contexts.
MAX_AMOUNT = Decimal(10) ** 15


class PushError(ValueError):
    """Canonical data that cannot become the remote's request body: the field at fault and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def json_object(response: httpx.Response, remote: str, what: str) -> dict[str, Any]:
    """A 2xx answer's JSON object. Anything else (HTML from a proxy, a truncated body) is the remote's passing
    fault: RetryableError, so the job tries again later."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RetryableError(
            f"{remote} answered {what} with a body that is not a JSON object; it will be tried again"
        )
    return body


def join(path: str, key: str | int) -> str:
    """The path of a child: join("line_items", 2) -> "line_items[2]", join("a", "b") -> "a.b"."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def kind(value: Any) -> str:
    """A JSON type name for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def version_of(moment: datetime) -> str:
    """An external version from a remote timestamp: UTC, fixed width, so versions also compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class Reader:
    """Typed access to one remote payload; every refusal becomes a MappingProblem."""

    problems: list[MappingProblem] = field(default_factory=list)

    def version(self, value: Any, path: str) -> str | None:
        """The remote's last-change time as the external version a binding compares."""
        moment = self.timestamp(value, path, required=True, what="it tells a newer version from an older one")
        return version_of(moment) if moment else None

    def order(self, external_id: str | None, version: str | None, /, **fields: Any) -> Mapped:
        """The canonical Order from what was read, or every problem that stops it (model checks included)."""
        if not self.problems:
            try:
                return Mapped(value=Order(**fields), external_id=external_id, external_version=version)
            except ValidationError as exc:
                for error in exc.errors():
                    self.problem(".".join(str(p) for p in error["loc"]) or "order", str(error["msg"]))
        return Mapped(external_id=external_id, external_version=version, problems=self.problems)

    def problem(self, path: str, reason: str) -> None:
        self.problems.append(MappingProblem(path, reason))

    def _missing(self, path: str, required: bool, what: str) -> None:
        if required:
            self.problem(path, f"is missing; {what}")

    def obj(
        self, value: Any, path: str, *, required: bool = False, what: str = "it is required"
    ) -> dict[str, Any] | None:
        if value is None:
            self._missing(path, required, what)
            return None
        if not isinstance(value, dict):
            self.problem(path, f"should be an object but is {kind(value)}")
            return None
        return value

    def array(
        self, value: Any, path: str, *, required: bool = False, what: str = "it is required"
    ) -> list[Any] | None:
        if value is None:
            self._missing(path, required, what)
            return None
        if not isinstance(value, list):
            self.problem(path, f"should be a list but is {kind(value)}")
            return None
        return value

    def text(
        self, value: Any, path: str, *, required: bool = False, what: str = "it is required"
    ) -> str | None:
        """A string, kept exactly as sent (no trimming, no normalisation); blank counts as missing."""
        if value is None or (isinstance(value, str) and not value.strip()):
            self._missing(path, required, what)
            return None
        if not isinstance(value, str):
            self.problem(path, f"should be text but is {kind(value)}")
            return None
        return value

    def ident(
        self, value: Any, path: str, *, required: bool = False, what: str = "it identifies the record"
    ) -> str | None:
        """An identifier: text or a whole number (Shopify ids are 13+ digit integers), as text."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(value, path, required=required, what=what)

    def integer(
        self, value: Any, path: str, *, required: bool = False, what: str = "it is required"
    ) -> int | None:
        if value is None:
            self._missing(path, required, what)
            return None
        if isinstance(value, bool):
            self.problem(path, f"should be a whole number but is {kind(value)}")
            return None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            self.problem(path, f"should be a whole number but is {kind(value)} ({value!r})")
            return None
        return value

    def quantity(self, value: Any, path: str) -> int | None:
        """A line quantity: a whole number of at least 1."""
        number = self.integer(value, path, required=True, what="every line needs a quantity")
        if number is not None and number < 1:
            self.problem(path, f"must be a whole number of at least 1 (got {number})")
            return None
        return number

    def boolean(self, value: Any, path: str, *, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        # Amazon sends some flags as the strings "true" / "false" (ordersV0.json OrderItem.IsGift).
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.problem(path, f"should be true or false but is {kind(value)}")
        return default

    def timestamp(
        self, value: Any, path: str, *, required: bool = False, what: str = "it is required"
    ) -> datetime | None:
        """An ISO 8601 date-time with an offset, returned in UTC."""
        text = self.text(value, path, required=required, what=what)
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            self.problem(path, f"{text!r} is not an ISO 8601 date-time such as 2024-05-01T12:00:00Z")
            return None
        if moment.tzinfo is None or moment.utcoffset() is None:
            self.problem(path, f"{text!r} has no time zone offset, so the moment it names is unknown")
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 lies before the first representable instant
            self.problem(path, f"{text!r} is outside the range of dates crossdock can store")
            return None

    def currency(
        self, value: Any, path: str, *, required: bool = False, what: str = "prices need a currency"
    ) -> str | None:
        text = self.text(value, path, required=required, what=what)
        if text is None:
            return None
        try:
            return check_currency(text)
        except MoneyError as exc:
            self.problem(path, str(exc))
            return None

    def amount(self, value: Any, path: str, *, required: bool = False) -> Decimal | None:
        """A decimal amount from text or a whole number; a float is refused, it cannot hold cents exactly."""
        if value is None or (isinstance(value, str) and not value.strip()):
            self._missing(path, required, "the amount is required")
            return None
        if isinstance(value, float):
            self.problem(
                path, f'is a JSON number with a fraction ({value!r}); amounts must be text like "12.50"'
            )
            return None
        try:
            amount = to_decimal(value)
        except MoneyError as exc:
            self.problem(path, str(exc))
            return None
        if abs(amount) >= MAX_AMOUNT:
            self.problem(path, f"{value!r} is implausibly large for an amount of money")
            return None
        return amount

    def money(self, value: Any, currency: str | None, path: str, *, required: bool = False) -> Money | None:
        """An amount in `currency`, which must not carry more decimals than the currency has."""
        amount = self.amount(value, path, required=required)
        if amount is None or currency is None:
            return None
        try:
            return Money.of(amount, currency)
        except (MoneyError, ValidationError, ArithmeticError) as exc:
            self.problem(path, _first_error(exc))
            return None

    def country(
        self,
        value: Any,
        path: str,
        *,
        required: bool = True,
        what: str = "an address needs an ISO country code such as DE or US",
    ) -> str | None:
        text = self.text(value, path, required=required, what=what)
        if text is None:
            return None
        try:
            return check_country(text)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def each(self, items: list[Any], path: str, read: Callable[[Any, str], T | None]) -> list[T]:
        """Read every element of a list with `read(element, element_path)`, keeping the ones that map."""
        out: list[T] = []
        for i, item in enumerate(items):
            value = read(item, join(path, i))
            if value is not None:
                out.append(value)
        return out

    def address(self, path: str, fields: Mapping[str, tuple[str, Any]]) -> Address | None:
        """Build an Address from {canonical field: (remote key, raw value)}; problems name the remote keys.

        line1, city and country are required (a parcel cannot go anywhere without them); an e-mail address that
        does not parse is dropped rather than blocking the shipment.
        """
        values: dict[str, Any] = {}
        remote: dict[str, str] = {}
        ok = True
        for name, (key, raw) in fields.items():
            where = join(path, key)
            remote[name] = where
            if name == "country":
                values[name] = self.country(raw, where)
                ok = ok and values[name] is not None
            elif name in ("line1", "city"):
                what = "a parcel needs a street line" if name == "line1" else "a parcel needs a city"
                values[name] = self.text(raw, where, required=True, what=what)
                ok = ok and values[name] is not None
            elif name == "email":
                values[name] = valid_email(self.text(raw, where))
            else:
                before = len(self.problems)
                values[name] = self.text(raw, where)
                ok = ok and len(self.problems) == before
        if not ok:
            return None
        try:
            return Address(**values)
        except ValidationError as exc:
            for error in exc.errors():
                loc = str(error["loc"][0]) if error["loc"] else ""
                self.problem(remote.get(loc, path), error["msg"].removeprefix("Value error, "))
            return None


def valid_email(value: str | None) -> str | None:
    """The e-mail address normalised, or None when it does not parse (contact details never block an order)."""
    if value is None:
        return None
    try:
        return check_email(value)
    except ValueError:
        return None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if errors:
            return str(errors[0]["msg"]).removeprefix("Value error, ")
    return str(exc)


def guarded(map_payload: Callable[..., Mapped]) -> Callable[..., Mapped]:
    """Last line of defence: a mapper bug becomes a problem on the order, never a crashed worker."""

    def run(*args: Any, **kwargs: Any) -> Mapped:
        try:
            return map_payload(*args, **kwargs)
        except Exception as exc:  # a bug in crossdock: report it on the order instead of crashing a worker
            return Mapped(
                problems=[
                    MappingProblem(
                        INTERNAL,
                        f"crossdock could not map this payload ({type(exc).__name__}: {exc}); "
                        "please report this as a bug",
                    )
                ]
            )

    run.__name__ = map_payload.__name__
    run.__doc__ = map_payload.__doc__
    run.__wrapped__ = map_payload  # type: ignore[attr-defined]
    return run
