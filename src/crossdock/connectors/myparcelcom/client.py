"""The MyParcel.com connector's runtime: shipments (labels), voids and status polling through the engine's
RemoteClient. Mapping lives in `mapping.py`, tokens in `auth.py`; this module only calls and maps.

Wire facts: PROTOCOLS.md section 7, MyParcelCOM/api-specification and MyParcelCOM/docs, named beside each rule.

Never creating twice: every `POST /shipments` carries the job's idempotency key in the `Idempotency-Key`
header (MyParcel.com replays the stored answer for a repeated key, `Idempotency-Replay: true`, and answers 423
while the first request is still being processed), so a retried POST returns the same shipment. The key is
also the shipment's `customer_reference`, which `find_label` looks up with the strict
`filter[customer_reference]`: a lookup that never creates anything.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

from crossdock.connectors.base import BoughtLabel, ConnectionContext, VoidOutcome
from crossdock.connectors.myparcelcom.auth import ClientCredentialsAuth, auth_base_url
from crossdock.connectors.myparcelcom.mapping import (
    JSON_API,
    LABELLED,
    NO_LABEL,
    PENDING,
    ShipmentRead,
    map_statuses,
    pointed_fields,
    read_shipment,
    read_shipments,
    reference_for,
    sender_setting,
    shipment_request,
)
from crossdock.connectors.remote_json import PushError, json_object
from crossdock.engine.errors import ConfigurationError, PermanentError, RetryableError
from crossdock.engine.http import (
    RemotePermanentError,
    RemoteRetryableError,
)
from crossdock.model import LabelFormat, Order, Rate, Shipment, TrackingEvent

DEFAULT_BASE_URL = "https://api.myparcel.com"
# How long one call waits for MyParcel.com to register a shipment with the carrier (processing -> concept ->
# registered) before the job is retried later.
LABEL_WAIT_S = 30.0
# Statuses are few per shipment; one page of the largest size usually holds them all.
STATUS_PAGE_SIZE = 100
STATUS_PAGES = 10
# Asked with every shipment read: its current status with the generic status (its code), and its files.
INCLUDE = "shipment_status.status,files"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REAUTH_HINT = (
    "check the connection's client_id setting and client_secret secret against the API client in MyParcel.com"
)


def _segment(value: str) -> str:
    """One URL path segment: ids come from our records, but never let one change the path."""
    return quote(value, safe="")


class MyParcelComConnector:
    """One MyParcel.com shop (a connection): shipping.labels and tracking.poll."""

    # find_label finds a shipment by the customer_reference it was created with (see ShippingLabels).
    finds_labels = True

    def __init__(self, ctx: ConnectionContext) -> None:
        self.ctx = ctx
        client_id = str(ctx.settings.get("client_id") or "").strip()
        self.shop_id = str(ctx.settings.get("shop_id") or "").strip()
        if not client_id or not (ctx.secrets.get("client_secret") or "").strip():
            raise ConfigurationError(
                "the MyParcel.com connection needs its API client: set the client_id setting and the "
                "client_secret secret from the API client made in MyParcel.com"
            )
        if not _UUID.match(self.shop_id):
            raise ConfigurationError(
                f"the MyParcel.com shop_id setting {self.shop_id!r} is not a shop UUID: copy the id of the shop "
                "from MyParcel.com (GET /shops lists them)"
            )
        try:
            self.sender = sender_setting(ctx.settings.get("sender_address"))
        except ValueError as exc:
            raise ConfigurationError(
                f"the MyParcel.com sender_address setting {exc}; see docs/myparcelcom.md"
            ) from None
        self.default_service = str(ctx.settings.get("default_service") or "").strip() or None
        base = ctx.base_url or DEFAULT_BASE_URL
        # Credentials to scrub from records and errors; the auth hook adds each access token it gets.
        self._scrub: set[str] = {v for v in ctx.secrets.values() if v}
        auth_url = auth_base_url(ctx.settings.get("auth_url"), base)
        self._tokens = ctx.make_client(default_base_url=auth_url, secrets=self._scrub)
        self.auth = ClientCredentialsAuth(ctx, self._tokens, auth_url, self._scrub)
        self.client = ctx.make_client(
            default_base_url=DEFAULT_BASE_URL,
            auth=self.auth,
            secrets=self._scrub,
            headers={"Accept": JSON_API},
            reauth_hint=lambda _status: REAUTH_HINT,
        )
        self.label_wait_s = LABEL_WAIT_S
        self._shop: dict[str, Any] | None = None
        self._carriers: dict[str, tuple[str, str]] = {}  # service id -> (service code, carrier name)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._tokens.aclose()

    # -- plumbing -----------------------------------------------------------------------------------------------

    async def _json(
        self, method: str, path: str, *, operation: str, order_id: uuid.UUID | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self.client.request(method, path, operation=operation, order_id=order_id, **kwargs)
        return json_object(response, "MyParcel.com", f"{method} {path}")

    async def _shop_attributes(self) -> dict[str, Any]:
        """The connection's shop (GET /shops/{shop_id}; the answer's `data` is a list in the API specification,
        paths/Shops-shop_id.json, and a single resource is read too)."""
        if self._shop is None:
            try:
                document = await self._json("GET", f"/shops/{_segment(self.shop_id)}", operation="shop")
            except RemotePermanentError as exc:
                if exc.status == 404:
                    raise ConfigurationError(
                        f"MyParcel.com has no shop {self.shop_id} for this API client: check the connection's "
                        "shop_id setting"
                    ) from None
                raise
            data = document.get("data")
            if isinstance(data, list):
                data = next((d for d in data if isinstance(d, dict) and d.get("id") == self.shop_id), None)
            if not isinstance(data, dict):
                raise RetryableError(
                    f"MyParcel.com answered GET /shops/{self.shop_id} without the shop; try again"
                )
            attributes = data.get("attributes")
            self._shop = attributes if isinstance(attributes, dict) else {}
        return self._shop

    # -- check --------------------------------------------------------------------------------------------------

    async def check(self) -> str:
        """A token, then the connection's shop: proves the client credentials and the shop_id at once."""
        shop = await self._shop_attributes()
        name = shop.get("name")
        return (
            f"MyParcel.com shop {name} ({self.shop_id})"
            if isinstance(name, str)
            else f"MyParcel.com shop {self.shop_id}"
        )

    # -- shipping.labels ----------------------------------------------------------------------------------------

    async def _addresses(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The sender and return addresses: the sender_address setting when set (it is also the return address
        unless the shop has one), else the shop's own sender and return addresses in MyParcel.com."""
        if self.sender is not None:
            shop = await self._shop_attributes()
            ret = shop.get("return_address")
            return self.sender, ret if isinstance(ret, dict) and ret.get("street_1") else self.sender
        shop = await self._shop_attributes()
        sender = shop.get("sender_address")
        if not isinstance(sender, dict) or not sender.get("street_1"):
            raise ConfigurationError(
                "the MyParcel.com shop has no sender address and the connection has no sender_address setting: "
                "give the shop a sender address in MyParcel.com, or set sender_address (see docs/myparcelcom.md)"
            )
        ret = shop.get("return_address")
        clean_sender = {k: v for k, v in sender.items() if v not in (None, "")}
        if isinstance(ret, dict) and ret.get("street_1"):
            return clean_sender, {k: v for k, v in ret.items() if v not in (None, "")}
        return clean_sender, clean_sender

    async def buy_label(
        self, shipment: Shipment, order: Order, rate: Rate | None, idempotency_key: str
    ) -> BoughtLabel:
        """POST /shipments (registered at once), then the label file once MyParcel.com has registered it."""
        service = (
            rate.service_code if rate is not None and rate.service_code else None
        ) or self.default_service
        if service is None:
            raise PermanentError(
                "MyParcel.com needs a service for the label: choose a rate with a service code, or set the "
                "connection's default_service setting (a MyParcel.com service code such as dpd-classic)"
            )
        sender, return_address = await self._addresses()
        try:
            body = shipment_request(
                shipment,
                order,
                sender=sender,
                return_address=return_address,
                shop_id=self.shop_id,
                service_code=service,
                idempotency_key=idempotency_key,
            )
        except PushError as exc:
            raise PermanentError(
                f"cannot send this shipment to MyParcel.com: {exc.field}: {exc.reason}"
            ) from None
        try:
            response = await self.client.request(
                "POST",
                "/shipments",
                operation="create",
                order_id=shipment.order_id,
                content=json.dumps(body).encode(),
                headers={"Content-Type": JSON_API},
                idempotency_key=idempotency_key,
            )
        except RemotePermanentError as exc:
            raise _refusal(exc) from None
        read = read_shipment(json_object(response, "MyParcel.com", "POST /shipments"))
        if read.id is None:
            raise RetryableError(
                "MyParcel.com answered POST /shipments without the shipment's id; the same request will be sent "
                "again (its Idempotency-Key returns the same shipment)"
            )
        return await self._label(read, shipment.order_id, rate)

    async def find_label(self, idempotency_key: str) -> BoughtLabel | None:
        """The shipment made with this key (its customer_reference), if MyParcel.com has one: one still being
        registered is waited for (a RetryableError past the wait, never None, which would create another); one
        whose registration failed, that failed or was voided left no label, so it counts as none."""
        found = await self._find(reference_for(idempotency_key))
        if found is None or found.status in NO_LABEL:
            return None
        return await self._label(found, None, None)

    async def _find(self, reference: str) -> ShipmentRead | None:
        document = await self._json(
            "GET",
            "/shipments",
            operation="list",
            params={
                "filter[customer_reference]": reference,
                "filter[shop]": self.shop_id,
                "include": INCLUDE,
            },
        )
        matches = [s for s in read_shipments(document) if s.id and s.customer_reference == reference]
        for wanted in (LABELLED, PENDING):
            for found in matches:
                if found.status in wanted:
                    return found
        return matches[0] if matches else None

    async def _get(self, shipment_id: str, order_id: uuid.UUID | None) -> ShipmentRead:
        document = await self._json(
            "GET",
            f"/shipments/{_segment(shipment_id)}",
            operation="get",
            order_id=order_id,
            params={"include": INCLUDE},
        )
        return read_shipment(document)

    async def _label(self, read: ShipmentRead, order_id: uuid.UUID | None, rate: Rate | None) -> BoughtLabel:
        """Wait while MyParcel.com registers the shipment (within label_wait_s), then fetch its label file."""
        assert read.id is not None
        shipment_id = read.id
        deadline = time.monotonic() + self.label_wait_s
        pause = 0.1
        while (
            read.status is None or read.status in PENDING or (read.status in LABELLED and read.label is None)
        ):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RetryableError(
                    f"MyParcel.com is still registering shipment {shipment_id} with the carrier (its status is "
                    f"{read.status or 'unknown'}); crossdock will look again when the job is retried",
                    retry_after=30.0,
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 2.0)
            read = await self._get(shipment_id, order_id)
        if read.status == "shipment-registration-failed":
            raise PermanentError(
                f"the carrier refused MyParcel.com shipment {shipment_id}: {read.status_errors or 'no reason given'}. "
                "Correct the shipment in MyParcel.com and register it again (this job finds it then), or correct "
                "the order and create a new shipment"
            )
        if read.status in NO_LABEL:
            raise PermanentError(
                f"MyParcel.com shipment {shipment_id} is {read.status}: it has no label to use"
            )
        if read.status not in LABELLED or read.label is None:
            raise PermanentError(
                f"MyParcel.com shipment {shipment_id} has the status {read.status}, which crossdock does not know "
                "to have a label"
            )
        label = read.label
        response = await self.client.request(
            "GET",
            f"/files/{_segment(label.file_id)}",
            operation="file",
            order_id=order_id,
            headers={"Accept": label.mime_type},
        )
        if not response.content:
            raise RetryableError(
                f"the label file of MyParcel.com shipment {shipment_id} was empty; try again"
            )
        service_code, carrier = await self._service(read, order_id)
        return BoughtLabel(
            remote_id=shipment_id,
            carrier=carrier or (rate.carrier if rate is not None else ""),
            service_code=service_code
            or (rate.service_code if rate is not None else "")
            or self.default_service
            or "",
            tracking_number=read.tracking_code,
            tracking_url=read.tracking_url,
            file=response.content,
            file_format=LabelFormat.PDF if label.mime_type == "application/pdf" else LabelFormat.PNG,
            price=read.price or (rate.price if rate is not None else None),
            raw={
                "shipment_id": shipment_id,
                "status": read.status,
                "customer_reference": read.customer_reference,
            },
        )

    async def carrier_of(self, remote_id: str) -> str | None:
        """The carrier of a shipment MyParcel.com made, whoever asked for it (the platform's own imports
        through the integration contract included): its service's carrier."""
        _, carrier = await self._service(await self._get(remote_id, None), None)
        return carrier

    async def _service(self, read: ShipmentRead, order_id: uuid.UUID | None) -> tuple[str | None, str | None]:
        """The shipment's service code and carrier name: GET /services/{id}, then its carrier (GET
        /carriers/{id}); remembered per service. A lookup MyParcel.com refuses leaves both unknown."""
        if read.service_id is None:
            return None, None
        if read.service_id not in self._carriers:
            try:
                service = await self._json(
                    "GET", f"/services/{_segment(read.service_id)}", operation="get", order_id=order_id
                )
                data = service.get("data") if isinstance(service.get("data"), dict) else {}
                assert isinstance(data, dict)
                attributes = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
                assert isinstance(attributes, dict)
                carrier_ref = (data.get("relationships") or {}).get("carrier", {}).get("data") or {}
                name = ""
                if isinstance(carrier_ref, dict) and carrier_ref.get("id"):
                    carrier = await self._json(
                        "GET",
                        f"/carriers/{_segment(str(carrier_ref['id']))}",
                        operation="get",
                        order_id=order_id,
                    )
                    carrier_data = carrier.get("data") if isinstance(carrier.get("data"), dict) else {}
                    assert isinstance(carrier_data, dict)
                    name = str((carrier_data.get("attributes") or {}).get("name") or "")
                self._carriers[read.service_id] = (str(attributes.get("code") or ""), name)
            except RemotePermanentError:
                return None, None
        code, name = self._carriers[read.service_id]
        return code or None, name or None

    async def void_label(self, remote_id: str) -> VoidOutcome:
        """POST /void-shipment {"data": {"shipment_id"}} (docs content/api/rpc-endpoints/void-shipment.md): 204
        voids it; 423 means the carrier has it already or it is not in a voidable state."""
        try:
            await self.client.request(
                "POST",
                "/void-shipment",
                operation="void",
                content=json.dumps({"data": {"shipment_id": remote_id}}).encode(),
                headers={"Content-Type": JSON_API},
                lookup_first=True,
            )
        except RemoteRetryableError as exc:
            if exc.status != 423:
                raise
            read = await self._get(remote_id, None)
            if read.status == "shipment-voided":
                return VoidOutcome(True, f"MyParcel.com shipment {remote_id} is voided already")
            words = exc.remote_message or "the shipment is not voidable"
            return VoidOutcome(
                False,
                f"MyParcel.com would not void shipment {remote_id} (its status is {read.status or 'unknown'}): "
                f"{words}. Only a registered shipment whose label the carrier has not scanned can be voided; if "
                "the parcel will not ship, ask the carrier (or MyParcel.com support) to cancel it",
            )
        except RemotePermanentError as exc:
            return VoidOutcome(
                False,
                f"MyParcel.com refused to void shipment {remote_id}: {exc.remote_message or exc.message}",
            )
        return VoidOutcome(True, f"MyParcel.com voided shipment {remote_id}; its label can no longer be used")

    # -- tracking -----------------------------------------------------------------------------------------------

    async def track(self, shipment: Shipment) -> list[TrackingEvent]:
        """The shipment's status history (GET /shipments/{id}/statuses?include=status), oldest first. The
        MyParcel.com shipment is found by its tracking code (the strict filter[tracking_code], api-specification
        parameters/query-shipments-filter-tracking_code.json)."""
        if not shipment.tracking_number:
            raise PermanentError("the shipment has no tracking number yet: buy its label first")
        document = await self._json(
            "GET",
            "/shipments",
            operation="list",
            order_id=shipment.order_id,
            params={"filter[tracking_code]": shipment.tracking_number, "filter[shop]": self.shop_id},
        )
        found = [s for s in read_shipments(document) if s.id and s.tracking_code == shipment.tracking_number]
        if not found:
            raise PermanentError(
                f"MyParcel.com has no shipment with the tracking code {shipment.tracking_number} in shop "
                f"{self.shop_id}: was the label made with this connection?"
            )
        shipment_id = found[0].id
        assert shipment_id is not None
        statuses: list[Any] = []
        included: list[Any] = []
        page = 1
        while page <= STATUS_PAGES:
            listed = await self._json(
                "GET",
                f"/shipments/{_segment(shipment_id)}/statuses",
                operation="statuses",
                order_id=shipment.order_id,
                params={"include": "status", "page[number]": page, "page[size]": STATUS_PAGE_SIZE},
            )
            for name, into in (("data", statuses), ("included", included)):
                value = listed.get(name)
                if isinstance(value, list):
                    into.extend(value)
            links = listed.get("links")
            if not isinstance(links, dict) or not links.get("next"):
                break
            page += 1
        read = map_statuses({"data": statuses, "included": included})
        if read.problems and not read.events:
            unread = "; ".join(f"{p.field} {p.reason}" for p in read.problems)
            raise PermanentError(
                f"MyParcel.com's statuses of shipment {shipment_id} could not be read: {unread}"
            )
        return read.events


def _refusal(exc: RemotePermanentError) -> PermanentError:
    """A refused POST /shipments in MyParcel.com's words (JSON:API errors: detail and source.pointer), with the
    crossdock fields the pointers name and what to do."""
    words = exc.remote_message or exc.message
    fields = pointed_fields(words)
    where = (
        f" Check {', '.join(fields)}, then try again." if fields else " Correct the shipment, then try again."
    )
    return RemotePermanentError(
        f"MyParcel.com refused the shipment (HTTP {exc.status}): {words}.{where}",
        status=exc.status,
        remote_message=exc.remote_message,
    )
