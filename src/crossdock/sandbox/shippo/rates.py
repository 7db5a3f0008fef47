"""Deterministic carrier rates for the Shippo sandbox.

Real rates come from carriers; the sandbox only needs rates that behave like them: more weight or a bigger box
costs more, farther costs more and takes longer, express costs more than ground, and the same shipment always
gets the same prices so that tests and benchmarks can compare runs. Prices are in USD (Decimal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# Approximate geographic centres (lat, lon) of the countries the sandboxes generate addresses for, plus a few
# common destinations. Only used to scale price and transit time with distance.
CENTROIDS: dict[str, tuple[float, float]] = {
    "US": (39.8, -98.6), "CA": (56.1, -106.3), "MX": (23.6, -102.5), "BR": (-14.2, -51.9),
    "AR": (-38.4, -63.6), "GB": (54.0, -2.0), "IE": (53.4, -8.2), "FR": (46.2, 2.2), "DE": (51.2, 10.4),
    "NL": (52.1, 5.3), "BE": (50.5, 4.5), "LU": (49.8, 6.1), "ES": (40.5, -3.7), "PT": (39.4, -8.2),
    "IT": (41.9, 12.6), "CH": (46.8, 8.2), "AT": (47.5, 14.6), "PL": (51.9, 19.1), "CZ": (49.8, 15.5),
    "SE": (60.1, 18.6), "NO": (60.5, 8.5), "DK": (56.3, 9.5), "FI": (61.9, 25.7), "GR": (39.1, 21.8),
    "BG": (42.7, 25.5), "RO": (45.9, 25.0), "UA": (48.4, 31.2), "RU": (61.5, 105.3), "TR": (39.0, 35.2),
    "IL": (31.0, 34.9), "EG": (26.8, 30.8), "SA": (23.9, 45.1), "AE": (23.4, 53.8), "KW": (29.3, 47.5),
    "BH": (26.0, 50.6), "IN": (20.6, 79.0), "CN": (35.9, 104.2), "HK": (22.3, 114.2), "JP": (36.2, 138.3),
    "KR": (35.9, 127.8), "SG": (1.35, 103.8), "AU": (-25.3, 133.8), "NZ": (-40.9, 174.9),
    "ZA": (-30.6, 22.9),
}  # fmt: skip
_UNKNOWN_DISTANCE_KM = 8000.0

# USD -> other currency, fixed so that converted rates are reproducible (not market rates).
FX_PER_USD: dict[str, Decimal] = {
    "USD": Decimal("1"), "EUR": Decimal("0.92"), "GBP": Decimal("0.79"), "CAD": Decimal("1.36"),
    "AUD": Decimal("1.52"), "CHF": Decimal("0.88"), "SEK": Decimal("10.60"), "PLN": Decimal("4.00"),
    "JPY": Decimal("150"), "CNY": Decimal("7.20"), "KRW": Decimal("1350"), "INR": Decimal("83.0"),
    "AED": Decimal("3.67"), "SAR": Decimal("3.75"), "RUB": Decimal("92.0"), "UAH": Decimal("39.0"),
    "BGN": Decimal("1.80"), "EGP": Decimal("48.0"), "ILS": Decimal("3.70"), "KWD": Decimal("0.307"),
    "BHD": Decimal("0.376"), "MXN": Decimal("17.0"), "BRL": Decimal("5.00"),
}  # fmt: skip
_ZERO_DECIMAL = {"JPY", "KRW"}
_THREE_DECIMAL = {"KWD", "BHD"}

_TO_KG: dict[str, Decimal] = {"g": Decimal("0.001"), "kg": Decimal(1), "lb": Decimal("0.45359237"),
                              "oz": Decimal("0.028349523125")}  # fmt: skip
_TO_CM: dict[str, Decimal] = {"cm": Decimal(1), "mm": Decimal("0.1"), "m": Decimal(100), "in": Decimal("2.54"),
                              "ft": Decimal("30.48"), "yd": Decimal("91.44")}  # fmt: skip
MASS_UNITS = tuple(_TO_KG)
DISTANCE_UNITS = tuple(_TO_CM)


@dataclass(frozen=True)
class Service:
    provider: str
    token: str
    name: str
    # "domestic_us": US->US only; "domestic": same country (not US); "international": across borders.
    scope: str
    base: Decimal
    per_kg: Decimal
    per_zone: Decimal
    min_days: int
    max_days: int
    # US services are sold from US origins only.
    us_origin_only: bool = False


def _d(value: str) -> Decimal:
    return Decimal(value)


SERVICES: tuple[Service, ...] = (
    Service("USPS", "usps_ground_advantage", "Ground Advantage", "domestic_us", _d("5.40"), _d("2.10"),
            _d("0.45"), 2, 5, us_origin_only=True),
    Service("USPS", "usps_priority", "Priority Mail", "domestic_us", _d("8.70"), _d("2.90"), _d("0.70"), 1, 3,
            us_origin_only=True),
    Service("USPS", "usps_priority_express", "Priority Mail Express", "domestic_us", _d("28.75"), _d("4.20"),
            _d("1.50"), 1, 2, us_origin_only=True),
    Service("USPS", "usps_priority_mail_international", "Priority Mail International", "international",
            _d("45.00"), _d("9.50"), _d("2.40"), 6, 10, us_origin_only=True),
    Service("UPS", "ups_ground", "Ground", "domestic_us", _d("9.50"), _d("2.60"), _d("0.85"), 1, 5),
    Service("UPS", "ups_second_day_air", "2nd Day Air", "domestic_us", _d("19.80"), _d("4.10"), _d("1.40"), 2,
            2),
    Service("UPS", "ups_standard", "Standard", "domestic", _d("7.90"), _d("1.80"), _d("0.60"), 1, 3),
    Service("UPS", "ups_standard", "Standard", "international", _d("18.50"), _d("3.40"), _d("2.10"), 2, 6),
    Service("UPS", "ups_saver", "Worldwide Saver", "international", _d("41.00"), _d("7.80"), _d("3.20"), 1, 4),
    Service("DHL Express", "dhl_express_worldwide", "Express Worldwide", "international", _d("38.00"),
            _d("8.50"), _d("2.90"), 1, 3),
)  # fmt: skip


@dataclass(frozen=True)
class ParcelSpec:
    length: Decimal
    width: Decimal
    height: Decimal
    distance_unit: str
    weight: Decimal
    mass_unit: str

    def weight_kg(self) -> Decimal:
        return self.weight * _TO_KG[self.mass_unit]

    def volumetric_kg(self) -> Decimal:
        # The common carrier divisor: length x width x height in cm / 5000 = kg.
        factor = _TO_CM[self.distance_unit]
        volume_cm3 = self.length * factor * self.width * factor * self.height * factor
        return volume_cm3 / Decimal(5000)


@dataclass(frozen=True)
class Quote:
    service: Service
    amount_usd: Decimal
    estimated_days: int
    duration_terms: str
    zone: str


def distance_km(origin: str, destination: str) -> float:
    """Great-circle distance between two countries' centres (0 within one country)."""
    if origin == destination:
        return 0.0
    a, b = CENTROIDS.get(origin), CENTROIDS.get(destination)
    if a is None or b is None:
        return _UNKNOWN_DISTANCE_KM
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def zone_for(origin: str, destination: str, zip_from: str, zip_to: str) -> int:
    """1..8: within the US from the first ZIP digits (like USPS zones), abroad from the distance."""
    if origin == destination:
        first_from = next((c for c in zip_from if c.isdigit()), "0")
        first_to = next((c for c in zip_to if c.isdigit()), "0")
        return 1 + min(7, abs(int(first_from) - int(first_to)))
    km = distance_km(origin, destination)
    for zone, limit in ((2, 1000.0), (3, 2500.0), (4, 5000.0), (5, 9000.0), (6, 13000.0)):
        if km < limit:
            return zone
    return 8


