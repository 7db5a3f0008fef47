"""MyParcel.com JSON:API vocabulary shared by the API sandbox and the platform simulator.

Status codes and levels: MyParcelCOM/docs content/api/retrieve-shipment-statuses.md. Error codes and titles:
MyParcelCOM/json-api src/Exceptions/Interfaces/ExceptionInterface.php. Status callback document shape:
MyParcelCOM/marketplace-commons MatchingChannelOnly.php and ShipmentStatusCallbackRequest.php (the callback's
`included` holds a `statuses` resource and a `shipments` resource whose relationships name the shop).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

JSON = dict[str, Any]
JSON_API = "application/vnd.api+json"

# code -> (level, name, description)
SHIPMENT_STATUSES: dict[str, tuple[str, str, str]] = {
    "shipment-processing": ("pending", "Processing", "The shipment is being processed internally."),
    "shipment-concept": ("pending", "Concept", "The shipment was created, but has not been registered with the carrier (yet)."),
    "shipment-registered": ("in-progress", "Registered", "The shipment was registered with the carrier. Files (such as a label) are available."),
    "shipment-received-by-carrier": ("in-progress", "Received by carrier", "The shipment was collected by or handed over to the carrier."),
    "shipment-at-sorting": ("in-progress", "At sorting", "The shipment is in the sorting process of the carrier."),
    "shipment-with-courier": ("in-progress", "With courier", "The shipment is with the courier and on its way to the destination."),
    "shipment-delivered": ("success", "Delivered", "The shipment was delivered successfully."),
    "shipment-failed": ("failed", "Failed", "The shipping process failed and will not continue."),
    "shipment-created-without-tracking": ("success", "Created without tracking", "The shipment was registered and has files available, but no further tracking is available."),
    "shipment-registration-failed": ("failed", "Registration failed", "The concept shipment was rejected by the carrier and might need to be updated before registering again."),
    "shipment-returned-to-sender": ("failed", "Returned to sender", "The shipment is being returned to the sender."),
    "shipment-voided": ("cancelled", "Voided", "The shipment was voided."),
}  # fmt: skip

# The life of a registered parcel; admin "advance" walks it one step at a time.
PROGRESSION = (
    "shipment-concept",
    "shipment-registered",
    "shipment-received-by-carrier",
    "shipment-at-sorting",
    "shipment-with-courier",
    "shipment-delivered",
)

# (code, title) from MyParcelCOM/json-api ExceptionInterface.
NOT_FOUND = ("10000", "Not Found")
INTERNAL_SERVER_ERROR = ("10001", "Internal Server Error")
RESOURCE_NOT_FOUND = ("10002", "Resource Not Found")
INVALID_JSON_SCHEMA = ("10003", "Invalid JSON Schema")
INVALID_REQUEST_HEADER = ("10004", "Invalid Request Header")
RESOURCE_CONFLICT = ("10007", "Resource Conflict")
UNPROCESSABLE_ENTITY = ("10008", "Unprocessable entity")
METHOD_NOT_ALLOWED = ("10009", "Method not allowed")
TOO_MANY_REQUESTS = ("10011", "Too many requests.")
CARRIER_API_ERROR = ("13002", "Carrier API Error")
AUTH_INVALID_CLIENT = ("14000", "Invalid OAuth Client")
AUTH_INVALID_TOKEN = ("14002", "Access Token Is Invalid")
AUTH_MISSING_TOKEN = ("14003", "No Access Token Provided")
AUTH_SERVER_EXCEPTION = ("14050", "Unable To Process OAuth Request")


def error(status: int, kind: tuple[str, str], detail: str, pointer: str | None = None, **extra: Any) -> JSON:
    """One JSON:API error object as MyParcel.com renders it (specification/schemas/Error.json)."""
    obj: JSON = {"status": str(status), "code": kind[0], "title": kind[1], "detail": detail}
    if pointer is not None:
        obj["source"] = {"pointer": pointer}
    obj.update(extra)
    return obj


def stable_uuid(*parts: object) -> str:
    """A version-4-shaped UUID derived from `parts`, so ids are the same for the same seed and history."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def status_resource(code: str) -> JSON:
    """The generic `statuses` resource for a shipment status code."""
    level, name, description = SHIPMENT_STATUSES[code]
    return {
        "type": "statuses",
        "id": stable_uuid("status", code),
        "attributes": {
            "code": code,
            "resource_type": "shipments",
            "level": level,
            "name": name,
            "description": description,
        },
    }


def status_callback_document(shipment: JSON, shipment_status: JSON) -> JSON:
    """The document the platform posts to an integration's /callback/shipment-statuses (and the sandbox posts
    to its webhook URL): the shipment-status as primary data; its generic status and the shipment included."""
    code_id = shipment_status["relationships"]["status"]["data"]["id"]
    code = next(c for c in SHIPMENT_STATUSES if stable_uuid("status", c) == code_id)
    return {
        "data": shipment_status,
        "included": [status_resource(code), shipment],
    }
