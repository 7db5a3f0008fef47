"""Column types shared by all tables."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes only, stored in UTC. SQLite keeps no zone, so it is put back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: crossdock stores aware UTC datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_ids(count: int) -> list[uuid.UUID]:
    """`count` random UUIDs made as uuid.uuid4 makes each (16 bytes of os.urandom, version 4), from one read of
    the system's random source instead of one each: the inbox writer takes two per webhook."""
    raw = os.urandom(16 * count)
    return [uuid.UUID(bytes=raw[start : start + 16], version=4) for start in range(0, 16 * count, 16)]


_SCALE = Decimal("0.000001")


def stored_decimal(value: Decimal) -> Decimal:
    """The value as the database will keep it (six decimals), so objects in memory match what reads return."""
    return canonical_decimal(value.quantize(_SCALE, rounding=ROUND_HALF_EVEN))


def canonical_decimal(value: Decimal) -> Decimal:
    """No trailing zeros and no exponent: 250 g reads 250, 0.500 kg reads 0.5."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal that survives the round trip: NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC is a float)."""

    impl = Numeric(24, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(24, 6))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("ExactDecimal takes Decimal values only")
        # Both databases keep the same six decimals (a microgram, a nanometre): what PostgreSQL's NUMERIC
        # scale would round to anyway, so a value reads back the same whichever database stored it.
        value = stored_decimal(value)
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        # PostgreSQL pads to the column scale; drop trailing zeros so 250 g reads back as 250.
        return canonical_decimal(Decimal(value))


JSONDoc = JSON().with_variant(JSONB(), "postgresql")
