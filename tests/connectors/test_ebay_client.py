"""The eBay connector against the eBay sandbox on a real socket, opened from a connection stored in the hub:
check, windowed and resumed pulls that neither skip nor repeat (also while orders change), the user token's
renewal ahead of expiry and after a 401, a revoked refresh token, shipping fulfillments, and no secret in the
record of calls."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from crossdock.connectors.base import Page, PullWindow
from crossdock.connectors.ebay.client import EbayConnector
from crossdock.connectors.ebay.mapping import map_order
from crossdock.engine.connections import ConnectionUnavailable, load_context, open_connector
from crossdock.engine.errors import PermanentError, RetryableError
from crossdock.engine.http import RemoteConfigurationError
from crossdock.hub import Hub
from crossdock.model import Fulfillment, FulfillmentLine
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.common.server import run_in_thread
from crossdock.sandbox.ebay import EbayState
from crossdock.store import repo
from crossdock.store import tables as t
from tests.support import Tenant

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
TOKEN_URL = "/identity/v1/oauth2/token"


@dataclass
class FailsTokens:
    """In front of the sandbox: answers the next `fail_next` token requests 503 without passing them on (what a
    lost answer looks like to the client)."""

    app: Starlette
    fail_next: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fail_next and scope["type"] == "http" and scope["path"] == TOKEN_URL:
            self.fail_next -= 1
            await send(
                {"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"Service Unavailable"})
            return
        await self.app(scope, receive, send)


@dataclass
class Sandbox:
    url: str
    app: Starlette
    admin: httpx.AsyncClient
    front: FailsTokens

    @property
    def state(self) -> EbayState:
        state: EbayState = self.app.state.sandbox
        return state

    async def tokens(self) -> dict[str, Any]:
        r = await self.admin.post("/_sandbox/tokens", json={})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    orders = getattr(request, "param", 0)
    app = create_sandbox_app("ebay", SandboxConfig(seed=5, orders=orders, extra={"days": "60"}))
    front = FailsTokens(app)
    with run_in_thread(front) as url:
        async with httpx.AsyncClient(base_url=url) as admin:
            yield Sandbox(url, app, admin, front)


async def ebay_order(
    hub: Hub, account: Tenant, sandbox: Sandbox, line_items: int = 1
) -> tuple[dict[str, Any], t.Order]:
    """A new order on eBay and its canonical copy in the hub (remote calls about it are recorded on it)."""
    r = await sandbox.admin.post("/_sandbox/orders", json={"count": 1, "line_items": line_items})
    assert r.status_code == 201, r.text
    raw: dict[str, Any] = r.json()["orders"][0]
    mapped = map_order(raw)
    assert mapped.value is not None
    async with hub.db.transaction() as session:
        order = await repo.Tenant(session, uuid.UUID(account.id)).create_order(mapped.value, source="ebay")
    return raw, order


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


async def connect(
    hub: Hub,
    account: Tenant,
    sandbox: Sandbox,
    *,
    expires_in: timedelta = timedelta(hours=2),
    **override: str,
) -> uuid.UUID:
    """An eBay connection in the hub as the OAuth callback leaves it: refresh and access token with expiry."""
    tokens = await sandbox.tokens()
    secrets = {
        "client_secret": CLIENT_SECRET,
        "refresh_token": tokens["refresh_token"],
        "access_token": tokens["access_token"],
        "access_token_expires_at": iso(datetime.now(UTC) + expires_in),
        **override,
    }
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(account.id)).create_connection(
            connector="ebay",
            name="Acme on eBay",
            vault=hub.vault,
            settings={"client_id": CLIENT_ID},
            base_url=sandbox.url,
            secrets=secrets,
        )
    return row.id


async def calls(hub: Hub, connection_id: uuid.UUID) -> list[t.RemoteCall]:
    async with hub.db.session() as session:
        rows = await session.scalars(
            select(t.RemoteCall).where(t.RemoteCall.connection_id == connection_id).order_by(t.RemoteCall.at)
        )
        return list(rows.all())


def token_calls(rows: list[t.RemoteCall]) -> list[t.RemoteCall]:
    return [r for r in rows if TOKEN_URL in r.url]


async def pull_all(
    connector: EbayConnector, window: PullWindow, resume: dict[str, Any] | None = None
) -> list[Page]:
    return [page async for page in connector.pull_orders(window, resume)]


def ids(pages: list[Page]) -> list[str]:
    return [str(m.external_id) for page in pages for m in page.records]


def expected_ids(state: EbayState, window: PullWindow) -> set[str]:
    assert window.since is not None
    return {o.order_id for o in state.all_orders() if window.since <= o.modified < window.until}


def recent_window(days: int = 30) -> PullWindow:
    until = datetime.now(UTC) - timedelta(milliseconds=5)
    return PullWindow(since=until - timedelta(days=days), until=until)


# -- check ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sandbox", [3], indirect=True)
async def test_check_names_the_seller_account(hub: Hub, acme: Tenant, sandbox: Sandbox) -> None:
    connection_id = await connect(hub, acme, sandbox)
    async with open_connector(hub, uuid.UUID(acme.id), connection_id) as (_row, connector):
        assert isinstance(connector, EbayConnector)
        reached = await connector.check()
    assert reached == "eBay seller account sandbox_seller (3 orders in the last 90 days)"


# -- pulls ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sandbox", [900], indirect=True)
async def test_a_window_of_several_pages_returns_each_of_its_orders_once(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    window = recent_window()
    expected = expected_ids(sandbox.state, window)
    assert 400 < len(expected) < len(sandbox.state.orders)  # three pages, and orders outside the window
    connection_id = await connect(hub, acme, sandbox)
    async with open_connector(hub, uuid.UUID(acme.id), connection_id) as (_row, connector):
        pages = await pull_all(connector, window)
    got = ids(pages)
    assert len(pages) == 3
    assert len(got) == len(set(got))
    assert set(got) == expected
    for page in pages:
        for mapped in page.records:
            assert mapped.ok, mapped.problems
            assert mapped.raw["orderId"] == mapped.external_id  # the remote record travels with it
            assert window.since is not None
            assert window.since <= datetime.fromisoformat(mapped.raw["lastModifiedDate"]) < window.until
    assert [p.resume for p in pages] == [
        {"offset": 200, "total": len(expected)},
        {"offset": 400, "total": len(expected)},
        None,
    ]
    # The filter eBay documents: lastmodifieddate:[since..until] with milliseconds and Z, percent-encoded.
    first = (await calls(hub, connection_id))[0]
    assert "filter=lastmodifieddate%3A%5B" in first.url and "Z..20" in first.url and "Z%5D" in first.url


@pytest.mark.parametrize("sandbox", [500], indirect=True)
async def test_a_pull_resumed_from_a_page_continues_without_gap_or_repeat(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    window = recent_window()
    assert len(expected_ids(sandbox.state, window)) > 200  # more than one page
    connection_id = await connect(hub, acme, sandbox)
    account = uuid.UUID(acme.id)
    async with open_connector(hub, account, connection_id) as (_row, connector):
        pulling = connector.pull_orders(window, None)
        first = await anext(pulling)
        await pulling.aclose()  # the run stops here (a crash, a deploy)
    assert first.resume is not None
    async with open_connector(hub, account, connection_id) as (_row, connector):
        rest = await pull_all(connector, window, first.resume)
    before, after = ids([first]), ids(rest)
    assert not set(before) & set(after)
    assert set(before) | set(after) == expected_ids(sandbox.state, window)
    assert len(before) + len(after) == len(expected_ids(sandbox.state, window))


@pytest.mark.parametrize("sandbox", [1000], indirect=True)
async def test_orders_modified_during_a_pull_leave_no_order_of_the_window_unread(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    window = recent_window()
    expected = expected_ids(sandbox.state, window)
    assert 403 < len(expected) < 600  # three pages, with room for three to leave
    connection_id = await connect(hub, acme, sandbox)
    async with open_connector(hub, uuid.UUID(acme.id), connection_id) as (_row, connector):
        pulling = connector.pull_orders(window, None)
        first = await anext(pulling)
        # The buyer changes three orders already read: they leave the window, and every order listed after
        # them moves back three places, across the next offset. The second page was asked for before the first
        # was handed over, so the shift shows on the second page or, if eBay answered it first, on the third.
        for mapped in first.records[:3]:
            r = await sandbox.admin.patch(
                f"/_sandbox/orders/{mapped.external_id}", json={"buyerCheckoutNotes": "leave at the door"}
            )
            assert r.status_code == 200, r.text
        rest = [page async for page in pulling]
    got = ids([first, *rest])
    assert set(got) == expected  # nothing skipped (the three changed ones were read before they changed)
    assert len(got) - len(set(got)) <= 3  # at most the shrinkage read twice
    offsets = [int(httpx.URL(r.url).params["offset"]) for r in await calls(hub, connection_id)]
    assert offsets[:2] == [0, 200]
    # total shrank by 3 once: one page is read again from three places back.
    assert [later - earlier for earlier, later in pairwise(offsets) if later < earlier] == [-3]


# -- tokens -----------------------------------------------------------------------------------------------------
async def test_an_access_token_about_to_expire_is_renewed_first_and_kept_in_the_vault(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    connection_id = await connect(hub, acme, sandbox, expires_in=timedelta(minutes=3))
    account = uuid.UUID(acme.id)
    _row, before = await load_context(hub, account, connection_id)
    async with open_connector(hub, account, connection_id) as (_row, connector):
        await asyncio.gather(connector.check(), connector.check())  # both need a new token: one refresh
    rows = await calls(hub, connection_id)
    assert [(r.method, r.status) for r in token_calls(rows)] == [("POST", 200)]
    assert [r.status for r in rows if TOKEN_URL not in r.url] == [200, 200]  # no 401 on the way
    _row, after = await load_context(hub, account, connection_id)
    new_token = after.secrets["access_token"]
    assert new_token != before.secrets["access_token"]
    assert sandbox.state.valid_access_token(new_token) is not None
    expires = datetime.fromisoformat(after.secrets["access_token_expires_at"])
    assert timedelta(hours=1, minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=2)
    # The next connector uses the kept token as it is: no second refresh.
    async with open_connector(hub, account, connection_id) as (_row, connector):
        await connector.check()
    assert len(token_calls(await calls(hub, connection_id))) == 1


async def test_a_token_request_whose_answer_is_lost_is_asked_again_by_the_jobs_retry(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    """A refresh-token grant only mints another access token, so a lost answer (a 503, a dropped connection)
    with no usable token left is the call's retryable error: not an unknown outcome taken for a refusal that
    sends the seller to connect the account again."""
    connection_id = await connect(hub, acme, sandbox, expires_in=timedelta(minutes=-1))
    account = uuid.UUID(acme.id)
    r = await sandbox.admin.post("/_sandbox/clock", json={"advance_s": 7300})  # expired at eBay as well
    assert r.status_code == 200
    sandbox.front.fail_next = 1
    async with open_connector(hub, account, connection_id) as (_row, connector):
        with pytest.raises(RetryableError):
            await connector.check()
    async with open_connector(hub, account, connection_id) as (_row, connector):
        assert (await connector.check()).startswith("eBay seller account")  # the job's next try
    rows = await calls(hub, connection_id)
    assert [(r.method, r.status) for r in rows] == [("POST", 503), ("POST", 200), ("GET", 200)]
    async with hub.db.session() as session:
        assert (await repo.Tenant(session, account).get_connection(connection_id)).status == "active"


@pytest.mark.parametrize("how", ["expired", "invalid"])
async def test_a_refused_access_token_is_renewed_once_and_the_call_succeeds(
    hub: Hub, acme: Tenant, sandbox: Sandbox, how: str
) -> None:
    if how == "invalid":
        connection_id = await connect(hub, acme, sandbox, access_token="v^1.1#i^1#not-a-token-eBay-knows")
    else:
        connection_id = await connect(hub, acme, sandbox)
    account = uuid.UUID(acme.id)
    async with open_connector(hub, account, connection_id) as (_row, connector):
        if (
            how == "expired"
        ):  # eBay's clock says the token is over, though the vault's expiry does not know it
            r = await sandbox.admin.post("/_sandbox/clock", json={"advance_s": 7300})
            assert r.status_code == 200
        assert (await connector.check()).startswith("eBay seller account")
    rows = await calls(hub, connection_id)
    assert [(r.method, r.status) for r in rows] == [("GET", 401), ("POST", 200), ("GET", 200)]
    _row, ctx = await load_context(hub, account, connection_id)
    assert sandbox.state.valid_access_token(ctx.secrets["access_token"]) is not None


async def test_a_revoked_refresh_token_asks_for_reconnection_after_one_token_request(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    connection_id = await connect(hub, acme, sandbox)
    account = uuid.UUID(acme.id)
    _row, ctx = await load_context(hub, account, connection_id)
    r = await sandbox.admin.post(
        "/_sandbox/tokens/revoke", json={"refresh_token": ctx.secrets["refresh_token"]}
    )
    assert r.status_code == 200
    async with open_connector(hub, account, connection_id) as (_row, connector):
        for _ in range(3):  # a job retried, another job of the same connection: no storm of token requests
            with pytest.raises(RemoteConfigurationError) as refused:
                await connector.check()
            assert "the seller must connect the eBay account again" in refused.value.message
            assert "18 months" in refused.value.message
    rows = await calls(hub, connection_id)
    assert len(token_calls(rows)) == 1
    assert token_calls(rows)[0].status == 400
    async with hub.db.session() as session:
        row = await repo.Tenant(session, account).get_connection(connection_id)
        assert row.status == "needs_reauth"
        assert row.status_reason
    with pytest.raises(ConnectionUnavailable, match="reconnect it"):
        async with open_connector(hub, account, connection_id):
            pass


async def test_a_connection_without_tokens_asks_for_the_ebay_account_without_a_token_request(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    async with hub.db.transaction() as session:
        row = await repo.Tenant(session, uuid.UUID(acme.id)).create_connection(
            connector="ebay",
            name="Acme on eBay",
            vault=hub.vault,
            settings={"client_id": CLIENT_ID},
            base_url=sandbox.url,
            secrets={"client_secret": CLIENT_SECRET},  # stored before the seller finished eBay's consent
        )
    async with open_connector(hub, uuid.UUID(acme.id), row.id) as (_row, connector):
        with pytest.raises(RemoteConfigurationError, match="must connect the eBay account"):
            await connector.check()
    rows = await calls(hub, row.id)
    assert [(r.method, r.status) for r in rows] == [("GET", 401)]


async def test_a_wrong_client_secret_says_so_and_flags_the_connection(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    connection_id = await connect(
        hub, acme, sandbox, expires_in=timedelta(minutes=1), client_secret="not-the-cert-id"
    )
    account = uuid.UUID(acme.id)
    async with open_connector(hub, account, connection_id) as (_row, connector):
        with pytest.raises(RemoteConfigurationError, match="invalid_client"):
            await connector.check()
    rows = await calls(hub, connection_id)
    assert [(r.method, r.status) for r in rows] == [("POST", 401)]  # the API was not called
    async with hub.db.session() as session:
        row = await repo.Tenant(session, account).get_connection(connection_id)
    assert row.status == "needs_reauth"
    assert row.status_reason is not None and "invalid_client" in row.status_reason


async def test_no_token_or_secret_is_recorded_in_remote_calls(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    bad = "v^1.1#i^1#an-access-token-eBay-refuses-1234"
    connection_id = await connect(hub, acme, sandbox, access_token=bad)
    account = uuid.UUID(acme.id)
    _row, ctx = await load_context(hub, account, connection_id)
    _raw, order = await ebay_order(hub, acme, sandbox)
    async with open_connector(hub, account, connection_id) as (_row, connector):
        await connector.check()  # 401, refresh, 200
        fulfillment = Fulfillment(
            order_id=order.id,
            lines=[FulfillmentLine(line_external_id="1", quantity=1)],
            tracking_number="1Z9",
        )
        with pytest.raises(PermanentError):
            await connector.find_fulfillment("99-99999-99999", fulfillment)  # 404 with eBay's error words
    _row, after = await load_context(hub, account, connection_id)
    secrets = {
        bad,
        CLIENT_SECRET,
        ctx.secrets["refresh_token"],
        after.secrets["access_token"],
        base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode(),
    }
    rows = await calls(hub, connection_id)
    assert len(rows) == 4
    for row in rows:
        recorded = f"{row.url} {row.error or ''} {row.operation or ''}"
        for secret in secrets:
            assert secret not in recorded
            assert secret.split("#")[-1] not in recorded


# -- fulfillments -----------------------------------------------------------------------------------------------
async def test_a_pushed_fulfillment_has_tracking_and_carrier_on_ebay_and_is_found_again(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    raw, order = await ebay_order(hub, acme, sandbox, line_items=2)
    account = uuid.UUID(acme.id)
    lines = [
        FulfillmentLine(line_external_id=li["lineItemId"], quantity=li["quantity"]) for li in raw["lineItems"]
    ]
    fulfillment = Fulfillment(
        order_id=order.id, lines=lines, carrier="USPS", tracking_number="9400111899223100001234"
    )
    connection_id = await connect(hub, acme, sandbox)
    async with open_connector(hub, account, connection_id) as (_row, connector):
        assert await connector.find_fulfillment(raw["orderId"], fulfillment) is None
        pushed = await connector.push_fulfillment(raw["orderId"], fulfillment, "fulfil-1")
        found = await connector.find_fulfillment(raw["orderId"], fulfillment)
        # Pushed again after an answer we never saw: eBay refuses the same tracking number, the push finds it.
        again = await connector.push_fulfillment(raw["orderId"], fulfillment, "fulfil-1")
        with pytest.raises(PermanentError, match="Seller Hub"):
            await connector.update_tracking(raw["orderId"], pushed.external_id, fulfillment)
    assert pushed.external_id == "9400111899223100001234"  # eBay's id: last segment of Location
    assert found is not None and found.external_id == pushed.external_id
    assert again.external_id == pushed.external_id
    on_ebay = (await sandbox.admin.get("/_sandbox/fulfillments")).json()["fulfillments"]
    assert [(f["orderId"], f["shipmentTrackingNumber"], f["shippingCarrierCode"]) for f in on_ebay] == [
        (raw["orderId"], "9400111899223100001234", "USPS")
    ]
    assert sorted((li["lineItemId"], li["quantity"]) for li in on_ebay[0]["lineItems"]) == sorted(
        (line.line_external_id, line.quantity) for line in lines
    )
    # The calls are on the order's record (remote_calls.order_id).
    rows = await calls(hub, connection_id)
    assert {r.order_id for r in rows} == {order.id}


async def test_a_fulfillment_ebay_cannot_take_is_refused_naming_the_field(
    hub: Hub, acme: Tenant, sandbox: Sandbox
) -> None:
    connection_id = await connect(hub, acme, sandbox)
    fulfillment = Fulfillment(order_id=uuid.uuid4(), lines=[FulfillmentLine(sku="A", quantity=1)])
    async with open_connector(hub, uuid.UUID(acme.id), connection_id) as (_row, connector):
        with pytest.raises(PermanentError, match=r"lines\[0\]\.line_external_id"):
            await connector.push_fulfillment("12-34567-89012", fulfillment, "k")
    assert await calls(hub, connection_id) == []
