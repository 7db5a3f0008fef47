"""The order timeline: every inbox row, job attempt, remote call and state change that concerns an order."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.store import tables as t
from crossdock.store.repo import Tenant


async def add_event(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    order_id: uuid.UUID,
    kind: str,
    summary: str,
    detail: dict[str, Any] | None = None,
    severity: str = "info",
) -> t.TimelineEvent:
    """Add one event to an order's timeline in the caller's transaction (redacted by Tenant.add_event)."""
    return await Tenant(session, account_id).add_event(order_id, kind, summary, detail, severity=severity)
