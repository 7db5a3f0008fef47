"""The Orders pages: the account's orders with filters, search and pages; one order with its lines, address,
shipments, labels and timeline; its label and packing-slip files for the signed-in browser; and the "Ship now"
and "Void label" actions. Everything goes through the account's repository and the functions the REST API uses
(store.repo.Tenant, api.routes_documents, flows.labels), so the panel and the API cannot disagree."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from crossdock import model as m
from crossdock.api.routes_documents import (
    PRINTABLE,
    Document,
    LabelUnavailable,
    label_document,
    newest_labels,
    order_shipments,
    packing_slip_document,
)
from crossdock.connectors.base import Role
from crossdock.connectors.registry import SPECS
from crossdock.flows.documents import address_lines, order_number
from crossdock.flows.labels import SHIPPABLE, ask_to_ship, ask_to_void
from crossdock.flows.rules import service_words
from crossdock.logs import redact, redact_text
from crossdock.store import tables as t
from crossdock.store.convert import minor_money, row_order
from crossdock.store.repo import Conflict, NotFound
from crossdock.web.context import Panel
from crossdock.web.deps import FormDep, PanelDep, PanelError
from crossdock.web.render import render, utc_text

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
# An inbound payload is shown whole up to this many characters; a pulled page can be far longer.
PAYLOAD_CHARS = 20_000
SS = m.ShipmentStatus
# Shipments whose labels are still being bought: while one exists, "Ship now" would be refused.
IN_PROGRESS = {SS.DRAFT.value, SS.RATED.value, SS.LABEL_PENDING.value}
# The label formats a browser shows in a frame; ZPL is for a printer driver and is only downloaded.
PREVIEWABLE = {m.LabelFormat.PDF.value, m.LabelFormat.PNG.value}
FILE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
}


# -- shared bits -------------------------------------------------------------------------------------------------
def _money(value: m.Money | None) -> str:
    return f"{value.amount} {value.currency}" if value is not None else "—"


def _web_link(url: str | None) -> str | None:
    """A remote's URL fit for an href: only http(s), so a stored `javascript:` URL never becomes a link."""
    if not url:
        return None
    return url if urlsplit(url).scheme.lower() in {"http", "https"} else None


def _order_not_found() -> PanelError:
    return PanelError(
        404,
        "Order not found",
        "This account has no such order. The link may be wrong or the order may belong to another account; "
        "find it under Orders.",
    )


def _parse_id(value: str, not_found: PanelError) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found from None


def _channel(connection: t.Connection | None) -> str:
    if connection is None:
        return "Manual"
    spec = SPECS.get(connection.connector)
    return f"{connection.name} ({spec.title})" if spec else connection.name


async def _connections(panel: Panel) -> dict[uuid.UUID, t.Connection]:
    return {c.id: c for c in await panel.tenant.list_connections()}


def _back(order_id: uuid.UUID, *, notice: str | None = None, problem: str | None = None) -> RedirectResponse:
    query = {key: value for key, value in (("notice", notice), ("problem", problem)) if value}
    return RedirectResponse(f"/orders/{order_id}?{urlencode(query)}", status_code=303)


# -- the list ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderRow:
    id: uuid.UUID
    number: str
    channel: str
    customer: str
    email: str | None
    country: str
    total: str
    status: str
    updated: str
    updated_iso: str


def _order_row(row: t.Order, connections: dict[uuid.UUID, t.Connection]) -> OrderRow:
    order = row_order(row)
    address = order.shipping_address
    connection = connections.get(row.connection_id) if row.connection_id else None
    return OrderRow(
        id=row.id,
        number=order_number(order),
        channel=_channel(connection),
        customer=row.customer_name or (address.name if address else "") or "—",
        email=row.customer_email,
        country=address.country if address else "—",
        total=_money(minor_money(row.total_minor, row.currency)),
        status=row.status,
        updated=utc_text(row.updated_at, seconds=False),
        updated_iso=row.updated_at.isoformat(),
    )