def billable_kg(parcels: list[ParcelSpec]) -> Decimal:
    return sum((max(p.weight_kg(), p.volumetric_kg()) for p in parcels), Decimal(0))


def quote(
    origin: str, destination: str, zip_from: str, zip_to: str, parcels: list[ParcelSpec]
) -> list[Quote]:
    """Every service that serves this lane, priced; empty when no carrier serves it (e.g. no parcels)."""
    if not parcels:
        return []
    domestic = origin == destination
    zone = zone_for(origin, destination, zip_from, zip_to)
    kg = billable_kg(parcels)
    quotes: list[Quote] = []
    for service in SERVICES:
        if service.us_origin_only and origin != "US":
            continue
        if service.scope == "domestic_us" and not (domestic and origin == "US"):
            continue
        if service.scope == "domestic" and not (domestic and origin != "US"):
            continue
        if service.scope == "international" and domestic:
            continue
        # Extra parcels cost a reduced base each, as multi-piece shipments do.
        base = service.base + service.base * Decimal("0.6") * (len(parcels) - 1)
        amount = base + service.per_kg * kg + service.per_zone * zone
        amount = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        extra_days = 0 if domestic else int(distance_km(origin, destination) // 5000)
        days = min(service.max_days, service.min_days + zone // 3 + extra_days)
        days = max(days, service.min_days)
        if service.min_days == service.max_days:
            terms = f"Delivery in {service.min_days} business day{'s' if service.min_days > 1 else ''}."
        else:
            terms = f"Delivery in {service.min_days} to {service.max_days} business days."
        quotes.append(Quote(service, amount, days, terms, str(zone)))
    return quotes


def convert(amount_usd: Decimal, currency: str) -> Decimal:
    """USD -> `currency` at the sandbox's fixed rates, rounded to the currency's minor units."""
    rate = FX_PER_USD[currency]
    places = 0 if currency in _ZERO_DECIMAL else 3 if currency in _THREE_DECIMAL else 2
    return (amount_usd * rate).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
