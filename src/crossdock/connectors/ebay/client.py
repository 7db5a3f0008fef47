"""The eBay connector's runtime: orders in through getOrders, shipping fulfillments out.

Every call goes through the engine's RemoteClient (URL check, the connection's rate limiter, the status-to-
action table, remote_calls); the user access token comes from `EbayUserAuth`. Field and wire facts are from
developer.ebay.com/api-docs/sell/fulfillment and PROTOCOLS.md section 3.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from crossdock.connectors.base import ConnectionContext, Mapped, Page, PullWindow, PushedFulfillment
from crossdock.connectors.ebay.auth import SCOPE_FULFILLMENT, EbayUserAuth
from crossdock.connectors.ebay.mapping import ebay_time, map_order, shipping_fulfillment_request
from crossdock.connectors.remote_json import PushError, json_object
from crossdock.engine.errors import PermanentError, RetryableError
from crossdock.engine.http import RemoteConfigurationError, RemotePermanentError, discard
from crossdock.engine.ratelimit import RatePolicy, token_bucket
from crossdock.model import Fulfillment

API = "/sell/fulfillment/v1"
# getOrders: `limit` is 1..200 (PROTOCOLS.md section 3; developer.ebay.com/api-docs/sell/fulfillment/resources/
# order/methods/getOrders, "limit").
PAGE_LIMIT = 200
# getOrders returns orders modified up to two years back (PROTOCOLS.md section 3: "default window last 90
# days, max 2 years"); a pull without a `since` starts there.
MAX_LOOKBACK = timedelta(days=730)
ONE_MS = timedelta(milliseconds=1)

# eBay limits calls per API per day (developer.ebay.com/develop/api/sell/api_call_limits; the token endpoint's
# refresh grant: 50,000 a day, developer.ebay.com/api-docs/static/oauth-rate-limits.html), not per second, and
# sends no header saying how much is left. A modest bucket keeps one connection from bursting: 5 calls a
# second, 10 at once, which a busy seller's day of syncs stays far below.
EBAY_SELL = RatePolicy({"sell": token_bucket(5.0, 10)}, default="sell")


class EbayConnector:
    """One eBay seller account: orders.pull and fulfillments.push."""

    # eBay refuses a lastmodifieddate range that ends in the future (error 30850); ending a minute back leaves
    # room for a hub clock running ahead of eBay's.
    window_lag = timedelta(minutes=1)

    def __init__(self, ctx: ConnectionContext) -> None:
        self.ctx = ctx
        client_id = str(ctx.settings.get("client_id") or "")
        scopes = str(ctx.settings.get("scopes") or SCOPE_FULFILLMENT)
        # A set the hook adds refreshed tokens to: the API client scrubs them from everything it records.
        self._scrub: set[str] = {v for v in ctx.secrets.values() if v}
        self._token_client = ctx.make_client(default_base_url="https://api.ebay.com", secrets=self._scrub)
        self.auth = EbayUserAuth(
            token_client=self._token_client,
            client_id=client_id,
            secrets=ctx.secrets,
            save_secrets=ctx.save_secrets,
            scopes=scopes,
            scrub=self._scrub,
        )
        self.client = ctx.make_client(
            default_base_url="https://api.ebay.com", auth=self.auth, policy=EBAY_SELL, secrets=self._scrub
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._token_client.aclose()

    # Calls --------------------------------------------------------------------------------------------------
    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; when the refresh token was refused, the error says the seller must reconnect."""
        return await self._answer(self.client.request(method, f"{API}{path}", **kwargs))

    async def _answer(self, call: Awaitable[httpx.Response]) -> httpx.Response:
        """The response of a call made now or started earlier (`RemoteClient.start`), with `_call`'s errors."""
        try:
            return await call
        except RemoteConfigurationError as exc:
            if self.auth.refused is None:
                raise
            raise RemoteConfigurationError(
                self.auth.refused, status=exc.status, remote_message=exc.remote_message
            ) from None

    async def check(self) -> str:
        """getOrders with limit=1: cheap, and needs the seller's sell.fulfillment consent."""
        body = json_object(
            await self._call("GET", "/order", params={"limit": 1}, operation="getOrders"), "eBay", "getOrders"
        )
        orders = body.get("orders") or []
        seller = orders[0].get("sellerId") if orders and isinstance(orders[0], dict) else None
        total = body.get("total")
        recent = f"{total} orders in the last 90 days" if isinstance(total, int) else "orders readable"
        return f"eBay seller account {seller} ({recent})" if seller else f"eBay seller account ({recent})"

    # orders.pull --------------------------------------------------------------------------------------------
    def order_filter(self, window: PullWindow) -> str:
        """`lastmodifieddate:[since..until]` with eBay's timestamps (UTC, milliseconds, Z).

        eBay's bounds are inclusive and its times have millisecond precision, so [since, until) becomes
        [since rounded up to the millisecond .. the last millisecond before until]. Without `since`, the pull
        starts two years before `until`, as far back as getOrders reaches (an older `since` is moved there too:
        eBay refuses a range over two years, errorId 30830).
        """
        # Source: developer.ebay.com/api-docs/sell/fulfillment/resources/order/methods/getOrders ("filter":
        # lastmodifieddate:[2016-05-15T08:25:43.511Z..2016-05-16T08:25:43.511Z]); httpx percent-encodes the
        # brackets and colons of the value, as the page asks.
        oldest = window.until - MAX_LOOKBACK
        since = oldest if window.since is None else max(window.since, oldest)
        start = _ceil_ms(since)
        end = _ceil_ms(window.until) - ONE_MS
        return f"lastmodifieddate:[{ebay_time(start)}..{ebay_time(end)}]"

    async def pull_orders(
        self, window: PullWindow, resume: dict[str, Any] | None
    ) -> AsyncGenerator[Page, None]:
        """The window's orders, 200 a page, by offset.

        Offset paging moves under changes: an order modified during the pull gets a lastModifiedDate past
        `until`, leaves the window, and every order listed after it moves back one place, so the next offset
        would skip one. getOrders' `total` shows it: when it shrank since the offset was computed, the page is
        read again from the offset less the shrinkage. That re-reads a few orders (the engine's bindings skip
        them) but never skips one. Orders cannot enter a window whose `until` has passed.
        `resume` is {"offset": N, "total": T}: where the next page starts and the total it was computed with.
        """
        if window.since is not None and window.since >= window.until:
            return
        filter_text = self.order_filter(window)
        offset = int((resume or {}).get("offset", 0))
        known_total = (resume or {}).get("total")
        total: int | None = int(known_total) if known_total is not None else None
        # The next page's request leaves before this page is mapped and handed over (see Shopify's pull).
        ahead: asyncio.Task[httpx.Response] | None = None
        try:
            while True:
                params = {"filter": filter_text, "limit": PAGE_LIMIT, "offset": offset}
                call: Awaitable[httpx.Response]
                if ahead is None:
                    call = self.client.request("GET", f"{API}/order", params=params, operation="getOrders")
                else:
                    call, ahead = ahead, None
                ahead = None
                body = json_object(await self._answer(call), "eBay", "getOrders")
                new_total = body.get("total")
                raw_orders = body.get("orders") or []
                if not isinstance(new_total, int) or not isinstance(raw_orders, list):
                    raise RetryableError(
                        "eBay answered getOrders without a total or an orders list; it will be tried again"
                    )
                if total is not None and new_total < total and offset > 0:
                    # Orders before `offset` may have left the window: step back so none is skipped.
                    offset = max(0, offset - (total - new_total))
                    total = new_total
                    continue
                total = new_total
                next_offset = offset + len(raw_orders)
                done = not raw_orders or next_offset >= total
                if not done:
                    params = {"filter": filter_text, "limit": PAGE_LIMIT, "offset": next_offset}
                    ahead = await self.client.start(
                        "GET", f"{API}/order", params=params, operation="getOrders"
                    )
                records = [self._mapped(raw) for raw in raw_orders]
                yield Page(
                    records,
                    None if done else {"offset": next_offset, "total": total},
                    raw_count=len(raw_orders),
                )
                if done:
                    return
                offset = next_offset
        finally:
            await discard(
                ahead
            )  # the caller stopped reading (or this page failed): the next page is not needed

    @staticmethod
    def _mapped(raw: Any) -> Mapped:
        mapped = map_order(raw)
        mapped.raw = raw
        return mapped

    # fulfillments.push --------------------------------------------------------------------------------------
    async def find_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment | None:
        """The order's shipping fulfillment with this tracking number (getShippingFulfillments)."""
        if not fulfillment.tracking_number:
            return None
        response = await self._call(
            "GET",
            f"/order/{_segment(order_external_id)}/shipping_fulfillment",
            operation="getShippingFulfillments",
            order_id=fulfillment.order_id,
        )
        body = json_object(response, "eBay", "getShippingFulfillments")
        for item in body.get("fulfillments") or []:
            if (
                isinstance(item, dict)
                and item.get("shipmentTrackingNumber") == fulfillment.tracking_number
                and item.get("fulfillmentId")
            ):
                return PushedFulfillment(external_id=str(item["fulfillmentId"]))
        return None

    async def push_fulfillment(
        self, order_external_id: str, fulfillment: Fulfillment, idempotency_key: str
    ) -> PushedFulfillment:
        """createShippingFulfillment. eBay takes no idempotency key; the fulfillment is found again by its
        tracking number (`find_fulfillment`), so the call may be retried (lookup_first)."""
        try:
            body = shipping_fulfillment_request(fulfillment)
        except PushError as exc:
            raise PermanentError(f"cannot send this fulfillment to eBay: {exc.field} {exc.reason}") from None
        path = f"/order/{_segment(order_external_id)}/shipping_fulfillment"
        try:
            response = await self._call(
                "POST",
                path,
                json=body,
                operation="createShippingFulfillment",
                order_id=fulfillment.order_id,
                lookup_first=True,
            )
        except RemotePermanentError:
            # A try whose answer was lost may have created it: eBay then refuses the same tracking number on
            # the order (errorId 34500). Finding it is the answer.
            found = await self.find_fulfillment(order_external_id, fulfillment)
            if found is not None:
                return found
            raise
        # Source: developer.ebay.com/api-docs/sell/fulfillment/resources/order/shipping_fulfillment/methods/
        # createShippingFulfillment: 201 Created, the new fulfillment's URI in the Location header.
        location = response.headers.get("location", "")
        fulfillment_id = urlsplit(location).path.rstrip("/").rpartition("/")[2]
        if fulfillment_id:
            return PushedFulfillment(external_id=fulfillment_id)
        found = await self.find_fulfillment(order_external_id, fulfillment)
        if found is not None:
            return found
        raise PermanentError(
            f"eBay accepted the shipping fulfillment of order {order_external_id} but named no fulfillment id "
            "(no Location header); check the order in eBay Seller Hub before pushing it again"
        )

    async def update_tracking(
        self, order_external_id: str, external_id: str, fulfillment: Fulfillment
    ) -> PushedFulfillment:
        # The Fulfillment API offers create and read of a shipping fulfillment, no update
        # (developer.ebay.com/api-docs/sell/fulfillment/resources/methods).
        raise PermanentError(
            f"eBay cannot change the tracking of shipping fulfillment {external_id} of order "
            f"{order_external_id}: its Fulfillment API has no update for a shipping fulfillment. Correct the "
            "tracking number in eBay Seller Hub (the order's 'Edit tracking'); crossdock keeps the new number on "
            "this fulfillment and does not send it again"
        )


def _ceil_ms(moment: datetime) -> datetime:
    """Round up to the next whole millisecond (eBay's precision)."""
    extra = moment.microsecond % 1000
    return moment if extra == 0 else moment + timedelta(microseconds=1000 - extra)


def _segment(order_id: str) -> str:
    """An order id as one path segment (ids look like 12-34567-89012; anything else is escaped whole)."""
    return quote(order_id, safe="-")
