"""MyParcel.com JSON:API <-> crossdock's canonical shipping model. Pure functions: no I/O, no clock.

Requests: a canonical Shipment and Order become a `POST /shipments` document. Answers: a shipment document
becomes a `ShipmentRead` (status, tracking, price, files, service), a list of shipment-statuses becomes
TrackingEvents; what cannot be read is reported as MappingProblems, never raised. Field facts: PROTOCOLS.md
section 7 and MyParcelCOM/api-specification (schemas/shipments/Shipment.json, paths/Shipments.json) and
MyParcelCOM/docs (content/api/retrieve-shipment-statuses.md, resources/files.md), named beside each rule.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crossdock.connectors.base import MappingProblem
from crossdock.connectors.remote_json import PushError, Reader, join
from crossdock.model import Address, Money, MoneyError, Order, Shipment, TrackingEvent, TrackingStatus

JSON_API = "application/vnd.api+json"
# "Name of the application used to create the shipment" (Shipment.json). Not `crossdock`, the channel of the
# shipments MyParcel.com pulls through the integration contract: that contract's status callbacks serve those,
# and leave these (tracked by polling) alone.
CHANNEL = "crossdock-api"
# description, customer_reference: "maxLength": 255 (Shipment.json).
MAX_TEXT = 255
REFERENCE_PREFIX = "sha256:"
# register_at: "This shipment will be registered with the carrier when this time has been reached. While this
# is null or a time in the future, the shipment will stay in concept" (Shipment.json). A moment long past
# registers at once, and a fixed one keeps a retried POST's body identical to the first, as a replay under the
# same Idempotency-Key expects: 2000-01-01T00:00:00Z.
REGISTER_AT = 946684800

# Status codes (docs retrieve-shipment-statuses.md; PROTOCOLS.md section 7) -> the canonical tracking status.
TRACKING: dict[str, TrackingStatus] = {
    "shipment-processing": TrackingStatus.PRE_TRANSIT,
    "shipment-concept": TrackingStatus.PRE_TRANSIT,
    "shipment-registered": TrackingStatus.PRE_TRANSIT,
    # "registered and has files available, but no further tracking is available"
    "shipment-created-without-tracking": TrackingStatus.PRE_TRANSIT,
    "shipment-received-by-carrier": TrackingStatus.IN_TRANSIT,
    "shipment-at-sorting": TrackingStatus.IN_TRANSIT,
    # "with the courier and on its way to the destination": the last leg.
    "shipment-with-courier": TrackingStatus.OUT_FOR_DELIVERY,
    "shipment-delivered": TrackingStatus.DELIVERED,
    "shipment-returned-to-sender": TrackingStatus.RETURNED,
    # Each needs someone to act: the carrier refused it, the shipping failed, or the label was voided.
    "shipment-registration-failed": TrackingStatus.EXCEPTION,
    "shipment-failed": TrackingStatus.EXCEPTION,
    "shipment-voided": TrackingStatus.EXCEPTION,
}
# A shipment's life in order, to order statuses the carrier stamped in the same second.
LIFE = (
    "shipment-processing",
    "shipment-concept",
    "shipment-registration-failed",
    "shipment-registered",
    "shipment-created-without-tracking",
    "shipment-voided",
    "shipment-received-by-carrier",
    "shipment-at-sorting",
    "shipment-with-courier",
    "shipment-failed",
    "shipment-returned-to-sender",
    "shipment-delivered",
)
# Not registered yet: the label may still come.
PENDING = frozenset({"shipment-processing", "shipment-concept"})
# Registered with the carrier: "all shipments with a status that has the level success should have any
# necessary files available" (docs retrieve-shipment-files.md), and so do the in-progress ones after
# registration.
LABELLED = frozenset(
    {
        "shipment-registered",
        "shipment-created-without-tracking",
        "shipment-received-by-carrier",
        "shipment-at-sorting",
        "shipment-with-courier",
        "shipment-delivered",
        "shipment-returned-to-sender",
    }
)
# Left no usable label.
NO_LABEL = frozenset({"shipment-registration-failed", "shipment-failed", "shipment-voided"})
# Label file types crossdock asks for, best first (docs resources/files.md: application/pdf, image/png).
LABEL_TYPES = ("application/pdf", "image/png")


# -- requests --------------------------------------------------------------------------------------------------


def reference_for(idempotency_key: str) -> str:
    """The shipment's `customer_reference` for an idempotency key: the key itself, or its SHA-256 when it is
    longer than the 255 characters the attribute holds. find_label looks it up with the strict
    `filter[customer_reference]` (api-specification parameters/query-shipments-filter-customer_reference.json:
    "only if the search string matches the customer_reference attribute of a shipment completely")."""
    if len(idempotency_key) <= MAX_TEXT:
        return idempotency_key
    return REFERENCE_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()


def _grams(value: Any) -> int:
    # Rounded up: a parcel declared lighter than it is gets a carrier's surcharge afterwards.
    return max(0, math.ceil(value))


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    words = (name or "").split()
    if not words:
        return None, None
    if len(words) == 1:
        # Both names are required (Shipments.json recipient_address.required); a one-word name is whole.
        return words[0], words[0]
    return " ".join(words[:-1]), words[-1]


def address_attributes(
    address: Address, *, name: str | None = None, email: str | None = None, phone: str | None = None
) -> dict[str, Any]:
    """A MyParcel.com address (PROTOCOLS.md 7: street_1, street_2, postal_code, city, state_code, country_code,
    first_name, last_name, company, email, phone_number). state_code is the subdivision without its country
    ("US-NY" -> "NY"); street_2 takes the second and third address lines."""
    first, last = address.first_name, address.last_name
    if not (first and last):
        first, last = _split_name(" ".join(p for p in (first, last) if p) or name)
    state = address.subdivision_iso.split("-", 1)[1] if address.subdivision_iso else address.subdivision
    street_2 = ", ".join(p for p in (address.line2, address.line3) if p)
    fields = {
        "street_1": address.line1,
        "street_2": street_2,
        "postal_code": address.postal_code,
        "city": address.city,
        "state_code": state,
        "country_code": address.country,
        "first_name": first,
        "last_name": last,
        "company": address.company,
        "email": address.email or email,
        "phone_number": address.phone or phone,
    }
    return {k: v for k, v in fields.items() if v}


def sender_setting(value: Any) -> dict[str, Any] | None:
    """The `sender_address` setting: MyParcel.com address fields as an object (or that object as JSON text);
    None when unset. Raises ValueError saying what is wrong."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(
            "must be an object of MyParcel.com address fields (street_1, city, country_code, ...)"
        )
    missing = [k for k in ("street_1", "city", "country_code") if not str(value.get(k) or "").strip()]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}: MyParcel.com needs them in a sender address")
    return {str(k): v for k, v in value.items() if v not in (None, "")}


