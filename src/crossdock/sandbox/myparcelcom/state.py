"""The MyParcel.com API sandbox's state: OAuth clients and tokens, shops, shipments with their status history
and files, idempotency keys.

Time-driven changes (processing -> concept, registration at `register_at`) are applied lazily by `tick()`, which
every request runs first: the state a client reads is always what the real API would show at that instant, and
the sandbox needs no background timers (tests move time with the admin clock).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from crossdock.sandbox.common import DataGen, Faults, SandboxConfig, WebhookSender
from crossdock.sandbox.myparcelcom.resources import (
    JSON,
    JSON_API,
    PROGRESSION,
    SHIPMENT_STATUSES,
    stable_uuid,
    status_callback_document,
)

# docs/content/api/authentication/client-credentials-grant.md: "expires_in": 86400.
TOKEN_TTL_S = 86400
# How long a new shipment shows `shipment-processing` before it becomes a concept (docs: "processing ... will
# automatically update to shipment-concept when the internal processes are finished").
DEFAULT_PROCESSING_S = 0.1

CARRIER_NAMES = {
    "dpd": "DPD",
    "dhl": "DHL",
    "ups": "UPS",
    "gls": "GLS",
    "parcelforce": "Parcelforce",
    "postnl": "PostNL",
    "royal": "Royal Mail",
    "yodel": "Yodel",
    "evri": "Evri",
    "hermes": "Hermes",
    "fedex": "FedEx",
    "bpost": "bpost",
}
SEED_SERVICES = ("royal-mail-tracked-48", "dpd-classic", "parcelforce-express-48", "dhl-parcel-connect")


@dataclass
class ShipmentRecord:
    id: str
    shop_id: str
    attributes: JSON
    service_code: str | None
    created: datetime
    processing_until: datetime
    statuses: list[JSON] = field(default_factory=list)
    files: list[JSON] = field(default_factory=list)
    # meta.label.size of the POST (A4, A5 or A6; the specification's default is A6).
    label_size: str = "A6"

    @property
    def status_code(self) -> str:
        return str(self.statuses[-1]["_code"])


@dataclass
class IdempotencyEntry:
    fingerprint: str
    state: Literal["in_progress", "done"]
    status: int = 0
    body: JSON = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MyParcelComState:
    config: SandboxConfig
    faults: Faults
    webhooks: WebhookSender
    token: str = ""
    shops: dict[str, JSON] = field(default_factory=dict)
    shipments: dict[str, ShipmentRecord] = field(default_factory=dict)
    files: dict[str, tuple[str, JSON]] = field(default_factory=dict)  # file id -> (shipment id, resource)
    idempotency: dict[str, IdempotencyEntry] = field(default_factory=dict)
    events: list[JSON] = field(default_factory=list)
    clock_offset: timedelta = timedelta(0)
    _counter: int = 0
    _quiet: bool = False

    def __post_init__(self) -> None:
        self.datagen = DataGen(self.config.seed)
        self.processing_s = float(self.config.extra.get("processing_s", str(DEFAULT_PROCESSING_S)))
        # Lets tests hold a POST /shipments open to observe a concurrent request with the same Idempotency-Key.
        self.create_latency_s = float(self.config.extra.get("create_latency_s", "0"))
        if not self.token:
            self.token = self.config.token or self.issue_token("*")
        shop_address = self.datagen.address("GB")
        shop_id = stable_uuid(self.config.seed, "shop", 1)
        self.shops[shop_id] = {
            "type": "shops",
            "id": shop_id,
            "attributes": {
                "name": "Crossdock Sandbox Shop",
                "website": "https://shop.example",
                "sender_address": self._address(shop_address, company="Crossdock Sandbox Shop"),
                "return_address": self._address(shop_address, company="Crossdock Sandbox Shop"),
                "created_at": int(self.now().timestamp()),
            },
        }
        self.default_shop_id = shop_id
        # The starting data is the world as it was before anyone subscribed: no webhooks for it.
        self._quiet = True
        for _ in range(self.config.orders):
            self.seed_shipment()
        self._quiet = False

    # -- time and ids ------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def new_id(self, kind: str) -> str:
        self._counter += 1
        return stable_uuid(self.config.seed, kind, self._counter)

    # -- OAuth client credentials --------------------------------------------------------------------------
    def issue_token(self, scope: str) -> str:
        """A JWT (HS256 over the client secret): stateless, like the real RS256 tokens, and expiring."""
        now = int(self.now().timestamp())
        header = {"typ": "JWT", "alg": "HS256"}
        payload = {
            "aud": self.config.client_id,
            "jti": hashlib.sha256(f"{now}|{time.perf_counter_ns()}".encode()).hexdigest()[:40],
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_TTL_S,
            "sub": self.config.client_id,
            "scopes": scope.split(),
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        signature = hmac.new(
            self.config.client_secret.encode(), signing_input.encode(), hashlib.sha256
        ).digest()
        return f"{signing_input}.{_b64(signature)}"

    def check_token(self, token: str) -> str | None:
        """None when valid, else the detail MyParcel.com's JwtRequestAuthenticator gives."""
        if self.config.token and hmac.compare_digest(token.encode(), self.config.token.encode()):
            return None
        parts = token.split(".")
        if len(parts) != 3:
            return "Token could not be parsed"
        try:
            payload = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except ValueError:
            return "Token could not be parsed"
        expected = hmac.new(
            self.config.client_secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(signature, expected):
            return "Token could not be verified"
        if not isinstance(payload, dict) or int(payload.get("exp", 0)) <= int(self.now().timestamp()):
            return "Token expired"
        return None

    # -- shipments -----------------------------------------------------------------------------------------
    def create_shipment(
        self, attributes: JSON, shop_id: str, service_code: str | None, label_size: str = "A6"
    ) -> ShipmentRecord:
        now = self.now()
        record = ShipmentRecord(
            id=self.new_id("shipment"),
            shop_id=shop_id,
            attributes=attributes,
            service_code=service_code,
            created=now,
            processing_until=now + timedelta(seconds=self.processing_s),
            label_size=label_size if label_size in ("A4", "A5", "A6") else "A6",
        )
        weight = int(attributes["physical_properties"]["weight"])
        record.attributes.update(
            created_at=int(now.timestamp()),
            updated_at=int(now.timestamp()),
            synced_at=None,
            sync_active=True,
            tracking_code=None,
            tracking_url=None,
            barcode=None,
            price=self._price(attributes, weight),
        )
        record.attributes.setdefault("register_at", None)
        record.attributes.setdefault("channel", None)
        record.attributes.setdefault("tags", None)
        self.shipments[record.id] = record
        self._push_status(record, "shipment-processing")
        return record

    def import_shipment(self, listed: JSON, service_code: str) -> ShipmentRecord:
        """What the platform does with a shipment an integration lists (section 9 of PROTOCOLS.md): keep it
        in the shop's shipments under MyParcel.com's own id, with the shop's sender and return addresses where
        the listing has none, and register it with the carrier of `service_code` (tracking code and label)."""
        attributes: JSON = dict(listed["attributes"])
        shop_id = str(listed["relationships"]["shop"]["data"]["id"])
        shop = self.shops.get(shop_id) or self.shops[self.default_shop_id]
        for kind in ("sender_address", "return_address"):
            if not attributes.get(kind):
                attributes[kind] = dict(shop["attributes"][kind])
        if not (attributes.get("physical_properties") or {}).get("weight"):
            # A listing without a weight is weighed by the merchant in the platform before registration.
            attributes["physical_properties"] = {
                **(attributes.get("physical_properties") or {}),
                "weight": 1000,
            }
        record = self.create_shipment(attributes, shop_id, service_code)
        self._push_status(record, "shipment-concept")
        self.register(record)
        return record

    def _price(self, attributes: JSON, weight_g: int) -> JSON:
        sender = attributes["sender_address"]["country_code"]
        recipient = attributes["recipient_address"]["country_code"]
        cents = (695 if sender == recipient else 1450) + 120 * max(1, math.ceil(weight_g / 1000))
        return {"amount": cents, "currency": "GBP" if sender == "GB" else "EUR"}

    def tick(self) -> None:
        """Apply every change whose time has come (see the module docstring)."""
        now = self.now()
        for record in self.shipments.values():
            if record.status_code == "shipment-processing" and now >= record.processing_until:
                self._push_status(record, "shipment-concept")
            register_at = record.attributes.get("register_at")
            if (
                record.status_code == "shipment-concept"
                and isinstance(register_at, int)
                and register_at <= int(now.timestamp())
            ):
                self.register(record)

    def register(self, record: ShipmentRecord) -> None:
        """Hand the concept to the carrier: a tracking code and a label file, or registration-failed."""
        if not record.service_code:
            self._push_status(
                record,
                "shipment-registration-failed",
                errors=[
                    {
                        "status": "422",
                        "code": "13002",
                        "title": "Carrier API Error",
                        "detail": "No service was selected for this shipment; set meta.service_code.",
                    }
                ],
            )
            return
        if self.config.extra.get("fail_registration") in ("1", "true", "yes"):
            self._push_status(
                record,
                "shipment-registration-failed",
                errors=[
                    {
                        "status": "422",
                        "code": "13002",
                        "title": "Carrier API Error",
                        "detail": f"{self.carrier(record)} rejected the shipment (sandbox fail_registration).",
                    }
                ],
            )
            return
        digits = str(int(hashlib.sha256(record.id.encode()).hexdigest(), 16))[:12]
        words = self.carrier(record).split()
        prefix = ("".join(w[0] for w in words) if len(words) > 1 else words[0][:3]).upper()
        code = f"{prefix}{digits}"
        record.attributes.update(
            tracking_code=code,
            barcode=code,
            tracking_url=f"https://tracking.myparcel.com/{code}",
            updated_at=int(self.now().timestamp()),
        )
        file_id = self.new_id("file")
        file_resource: JSON = {
            "type": "files",
            "id": file_id,
            "attributes": {
                "document_type": "label",
                "formats": [
                    {"extension": "pdf", "mime_type": "application/pdf"},
                    {"extension": "png", "mime_type": "image/png"},
                ],
            },
        }
        record.files.append(file_resource)
        self.files[file_id] = (record.id, file_resource)
        self._push_status(record, "shipment-registered")

    def advance(self, record: ShipmentRecord, code: str | None = None) -> None:
        self.tick()
        current = record.status_code
        if code is None:
            if current == "shipment-processing":
                self._push_status(record, "shipment-concept")
                return
            if current not in PROGRESSION or current == PROGRESSION[-1]:
                raise ValueError(f"shipment {record.id} is {current}; it does not advance further")
            code = PROGRESSION[PROGRESSION.index(current) + 1]
        if code not in SHIPMENT_STATUSES:
            raise ValueError(f"unknown status code {code!r}")
        if code == "shipment-registered":
            if current not in ("shipment-concept", "shipment-processing", "shipment-registration-failed"):
                raise ValueError(f"shipment {record.id} is {current}; only a concept can be registered")
            self.register(record)
            return
        self._push_status(record, code)

    def carrier(self, record: ShipmentRecord) -> str:
        return carrier_name(record.service_code)

    def void(self, record: ShipmentRecord) -> bool:
        """Void a registered shipment: its label is deleted and it gets `shipment-voided` (docs content/api/
        rpc-endpoints/void-shipment.md). False when it is not voidable."""
        self.tick()
        if record.status_code != "shipment-registered":
            return False
        for file_resource in record.files:
            self.files.pop(file_resource["id"], None)
        record.files.clear()
        self._push_status(record, "shipment-voided")
        return True

    # -- services and carriers -------------------------------------------------------------------------------
    def service_resource(self, service_id: str) -> JSON | None:
        """A `services` resource for a service code some shipment uses, with its carrier relationship."""
        codes = {record.service_code for record in self.shipments.values() if record.service_code}
        code = next(
            (c for c in sorted(codes | set(SEED_SERVICES)) if stable_uuid("service", c) == service_id), None
        )
        if code is None:
            return None
        carrier_code = carrier_code_of(code)
        return {
            "type": "services",
            "id": service_id,
            "attributes": {"name": code.replace("-", " ").title(), "code": code},
            "relationships": {
                "carrier": {"data": {"type": "carriers", "id": stable_uuid("carrier", carrier_code)}}
            },
        }

    def carrier_resource(self, carrier_id: str) -> JSON | None:
        codes = {carrier_code_of(r.service_code) for r in self.shipments.values() if r.service_code}
        codes |= {carrier_code_of(c) for c in SEED_SERVICES}
        code = next((c for c in sorted(codes) if stable_uuid("carrier", c) == carrier_id), None)
        if code is None:
            return None
        return {
            "type": "carriers",
            "id": carrier_id,
            "attributes": {"name": carrier_name(code), "code": code},
        }

    def _push_status(self, record: ShipmentRecord, code: str, errors: list[JSON] | None = None) -> None:
        now = int(self.now().timestamp())
        status = {
            "type": "shipment-statuses",
            "id": self.new_id("shipment-status"),
            "attributes": {
                "carrier_statuses": (
                    []
                    if code in ("shipment-processing", "shipment-concept", "shipment-registration-failed")
                    else [
                        {
                            "code": code.removeprefix("shipment-").upper().replace("-", "_"),
                            "description": SHIPMENT_STATUSES[code][2],
                            "assigned_at": now,
                        }
                    ]
                ),
                "errors": errors or [],
                "created_at": now,
            },
            "relationships": {
                "shipment": {"data": {"type": "shipments", "id": record.id}},
                "status": {"data": {"type": "statuses", "id": stable_uuid("status", code)}},
            },
            # Internal: the code, stripped before the resource is shown.
            "_code": code,
        }
        record.statuses.append(status)
        record.attributes["updated_at"] = now
        self.emit_status(record)

    # -- rendering ---------------------------------------------------------------------------------------------
    def shipment_status(self, record: ShipmentRecord, index: int = -1) -> JSON:
        return {k: v for k, v in record.statuses[index].items() if not k.startswith("_")}

    def shipment_resource(self, record: ShipmentRecord, base: str) -> JSON:
        status = record.statuses[-1]
        relationships: JSON = {
            "shop": {"data": {"type": "shops", "id": record.shop_id}},
            "shipment_status": {
                "data": {"type": "shipment-statuses", "id": status["id"]},
                "links": {"related": f"{base}/shipments/{record.id}/statuses/{status['id']}"},
            },
            "files": {
                "data": [{"type": "files", "id": f["id"]} for f in record.files],
                "links": {"related": f"{base}/shipments/{record.id}/files"},
            },
        }
        if record.service_code:
            relationships["service"] = {
                "data": {"type": "services", "id": stable_uuid("service", record.service_code)}
            }
        return {
            "type": "shipments",
            "id": record.id,
            "attributes": dict(record.attributes),
            "relationships": relationships,
            "links": {
                "self": f"{base}/shipments/{record.id}",
                "files": f"{base}/shipments/{record.id}/files",
            },
        }

    def file_resource(self, file_resource: JSON, base: str) -> JSON:
        return {**file_resource, "links": {"self": f"{base}/files/{file_resource['id']}"}}

    # -- webhooks ------------------------------------------------------------------------------------------------
    def emit_status(self, record: ShipmentRecord) -> None:
        """Status change -> the status document (same shape as the platform's status callback) to the webhook
        URL (verify: MyParcel.com's webhook-subscription payload is not documented in what we captured)."""
        base = self.config.extra.get("public_base_url", "https://sandbox-api.myparcel.com")
        document = status_callback_document(
            self.shipment_resource(record, base), self.shipment_status(record)
        )
        self.events.append(document)
        if self.config.webhook_url and not self._quiet:
            self.webhooks.enqueue(
                self.config.webhook_url, json.dumps(document).encode(), {"Content-Type": JSON_API}
            )

    # -- seed data -----------------------------------------------------------------------------------------------
    def _address(self, a: Any, company: str | None = None) -> JSON:
        return {
            "street_1": a.line1,
            "street_2": a.line2,
            "postal_code": a.postal_code,
            "city": a.city,
            "state_code": (a.province_code or "").split("-")[-1] or None,
            "country_code": a.country_code,
            "first_name": a.first_name,
            "last_name": a.last_name,
            "company": company or a.company,
            "email": None,
            "phone_number": a.phone,
        }

    def seed_shipment(self) -> ShipmentRecord:
        gen = self.datagen
        shop = self.shops[self.default_shop_id]
        recipient = self._address(gen.address())
        currency = "GBP"
        items = gen.line_items(currency)
        attributes: JSON = {
            "recipient_address": recipient,
            "sender_address": dict(shop["attributes"]["sender_address"]),
            "return_address": dict(shop["attributes"]["return_address"]),
            "description": ", ".join(i.title for i in items)[:255],
            "customer_reference": f"#{1000 + len(self.shipments) + 1}",
            "channel": "crossdock-sandbox",
            "physical_properties": {"weight": max(100, sum(i.grams * i.quantity for i in items))},
            "items": [
                {
                    "sku": i.sku,
                    "description": i.title,
                    "quantity": i.quantity,
                    "item_value": {"amount": int(i.unit_price * 100), "currency": currency},
                }
                for i in items
            ],
            "total_value": {
                "amount": int(sum(i.unit_price * i.quantity for i in items) * 100),
                "currency": currency,
            },
        }
        record = self.create_shipment(attributes, self.default_shop_id, gen.rng.choice(SEED_SERVICES))
        created = gen.instant(self.now() - timedelta(days=14), self.now())
        record.created = created
        record.attributes["created_at"] = int(created.timestamp())
        self._push_status(record, "shipment-concept")
        if gen.rng.random() < 0.5:
            self.register(record)
        return record


def carrier_code_of(service_code: str | None) -> str:
    """The carrier part of a sandbox service code: "royal-mail-tracked-48" -> "royal"."""
    return (service_code or "sandbox").split("-")[0]


def carrier_name(service_code: str | None) -> str:
    prefix = carrier_code_of(service_code)
    return CARRIER_NAMES.get(prefix, prefix.title())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
