"""What a connector is: a declared spec plus the capability protocols it implements.

The engine and flows know connectors only through these protocols; a connector never touches the store,
the API or another connector.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from crossdock.model import Fulfillment, Order, Rate, Shipment, StockLevel, TrackingEvent


class Capability(StrEnum):
    ORDERS_PULL = "orders.pull"
    ORDERS_WEBHOOK = "orders.webhook"
    FULFILLMENTS_PUSH = "fulfillments.push"
    INVENTORY_PUSH = "inventory.push"
    CATALOG_PULL = "catalog.pull"
    SHIPPING_RATES = "shipping.rates"
    SHIPPING_LABELS = "shipping.labels"
    TRACKING_WEBHOOK = "tracking.webhook"
    TRACKING_POLL = "tracking.poll"
    SHIPMENTS_SERVE = "shipments.serve"


class Role(StrEnum):
    CHANNEL = "channel"
    SHIPPING = "shipping"


@dataclass(frozen=True)
class Field:
    name: str
    title: str
    required: bool = True
    help: str = ""


@dataclass(frozen=True)
class ConnectorSpec:
    """What a connection of this connector stores: settings in the clear, secrets in the vault."""

    name: str
    title: str
    role: Role
    capabilities: frozenset[Capability]
    default_base_url: str
    settings: tuple[Field, ...] = ()
    secrets: tuple[Field, ...] = ()
    docs: str = ""

    def missing_settings(self, values: Mapping[str, Any]) -> list[str]:
        return [f.name for f in self.settings if f.required and not values.get(f.name)]

    def unknown_settings(self, values: Mapping[str, Any]) -> list[str]:
        known = {f.name for f in self.settings}
        return sorted(k for k in values if k not in known)

    def missing_secrets(self, values: Mapping[str, Any]) -> list[str]:
        return [f.name for f in self.secrets if f.required and not values.get(f.name)]

    def unknown_secrets(self, values: Mapping[str, Any]) -> list[str]:
        known = {f.name for f in self.secrets}
        return sorted(k for k in values if k not in known)


@dataclass
class MappingProblem:
    """Why a remote record could not become a canonical one: the field at fault and the reason."""

    field: str
    reason: str


@dataclass
class Mapped:
    """A mapping result: a value, or the problems that stop it (errors are values at the boundary)."""

    value: Order | None = None
    external_id: str | None = None
    external_version: str | None = None
    problems: list[MappingProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.problems


@runtime_checkable
class OrdersPull(Protocol):
    def pull_orders(
        self, since: Any, cursor: str | None
    ) -> AsyncIterator[tuple[list[Mapped], str | None]]: ...


@runtime_checkable
class OrdersWebhook(Protocol):
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool: ...

    def webhook_dedup_key(self, headers: Mapping[str, str], body: bytes) -> str: ...

    def map_webhook(self, headers: Mapping[str, str], body: bytes) -> Mapped: ...


@runtime_checkable
class FulfillmentsPush(Protocol):
    async def push_fulfillment(self, order: Order, fulfillment: Fulfillment) -> str: ...


@runtime_checkable
class InventoryPush(Protocol):
    async def push_stock(self, levels: list[StockLevel]) -> None: ...


@runtime_checkable
class ShippingRates(Protocol):
    async def rates(self, shipment: Shipment, order: Order) -> list[Rate]: ...


@runtime_checkable
class ShippingLabels(Protocol):
    async def buy_label(
        self, shipment: Shipment, order: Order, rate: Rate, idempotency_key: str
    ) -> Shipment: ...


@runtime_checkable
class TrackingSource(Protocol):
    async def track(self, shipment: Shipment) -> list[TrackingEvent]: ...
