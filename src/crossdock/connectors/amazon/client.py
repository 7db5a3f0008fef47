"""The Amazon Selling Partner API connector: orders pulled through Orders v0, shipments confirmed back.

Every call goes through the engine's RemoteClient with Amazon's per-operation usage plans (the limiter follows
`x-amzn-RateLimit-Limit`), signed with a Login with Amazon access token (auth.py). Mapping lives in mapping.py.

Pulls (`getOrders` by LastUpdateDate, then `getOrderItems` for each order):
- A window is [since, until] on LastUpdateDate, sent as LastUpdatedAfter / LastUpdatedBefore. Amazon requires
  LastUpdatedBefore "at least 2 minutes before current time" (Source: amzn/selling-partner-api-models
  models/orders-api-model/ordersV0.json, getOrders parameters), so the engine ends windows `window_lag` before
  now. Nothing is clamped here: a window ending later is refused by Amazon (400, its own words).
- `since` None reads as far back as the Orders API keeps: "orders that are two years old or less", "from 2016
  and after for the JP, AU, and SG marketplaces" (Source: ordersV0.json info.description). We ask from
  2016-01-01 when one of those marketplaces is configured, else from two years (730 days) before `until`.
- Pages follow NextToken. "If NextToken is present, that will be used to retrieve the orders instead of other
  criteria" (Source: ordersV0.json getOrders description); MarketplaceIds stays, being required, so a page after
  the first sends MarketplaceIds and NextToken only.
- Resuming: Page.resume is {"next_token": ...}. A NextToken Amazon no longer accepts (400 on the resumed page)
  restarts the window from its first page, once: records already imported come again and the engine's bindings
  skip them (same LastUpdateDate), so nothing is lost and nothing is imported twice.
- An order's items come with their own NextToken pages, joined by mapping.merge_item_pages. A Pending order has
  no prices yet; the mapper handles it. Mapped.raw is {"Order": order, "OrderItems": items}, what map_order takes.

Fulfillments (`confirmShipment`):
- The package's packageReferenceId is a number derived from its tracking number, the same on every try.
  Amazon documents the id as the way to edit a package: "If you need to make an edit to the shipment, submit
  another confirmShipment operation with the same packageReferenceID. The other shipment details are edited upon
  successful submission" (Source: developer-docs.amazon.com/sp-api/docs/confirm-the-shipment-status). So a
  confirmation sent again edits the same package and never adds a second one.
- SP-API cannot list the packages of an order. `find_fulfillment` reads the order's items: when every unit of
  every item the fulfillment ships shows as shipped (QuantityShipped == QuantityOrdered), the package was
  confirmed. Anything less answers "not found", and pushing again is safe because of the packageReferenceId
  above. (The one misreading: units of those items confirmed meanwhile by someone else, e.g. in Seller Central,
  are taken for ours.)
- confirmShipment is sent once per push (no inline retry, `attempts=1`): after an unknown outcome (timeout, 5xx)
  the connector looks first (find_fulfillment) and only then lets the engine try again.
- `update_tracking` sends confirmShipment again with the package's packageReferenceId and the new tracking.
- The marketplace id confirmShipment needs is the connection's when it has exactly one, else the order's
  MarketplaceId read with getOrder (a fulfillment does not carry it).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from crossdock.connectors.amazon.auth import BAD_CLIENT, LWA_TOKEN_URL, REAUTHORISE, LwaAuth
from crossdock.connectors.amazon.mapping import (
    amazon_time,
    confirm_shipment_request,
    map_order,
    merge_item_pages,
)
from crossdock.connectors.base import (
    ConnectionContext,
    Mapped,
    MappingProblem,
    Page,
    PullWindow,
    PushedFulfillment,
)
from crossdock.connectors.registry import get_spec
from crossdock.connectors.remote_json import PushError, json_object
from crossdock.engine.errors import ConfigurationError, PermanentError
from crossdock.engine.http import (
    RemoteClient,
    RemoteConfigurationError,
    RemotePermanentError,
    RemoteRetryableError,
)
from crossdock.engine.ratelimit import AMAZON_ORDERS
from crossdock.logs import get_logger
from crossdock.model import Fulfillment

ORDERS = "/orders/v0/orders"
PAGE_SIZE = 100  # MaxResultsPerPage: 1-100 (ordersV0.json)
# Marketplaces whose orders the API keeps from 2016 on (ordersV0.json info.description): JP, AU, SG.
SINCE_2016_MARKETPLACES = frozenset({"A1VC38T7YXB528", "A39IBJ37TRP1C6", "A19VAU5U5O7RUS"})
SINCE_2016 = datetime(2016, 1, 1, tzinfo=UTC)
TWO_YEARS = timedelta(days=730)
CHECK_LOOK_BACK = timedelta(days=1)
# packageReferenceId: "Only positive numeric values are supported" (ordersV0.json PackageReferenceId). Ours stay
# below 2^31 so that no reader that takes the id for a 32-bit integer overflows.
PACKAGE_REFERENCE_SPAN = 999_999_999

log = get_logger(__name__)


def package_reference_id(fulfillment: Fulfillment) -> str:
    """The package's packageReferenceId: a positive number derived from its tracking number, so that every try
    of one package names the same package (Amazon edits it instead of adding another)."""
    tracking = (fulfillment.tracking_number or "").strip()
    digest = hashlib.sha256(tracking.encode("utf-8")).digest()
    return str(int.from_bytes(digest[:8], "big") % PACKAGE_REFERENCE_SPAN + 1)


def _marketplace_ids(value: Any) -> list[str]:
    raw = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(v).strip() for v in raw if str(v).strip()]


class AmazonConnector:
    """One Amazon seller account (one LWA authorisation) in one SP-API region."""

    # How long before now a pull window must end: getOrders' LastUpdatedBefore must be at least 2 minutes before
    # the current time (ordersV0.json). The engine reads this to end its windows early enough.
    window_lag: ClassVar[timedelta] = timedelta(minutes=2)

    def __init__(self, ctx: ConnectionContext) -> None:
        self._ctx = ctx
        self.marketplace_ids = _marketplace_ids(ctx.settings.get("marketplace_ids"))
        if not self.marketplace_ids:
            raise ConfigurationError(
                "the Amazon connection has no marketplace ids: set marketplace_ids (comma separated, e.g. "
                "ATVPDKIKX0DER for amazon.com) to the marketplaces the seller sells in"
            )
        # Credentials to scrub from records and errors; the auth hook adds each access token it gets.
        self._scrub: set[str] = {v for v in ctx.secrets.values() if v}
        lwa_url = str(ctx.settings.get("lwa_url") or LWA_TOKEN_URL)
        parts = urlsplit(lwa_url)
        # Login with Amazon is another host: its own client, no auth hook, no usage plan. The token request goes to
        # the absolute lwa_url (httpx ignores base_url for an absolute URL).
        self._lwa = ctx.make_client(default_base_url=f"{parts.scheme}://{parts.netloc}", secrets=self._scrub)
        self.auth = LwaAuth(ctx, self._lwa, self._scrub)
        default = get_spec("amazon").default_base_url
        self._api = ctx.make_client(
            default_base_url=default, auth=self.auth, policy=AMAZON_ORDERS, secrets=self._scrub
        )
        # confirmShipment goes once per push: RemoteClient's inline retries would send it again without looking.
        self._confirm = ctx.make_client(
            default_base_url=default, auth=self.auth, policy=AMAZON_ORDERS, secrets=self._scrub, attempts=1
        )

    async def aclose(self) -> None:
        for client in (self._api, self._confirm, self._lwa):
            await client.aclose()

    # Calls ------------------------------------------------------------------------------------------------
    async def _request(self, client: RemoteClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await client.request(method, url, **kwargs)
        except RemoteConfigurationError as exc:
            raise await self._configuration_error(client, exc) from None

    async def _configuration_error(
        self, client: RemoteClient, exc: RemoteConfigurationError
    ) -> RemoteConfigurationError:
        """The RemoteClient's words say a credential was refused; when LWA told us which one, say what to do."""
        if self.auth.revoked:
            advice = REAUTHORISE
        elif self.auth.bad_client:
            advice = BAD_CLIENT
        else:
            return exc
        error = RemoteConfigurationError(
            f"{advice}. ({exc.message})", status=exc.status, remote_message=exc.remote_message
        )
        # RemoteClient has already marked the connection as needing re-authorisation with its generic words;
        # the reason shown to the user must be what to do (the worker records a job's error the same way).
        await client.needs_reauth(error.message)
        return error

    async def _get(
        self,
        url: str,
        *,
        operation: str,
        params: dict[str, Any] | None = None,
        order_id: Any = None,
    ) -> dict[str, Any]:
        response = await self._request(
            self._api, "GET", url, params=params, operation=operation, order_id=order_id
        )
        return _payload(response, operation)

    # Connector --------------------------------------------------------------------------------------------
    async def check(self) -> str:
        """getOrders for one order updated in the last day: cheap, and proves the seller's authorisation."""
        since = datetime.now(UTC) - CHECK_LOOK_BACK
        await self._get(
            ORDERS,
            operation="getOrders",
            params={
                "MarketplaceIds": ",".join(self.marketplace_ids),
                "LastUpdatedAfter": amazon_time(since),
                "MaxResultsPerPage": 1,
            },
        )
        return f"Amazon seller, marketplaces {', '.join(self.marketplace_ids)}"

    # Orders -----------------------------------------------------------------------------------------------
    def earliest(self, until: datetime) -> datetime:
        """Where a window with no `since` starts: as far back as the Orders API keeps orders."""
        if SINCE_2016_MARKETPLACES.intersection(self.marketplace_ids):
            return SINCE_2016
        return until - TWO_YEARS

    async def pull_orders(
        self, window: PullWindow, resume: dict[str, Any] | None
    ) -> AsyncGenerator[Page, None]:
        since = window.since if window.since is not None else self.earliest(window.until)
        marketplaces = ",".join(self.marketplace_ids)
        first_page = {
            "MarketplaceIds": marketplaces,
            "LastUpdatedAfter": amazon_time(since),
            "LastUpdatedBefore": amazon_time(window.until),
            "MaxResultsPerPage": PAGE_SIZE,
        }
        token = resume.get("next_token") if resume else None
        resumed = isinstance(token, str) and bool(token)
        if not resumed:
            token = None
        while True:
            params = {"MarketplaceIds": marketplaces, "NextToken": token} if token else first_page
            try:
                payload = await self._get(ORDERS, operation="getOrders", params=params)
            except RemotePermanentError as exc:
                if not (resumed and token and exc.status == 400):
                    raise
                # The NextToken of an interrupted run expired or is no longer valid: read the window again from
                # its first page; bindings skip what the interrupted run already imported.
                log.info(
                    "Amazon refused the stored NextToken; reading the window again from its first page",
                    connection=str(self._ctx.connection_id),
                    reason=exc.remote_message,
                )
                resumed, token = False, None
                continue
            resumed = False
            orders = payload.get("Orders")
            if not isinstance(orders, list):
                raise RemoteRetryableError(
                    "Amazon answered getOrders without an Orders list; the page will be asked for again"
                )
            next_token = payload.get("NextToken")
            next_token = next_token if isinstance(next_token, str) and next_token else None
            records = [await self._mapped(order) for order in orders]
            yield Page(records, {"next_token": next_token} if next_token else None, raw_count=len(orders))
            if next_token is None:
                return
            token = next_token

    async def _mapped(self, order: Any) -> Mapped:
        order_id = order.get("AmazonOrderId") if isinstance(order, dict) else None
        if not isinstance(order_id, str) or not order_id.strip():
            return Mapped(
                problems=[MappingProblem("AmazonOrderId", "is missing, so the order's items cannot be read")],
                raw={"Order": order, "OrderItems": []},
            )
        try:
            items = await self._order_items(order_id)
        except (ValueError, RemotePermanentError) as exc:
            # One order Amazon will not give items for (or gives unjoinable pages) is quarantined, not the pull.
            return Mapped(
                external_id=order_id,
                problems=[MappingProblem("OrderItems", f"getOrderItems failed: {exc}")],
                raw={"Order": order, "OrderItems": []},
            )
        mapped = map_order(order, items)
        mapped.raw = {"Order": order, "OrderItems": items}
        return mapped

    async def _order_items(self, order_id: str, *, order_ref: Any = None) -> list[Any]:
        """Every OrderItem of one order, following getOrderItems' own NextToken pages."""
        url = f"{ORDERS}/{quote(order_id, safe='')}/orderItems"
        pages: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"NextToken": token} if token else None
            payload = await self._get(url, operation="getOrderItems", params=params, order_id=order_ref)
            pages.append(payload)
            next_token = payload.get("NextToken")
            if not isinstance(next_token, str) or not next_token:
                return merge_item_pages(pages)
            token = next_token

    # Fulfillments -----------------------------------------------------------------------------------------
    async def find_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment | None:
        items = await self._order_items(order_external_id, order_ref=fulfillment.order_id)
        by_id = {
            item.get("OrderItemId"): item
            for item in items
            if isinstance(item, dict) and isinstance(item.get("OrderItemId"), str)
        }
        for line in fulfillment.lines:
            item = by_id.get(line.line_external_id)
            if item is None:
                return None
            shipped, ordered = item.get("QuantityShipped"), item.get("QuantityOrdered")
            if not isinstance(shipped, int) or not isinstance(ordered, int) or shipped < ordered:
                return None
        return PushedFulfillment(external_id=package_reference_id(fulfillment))

    async def push_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment, idempotency_key: str
    ) -> PushedFulfillment:
        # idempotency_key: confirmShipment takes none; the packageReferenceId plays its part (module docstring).
        reference = package_reference_id(fulfillment)
        try:
            await self._confirm_shipment(order_external_id, fulfillment, reference)
        except RemoteRetryableError:
            # The outcome is unknown (timeout, 5xx): look before anyone tries again.
            found = await self.find_fulfillment(order_external_id, fulfillment)
            if found is not None:
                return found
            raise
        return PushedFulfillment(external_id=reference)

    async def update_tracking(
        self, order_external_id: str, external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment:
        if not external_id.isdigit():
            raise PermanentError(
                f"Amazon package {external_id!r} was not confirmed by crossdock (its packageReferenceId is not a "
                "number), so its tracking cannot be changed from here: edit the shipment in Seller Central"
            )
        await self._confirm_shipment(order_external_id, fulfillment, external_id)
        return PushedFulfillment(external_id=external_id)

    async def _confirm_shipment(
        self, order_external_id: str, fulfillment: Fulfillment, reference: str
    ) -> None:
        marketplace_id = await self._marketplace_of(order_external_id, fulfillment)
        try:
            body = confirm_shipment_request(
                fulfillment,
                marketplace_id=marketplace_id,
                package_reference_id=reference,
                shipped_at=fulfillment.pushed_at or datetime.now(UTC),
            )
        except PushError as exc:
            raise PermanentError(f"cannot confirm the Amazon shipment: {exc.field} {exc.reason}") from None
        await self._request(
            self._confirm,
            "POST",
            f"{ORDERS}/{quote(order_external_id, safe='')}/shipmentConfirmation",
            json=body,
            operation="confirmShipment",
            order_id=fulfillment.order_id,
            lookup_first=True,
        )

    async def _marketplace_of(self, order_external_id: str, fulfillment: Fulfillment) -> str:
        if len(self.marketplace_ids) == 1:
            return self.marketplace_ids[0]
        order = await self._get(
            f"{ORDERS}/{quote(order_external_id, safe='')}",
            operation="getOrder",
            order_id=fulfillment.order_id,
        )
        marketplace = order.get("MarketplaceId")
        if not isinstance(marketplace, str) or not marketplace:
            raise RemoteRetryableError(
                f"Amazon answered getOrder for {order_external_id} without a MarketplaceId; it will be asked again"
            )
        return marketplace


def _payload(response: httpx.Response, operation: str) -> dict[str, Any]:
    """SP-API wraps every answer in {"payload": ...} (ordersV0.json GetOrdersResponse, GetOrderItemsResponse)."""
    payload = json_object(response, "Amazon", operation).get("payload")
    if not isinstance(payload, dict):
        raise RemoteRetryableError(
            f"Amazon answered {operation} with a body that is not an SP-API payload; it will be asked again"
        )
    return payload
