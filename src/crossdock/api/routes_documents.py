"""REST API for an order's documents: its shipments, each shipment's label file, and its packing slip. Every route
is scoped to the caller's account; another account's order or shipment is a 404."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import selectinload
from starlette.concurrency import run_in_threadpool

from crossdock import model as m
from crossdock.api.deps import CallerDep, HubDep
from crossdock.api.problems import Problem
from crossdock.connectors.registry import SPECS
from crossdock.flows.documents import file_safe, order_number, packing_slip
from crossdock.flows.policy import load_policy
from crossdock.hub import Hub
from crossdock.logs import get_logger
from crossdock.store import tables as t
from crossdock.store.convert import minor_money, row_order, row_parcel, row_shipment
from crossdock.store.repo import NotFound, Tenant

router = APIRouter(prefix="/api/v1", tags=["documents"])
log = get_logger(__name__)
PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The PDF file."}
}
LABEL: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {f.media_type: {} for f in m.LabelFormat},
        "description": "The label file, in the format the shipping service handed back.",
    }
}
# Shipments whose label was bought and may be printed; a voided label must not be.
PRINTABLE = {
    m.ShipmentStatus.LABEL_PURCHASED,
    m.ShipmentStatus.IN_TRANSIT,
    m.ShipmentStatus.DELIVERED,
    m.ShipmentStatus.EXCEPTION,
    m.ShipmentStatus.RETURNED,
}


class ParcelOut(BaseModel):
    weight: m.Weight
    dimensions: m.Dimensions | None
    reference: str | None


class LabelOut(BaseModel):
    format: str = Field(description="pdf, png or zpl.")
    size: int = Field(description="Bytes.")
    created_at: datetime
    url: str = Field(description="Where to download the file (the label_url of the shipment).")


class TrackingEventOut(BaseModel):
    status: str
    occurred_at: datetime
    description: str | None
    location: str | None


class ShipmentOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    connection_id: uuid.UUID | None
    status: str
    carrier: str | None
    service_code: str | None
    tracking_number: str | None
    tracking_url: str | None
    rate: dict[str, Any] | None = Field(
        description="The rate chosen for the purchase, as the service quoted it; its price is null when the "
        "connection quotes no rates (MyParcel.com prices a shipment when the label is bought)."
    )
    price: m.Money | None = Field(description="What the label cost, once bought.")
    decision: str | None = Field(description="Why this service was chosen.")
    error: str | None = Field(description="Why the purchase failed or the void was refused.")
    parcels: list[ParcelOut]
    label: LabelOut | None
    label_url: str | None = Field(description="Download the label here; null until a label is bought.")
    events: list[TrackingEventOut] = Field(description="Tracking events, oldest first.")
    created_at: datetime
    updated_at: datetime


class ShipmentList(BaseModel):
    items: list[ShipmentOut]


def _parcel(row: t.Parcel) -> ParcelOut:
    parcel = row_parcel(row)
    return ParcelOut(weight=parcel.weight, dimensions=parcel.dimensions, reference=parcel.reference)


async def newest_labels(tenant: Tenant, shipment_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, t.Label]:
    """The newest label row of each shipment (a label bought again after a void replaces the old one)."""
    if not shipment_ids:
        return {}
    rows = await tenant.session.scalars(
        tenant.scoped(t.Label)
        .where(t.Label.shipment_id.in_(shipment_ids))
        .order_by(t.Label.created_at, t.Label.id)
    )
    return {row.shipment_id: row for row in rows}


async def _shipment(tenant: Tenant, shipment_id: uuid.UUID) -> t.Shipment:
    row = (
        await tenant.session.scalars(
            tenant.scoped(t.Shipment)
            .where(t.Shipment.id == shipment_id)
            .options(selectinload(t.Shipment.parcels))
        )
    ).first()
    if row is None:
        raise NotFound("shipment", shipment_id)
    return row


async def order_shipments(tenant: Tenant, order_id: uuid.UUID) -> Sequence[t.Shipment]:
    return (
        await tenant.session.scalars(
            tenant.scoped(t.Shipment)
            .where(t.Shipment.order_id == order_id)
            .options(selectinload(t.Shipment.parcels))
            .order_by(t.Shipment.created_at, t.Shipment.id)
        )
    ).all()


@router.get("/orders/{order_id}/shipments", response_model=ShipmentList)
async def list_shipments(order_id: uuid.UUID, caller: CallerDep, request: Request) -> ShipmentList:
    """The order's shipments, oldest first: parcels, chosen rate, carrier, tracking, status, tracking events, and
    a label_url to download the label once one is bought."""
    tenant = caller.tenant
    await tenant.get_order(order_id)
    shipments = await order_shipments(tenant, order_id)
    ids = [s.id for s in shipments]
    labels = await newest_labels(tenant, ids)
    events: dict[uuid.UUID, list[TrackingEventOut]] = {i: [] for i in ids}
    if ids:
        for event in await tenant.session.scalars(
            tenant.scoped(t.TrackingEvent)
            .where(t.TrackingEvent.shipment_id.in_(ids))
            .order_by(t.TrackingEvent.occurred_at, t.TrackingEvent.id)
        ):
            events[event.shipment_id].append(
                TrackingEventOut(
                    status=event.status,
                    occurred_at=event.occurred_at,
                    description=event.description,
                    location=event.location,
                )
            )
    items = []
    for row in shipments:
        label = labels.get(row.id)
        url = str(request.url_for("download_label", shipment_id=row.id).path) if label else None
        items.append(
            ShipmentOut(
                id=row.id,
                order_id=row.order_id,
                connection_id=row.connection_id,
                status=row.status,
                carrier=row.carrier,
                service_code=row.service_code,
                tracking_number=row.tracking_number,
                tracking_url=row.tracking_url,
                rate=row.rate,
                price=minor_money(row.rate_minor, row.rate_currency),
                decision=row.decision,
                error=row.error,
                parcels=[_parcel(p) for p in row.parcels],
                label=LabelOut(format=label.format, size=label.size, created_at=label.created_at, url=url)
                if label and url
                else None,
                label_url=url,
                events=events[row.id],
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
        )
    return ShipmentList(items=items)


class LabelUnavailable(Exception):
    """A shipment's label cannot be handed out: `reason` is "voided", "none" (not bought, or not stored) or
    "missing" (recorded, but its file is not in the blob store)."""

    def __init__(self, shipment: t.Shipment, reason: str, blob_key: str | None = None) -> None:
        super().__init__(f"shipment {shipment.id}'s label is {reason}")
        self.shipment = shipment
        self.reason = reason
        self.blob_key = blob_key


@dataclass(frozen=True)
class Document:
    """A file to hand to a browser or an API client, with how it is named and opened."""

    content: bytes
    media_type: str
    filename: str
    disposition: str = "inline"

    def response(self) -> Response:
        return Response(
            content=self.content,
            media_type=self.media_type,
            headers={"Content-Disposition": f'{self.disposition}; filename="{self.filename}"'},
        )


async def label_document(tenant: Tenant, hub: Hub, shipment_id: uuid.UUID) -> Document:
    """The shipment's label file as the shipping service handed it back. Raises NotFound for a shipment of
    another account and LabelUnavailable when there is no label to print."""
    shipment = await _shipment(tenant, shipment_id)
    label = (await newest_labels(tenant, [shipment.id])).get(shipment.id)
    if shipment.status == m.ShipmentStatus.VOIDED.value:
        raise LabelUnavailable(shipment, "voided")
    if label is None:
        raise LabelUnavailable(shipment, "none")
    try:
        data = hub.blobs.get(label.blob_key)
    except KeyError:
        # The operator's log gets the directory; the caller gets the setting's name, not the server's paths.
        log.error(
            "label file missing from the blob store",
            shipment_id=str(shipment_id),
            blob_key=label.blob_key,
            blob_dir=str(hub.blobs.root),
        )
        raise LabelUnavailable(shipment, "missing", label.blob_key) from None
    try:
        kind = m.LabelFormat(label.format)
        media_type, extension = kind.media_type, kind.value
    except ValueError:
        media_type, extension = "application/octet-stream", "bin"
    name = file_safe(shipment.tracking_number or label.tracking_number or str(shipment.id))
    # ZPL goes to a printer driver as a download; a PDF or PNG opens in the browser (RFC 6266 dispositions).
    disposition = "attachment" if extension in {"zpl", "bin"} else "inline"
    return Document(data, media_type, f"label-{name}.{extension}", disposition)


@router.get("/shipments/{shipment_id}/label", response_class=Response, responses=LABEL)
async def download_label(shipment_id: uuid.UUID, caller: CallerDep, hub: HubDep) -> Response:
    """The shipment's label file (PDF, PNG or ZPL) as the shipping service handed it back. 404 while the
    shipment has no label; 410 once its label was voided."""
    try:
        return (await label_document(caller.tenant, hub, shipment_id)).response()
    except LabelUnavailable as exc:
        shipment = exc.shipment
        if exc.reason == "voided":
            raise Problem(
                410,
                "Gone",
                f"shipment {shipment_id}'s label was voided and must not be used; ship the order again "
                f"(POST /api/v1/orders/{shipment.order_id}/ship) for a new label",
                kind="label-voided",
            ) from None
        if exc.reason == "missing":
            raise Problem(
                500,
                "Label file missing",
                f"shipment {shipment_id}'s label is recorded (blob {exc.blob_key}) but the blob store "
                "directory (CROSSDOCK_BLOB_DIR) is missing the file; restore that directory from a backup, "
                "or void the label and ship the order again",
                kind="blob-missing",
            ) from None
        raise Problem(
            404,
            "Not found",
            f"shipment {shipment_id} has no label yet; it is {shipment.status}. {_what_next(shipment)}",
            kind="not-found",
            errors=[{"field": "label", "message": f"no label while the shipment is {shipment.status}"}],
        ) from None


def _what_next(shipment: t.Shipment) -> str:
    status = shipment.status
    if status == m.ShipmentStatus.FAILED.value:
        return f"The purchase failed: {shipment.error or 'no reason was given'}. Fix that and ship the order again."
    if status == m.ShipmentStatus.LABEL_PENDING.value:
        return "The label is being bought; ask again in a moment."
    if status in PRINTABLE:
        return "Its label file was not stored; void the shipment and ship the order again."
    return f"Buy one with POST /api/v1/orders/{shipment.order_id}/ship."


async def packing_slip_document(tenant: Tenant, order_id: uuid.UUID) -> Document:
    """The order's packing slip as a PDF document. Raises NotFound for an order of another account."""
    row = await tenant.get_order(order_id)
    order = row_order(row)
    policy, _version = await load_policy(tenant.session, tenant.account_id)
    shipments = [
        row_shipment(s)
        for s in await order_shipments(tenant, order_id)
        if s.parcels and s.tracking_number and s.status in PRINTABLE
    ]
    channel = None
    if row.connection_id is not None:
        connection = await tenant.session.get(t.Connection, row.connection_id)
        spec = SPECS.get(connection.connector) if connection else None
        channel = spec.title if spec else None
    # Drawing the PDF is CPU work of a second or so: off the event loop, so other requests go on meanwhile.
    pdf = await run_in_threadpool(
        packing_slip, order, ship_from=policy.ship_from, shipments=shipments, channel=channel
    )
    return Document(pdf, "application/pdf", f"packing-slip-{file_safe(order_number(order))}.pdf")


@router.get("/orders/{order_id}/packing-slip", response_class=Response, responses=PDF)
async def download_packing_slip(order_id: uuid.UUID, caller: CallerDep) -> Response:
    """The order's packing slip, an A4 PDF: sender (the shipping policy's ship_from), ship-to, order number and
    date, the channel's reference, the lines and the item count."""
    return (await packing_slip_document(caller.tenant, order_id)).response()
