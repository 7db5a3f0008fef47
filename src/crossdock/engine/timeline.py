"""The order timeline: every inbox row, job attempt, remote call and state change that concerns an order."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.logs import redact, redact_text
from crossdock.store import tables as t
from crossdock.store.repo import Tenant

SEVERITIES = ("info", "warning", "error")


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
    """Add one event to an order's timeline in the caller's transaction.

    `summary` is what a user reads; `detail` carries ids and numbers for the curious. Both are redacted on the
    way in, because a remote's error text may echo a token back.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
    clean_detail: dict[str, Any] = redact(detail or {})
    return await Tenant(session, account_id).add_event(
        order_id, kind, redact_text(summary), clean_detail, severity=severity
    )