def _filters(request: Request) -> dict[str, str]:
    """The list's filters as given (blank ones dropped), checked; what is wrong says how to fix it."""
    given = {
        key: value.strip()
        for key in ("status", "connection", "q")
        if (value := request.query_params.get(key)) is not None and value.strip()
    }
    if "status" in given and given["status"] not in {s.value for s in m.OrderStatus}:
        raise PanelError(
            400,
            "Unknown order status",
            f"“{given['status']}” is not an order status; choose one from the Status list on Orders.",
        )
    if "connection" in given:
        _parse_id(
            given["connection"],
            PanelError(400, "Unknown connection", "Choose the connection from the Channel list on Orders."),
        )
    if len(given.get("q", "")) > 200:
        raise PanelError(
            400, "Search too long", "Search for at most 200 characters: a number, an e-mail or a name."
        )
    return given


@router.get("/orders")
async def orders_page(request: Request, panel: PanelDep) -> Response:
    filters = _filters(request)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and len(cursor) > 500:
        cursor = "-"  # the repository refuses it as not one it issued
    try:
        page = await panel.tenant.list_orders(
            status=m.OrderStatus(filters["status"]) if "status" in filters else None,
            connection_id=uuid.UUID(filters["connection"]) if "connection" in filters else None,
            q=filters.get("q"),
            limit=PAGE_SIZE,
            cursor=cursor,
        )
    except Conflict:
        raise PanelError(
            400,
            "This page of orders cannot be found",
            "The “Older orders” link was not one this panel made, or it was cut short. Open Orders and page "
            "from the newest orders again.",
        ) from None
    connections = await _connections(panel)
    channels = [
        c
        for c in connections.values()
        if (spec := SPECS.get(c.connector)) is not None and spec.role is Role.CHANNEL
    ]
    older = f"/orders?{urlencode(filters | {'cursor': page.next_cursor})}" if page.next_cursor else None
    newest = f"/orders?{urlencode(filters)}" if cursor else None
    return render(
        request,
        "orders/list.html",
        panel=panel,
        active="orders",
        rows=[_order_row(row, connections) for row in page.items],
        filters=filters,
        statuses=[s.value for s in m.OrderStatus],
        channels=sorted(channels, key=lambda c: c.name.lower()),
        older=older,
        newest=newest,
        paged=cursor is not None,
        as_of=utc_text(datetime.now(UTC), seconds=False),
    )


# -- one order ---------------------------------------------------------------------------------------------------
@dataclass
class ShipmentView:
    id: uuid.UUID
    status: str
    service: str
    tracking_number: str | None
    tracking_link: str | None
    price: str | None
    decision: str | None
    error: str | None
    parcels: int
    created: str
    label_url: str | None = None
    label_format: str | None = None
    label_previewable: bool = False
    voidable: bool = False


@dataclass
class Inbound:
    kind: str
    status: str
    received: str
    headers: str
    body: str
    cut: bool
    error: str | None


@dataclass
class Entry:
    at: datetime
    kind: str
    severity: str
    summary: str
    call: dict[str, Any] | None = None
    inbound: Inbound | None = None
    detail: str | None = None
    when: str = field(init=False)

    def __post_init__(self) -> None:
        self.when = utc_text(self.at, seconds=True)


def _service(row: t.Shipment) -> str:
    rate = row.rate or {}
    carrier = row.carrier or rate.get("carrier")
    name = rate.get("service_name") or row.service_code or rate.get("service_code")
    if carrier and name:
        return service_words(str(carrier), str(name))
    return str(carrier or name or "Not chosen yet")


def _shipment_view(order_id: uuid.UUID, row: t.Shipment, label: t.Label | None) -> ShipmentView:
    view = ShipmentView(
        id=row.id,
        status=row.status,
        service=_service(row),
        tracking_number=row.tracking_number,
        tracking_link=_web_link(row.tracking_url),
        price=_money(minor_money(row.rate_minor, row.rate_currency)) if row.rate_minor is not None else None,
        decision=row.decision,
        error=row.error,
        parcels=len(row.parcels),
        created=utc_text(row.created_at, seconds=False),
        voidable=row.status == SS.LABEL_PURCHASED.value,
    )
    if label is not None and row.status in PRINTABLE:
        view.label_url = f"/orders/{order_id}/shipments/{row.id}/label"
        view.label_format = label.format
        view.label_previewable = label.format in PREVIEWABLE
    return view


