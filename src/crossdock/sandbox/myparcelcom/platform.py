"""A simulator of the MyParcel.com platform, for testing an integration that serves the MyParcel.com
integration contract (PROTOCOLS.md section 9): here the platform is the client and the integration the server.

It calls the integration the way the platform does and checks every answer against the contract, raising
`ContractViolation` with what is wrong, on which request. Sources: MyParcelCOM/marketplace-skeleton
(routes/api.php, tests/Feature/*.php), MyParcelCOM/marketplace-commons (Shipment::transformToJsonApiArray,
TransformsManyToJsonApi, MatchingChannelOnly, ShipmentStatusCallbackRequest).

    async with MyParcelComPlatform("http://127.0.0.1:8000/integrations/myparcelcom", channel="crossdock") as p:
        await p.healthz()
        await p.authorize(shop_id, "https://platform.example/done")
        shipments = await p.list_shipments(shop_id, date(2024, 1, 1), date(2024, 1, 31), page_size=10)
        await p.post_status_callback(shipments[0], "shipment-delivered")
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from types import TracebackType
from typing import Any

import httpx

from crossdock.sandbox.myparcelcom.resources import JSON, SHIPMENT_STATUSES, stable_uuid, status_resource

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# A consent page on the way (e.g. the shop's own OAuth screen): given the page, return the request to send next.
PageHandler = Callable[[httpx.Response], Awaitable[httpx.Request]]


class ContractViolation(AssertionError):
    """The integration answered something the MyParcel.com platform would not accept."""

    def __init__(self, problem: str, *, request: str, response: httpx.Response | None = None) -> None:
        self.problem = problem
        self.request = request
        self.status = response.status_code if response is not None else None
        self.body = response.text[:500] if response is not None else None
        where = f"{request} -> HTTP {self.status}" if self.status is not None else request
        super().__init__(f"{where}: {problem}" + (f"\n  body: {self.body}" if self.body else ""))


class MyParcelComPlatform:
    """The platform side of the contract; `base_url` is where the integration serves it."""

    def __init__(
        self,
        base_url: str,
        *,
        channel: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # When set, every shipment must carry this channel (the integration's name on the platform).
        self.channel = channel
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(transport=transport, timeout=timeout_s)

    async def __aenter__(self) -> MyParcelComPlatform:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    # -- health ------------------------------------------------------------------------------------------------
    async def healthz(self) -> None:
        response = await self.client.get(self.url("/healthz"))
        if not response.is_success:
            raise ContractViolation("GET /healthz must answer 2xx", request="GET /healthz", response=response)

    # -- authorization -------------------------------------------------------------------------------------
    async def init_auth(self, shop_id: str, redirect_uri: str) -> str:
        """POST /public/init-auth -> data.authorization_link, the start of the remote shop's OAuth flow."""
        where = "POST /public/init-auth"
        response = await self.client.post(
            self.url("/public/init-auth"), json={"data": {"shop_id": shop_id, "redirect_uri": redirect_uri}}
        )
        if response.status_code not in (200, 201):
            raise ContractViolation(
                "init-auth must answer 200 with data.authorization_link", request=where, response=response
            )
        body = _json(response, where)
        link = body.get("data", {}).get("authorization_link") if isinstance(body.get("data"), dict) else None
        if not isinstance(link, str) or not link.startswith(("http://", "https://")):
            raise ContractViolation(
                "data.authorization_link must be an absolute http(s) URL", request=where, response=response
            )
        return link

    async def complete_authorization(
        self,
        authorization_link: str,
        redirect_uri: str,
        *,
        on_page: PageHandler | None = None,
        max_hops: int = 10,
    ) -> httpx.URL:
        """Follow the flow as a merchant's browser would until it lands on `redirect_uri`; it must pass through
        the integration's GET /public/authenticate (the OAuth callback). Returns the final URL."""
        request = self.client.build_request("GET", authorization_link)
        authenticate = self.url("/public/authenticate")
        passed_callback = False
        for _ in range(max_hops):
            where = f"{request.method} {request.url}"
            if str(request.url).startswith(authenticate):
                passed_callback = True
            response = await self.client.send(request)
            if response.is_redirect:
                target = request.url.join(response.headers["location"])
                if str(target).startswith(redirect_uri):
                    if not passed_callback:
                        raise ContractViolation(
                            "the flow reached redirect_uri without passing GET /public/authenticate",
                            request=where,
                            response=response,
                        )
                    return target
                request = self.client.build_request("GET", target)
                continue
            if str(request.url).startswith(authenticate):
                raise ContractViolation(
                    "GET /public/authenticate must redirect (302) to the redirect_uri",
                    request=where,
                    response=response,
                )
            if response.is_success and on_page is not None:
                request = await on_page(response)
                continue
            raise ContractViolation(
                "the authorization flow stopped before reaching redirect_uri",
                request=where,
                response=response,
            )
        raise ContractViolation(f"no redirect_uri after {max_hops} hops", request=authorization_link)

    async def authorize(
        self, shop_id: str, redirect_uri: str, *, on_page: PageHandler | None = None
    ) -> httpx.URL:
        link = await self.init_auth(shop_id, redirect_uri)
        return await self.complete_authorization(link, redirect_uri, on_page=on_page)

    # -- shipments ---------------------------------------------------------------------------------------------
    async def iter_shipment_pages(
        self, shop_id: str, start_date: date, end_date: date, page_size: int = 30
    ) -> AsyncIterator[list[JSON]]:
        """GET /shipments page by page (page[number] from 1) until meta.total_pages, checking every page."""
        number, total_pages, total_records, seen = 1, 1, -1, 0
        fingerprints: set[str] = set()
        while number <= total_pages:
            params = {
                "shop_id": shop_id,
                "filter[start_date]": start_date.isoformat(),
                "filter[end_date]": end_date.isoformat(),
                "page[number]": str(number),
                "page[size]": str(page_size),
            }
            response = await self.client.get(self.url("/shipments"), params=params)
            where = f"GET /shipments page[number]={number}"
            if response.status_code != 200:
                raise ContractViolation(
                    "listing shipments of an authorized shop must answer 200",
                    request=where,
                    response=response,
                )
            body = _json(response, where)
            data = body.get("data")
            if not isinstance(data, list):
                raise ContractViolation(
                    "the document must have a data array", request=where, response=response
                )
            meta = body.get("meta")
            if meta is None and not data and number == 1:
                # marketplace-commons answers {"data": []} for an empty result (TransformsManyToJsonApi).
                return
            records, pages = self._check_meta(meta, page_size, where, response)
            if total_records not in (-1, records):
                raise ContractViolation(
                    f"meta.total_records changed between pages ({total_records} -> {records})",
                    request=where,
                    response=response,
                )
            total_records, total_pages = records, pages
            expected = min(page_size, max(0, records - (number - 1) * page_size))
            if len(data) != expected:
                raise ContractViolation(
                    f"page {number} of {pages} holds {len(data)} shipments; with total_records={records} and "
                    f"page[size]={page_size} it must hold {expected}",
                    request=where,
                    response=response,
                )
            for index, resource in enumerate(data):
                self._check_shipment(
                    resource, shop_id, start_date, end_date, f"{where} data[{index}]", response
                )
                fingerprint = json.dumps(resource, sort_keys=True)
                if fingerprint in fingerprints:
                    raise ContractViolation(
                        f"data[{index}] was already returned on an earlier page",
                        request=where,
                        response=response,
                    )
                fingerprints.add(fingerprint)
            seen += len(data)
            yield data
            number += 1
        if seen != max(total_records, 0):
            raise ContractViolation(
                f"{seen} shipments over all pages but meta.total_records={total_records}",
                request="GET /shipments",
            )

    async def list_shipments(
        self, shop_id: str, start_date: date, end_date: date, page_size: int = 30
    ) -> list[JSON]:
        shipments: list[JSON] = []
        async for page in self.iter_shipment_pages(shop_id, start_date, end_date, page_size):
            shipments.extend(page)
        return shipments

    async def check_refusals(self, unauthorized_shop_id: str) -> None:
        """The contract's refusals: 400 without shop_id, 422 for a shop_id that is no UUID, 401 for a shop
        without a token, each with JSON:API error objects."""
        for params, status, why in (
            ({}, 400, "a request without shop_id"),
            ({"shop_id": "1234567"}, 422, "a shop_id that is not a UUID"),
            ({"shop_id": unauthorized_shop_id}, 401, "a shop that has no token"),
        ):
            response = await self.client.get(self.url("/shipments"), params=params)
            where = f"GET /shipments ({why})"
            if response.status_code != status:
                raise ContractViolation(f"{why} must be answered {status}", request=where, response=response)
            check_error_document(response, status, where)

    # -- status callbacks ----------------------------------------------------------------------------------
    def status_document(self, shipment: JSON, status_code: str, *, shipment_id: str | None = None) -> JSON:
        """The JSON:API document the platform posts: a shipment-statuses resource as data, its generic status
        and the shipment (with its shop relationship and channel) included."""
        if status_code not in SHIPMENT_STATUSES:
            raise ValueError(f"unknown MyParcel.com status code {status_code!r}")
        shipment = dict(shipment)
        shipment.setdefault("id", shipment_id or str(uuid.uuid4()))
        now = int(datetime.now(UTC).timestamp())
        status = {
            "type": "shipment-statuses",
            "id": str(uuid.uuid4()),
            "attributes": {"carrier_statuses": [], "errors": [], "created_at": now},
            "relationships": {
                "shipment": {"data": {"type": "shipments", "id": shipment["id"]}},
                "status": {"data": {"type": "statuses", "id": stable_uuid("status", status_code)}},
            },
        }
        return {"data": status, "included": [status_resource(status_code), shipment]}

    async def post_status_callback(self, shipment: JSON, status_code: str) -> httpx.Response:
        """POST /callback/shipment-statuses; 2xx expected (204 when the shipment is another channel's)."""
        where = f"POST /callback/shipment-statuses ({status_code})"
        response = await self.client.post(
            self.url("/callback/shipment-statuses"),
            content=json.dumps(self.status_document(shipment, status_code)),
            headers={"Content-Type": "application/vnd.api+json"},
        )
        if not response.is_success:
            if response.status_code >= 400 and response.status_code < 500:
                check_error_document(response, response.status_code, where)
            raise ContractViolation(
                "the status callback must be accepted with 2xx", request=where, response=response
            )
        return response

    # -- checks --------------------------------------------------------------------------------------------
    def _check_meta(self, meta: Any, page_size: int, where: str, response: httpx.Response) -> tuple[int, int]:
        if not isinstance(meta, dict):
            raise ContractViolation(
                "meta with total_records and total_pages is mandatory", request=where, response=response
            )
        records, pages = meta.get("total_records"), meta.get("total_pages")
        for name, value in (("total_records", records), ("total_pages", pages)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ContractViolation(
                    f"meta.{name} must be a non-negative integer, got {value!r}",
                    request=where,
                    response=response,
                )
        assert isinstance(records, int) and isinstance(pages, int)
        expected_pages = math.ceil(records / page_size)
        if pages != expected_pages and not (records == 0 and pages in (0, 1)):
            raise ContractViolation(
                f"meta.total_pages={pages} but total_records={records} at page[size]="
                f"{page_size} makes {expected_pages}",
                request=where,
                response=response,
            )
        return records, max(pages, 1)

    def _check_shipment(
        self, resource: Any, shop_id: str, start: date, end: date, where: str, response: httpx.Response
    ) -> None:
        def fail(problem: str) -> ContractViolation:
            return ContractViolation(problem, request=where, response=response)

        if not isinstance(resource, dict) or resource.get("type") != "shipments":
            raise fail('each resource must be an object with type "shipments"')
        attributes = resource.get("attributes")
        if not isinstance(attributes, dict):
            raise fail("attributes must be an object")
        channel = attributes.get("channel")
        if not isinstance(channel, str) or not channel:
            raise fail("attributes.channel is required (a non-empty string)")
        if self.channel is not None and channel != self.channel:
            raise fail(f"attributes.channel is {channel!r}, expected {self.channel!r}")
        recipient = attributes.get("recipient_address")
        if not isinstance(recipient, dict):
            raise fail("attributes.recipient_address is required")
        for prop in ("street_1", "city", "country_code"):
            if not isinstance(recipient.get(prop), str) or not recipient[prop]:
                raise fail(f"attributes.recipient_address.{prop} is required")
        for role in ("recipient_address", "sender_address", "return_address"):
            address = attributes.get(role)
            if address is None:
                continue
            if not isinstance(address, dict):
                raise fail(f"attributes.{role} must be an object")
            country = address.get("country_code")
            if country is not None and (not isinstance(country, str) or not _COUNTRY.match(country)):
                raise fail(f"attributes.{role}.country_code must be ISO 3166-1 alpha-2, got {country!r}")
        created_at = attributes.get("created_at")
        if created_at is not None:
            if isinstance(created_at, bool) or not isinstance(created_at, int):
                raise fail("attributes.created_at must be a unix timestamp (integer)")
            low = datetime.combine(start, time.min, UTC)
            high = datetime.combine(end + timedelta(days=1), time.min, UTC)
            if not low.timestamp() <= created_at < high.timestamp():
                raise fail(
                    f"attributes.created_at {created_at} is outside filter[start_date]..filter[end_date]"
                )
        for money in ("total_value", "price"):
            value = attributes.get(money)
            if value is None:
                continue
            if (
                not isinstance(value, dict)
                or isinstance(value.get("amount"), bool)
                or not isinstance(value.get("amount"), int)
                or not isinstance(value.get("currency"), str)
                or not _CURRENCY.match(value["currency"])
            ):
                raise fail(f"attributes.{money} must be {{amount: integer cents, currency: ISO 4217}}")
        physical = attributes.get("physical_properties")
        if physical is not None:
            weight = physical.get("weight") if isinstance(physical, dict) else None
            if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int) or weight < 0):
                raise fail("attributes.physical_properties.weight must be an integer of grams")
        items = attributes.get("items")
        if items is not None:
            if not isinstance(items, list):
                raise fail("attributes.items must be an array")
            for i, item in enumerate(items):
                quantity = item.get("quantity") if isinstance(item, dict) else None
                if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                    raise fail(f"attributes.items[{i}].quantity must be an integer of at least 1")
        tags = attributes.get("tags")
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            raise fail("attributes.tags must be an array of strings")
        shop = ((resource.get("relationships") or {}).get("shop") or {}).get("data")
        if not isinstance(shop, dict) or shop.get("type") != "shops" or shop.get("id") != shop_id:
            raise fail(
                f'relationships.shop.data must be {{"type": "shops", "id": "{shop_id}"}}, got {shop!r}'
            )


def check_error_document(response: httpx.Response, status: int, where: str) -> None:
    """A refusal must carry JSON:API error objects: {"errors": [{status, title, detail, ...}]}."""
    body = _json(response, where)
    errors = body.get("errors")
    if not isinstance(errors, list) or not errors:
        raise ContractViolation(
            "an error answer must hold a non-empty errors array (JSON:API)", request=where, response=response
        )
    for error in errors:
        if not isinstance(error, dict) or not (error.get("title") or error.get("detail")):
            raise ContractViolation(
                "each error object needs a title or a detail", request=where, response=response
            )
        if "status" in error and str(error["status"]) != str(status):
            raise ContractViolation(
                f"error status {error['status']!r} differs from HTTP {status}",
                request=where,
                response=response,
            )


def _json(response: httpx.Response, where: str) -> JSON:
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        raise ContractViolation(
            f"expected a JSON body, got Content-Type {content_type!r}", request=where, response=response
        )
    try:
        body = response.json()
    except ValueError:
        raise ContractViolation("the body is not valid JSON", request=where, response=response) from None
    if not isinstance(body, dict):
        raise ContractViolation(
            "the top level of a JSON:API document must be an object", request=where, response=response
        )
    return body
