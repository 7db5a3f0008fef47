"""Catalog: categories (a tree), products, variants (SKU unique per account) and stock levels."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossdock.model.money import Money
from crossdock.model.units import Weight


def _sku(value: str) -> str:
    if not value.strip():
        raise ValueError("sku must not be empty")
    if value != value.strip():
        raise ValueError("sku must not start or end with whitespace")
    return value


class Category(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID | None = None
    name: str = Field(min_length=1)
    parent_id: UUID | None = None


class Variant(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID | None = None
    sku: str
    title: str | None = None
    price: Money | None = None
    weight: Weight | None = None
    barcode: str | None = None
    tags: list[str] = Field(default_factory=list)

    _check_sku = field_validator("sku")(classmethod(lambda cls, v: _sku(v)))


class Product(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID | None = None
    title: str = Field(min_length=1)
    description: str | None = None
    vendor: str | None = None
    category_id: UUID | None = None
    tags: list[str] = Field(default_factory=list)
    variants: list[Variant] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _unique_skus(cls, variants: list[Variant]) -> list[Variant]:
        seen: set[str] = set()
        for i, variant in enumerate(variants):
            if variant.sku in seen:
                raise ValueError(f"variants[{i}].sku '{variant.sku}' appears twice in this product")
            seen.add(variant.sku)
        return variants


class StockLevel(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    location: str = Field(default="default", min_length=1)
    available: int

    _check_sku = field_validator("sku")(classmethod(lambda cls, v: _sku(v)))
