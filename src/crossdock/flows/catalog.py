"""What the account's catalog adds to an order's lines before they are packed and ruled on: the weight a
channel did not give, and the tags the shipping rules match on (a variant's and its product's)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.orm import selectinload

from crossdock import model as m
from crossdock.store import tables as t
from crossdock.store.repo import Tenant

Catalog = Mapping[str, t.Variant]


async def variants_by_sku(tenant: Tenant, skus: Iterable[str | None]) -> dict[str, t.Variant]:
    """The account's variants with these SKUs, their products loaded (one query)."""
    wanted = {sku for sku in skus if sku}
    if not wanted:
        return {}
    rows = await tenant.session.scalars(
        tenant.scoped(t.Variant).options(selectinload(t.Variant.product)).where(t.Variant.sku.in_(wanted))
    )
    return {row.sku: row for row in rows}


def weighed(line: m.OrderLine, catalog: Catalog) -> m.OrderLine:
    """The line with the catalog's weight for its SKU when the line has none."""
    variant = catalog.get(line.sku or "")
    if line.weight is not None or variant is None or variant.weight_g is None:
        return line
    return line.model_copy(update={"weight": m.Weight.grams(variant.weight_g)})


def sku_tags(lines: Iterable[m.OrderLine], catalog: Catalog) -> frozenset[str]:
    tags: set[str] = set()
    for line in lines:
        variant = catalog.get(line.sku or "")
        if variant is not None:
            tags.update(variant.tags or [])
            if variant.product is not None:
                tags.update(variant.product.tags or [])
    return frozenset(tags)
