"""The dashboard: orders by state, throughput, failures, queue depth and connections needing attention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from crossdock.engine.connections import NEEDS_REAUTH, PAUSED
from crossdock.model.order import OrderStatus
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from crossdock.web.context import Panel
from crossdock.web.deps import PanelDep
from crossdock.web.render import render

router = APIRouter(include_in_schema=False)


async def _made_since(
    panel: Panel, table: type[t.Order] | type[t.Label], hour: datetime, day: datetime
) -> tuple[int, int]:
    """How many of the account's orders (or labels) were made since `hour` and since `day`, in one query."""
    since_hour, since_day = (
        await panel.db.execute(
            select(func.count().filter(table.created_at >= hour), func.count()).where(
                table.account_id == panel.account.id, table.created_at >= day
            )
        )
    ).one()
    return int(since_hour), int(since_day)


async def dashboard_figures(panel: Panel) -> dict[str, Any]:
    account = panel.account.id
    by_status = await panel.tenant.count_orders_by_status()
    states = [(status.value, int(by_status.get(status.value, 0))) for status in OrderStatus]
    now = utcnow()
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    received = await _made_since(panel, t.Order, hour, day)
    labels = await _made_since(panel, t.Label, hour, day)
    throughput = [
        {"window": window, "received": received[i], "labels": labels[i]}
        for i, window in enumerate(("last hour", "last day"))
    ]
    jobs = dict(
        (
            await panel.db.execute(
                select(t.Job.status, func.count())
                .where(t.Job.account_id == account, t.Job.status.in_(("dead", "queued", "running")))
                .group_by(t.Job.status)
            )
        ).all()
    )
    quarantined = await panel.db.scalar(
        select(func.count()).where(
            t.InboxMessage.account_id == account, t.InboxMessage.status == "quarantined"
        )
    )
    attention = (
        await panel.db.scalars(
            select(t.Connection)
            .where(
                t.Connection.account_id == account, t.Connection.status.in_((NEEDS_REAUTH, PAUSED, "error"))
            )
            .order_by(t.Connection.name)
        )
    ).all()
    return {
        "states": states,
        "total_orders": sum(count for _status, count in states),
        "throughput": throughput,
        "dead": int(jobs.get("dead", 0)),
        "quarantined": int(quarantined or 0),
        "queued": int(jobs.get("queued", 0)),
        "running": int(jobs.get("running", 0)),
        "attention": attention,
        "as_of": now,
    }


@router.get("/")
async def dashboard(request: Request, panel: PanelDep) -> Response:
    return render(
        request, "dashboard.html", panel=panel, active="dashboard", **await dashboard_figures(panel)
    )