def _minor(money: Money) -> dict[str, Any]:
    """A MyParcel.com price: {"amount": <cents>, "currency"} (docs resources/common-objects/prices.md)."""
    return {"amount": money.minor, "currency": money.currency}


def _contents(order: Order) -> str:
    text = ", ".join(f"{line.quantity} x {line.title}" for line in order.lines if line.requires_shipping)
    return text[:MAX_TEXT]


def _items(order: Order) -> list[dict[str, Any]]:
    """items[]: sku, description, quantity, item_value, item_weight (+ unit) per line that ships."""
    items = []
    for line in order.lines:
        if not line.requires_shipping:
            continue
        item: dict[str, Any] = {"description": line.title[:MAX_TEXT], "quantity": line.quantity}
        if line.sku:
            item["sku"] = line.sku
        if line.unit_price is not None:
            item["item_value"] = _minor(line.unit_price)
        if line.weight is not None:
            item["item_weight"] = _grams(line.weight.in_grams)
            item["item_weight_unit"] = "g"
        items.append(item)
    return items


def shipment_request(
    shipment: Shipment,
    order: Order,
    *,
    sender: dict[str, Any],
    return_address: dict[str, Any],
    shop_id: str,
    service_code: str | None,
    idempotency_key: str,
) -> dict[str, Any]:
    """POST /shipments (PROTOCOLS.md 7): the JSON:API document for one parcel, registered at once. Raises
    PushError naming the canonical field that cannot be sent."""
    to = order.shipping_address
    if to is None:
        raise PushError("order.shipping_address", "the order has no shipping address to send the parcel to")
    if len(shipment.parcels) != 1:
        raise PushError(
            "shipment.parcels",
            f"MyParcel.com registers one parcel per shipment and this one has {len(shipment.parcels)}: "
            "make one shipment per parcel",
        )
    parcel = shipment.parcels[0]
    customer = order.customer
    recipient = address_attributes(to, name=customer.name, email=customer.email, phone=customer.phone)
    if not recipient.get("last_name"):
        raise PushError(
            "order.shipping_address.last_name",
            "MyParcel.com needs the recipient's name: the shipping address and the customer have none",
        )
    physical: dict[str, Any] = {"weight": _grams(parcel.weight.in_grams)}
    if parcel.dimensions is not None:
        for name in ("length", "width", "height"):
            physical[name] = _grams(getattr(parcel.dimensions, name).in_mm)  # whole millimetres, rounded up
    attributes: dict[str, Any] = {
        "recipient_address": recipient,
        "sender_address": sender,
        "return_address": return_address,
        "physical_properties": physical,
        "description": _contents(order) or None,
        "customer_reference": reference_for(idempotency_key),
        "channel": CHANNEL,
        "items": _items(order),
        "register_at": REGISTER_AT,
    }
    total = order.totals.total or order.lines_total
    if total is not None:
        attributes["total_value"] = _minor(total)
    number = order.external_number or order.external_id
    if number:
        attributes["tags"] = [number]
    meta: dict[str, Any] = {"label": {"mime_type": LABEL_TYPES[0]}}
    if service_code:
        # "If an applicable service is found, it will be set as relationship. If no contract relationship is
        # defined, the cheapest contract for this service will be applied." (paths/Shipments.json, POST meta)
        meta["service_code"] = service_code
    return {
        "data": {
            "type": "shipments",
            "attributes": {k: v for k, v in attributes.items() if v is not None},
            "relationships": {"shop": {"data": {"type": "shops", "id": shop_id}}},
        },
        "meta": meta,
    }


