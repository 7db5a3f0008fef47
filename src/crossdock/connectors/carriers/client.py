"""The `carriers` connector: rates, labels, voids and tracking for any carrier karrio supports.

One connection is one carrier account (UPS, FedEx, USPS, or any other karrio carrier whose karrio-<carrier>
package is installed). The connector builds a karrio gateway from the connection's settings and secrets
(gateway.py), maps the canonical shipment to karrio's unified models (mapping.py) and calls karrio's SDK
(karrioapi/karrio: modules/sdk/karrio/api/interface.py: Rating.fetch, Shipment.create, Shipment.cancel,
Tracking.fetch). karrio is synchronous: each call runs in a worker thread under a time limit, and its HTTP is
routed through the connection's RemoteClient (transport.py), so carrier calls are URL-checked, rate limited,
classified and recorded like every other connector's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from crossdock.connectors.base import BoughtLabel, ConnectionContext, VoidOutcome
from crossdock.connectors.carriers import gateway as gw
from crossdock.connectors.carriers import mapping
from crossdock.connectors.carriers import transport as tx
from crossdock.engine.errors import ConfigurationError, JobError, PermanentError
from crossdock.model import Address, LabelFormat, Order, Rate, Shipment, TrackingEvent

T = TypeVar("T")

# A karrio operation is a few HTTP calls (token, payment authorisation, the call itself), each bounded by
# the RemoteClient's own timeouts; this bounds the whole.
OPERATION_TIMEOUT_S = 120.0
# karrio's codes for what a carrier plugin cannot do (karrio/api/gateway.py, Gateway.check).
UNSUPPORTED = "SHIPPING_SDK_NON_SUPPORTED_ERROR"
ORIGIN_NOT_SERVICED = "SHIPPING_SDK_ORIGIN_NOT_SERVICED_ERROR"


class CarriersConnector:
    """One carrier account through karrio: shipping.rates, shipping.labels and tracking.poll."""

    # The carriers have no lookup by a key of ours (see find_label): a purchase whose outcome is unknown is
    # never repeated by the flow.
    finds_labels = False

    def __init__(self, ctx: ConnectionContext, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # `transport` replaces the HTTP transport under the RemoteClient (tests answer as the carrier would).
        self.ctx = ctx
        self.carrier = str(ctx.settings.get("carrier") or "").strip().lower()
        if not self.carrier:
            raise ConfigurationError("the connection names no carrier: set 'carrier' (ups, fedex, usps, ...)")
        self.client = ctx.make_client(
            default_base_url="",
            policy=gw.rate_policy(self.carrier),
            transport=tx.CapturingTransport(transport),
        )
        self._bucket_of = gw.bucket_of(self.carrier)
        self._gateway: Any = None
        self.timeout_s = OPERATION_TIMEOUT_S

    async def aclose(self) -> None:
        await self.client.aclose()

    # Running karrio ----------------------------------------------------------------------------------------
    def _open_gateway(self) -> Any:
        """karrio's gateway for this connection (built once, in the worker thread: loading the carrier
        plugins imports their packages)."""
        if self._gateway is not None:
            return self._gateway
        import attr
        import karrio.references as references
        import karrio.sdk as karrio

        tx.install()
        providers = references.collect_providers_data()
        provider = providers.get(self.carrier)
        if provider is None:
            installed = ", ".join(sorted(providers)) or "none"
            raise ConfigurationError(
                f"karrio has no carrier '{self.carrier}' here (installed: {installed}); install the package "
                f"karrio-{self.carrier.replace('_', '-')} at the karrio version crossdock pins, or fix 'carrier'"
            )
        fields = [f.name for f in attr.fields(provider.Settings)]
        values = gw.carrier_settings(self.carrier, fields, self.ctx.settings, self.ctx.secrets)
        if self.carrier == "fedex":
            # FedEx's Track API may sit in its own project; by default the shipping project's keys are used.
            values.setdefault("track_api_key", values.get("api_key"))
            values.setdefault("track_secret_key", values.get("secret_key"))
        missing = [
            f.name
            for f in attr.fields(provider.Settings)
            if f.default is attr.NOTHING and not values.get(f.name)
        ]
        if missing:
            raise ConfigurationError(
                f"karrio's {self.carrier} needs {', '.join(missing)}: give them as the connection's client id "
                "and secret, or in its 'credentials' secret (a JSON object)"
            )
        try:
            self._gateway = karrio.gateway[self.carrier].create(values)
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise ConfigurationError(
                f"karrio could not set up {self.carrier} from the connection's settings: {cause}"
            ) from None
        return self._gateway

    async def _run(
        self, work: Callable[[Any], T], *, retry_safe: bool, order_id: Any = None
    ) -> tuple[T, tx.Exchange]:
        """Run `work(gateway)` in a worker thread with its HTTP routed through the RemoteClient; raises the
        engine error its HTTP met, else returns what karrio gave."""
        exchange = tx.Exchange(
            client=self.client,
            loop=asyncio.get_running_loop(),
            bucket_of=self._bucket_of,
            retry_safe=retry_safe,
            order_id=order_id,
            timeout_s=self.timeout_s,
            base_url=self.ctx.base_url,
            adjust=gw.adjust_request(self.carrier),
        )

        def in_thread() -> T:
            return tx.run_in_exchange(exchange, lambda: work(self._open_gateway()))

        try:
            result = await asyncio.wait_for(asyncio.to_thread(in_thread), timeout=self.timeout_s)
        except TimeoutError:
            exchange.closed = True
            raise tx.timed_out(retry_safe) from None
        except asyncio.CancelledError:
            # Cancelled from outside (a checkout quote's budget ran out): the thread's next request stops.
            exchange.closed = True
            raise
        except tx.Stopped as exc:
            raise exchange.error or PermanentError(f"{self.carrier}: {exc}") from None
        if exchange.error is not None:
            raise exchange.error
        return result, exchange

    def _refused(self, what: str, messages: list[Any], exchange: tx.Exchange) -> JobError:
        """The error for karrio's messages when it gave no result: the carrier's own words."""
        if exchange.error is not None:
            return exchange.error
        codes = {str(getattr(m, "code", "") or "") for m in messages}
        if UNSUPPORTED in codes:
            return PermanentError(f"{self.carrier} through karrio cannot {what}")
        words = "; ".join(_message_text(m) for m in messages if _message_text(m))
        if not words and exchange.refusal is not None:
            return exchange.refusal
        if ORIGIN_NOT_SERVICED in codes:
            return ConfigurationError(f"{self.carrier} refused to {what}: {words}; check the shipper address")
        return PermanentError(f"{self.carrier} refused to {what}: {words or 'no reason given'}")

    # Settings -----------------------------------------------------------------------------------------------
    def shipper(self) -> Address:
        raw = gw.json_object(self.ctx.settings.get("shipper_address"), "shipper_address")
        if not raw:
            raise ConfigurationError(
                "the connection has no 'shipper_address': set it to the address labels ship from, as JSON "
                '(e.g. {"company": "Acme", "line1": "1 Main St", "city": "Austin", "postal_code": "78701", '
                '"subdivision": "TX", "country": "US", "phone": "+15125550100"})'
            )
        try:
            return Address.model_validate(raw)
        except ValueError as exc:
            raise ConfigurationError(f"the connection's 'shipper_address' is not an address: {exc}") from None

    def label_format(self) -> LabelFormat:
        raw = str(self.ctx.settings.get("label_format") or "pdf").strip().lower()
        try:
            return LabelFormat(raw)
        except ValueError:
            raise ConfigurationError(f"'label_format' must be pdf, zpl or png, not '{raw}'") from None

    def _request_base(self, shipment: Shipment, order: Order) -> dict[str, Any]:
        shipper = self.shipper()
        try:
            return {
                "shipper": mapping.address(shipper, residential=False),
                "recipient": mapping.recipient(order),
                "parcels": mapping.parcels(shipment, shipper.country),
                "reference": order.external_number or order.external_id or str(order.id or ""),
            }
        except mapping.MappingFailed as exc:
            raise PermanentError(f"cannot ship this order with {self.carrier}: {exc}") from None

    # Connector ----------------------------------------------------------------------------------------------
    async def check(self) -> str:
        """An OAuth token request where the carrier has one (UPS, FedEx, USPS): proves the credentials."""

        def authenticate(gateway: Any) -> str:
            import karrio.lib as lib

            proxy = gateway.proxy
            if not hasattr(proxy, "authenticate"):
                return "none"
            try:
                proxy.authenticate(lib.Serializable({}, ctx={})).deserialize()
            except tx.Stopped:
                raise
            except Exception as exc:
                messages = getattr(exc, "messages", None) or []
                words = "; ".join(_message_text(m) for m in messages) or str(exc)
                raise ConfigurationError(
                    f"{self.carrier} refused the connection's credentials: {words}"
                ) from None
            return "token"

        how, _exchange = await self._run(authenticate, retry_safe=True)
        mode = " (test mode)" if gw.truthy(self.ctx.settings.get("test_mode")) else ""
        account = self.ctx.settings.get("account_number")
        who = f"{self.carrier} account {account}{mode}" if account else f"{self.carrier}{mode}"
        if how == "none":
            return (
                f"{who} through karrio (this carrier has no token call; credentials are checked on first use)"
            )
        return f"{who} through karrio: credentials accepted"

    async def rates(self, shipment: Shipment, order: Order) -> list[Rate]:
        request = self._request_base(shipment, order)
        services = self.ctx.settings.get("services")
        if services:
            request["services"] = [s.strip() for s in str(services).split(",") if s.strip()]

        def fetch(gateway: Any) -> tuple[list[Any], list[Any]]:
            import karrio.sdk as karrio

            rates, messages = karrio.Rating.fetch(request).from_(gateway).parse()
            return list(rates or []), list(messages or [])

        (details, messages), exchange = await self._run(fetch, retry_safe=True, order_id=shipment.order_id)
        if not details and messages:
            raise self._refused("quote rates", messages, exchange)
        try:
            return [mapping.rate(detail, self.ctx.connection_id) for detail in details]
        except mapping.MappingFailed as exc:
            raise PermanentError(f"{self.carrier} answered rates crossdock cannot read: {exc}") from None

    async def buy_label(
        self, shipment: Shipment, order: Order, rate: Rate | None, idempotency_key: str
    ) -> BoughtLabel:
        """Buy the label with karrio's Shipment.create. The carriers' ship APIs take no idempotency key, so
        the key only goes along as the shipment's reference metadata; see find_label for what that means."""
        service = (
            (rate.service_code if rate is not None else None)
            or shipment.service_code
            or str(self.ctx.settings.get("default_service") or "")
        )
        if not service:
            raise PermanentError(
                f"no {self.carrier} service to buy a label for: choose a rate, or set the connection's "
                "'default_service' (a karrio service name such as ups_ground)"
            )
        asked = self.label_format()
        account = self.ctx.settings.get("account_number")
        request = {
            **self._request_base(shipment, order),
            "service": service,
            "label_type": mapping.LABEL_TYPES[asked],
            "metadata": {"crossdock_idempotency_key": idempotency_key},
            # The shipper's account pays (karrio's Payment; FedEx's shippingChargesPayment SENDER).
            "payment": {"paid_by": "sender", **({"account_number": str(account)} if account else {})},
        }
        if order.external_id:
            request["order_id"] = order.external_id

        def create(gateway: Any) -> tuple[Any, list[Any]]:
            import karrio.sdk as karrio

            details, messages = karrio.Shipment.create(request).from_(gateway).parse()
            return details, list(messages or [])

        (details, messages), exchange = await self._run(create, retry_safe=False, order_id=shipment.order_id)
        if details is None:
            raise self._refused("buy a label", messages, exchange)
        try:
            data = mapping.label_bytes(details.docs.label if details.docs else None)
        except mapping.MappingFailed as exc:
            raise PermanentError(
                f"{self.carrier} bought label {details.tracking_number} but sent no readable label ({exc}); "
                "void it in the carrier's account before retrying"
            ) from None
        selected = details.selected_rate
        price = None
        if selected is not None and selected.total_charge:
            try:
                price = mapping.money(selected.total_charge, selected.currency, "selected_rate.total_charge")
            except mapping.MappingFailed:
                price = None
        price = price or (rate.price if rate is not None else None)
        tracking_url = _tracking_url(self._gateway, details.tracking_number)
        meta = details.meta or {}
        return BoughtLabel(
            remote_id=str(details.shipment_identifier or details.tracking_number),
            carrier=self.carrier,
            service_code=service,
            tracking_number=details.tracking_number or None,
            tracking_url=meta.get("tracking_url") or tracking_url,
            file=data,
            file_format=mapping.label_format(details.label_type, data, asked),
            price=price,
            raw={
                "carrier": self.carrier,
                "shipment_identifier": details.shipment_identifier,
                "tracking_number": details.tracking_number,
                "label_type": details.label_type,
                "meta": _plain(meta),
                "messages": [_message_text(m) for m in messages],
            },
        )

    async def find_label(self, idempotency_key: str) -> BoughtLabel | None:
        """Always None: UPS, FedEx and USPS (and karrio's unified API) have no way to look a shipment up by a
        key of ours, and their ship APIs take no idempotency key. So the engine must record a purchase (the
        job's state) before the answer can be lost, and must not retry a purchase whose outcome is unknown:
        buy_label raises PermanentError for an unknown outcome (a timeout or 5xx after the request was sent),
        asking the user to check the carrier's account first. A refusal before anything was sent (connection
        refused, rate limited, credentials) is retryable or configuration as usual."""
        return None

    async def void_label(self, remote_id: str) -> VoidOutcome:
        """karrio's Shipment.cancel (UPS void, FedEx cancel, USPS label refund)."""

        def cancel(gateway: Any) -> tuple[Any, list[Any]]:
            import karrio.sdk as karrio

            details, messages = (
                karrio.Shipment.cancel({"shipment_identifier": remote_id}).from_(gateway).parse()
            )
            return details, list(messages or [])

        (details, messages), exchange = await self._run(cancel, retry_safe=True)
        words = "; ".join(_message_text(m) for m in messages if _message_text(m))
        if details is not None and details.success:
            return VoidOutcome(True, f"{self.carrier} voided {remote_id}" + (f": {words}" if words else ""))
        codes = {str(getattr(m, "code", "") or "") for m in messages}
        if UNSUPPORTED in codes:
            return VoidOutcome(
                False, f"{self.carrier} through karrio cannot void labels; void it in the carrier's account"
            )
        if not words and exchange.refusal is not None:
            words = exchange.refusal.message
        return VoidOutcome(False, f"{self.carrier} did not void {remote_id}: {words or 'no reason given'}")

    async def track(self, shipment: Shipment) -> list[TrackingEvent]:
        number = shipment.tracking_number
        if not number:
            raise PermanentError("the shipment has no tracking number to track")

        def fetch(gateway: Any) -> tuple[list[Any], list[Any]]:
            import karrio.sdk as karrio

            details, messages = karrio.Tracking.fetch({"tracking_numbers": [number]}).from_(gateway).parse()
            return list(details or []), list(messages or [])

        (details, messages), exchange = await self._run(fetch, retry_safe=True, order_id=shipment.order_id)
        if not details:
            if messages:
                raise self._refused(f"track {number}", messages, exchange)
            return []
        try:
            return mapping.tracking_events(details)
        except mapping.MappingFailed as exc:
            raise PermanentError(f"{self.carrier} answered tracking crossdock cannot read: {exc}") from None


def _message_text(message: Any) -> str:
    text = str(getattr(message, "message", "") or "").strip()
    code = str(getattr(message, "code", "") or "").strip()
    if code and code not in text:
        return f"{code}: {text}" if text else code
    return text


def _tracking_url(gateway: Any, number: str | None) -> str | None:
    template = getattr(getattr(gateway, "settings", None), "tracking_url", None)
    if not number or not isinstance(template, str) or "{}" not in template:
        return None
    return template.format(number)


def _plain(value: Any) -> Any:
    """karrio's meta as plain JSON values (it can hold karrio objects)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
