"""REST API for shipping an order now and voiding a label: the requests behind the panel's "Ship" and "Void"
buttons. Both queue work for the shipping flow (flows/labels.py) and answer 202 at once; the outcome lands on
the order's timeline."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from crossdock.api.deps import CallerDep
from crossdock.api.problems import documented
from crossdock.flows.labels import ask_to_ship, ask_to_void

router = APIRouter(prefix="/api/v1", tags=["shipping"])


class ShipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: uuid.UUID | None = Field(
        default=None, description="Ship through this shipping connection instead of the account's rules."
    )
    service: str | None = Field(
        default=None,
        description="With connection_id: this service, as 'carrier:service_code' (e.g. 'usps:usps_priority'); "
        "without it the connection's cheapest rate is bought.",
    )


class Queued(BaseModel):
    job_id: uuid.UUID | None = Field(
        description="The queued job; null when the same work was queued already."
    )
    queued: bool


@router.post("/orders/{order_id}/ship", status_code=202, response_model=Queued, responses=documented(409))
async def ship_order(order_id: uuid.UUID, caller: CallerDep, body: ShipIn | None = None) -> Queued:
    """Plan the order's parcels, choose their service and buy their labels. 409 when the order is not paid,
    ready to ship or partially shipped, or its labels are being bought already."""
    wanted = body or ShipIn()
    job_id = await ask_to_ship(
        caller.tenant.session,
        caller.tenant,
        order_id,
        connection_id=wanted.connection_id,
        service=wanted.service,
    )
    return Queued(job_id=job_id, queued=job_id is not None)


@router.post(
    "/shipments/{shipment_id}/void", status_code=202, response_model=Queued, responses=documented(409)
)
async def void_shipment(shipment_id: uuid.UUID, caller: CallerDep) -> Queued:
    """Void (refund) a bought label that has not been used. 409 unless the shipment's label is bought and not
    yet moving."""
    job_id = await ask_to_void(caller.tenant.session, caller.tenant, shipment_id)
    return Queued(job_id=job_id, queued=job_id is not None)