# Where a JSON:API source.pointer of a refused POST /shipments points in crossdock's terms.
_POINTERS = (
    ("/data/attributes/recipient_address", "the order's shipping address"),
    (
        "/data/attributes/sender_address",
        "the connection's sender_address setting (or the shop's sender address)",
    ),
    (
        "/data/attributes/return_address",
        "the shop's return address in MyParcel.com (or the sender_address setting)",
    ),
    ("/data/attributes/physical_properties", "the parcel's weight and dimensions"),
    ("/data/attributes/items", "the order's lines"),
    ("/data/attributes/total_value", "the order's total"),
    ("/data/attributes/description", "the order's lines (the shipment's description)"),
    ("/data/relationships/shop", "the connection's shop_id setting"),
    ("/data/relationships/service", "the service (the rate's service code or the default_service setting)"),
    ("/meta/service_code", "the service (the rate's service code or the default_service setting)"),
)
_POINTER = re.compile(r"/(?:data|meta)(?:/[A-Za-z0-9_.-]+)*")


def pointed_fields(words: str) -> list[str]:
    """The crossdock fields behind the JSON:API pointers quoted in a refusal, in order, once each."""
    found: list[str] = []
    for pointer in _POINTER.findall(words):
        for prefix, meaning in _POINTERS:
            if pointer.startswith(prefix) and meaning not in found:
                found.append(meaning)
    return found


def errors_text(errors: Any) -> str:
    """JSON:API errors [{title, detail, source.pointer}] (schemas/Error.json) as one line."""
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        title, detail = error.get("title"), error.get("detail")
        text = ": ".join(str(p) for p in (title, detail) if isinstance(p, str) and p.strip())
        source = error.get("source")
        pointer = source.get("pointer") if isinstance(source, dict) else None
        if isinstance(pointer, str) and pointer:
            text = f"{text} ({pointer})" if text else pointer
        if text:
            parts.append(text)
    return "; ".join(parts)