def _payload_text(body: bytes) -> tuple[str, bool]:
    """An inbound body as stored, made readable and redacted: JSON indented with credential-named fields
    replaced, anything else as text with credentials in URLs and headers replaced."""
    text = body.decode("utf-8", errors="replace")
    try:
        shown = json.dumps(redact(json.loads(text)), indent=2, ensure_ascii=False)
    except ValueError:
        shown = redact_text(text)
    return shown[:PAYLOAD_CHARS], len(shown) > PAYLOAD_CHARS


def _inbound(row: t.InboxMessage) -> Inbound:
    body, cut = _payload_text(row.body)
    return Inbound(
        kind=row.kind,
        status=row.status,
        received=utc_text(row.received_at, seconds=True),
        headers=json.dumps(redact(row.headers or {}), indent=2, ensure_ascii=False),
        body=body,
        cut=cut,
        error=row.error,
    )


async def _timeline(panel: Panel, order_id: uuid.UUID) -> list[Entry]:
    """The order's events, oldest first, with the inbound payloads they name (and any payload for this order no
    event names yet: one still waiting, or one that was quarantined) shown as stored, redacted."""
    events = await panel.tenant.timeline(order_id)
    inbox = {
        row.id: row
        for row in await panel.db.scalars(
            panel.tenant.scoped(t.InboxMessage).where(t.InboxMessage.order_id == order_id)
        )
    }
    named: set[uuid.UUID] = set()
    for event in events:
        if ident := _inbox_id(event.detail):
            named.add(ident)
    missing = named - inbox.keys()
    if missing:
        for row in await panel.db.scalars(
            panel.tenant.scoped(t.InboxMessage).where(t.InboxMessage.id.in_(missing))
        ):
            inbox[row.id] = row
    entries: list[Entry] = []
    for event in events:
        entry = Entry(at=event.at, kind=event.kind, severity=event.severity, summary=event.summary)
        ident = _inbox_id(event.detail)
        if event.kind == "remote.call":
            entry.call = event.detail
        elif ident is not None and ident in inbox:
            entry.inbound = _inbound(inbox[ident])
        elif event.detail:
            entry.detail = json.dumps(event.detail, indent=2, ensure_ascii=False, default=str)
        entries.append(entry)
    for ident, row in inbox.items():
        if ident in named:
            continue
        failed = row.status in {"quarantined", "failed"}
        entries.append(
            Entry(
                at=row.received_at,
                kind="inbox." + row.status,
                severity="error" if failed else "info",
                summary=f"Received {row.kind} ({row.status})",
                inbound=_inbound(row),
            )
        )
    entries.sort(key=lambda e: e.at)
    return entries


def _inbox_id(detail: dict[str, Any] | None) -> uuid.UUID | None:
    value = (detail or {}).get("inbox_id")
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


async def _order(panel: Panel, order_id: str) -> t.Order:
    try:
        return await panel.tenant.get_order(_parse_id(order_id, _order_not_found()))
    except NotFound:
        raise _order_not_found() from None


@router.get("/orders/{order_id}")
async def order_page(order_id: str, request: Request, panel: PanelDep) -> Response:
    row = await _order(panel, order_id)
    order = row_order(row)
    connection = (await _connections(panel)).get(row.connection_id) if row.connection_id else None
    shipments = await order_shipments(panel.tenant, row.id)
    labels = await newest_labels(panel.tenant, [s.id for s in shipments])
    views = [_shipment_view(row.id, s, labels.get(s.id)) for s in shipments]
    can_ship = order.status in SHIPPABLE and not any(s.status in IN_PROGRESS for s in shipments)
    totals = [
        (name, _money(value))
        for name, value in (
            ("Subtotal", order.totals.subtotal),
            ("Shipping", order.totals.shipping),
            ("Tax", order.totals.tax),
            ("Discount", order.totals.discount),
            ("Total", order.totals.total),
        )
        if value is not None
    ]
    lines = [
        {
            "sku": line.sku,
            "title": line.title,
            "quantity": line.quantity,
            "shipped": stored.shipped_quantity,
            "requires_shipping": line.requires_shipping,
            "price": _money(line.unit_price),
        }
        for stored, line in zip(row.lines, order.lines, strict=True)
    ]
    return render(
        request,
        "orders/order.html",
        panel=panel,
        active="orders",
        order=order,
        row=row,
        number=order_number(order),
        channel=_channel(connection),
        connection=connection,
        created=utc_text(row.created_at, seconds=False),
        updated=utc_text(row.updated_at, seconds=False),
        placed=utc_text(row.placed_at, seconds=False) if row.placed_at else None,
        totals=totals,
        lines=lines,
        address=address_lines(order.shipping_address) if order.shipping_address else [],
        billing=address_lines(order.billing_address) if order.billing_address else [],
        shipments=views,
        can_ship=can_ship,
        timeline=await _timeline(panel, row.id),
        problem=request.query_params.get("problem"),
        as_of=utc_text(datetime.now(UTC), seconds=False),
    )


