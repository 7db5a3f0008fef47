"""The dashboard: orders by state, throughput, failures, queue depth and connections needing attention."""

from __future__ import annotations

from datetime import timedelta
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


async def _count(panel: Panel, query: Any) -> int:
    return int(await panel.db.scalar(query) or 0)


async def dashboard_figures(panel: Panel) -> dict[str, Any]:
    account = panel.account.id
    by_status = dict(
        (
            await panel.db.execute(
                select(t.Order.status, func.count())
                .where(t.Order.account_id == account)
                .group_by(t.Order.status)
            )
        ).all()
    )
    states = [(status.value, int(by_status.get(status.value, 0))) for status in OrderStatus]
    now = utcnow()
    throughput = []
    for label, since in (("last hour", now - timedelta(hours=1)), ("last day", now - timedelta(days=1))):
        received = await _count(
            panel, select(func.count()).where(t.Order.account_id == account, t.Order.created_at >= since)
        )
        labels = await _count(
            panel, select(func.count()).where(t.Label.account_id == account, t.Label.created_at >= since)
        )
        throughput.append({"window": label, "received": received, "labels": labels})
    dead = await _count(
        panel, select(func.count()).where(t.Job.account_id == account, t.Job.status == "dead")
    )
    quarantined = await _count(
        panel,
        select(func.count()).where(
            t.InboxMessage.account_id == account, t.InboxMessage.status == "quarantined"
        ),
    )
    queue = dict(
        (
            await panel.db.execute(
                select(t.Job.status, func.count())
                .where(t.Job.account_id == account, t.Job.status.in_(("queued", "running")))
                .group_by(t.Job.status)
            )
        ).all()
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
        "dead": dead,
        "quarantined": quarantined,
        "queued": int(queue.get("queued", 0)),
        "running": int(queue.get("running", 0)),
        "attention": attention,
        "as_of": now,
    }


@router.get("/")
async def dashboard(request: Request, panel: PanelDep) -> Response:
    return render(
        request, "dashboard.html", panel=panel, active="dashboard", **await dashboard_figures(panel)
    )