# -- answers ---------------------------------------------------------------------------------------------------


@dataclass
class LabelFile:
    file_id: str
    mime_type: str


@dataclass
class ShipmentRead:
    """What crossdock needs of one `shipments` resource (and what the document included with it)."""

    id: str | None = None
    status: str | None = None  # the current status code, when the document included it
    status_errors: str = ""  # the current status's errors (registration-failed says why)
    tracking_code: str | None = None
    tracking_url: str | None = None
    customer_reference: str | None = None
    price: Money | None = None
    service_id: str | None = None
    label: LabelFile | None = None  # a label file, when the document included the files
    problems: list[MappingProblem] = field(default_factory=list)


def _included(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    included = document.get("included")
    for resource in included if isinstance(included, list) else []:
        if isinstance(resource, dict) and isinstance(resource.get("type"), str) and resource.get("id"):
            out[(resource["type"], str(resource["id"]))] = resource
    return out


def _related(resource: dict[str, Any], name: str) -> Any:
    relationships = resource.get("relationships")
    related = relationships.get(name) if isinstance(relationships, dict) else None
    return related.get("data") if isinstance(related, dict) else None


def _status_code(status: dict[str, Any], included: dict[tuple[str, str], dict[str, Any]]) -> str | None:
    """The generic status code of a shipment-statuses resource: its `status` relationship's `statuses`
    resource, from what the document included."""
    ref = _related(status, "status")
    if not isinstance(ref, dict):
        return None
    generic = included.get(("statuses", str(ref.get("id"))))
    attributes = generic.get("attributes") if generic else None
    code = attributes.get("code") if isinstance(attributes, dict) else None
    return code if isinstance(code, str) and code else None


def label_file(resource: Any) -> LabelFile | None:
    """A `files` resource that is a label in a format crossdock takes (docs resources/files.md: document_type,
    formats [{extension, mime_type}])."""
    if not isinstance(resource, dict):
        return None
    attributes = resource.get("attributes")
    if not isinstance(attributes, dict) or attributes.get("document_type") != "label":
        return None
    formats = attributes.get("formats")
    types = (
        {f.get("mime_type") for f in formats if isinstance(f, dict)} if isinstance(formats, list) else set()
    )
    for wanted in LABEL_TYPES:
        if wanted in types and resource.get("id"):
            return LabelFile(str(resource["id"]), wanted)
    return None


def read_shipment(document: Any) -> ShipmentRead:
    """A `{data: shipments resource, included?: [...]}` document (GET or POST /shipments)."""
    reader = Reader()
    result = ShipmentRead(problems=reader.problems)
    body = reader.obj(document, "document", required=True, what="MyParcel.com answered without a document")
    if body is None:
        return result
    data = reader.obj(body.get("data"), "data", required=True, what="the answer names no shipment")
    if data is None:
        return result
    return read_resource(data, _included(body), reader, result)


def read_resource(
    data: dict[str, Any],
    included: dict[tuple[str, str], dict[str, Any]],
    reader: Reader | None = None,
    result: ShipmentRead | None = None,
) -> ShipmentRead:
    reader = reader or Reader()
    result = result or ShipmentRead(problems=reader.problems)
    result.id = reader.ident(data.get("id"), "data.id", required=True)
    attributes = reader.obj(data.get("attributes"), "data.attributes") or {}
    result.tracking_code = reader.text(attributes.get("tracking_code"), "data.attributes.tracking_code")
    result.tracking_url = reader.text(attributes.get("tracking_url"), "data.attributes.tracking_url")
    result.customer_reference = reader.text(
        attributes.get("customer_reference"), "data.attributes.customer_reference"
    )
    price = attributes.get("price")
    if isinstance(price, dict):
        try:
            result.price = Money.from_minor(int(price["amount"]), str(price["currency"]))
        except (KeyError, TypeError, ValueError, MoneyError):
            reader.problem("data.attributes.price", f"{price!r} is not an amount in cents with a currency")
    service = _related(data, "service")
    if isinstance(service, dict) and service.get("id"):
        result.service_id = str(service["id"])
    status_ref = _related(data, "shipment_status")
    if isinstance(status_ref, dict):
        status = included.get(("shipment-statuses", str(status_ref.get("id"))))
        if status is not None:
            result.status = _status_code(status, included)
            attrs = status.get("attributes")
            result.status_errors = errors_text(attrs.get("errors")) if isinstance(attrs, dict) else ""
    files = _related(data, "files")
    for ref in files if isinstance(files, list) else []:
        if isinstance(ref, dict):
            found = label_file(included.get(("files", str(ref.get("id")))))
            if found is not None:
                result.label = found
                break
    return result


def read_shipments(document: Any) -> list[ShipmentRead]:
    """A list document (GET /shipments): each shipment with what the document included."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        return []
    included = _included(document)
    return [read_resource(d, included) for d in document["data"] if isinstance(d, dict)]


def tracking_status(code: Any) -> TrackingStatus | None:
    return TRACKING.get(code) if isinstance(code, str) else None


def _unix(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass
class StatusesRead:
    events: list[TrackingEvent] = field(default_factory=list)
    problems: list[MappingProblem] = field(default_factory=list)


def _carrier_status(attributes: dict[str, Any]) -> tuple[str | None, datetime | None]:
    """The carrier's own words and time: `carrier_statuses[]` {code, description, assigned_at} (API
    specification), or the older flat carrier_status_description / carrier_timestamp (docs
    retrieve-shipment-statuses.md)."""
    listed = attributes.get("carrier_statuses")
    if isinstance(listed, list):
        for entry in listed:
            if isinstance(entry, dict):
                words = entry.get("description")
                return (words if isinstance(words, str) and words.strip() else None), _unix(
                    entry.get("assigned_at")
                )
    words = attributes.get("carrier_status_description")
    return (words if isinstance(words, str) and words.strip() else None), _unix(
        attributes.get("carrier_timestamp")
    )


def map_statuses(document: Any) -> StatusesRead:
    """GET /shipments/{id}/statuses?include=status -> TrackingEvents, oldest first. A code crossdock does not
    know becomes UNKNOWN with the code kept in raw_status; a status whose code the document did not include,
    or that has no time, is named as a problem."""
    reader = Reader()
    result = StatusesRead(problems=reader.problems)
    body = reader.obj(document, "document", required=True, what="MyParcel.com answered without a document")
    if body is None:
        return result
    included = _included(body)
    items = reader.array(body.get("data"), "data", required=True, what="the answer lists no statuses") or []
    for i, raw in enumerate(items):
        path = join("data", i)
        status = reader.obj(raw, path, required=True, what="a status must be an object")
        if status is None:
            continue
        code = _status_code(status, included)
        if code is None:
            reader.problem(join(path, "relationships.status"), "names no status code crossdock was given")
            continue
        attributes = status.get("attributes") if isinstance(status.get("attributes"), dict) else {}
        assert isinstance(attributes, dict)
        words, carrier_time = _carrier_status(attributes)
        when = carrier_time or _unix(attributes.get("created_at"))
        if when is None:
            reader.problem(join(path, "attributes.created_at"), "is missing; a tracking event needs its time")
            continue
        generic = included.get(("statuses", str((_related(status, "status") or {}).get("id"))))
        generic_attrs = generic.get("attributes") if generic else None
        name = generic_attrs.get("description") if isinstance(generic_attrs, dict) else None
        errors = errors_text(attributes.get("errors"))
        description = words or (name if isinstance(name, str) and name.strip() else None)
        if errors:
            description = f"{description}: {errors}" if description else errors
        result.events.append(
            TrackingEvent(
                status=tracking_status(code) or TrackingStatus.UNKNOWN,
                occurred_at=when,
                description=description,
                raw_status=code,
            )
        )
    result.events.sort(key=lambda e: (e.occurred_at, LIFE.index(e.raw_status) if e.raw_status in LIFE else 0))
    return result