# -- files -------------------------------------------------------------------------------------------------------
def _file(document: Document) -> Response:
    response = document.response()
    response.headers.update(FILE_HEADERS)
    return response


async def _shipment_of(panel: Panel, order: t.Order, shipment_id: str) -> t.Shipment:
    not_found = PanelError(
        404,
        "Shipment not found",
        "This order has no such shipment. Open the order again and use the links under Shipments.",
    )
    ident = _parse_id(shipment_id, not_found)
    for shipment in await order_shipments(panel.tenant, order.id):
        if shipment.id == ident:
            return shipment
    raise not_found


@router.get("/orders/{order_id}/packing-slip.pdf")
async def packing_slip_file(order_id: str, panel: PanelDep) -> Response:
    row = await _order(panel, order_id)
    return _file(await packing_slip_document(panel.tenant, row.id))


@router.get("/orders/{order_id}/shipments/{shipment_id}/label")
async def label_file(order_id: str, shipment_id: str, panel: PanelDep) -> Response:
    row = await _order(panel, order_id)
    shipment = await _shipment_of(panel, row, shipment_id)
    try:
        return _file(await label_document(panel.tenant, panel.hub, shipment.id))
    except LabelUnavailable as exc:
        if exc.reason == "voided":
            raise PanelError(
                410,
                "Label voided",
                "This label was voided and must not be used. Use “Ship now” on the order's page for a new one.",
            ) from None
        if exc.reason == "missing":
            raise PanelError(
                500,
                "Label file missing",
                "The label is recorded but its file is missing from the blob store directory "
                "(CROSSDOCK_BLOB_DIR). Ask your operator to restore that directory from a backup, or void the "
                "label and ship the order again.",
            ) from None
        raise PanelError(
            404,
            "No label yet",
            f"This shipment has no label; it is {shipment.status.replace('_', ' ')}. The order's page shows "
            "the label once it is bought.",
        ) from None


# -- actions -----------------------------------------------------------------------------------------------------
@router.post("/orders/{order_id}/ship")
async def ship_now(order_id: str, panel: PanelDep, _form: FormDep) -> Response:
    row = await _order(panel, order_id)
    try:
        job_id = await ask_to_ship(panel.db, panel.tenant, row.id)
    except Conflict as exc:
        return _back(row.id, problem=f"Not shipped: {exc}.")
    if job_id is None:
        return _back(row.id, notice="This order was asked to ship already; labels appear here when bought.")
    return _back(row.id, notice="Asked to ship; labels appear here when bought.")


@router.post("/orders/{order_id}/shipments/{shipment_id}/void")
async def void_label(order_id: str, shipment_id: str, panel: PanelDep, _form: FormDep) -> Response:
    row = await _order(panel, order_id)
    shipment = await _shipment_of(panel, row, shipment_id)
    which = f"label {shipment.tracking_number}" if shipment.tracking_number else "label"
    try:
        job_id = await ask_to_void(panel.db, panel.tenant, shipment.id)
    except Conflict as exc:
        return _back(row.id, problem=f"Not voided: {exc}.")
    if job_id is None:
        return _back(
            row.id, notice=f"Voiding the {which} was asked already; the timeline says when it is done."
        )
    return _back(
        row.id,
        notice=f"Asked to void the {which}; the timeline says when the shipping service has voided it.",
    )
