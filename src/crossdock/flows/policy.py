"""An account's shipping policy: where parcels ship from, how they are packed, and the rules that choose their
service. One document per account, edited as a whole (the panel's rules editor and `PUT
/api/v1/shipping/policy`), with a version so that two editors cannot overwrite each other unseen."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.connectors.base import Role
from crossdock.connectors.registry import get_spec
from crossdock.flows.parcels import PackingRules
from crossdock.flows.rules import ShippingRule
from crossdock.model import Address
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, EnteredOrder, Tenant
from crossdock.store.types import utcnow
from crossdock.store.upsert import insert_for


class ShippingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ship_from: Address | None = Field(
        default=None, description="The sender address on labels and the origin of rate requests."
    )
    packing: PackingRules = Field(default_factory=PackingRules)
    rules: list[ShippingRule] = Field(
        default_factory=list,
        description="Tried in order; the first matching rule that can be satisfied decides.",
    )
    fallback: ShippingRule | None = Field(
        default=None, description="Tried when no rule decides; its match is ignored."
    )
    auto_ship: bool = Field(
        default=False,
        description="Buy labels by themselves when an order becomes ready to ship; otherwise only when asked.",
    )
    auto_ship_max_age_days: int = Field(
        default=7,
        ge=1,
        le=365,
        description="Automatic shipping leaves alone orders placed longer ago than this (an old order arriving "
        "in a backfill has usually been shipped already); they can still be shipped on request.",
    )


async def load_policy(session: AsyncSession, account_id: uuid.UUID) -> tuple[ShippingPolicy, int]:
    """The account's policy and its version (0 for the empty policy of an account that never saved one)."""
    row = await session.get(t.ShippingPolicyRow, account_id)
    if row is None:
        return ShippingPolicy(), 0
    return ShippingPolicy.model_validate(row.document), row.version


async def save_policy(
    session: AsyncSession, account_id: uuid.UUID, policy: ShippingPolicy, *, version: int
) -> int:
    """Replace the account's policy if it is still at `version` (what the editor read); returns the new version.
    Every connection a rule names must be one of the account's shipping connections."""
    named = {r.connection_id for r in [*policy.rules, *([policy.fallback] if policy.fallback else [])]}
    named.discard(None)
    if named:
        found = dict(
            (
                await session.execute(
                    select(t.Connection.id, t.Connection.connector).where(
                        t.Connection.account_id == account_id, t.Connection.id.in_(named)
                    )
                )
            ).all()
        )
        for position, rule in enumerate(policy.rules):
            _check_connection(rule, found, f"rules[{position}].connection_id")
        if policy.fallback is not None:
            _check_connection(policy.fallback, found, "fallback.connection_id")
    document = policy.model_dump(mode="json")
    if version == 0:
        stmt: Any = insert_for(session, t.ShippingPolicyRow).values(
            account_id=account_id, document=document, version=1, updated_at=utcnow()
        )
        if (
            await session.execute(stmt.on_conflict_do_nothing().returning(t.ShippingPolicyRow.version))
        ).first():
            return 1
    else:
        result = await session.execute(
            update(t.ShippingPolicyRow)
            .where(t.ShippingPolicyRow.account_id == account_id, t.ShippingPolicyRow.version == version)
            .values(document=document, version=version + 1, updated_at=utcnow())
            .returning(t.ShippingPolicyRow.version)
        )
        if result.first() is not None:
            return version + 1
    current = await session.scalar(
        select(t.ShippingPolicyRow.version).where(t.ShippingPolicyRow.account_id == account_id)
    )
    raise Conflict(
        f"the shipping policy changed meanwhile (it is at version {current or 0}, this edit was made on version "
        f"{version}); load it again and repeat the change",
        field="version",
    )


def _check_connection(rule: ShippingRule, found: dict[uuid.UUID, str], where: str) -> None:
    if rule.connection_id is None:
        return
    connector = found.get(rule.connection_id)
    if connector is None:
        raise Conflict(
            f"{where}: connection {rule.connection_id} does not exist in this account", field=where
        )
    if get_spec(connector).role is not Role.SHIPPING:
        raise Conflict(
            f"{where}: connection {rule.connection_id} is a {connector} connection, which does not ship; "
            "name a shipping connection (Shippo, MyParcel.com, carriers)",
            field=where,
        )


async def policy_in_transaction(session: AsyncSession, account_id: uuid.UUID) -> ShippingPolicy:
    """The account's policy, read once per transaction (an import of a page asks for every order)."""
    cache: dict[uuid.UUID, ShippingPolicy] = session.info.setdefault("crossdock.flows.policy", {})
    if account_id not in cache:
        cache[account_id] = (await load_policy(session, account_id))[0]
    return cache[account_id]


async def left_as_too_old(
    tenant: Tenant, policy: ShippingPolicy, order: EnteredOrder, *, kind: str, not_done: str
) -> bool:
    """True when `order` was placed longer ago than auto_ship_max_age_days, and so is left to a person (an old
    order arriving in a backfill is usually dealt with already); its timeline then says so, as a `kind` event
    that begins with `not_done` and says what to do."""
    placed_at = order.placed_at
    if placed_at is None or placed_at >= utcnow() - timedelta(days=policy.auto_ship_max_age_days):
        return False
    await tenant.add_event(
        order.id,
        kind,
        f"{not_done}: the order was placed more than {policy.auto_ship_max_age_days} days ago (on "
        f"{placed_at:%Y-%m-%d}), and an old order arriving in a backfill is usually dealt with already; if this "
        "one still needs to go, ship it from its page",
    )
    return True
