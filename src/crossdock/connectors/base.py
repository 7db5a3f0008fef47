"""What a connector is: a declared spec plus the capability protocols it implements.

The engine and flows know connectors only through these protocols; a connector never touches the store,
the API or another connector.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from crossdock.model import Fulfillment, LabelFormat, Money, Order, Rate, Shipment, StockLevel, TrackingEvent

if TYPE_CHECKING:
    from crossdock.engine.http import RemoteClient


class Capability(StrEnum):
    ORDERS_PULL = "orders.pull"
    ORDERS_WEBHOOK = "orders.webhook"
    # Creates crossdock's orders at a shipping remote (Shippo's Orders API), for connections whose
    # `push_orders` setting is on; see OrdersPush.
    ORDERS_PUSH = "orders.push"
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
    # "module:Class" of the connector's runtime (a Connector); empty while the connector only maps.
    factory: str = ""

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


# The connection setting that turns order pushing on for a connector with Capability.ORDERS_PUSH (off by default).
PUSH_ORDERS = "push_orders"
_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"", "0", "false", "no", "off"})


def setting_flag(settings: Mapping[str, Any], name: str) -> bool:
    """A yes/no setting as stored: JSON true/false from the API, or text from a form or the command line
    ("true", "false", "yes", "no", "on", "off", "1", "0"). Missing is no. Anything else is a ValueError naming
    the setting, never a silent no."""
    value = settings.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError(f"the setting {name} is {value!r}: set it to true or false")


@dataclass
class ConnectionContext:
    """What the engine hands a connector when it opens one connection.

    The connector calls its remote only through `make_client` (the engine's RemoteClient: URL checks, the
    connection's rate limiter, the status-to-action table, a record of every call) and keeps credentials it
    refreshes (OAuth access tokens) with `save_secrets`, which seals them into the vault in their own
    transaction. It never sees the database.
    """

    account_id: uuid.UUID
    connection_id: uuid.UUID
    connector: str
    settings: Mapping[str, Any]
    secrets: Mapping[str, str]
    # The connection's own base URL (a sandbox, a regional endpoint), or None for the connector's default.
    base_url: str | None
    # How remotes reach this hub, for addresses given to them (webhook subscriptions, OAuth redirects).
    public_url: str
    # make_client(default_base_url=..., auth=..., policy=..., **RemoteClient fields) -> RemoteClient
    make_client: Callable[..., RemoteClient]
    save_secrets: Callable[[Mapping[str, str]], Awaitable[None]]

    @property
    def hook_url(self) -> str:
        """Where this connection's webhooks arrive (`/hooks/{connection_id}`)."""
        return f"{self.public_url.rstrip('/')}/hooks/{self.connection_id}"


class Connector(Protocol):
    """A connector's runtime: built from a ConnectionContext, closed when the engine is done with it. It also
    implements the capability protocols its spec declares."""

    def __init__(self, ctx: ConnectionContext) -> None: ...

    async def check(self) -> str:
        """One cheap authenticated call proving the credentials work; returns what it reached ("shop Acme")."""
        ...

    async def aclose(self) -> None: ...


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
    # The remote record as read, kept by pulls so that a record that did not map can be quarantined whole.
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.problems


@dataclass(frozen=True)
class PullWindow:
    """Which remote records one pull reads: updated at or after `since` (None: as far back as the remote keeps)
    and before `until`. The window is fixed when a run starts, so records changed while it runs leave it (their
    new updated time is past `until`) instead of shifting pages, and the next run's window picks them up."""

    since: datetime | None
    until: datetime

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be an aware datetime")


@dataclass
class Page:
    """One page of a pull: its mapped records, and where the next page starts (`resume`, a small JSON object
    the engine stores with the page's records; None when the window is done). `raw_count` counts the remote
    records read, which can exceed len(records) when a record could not even be identified."""

    records: list[Mapped]
    resume: dict[str, Any] | None
    raw_count: int | None = None


@runtime_checkable
class OrdersPull(Protocol):
    def pull_orders(self, window: PullWindow, resume: dict[str, Any] | None) -> AsyncGenerator[Page, None]:
        """Yield the window's orders page by page, starting where `resume` (a Page.resume from an earlier,
        interrupted run over the same window) says, or at the first page when it is None. An async generator:
        the engine closes it when it stops reading, which ends any request it has sent ahead."""
        ...


@runtime_checkable
class OrdersWebhook(Protocol):
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool: ...

    def webhook_dedup_key(self, headers: Mapping[str, str], body: bytes) -> str: ...

    def map_webhook(self, headers: Mapping[str, str], body: bytes) -> Mapped: ...


@dataclass(frozen=True)
class PushedFulfillment:
    """What the channel knows of a fulfillment crossdock pushed: the channel's id for it and, when the remote
    says, the order's new version (so the echo of our own change is not imported back as news)."""

    external_id: str
    order_version: str | None = None


@runtime_checkable
class FulfillmentsPush(Protocol):
    async def find_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment | None:
        """The fulfillment already on the channel that carries this one's tracking number, if any: asked before
        pushing again after an outcome we never learned, so a retry never fulfils twice."""
        ...

    async def push_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment, idempotency_key: str
    ) -> PushedFulfillment: ...

    async def update_tracking(
        self, order_external_id: str, external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment:
        """Change the tracking of a fulfillment already pushed (Shopify update_tracking); connectors whose
        remote cannot raise PermanentError saying so."""
        ...


@runtime_checkable
class OrdersPush(Protocol):
    """A remote that keeps orders of its own (Shippo's Orders API), where crossdock creates each paid order once
    so that a merchant can work on it in the remote's dashboard. The flow (flows/order_push.py) records what it
    pushed; the connector only creates and finds."""

    async def find_order(self, order: Order) -> str | None:
        """The remote id of the order already created there for this canonical order, if there is one: asked
        before a push whose outcome was never learned is sent again, so a retry never creates a second one."""
        ...

    async def push_order(self, order: Order) -> str:
        """Create the order at the remote and return its remote id. Canonical data the remote cannot take is a
        PermanentError naming the field; a refusal is a PermanentError in the remote's words. An answer lost
        on the way (timeout, 5xx) is looked up at once and raised as RetryableError only when nothing was
        found."""
        ...


@runtime_checkable
class WebhookSubscriptions(Protocol):
    async def subscribe(self, address: str) -> list[str]:
        """Make the remote send its order events to `address`; returns the remote subscription ids. Safe to
        run twice: existing subscriptions to the same address are kept, not duplicated."""
        ...

    async def unsubscribe(self, address: str) -> int:
        """Remove every subscription to `address`; returns how many were removed."""
        ...


@dataclass
class StockPushed:
    """What a stock push did: the levels set, and those the remote has no place for (unknown SKU or
    location, or refused), each with the reason, keyed by (sku, location)."""

    set: list[StockLevel] = field(default_factory=list)
    refused: dict[tuple[str, str], str] = field(default_factory=dict)


@runtime_checkable
class InventoryPush(Protocol):
    async def push_stock(self, levels: list[StockLevel]) -> StockPushed:
        """Set the remote's available quantities to these levels. A level the remote cannot place is reported
        in `refused` and does not stop the others; errors that stop every level (credentials, an outage) raise."""
        ...


@runtime_checkable
class ShippingRates(Protocol):
    async def rates(self, shipment: Shipment, order: Order) -> list[Rate]:
        """What the remote offers for these parcels from the account's address to the order's shipping address.
        `Rate.remote_id` is what buy_label needs to buy that rate (a Shippo rate object id), when it needs one."""
        ...


@dataclass
class BoughtLabel:
    """A label the remote issued. The engine stores `file` in the blob store and the rest on the shipment;
    a connector never stores anything itself."""

    remote_id: str  # the remote's id of the purchase (Shippo transaction, MyParcel.com shipment, carrier id)
    carrier: str
    service_code: str
    tracking_number: str | None
    tracking_url: str | None
    file: bytes
    file_format: LabelFormat
    price: Money | None = None
    # The purchase as the remote answered it, for the shipment's timeline (secrets removed by the engine).
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VoidOutcome:
    voided: bool
    # What the remote said, or why it cannot be done (too late, not supported): shown on the order's timeline.
    message: str


@runtime_checkable
class ShippingLabels(Protocol):
    """A connector that buys labels. It also says, as a class attribute `finds_labels: bool`, whether
    find_label can find a purchase made with an idempotency key. The flow repeats a purchase whose outcome it
    never learned only after find_label found nothing, and only when `finds_labels` is True; otherwise (or
    when the attribute is missing) the shipment fails for a person to check the remote account, because a
    second purchase could buy a second label."""

    async def buy_label(
        self, shipment: Shipment, order: Order, rate: Rate | None, idempotency_key: str
    ) -> BoughtLabel:
        """Buy one label for this shipment (one parcel, or a multi-piece shipment where the remote has them).
        `idempotency_key` is the same on every attempt for the same parcel: send it where the remote takes one
        (MyParcel.com's Idempotency-Key header, Shippo's transaction metadata) so that a retry after a lost
        answer never buys twice. A purchase the remote is still processing (Shippo QUEUED) is waited for within
        the job's time, else RetryableError. A remote refusal is PermanentError with the remote's words."""
        ...

    async def find_label(self, idempotency_key: str) -> BoughtLabel | None:
        """The label already bought with this key, if the remote has one: asked before a purchase is repeated
        after an unknown outcome (a timeout, a crash between the remote's answer and our commit)."""
        ...

    async def void_label(self, remote_id: str) -> VoidOutcome:
        """Void (refund) an unused label where the remote allows it; a remote that cannot says so in the
        outcome rather than raising."""
        ...


@runtime_checkable
class ShipmentCarriers(Protocol):
    """A shipping platform that chooses the carrier itself and can say afterwards which one it chose, for a
    shipment whose report named none (MyParcel.com's status callback names a shipment and its tracking code,
    not its carrier). A channel that takes tracking only with its carrier (eBay) needs the name."""

    async def carrier_of(self, remote_id: str) -> str | None:
        """The carrier's name for the remote's shipment `remote_id`, or None when the remote does not know it."""
        ...


@runtime_checkable
class TrackingSource(Protocol):
    async def track(self, shipment: Shipment) -> list[TrackingEvent]:
        """Every tracking event the remote has for this shipment, oldest first (polled, for remotes that send
        no webhooks)."""
        ...
