"""Failures: the account's dead jobs and quarantined inbound payloads, each to retry or to discard.

Retrying a job is queue.retry_job (as `crossdock jobs retry` and POST /api/v1/jobs/{id}/retry); discarding it is
queue.discard_job. Retrying a payload is inbox.retry_payload (`crossdock replay` for one payload); discarding it
is inbox.discard_payload.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from crossdock.connectors.registry import SPECS
from crossdock.engine import inbox, queue
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, NotFound
from crossdock.web.context import Panel
from crossdock.web.deps import FormDep, PanelDep, PanelError
from crossdock.web.render import render

router = APIRouter(include_in_schema=False)

# The page lists the newest of each; more than this waits for these to be dealt with.
SHOWN = 100


@dataclass
class JobView:
    row: t.Job
    connection: t.Connection | None


@dataclass
class PayloadView:
    row: t.InboxMessage
    connection: t.Connection | None
    # Whether crossdock can process this kind of payload again (a processor is registered for it).
    retryable: bool
    source: str


def _connection_of(payload: dict[str, object], by_id: dict[str, t.Connection]) -> t.Connection | None:
    ident = payload.get("connection_id")
    return by_id.get(ident) if isinstance(ident, str) else None


async def order_numbers(panel: Panel, order_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The shop's order number of each order, for the links (an order without one is named by its id)."""
    if not order_ids:
        return {}
    rows = await panel.db.execute(
        select(t.Order.id, t.Order.external_number).where(
            t.Order.account_id == panel.account.id, t.Order.id.in_(order_ids)
        )
    )
    return {ident: number or str(ident)[:8] for ident, number in rows.all()}


async def failures(panel: Panel) -> tuple[list[JobView], list[PayloadView]]:
    connections = {str(row.id): row for row in await panel.tenant.list_connections()}
    dead = await queue.list_jobs(panel.db, account_id=panel.account.id, status="dead", limit=SHOWN)
    # An inbox job names its payload, whose connection is the job's.
    inbox_ids = [
        uuid.UUID(str(job.payload["inbox_id"]))
        for job in dead
        if job.kind == inbox.PROCESS_JOB and "inbox_id" in job.payload
    ]
    payload_connection: dict[str, str] = {}
    if inbox_ids:
        rows = await panel.db.execute(
            select(t.InboxMessage.id, t.InboxMessage.connection_id).where(
                t.InboxMessage.account_id == panel.account.id, t.InboxMessage.id.in_(inbox_ids)
            )
        )
        payload_connection = {str(ident): str(conn) for ident, conn in rows.all()}
    jobs = []
    for job in dead:
        connection = _connection_of(job.payload, connections)
        if connection is None and "inbox_id" in job.payload:
            connection = connections.get(payload_connection.get(str(job.payload["inbox_id"]), ""))
        jobs.append(JobView(job, connection))
    quarantined = (
        await panel.db.scalars(
            panel.tenant.scoped(t.InboxMessage)
            .where(t.InboxMessage.status == inbox.QUARANTINED)
            .order_by(t.InboxMessage.received_at.desc(), t.InboxMessage.id.desc())
            .limit(SHOWN)
        )
    ).all()
    payloads = [
        PayloadView(
            row=row,
            connection=connections.get(str(row.connection_id)),
            retryable=row.kind in inbox.PROCESSORS,
            source="a pull" if (row.headers or {}).get("x-crossdock-source") == "pull" else "a webhook",
        )
        for row in quarantined
    ]
    return jobs, payloads


@router.get("/failures")
async def failures_page(request: Request, panel: PanelDep) -> Response:
    jobs, payloads = await failures(panel)
    orders = {j.row.order_id for j in jobs} | {p.row.order_id for p in payloads}
    numbers = await order_numbers(panel, {ident for ident in orders if ident is not None})
    return render(
        request,
        "failures/list.html",
        panel=panel,
        active="failures",
        jobs=jobs,
        payloads=payloads,
        shown=SHOWN,
        numbers=numbers,
        titles={name: spec.title for name, spec in SPECS.items()},
    )


def _back(notice: str) -> RedirectResponse:
    return RedirectResponse(f"/failures?notice={quote(notice)}", status_code=303)


async def _act(what: str, ident: str, action: Callable[[uuid.UUID], Awaitable[object]]) -> None:
    """Run an action on one of the account's jobs or payloads: a 404 page when it is not the account's (or
    no id at all), a 409 page saying why when its state does not allow it."""
    try:
        target = uuid.UUID(ident)
    except ValueError:
        target = None
    try:
        if target is None:
            raise NotFound(what, ident)
        await action(target)
    except NotFound:
        raise PanelError(
            404,
            f"{what.capitalize()} not found",
            f"This account has no such {what}; it may have been dealt with already. Go back to Failures.",
        ) from None
    except Conflict as exc:
        raise PanelError(409, f"Cannot do that to this {what}", f"{exc}. Go back to Failures.") from None


@router.post("/failures/jobs/{job_id}/retry")
async def retry_job(job_id: str, panel: PanelDep, _form: FormDep) -> Response:
    await _act("job", job_id, lambda ident: queue.retry_job(panel.db, ident, panel.account.id))
    return _back("The job is queued again; a worker runs it shortly.")


@router.post("/failures/jobs/{job_id}/discard")
async def discard_job(job_id: str, panel: PanelDep, _form: FormDep) -> Response:
    await _act("job", job_id, lambda ident: queue.discard_job(panel.db, ident, panel.account.id))
    return _back("The job is discarded; it will not run again.")


@router.post("/failures/payloads/{inbox_id}/retry")
async def retry_payload(inbox_id: str, panel: PanelDep, _form: FormDep) -> Response:
    await _act(
        "payload",
        inbox_id,
        lambda ident: inbox.retry_payload(panel.db, inbox_id=ident, account_id=panel.account.id),
    )
    return _back("The payload is queued to be processed again; if it still does not fit, it comes back here.")


@router.post("/failures/payloads/{inbox_id}/discard")
async def discard_payload(inbox_id: str, panel: PanelDep, _form: FormDep) -> Response:
    await _act(
        "payload",
        inbox_id,
        lambda ident: inbox.discard_payload(panel.db, inbox_id=ident, account_id=panel.account.id),
    )
    return _back("The payload is discarded; nothing is made of it.")
