"""Signing in to the panel: users with argon2 passwords, API tokens, session cookies, CSRF and the rate limit."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from crossdock.api.app import create_app
from crossdock.cli import app as cli_app
from crossdock.config import Settings
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from crossdock.web.users import MAX_FAILURES_PER_EMAIL, get_user_by_email, set_password
from tests.support import Tenant
from tests.web.support import PASSWORD, csrf_of, make_user, sign_in, signed_in


async def test_pages_send_a_browser_without_a_session_to_sign_in_and_back(client: httpx.AsyncClient) -> None:
    answer = await client.get("/?since=today")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/%3Fsince%3Dtoday"
    page = await client.get(answer.headers["location"])
    assert page.status_code == 200
    assert 'name="next" value="/?since=today"' in page.text


async def test_a_user_signs_in_with_an_httponly_lax_session_cookie(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    email = await make_user(hub, acme)
    answer = await sign_in(client, email)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("crossdock_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here
    dashboard = await client.get("/")
    assert dashboard.status_code == 200 and "Acme" in dashboard.text and "Orders by state" in dashboard.text
    assert dashboard.headers["cache-control"] == "no-store"
    async with hub.db.session() as session:
        user = await session.scalar(select(t.User).where(t.User.email == email))
    assert (
        user is not None
        and user.password_hash.startswith("$argon2id$")
        and PASSWORD not in user.password_hash
    )
    assert user.last_login_at is not None


async def test_the_session_cookie_is_secure_when_the_hub_is_served_over_https(
    hub: Hub, acme: Tenant, tmp_path: object
) -> None:
    settings = Settings(**(hub.settings.model_dump() | {"public_url": "https://hub.example.com"}))
    https_hub = Hub(settings=settings, db=hub.db, vault=hub.vault, blobs=hub.blobs)
    transport = httpx.ASGITransport(app=create_app(https_hub))
    async with httpx.AsyncClient(transport=transport, base_url="https://hub.example.com") as client:
        answer = await sign_in(client, await make_user(hub, acme))
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("crossdock_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/", "//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/orders\x00"],
)
async def test_signing_in_goes_back_only_to_a_path_of_this_hub(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, next_path: str
) -> None:
    page = await client.get("/login")
    answer = await client.post(
        "/login",
        data={
            "csrf_token": csrf_of(page.text),
            "email": await make_user(hub, acme),
            "password": PASSWORD,
            "next": next_path,
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"


async def test_a_wrong_password_is_refused_with_what_to_check(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    email = await make_user(hub, acme)
    answer = await sign_in(client, email, "not the password")
    assert answer.status_code == 401
    assert "The e-mail address or the password is wrong" in answer.text
    assert "crossdock_session" not in answer.headers.get("set-cookie", "")
    unknown = await sign_in(client, "nobody@example.com")
    assert unknown.status_code == 401 and "The e-mail address or the password is wrong" in unknown.text


async def test_refused_sign_ins_are_rate_limited_per_address(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    email = await make_user(hub, acme)
    for _ in range(MAX_FAILURES_PER_EMAIL):
        assert (await sign_in(client, email, "wrong password!")).status_code == 401
    limited = await sign_in(client, email)  # even the right password waits now
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "Too many refused sign-ins" in limited.text and "crossdock users set-password" in limited.text
    other = await sign_in(client, await make_user(hub, acme))
    assert other.status_code == 303  # another address is not locked out


async def test_the_sign_in_form_without_its_csrf_cookie_is_refused(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    email = await make_user(hub, acme)
    forged = await client.post("/login", data={"csrf_token": "x" * 32, "email": email, "password": PASSWORD})
    assert forged.status_code == 403 and "did not come from this page" in forged.text
    assert "crossdock_session" not in forged.headers.get("set-cookie", "")


async def test_an_api_token_signs_in_and_revoking_it_ends_the_session(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    async with hub.db.transaction() as session:
        await session.execute(update(t.ApiToken).values(last_used_at=None))
    page = await client.get("/login")
    answer = await client.post("/login", data={"csrf_token": csrf_of(page.text), "api_token": acme.token})
    assert answer.status_code == 303
    assert (await client.get("/")).status_code == 200
    async with hub.db.transaction() as session:
        tenant = repo.Tenant(session, uuid.UUID(acme.id))
        (token,) = await tenant.list_tokens()
        assert token.last_used_at is not None  # signing in is a use of the token, as an API call is
        await tenant.revoke_token(token.id)
    assert (await client.get("/")).status_code == 303


async def test_signing_out_needs_the_csrf_token_and_ends_the_session(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    refused = await client.post("/logout", data={})
    assert refused.status_code == 403 and "Reload the page" in refused.text
    assert (await client.get("/")).status_code == 200
    wrong = await client.post("/logout", data={"csrf_token": csrf[:-2] + "xx"})
    assert wrong.status_code == 403
    out = await client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    client.cookies.clear()
    async with hub.db.session() as session:
        assert (await session.scalars(select(t.PanelSession))).all() == []


async def test_a_stolen_cookie_of_a_signed_out_session_opens_nothing(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    csrf = await signed_in(client, hub, acme)
    cookie = client.cookies["crossdock_session"]
    await client.post("/logout", data={"csrf_token": csrf})
    client.cookies.set("crossdock_session", cookie)
    assert (await client.get("/")).status_code == 303


async def test_a_session_ends_when_idle_when_its_user_is_disabled_or_gets_a_new_password(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    async def opens() -> bool:
        return (await client.get("/")).status_code == 200

    email = await make_user(hub, acme)
    assert (await sign_in(client, email)).status_code == 303 and await opens()
    async with hub.db.transaction() as session:
        await session.execute(update(t.PanelSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert not await opens()

    assert (await sign_in(client, email)).status_code == 303 and await opens()
    async with hub.db.transaction() as session:
        await session.execute(update(t.User).values(disabled_at=utcnow()))
    assert not await opens()

    async with hub.db.transaction() as session:
        await session.execute(update(t.User).values(disabled_at=None))
    assert await opens()
    async with hub.db.transaction() as session:
        await set_password(session, await get_user_by_email(session, email), "another long password")
    assert not await opens()


async def test_the_dashboard_of_account_a_shows_nothing_of_account_b(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant, globex: Tenant
) -> None:
    from tests.support import order_body

    for _ in range(3):
        made = await client.post("/api/v1/orders", json=order_body(), headers=globex.headers)
        assert made.status_code == 201, made.text
    await signed_in(client, hub, acme)
    page = (await client.get("/")).text
    assert "No orders yet" in page and "Globex" not in page


async def test_a_live_region_is_answered_alone_and_a_lost_session_says_sign_in(
    client: httpx.AsyncClient, hub: Hub, acme: Tenant
) -> None:
    await signed_in(client, hub, acme)
    region = await client.get("/", headers={"X-Live-Block": "figures"})
    assert region.status_code == 200
    assert "Orders by state" in region.text and "<html" not in region.text
    client.cookies.clear()
    lost = await client.get("/", headers={"X-Live-Block": "figures"})
    assert lost.status_code == 401 and lost.headers["x-sign-in"] == "/login"


def test_users_create_asks_for_a_password_and_refuses_a_short_one(
    home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    made = runner.invoke(cli_app, ["accounts", "create", "Acme"])
    assert made.exit_code == 0, made.output
    short = runner.invoke(
        cli_app, ["users", "create", "ops@example.com", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    ok = runner.invoke(
        cli_app, ["users", "create", "Ops@Example.com", "--json"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert ok.exit_code == 0, ok.output
    assert '"email": "ops@example.com"' in ok.output and PASSWORD not in ok.output.split("Repeat")[-1]
    again = runner.invoke(
        cli_app, ["users", "create", "ops@example.com", "--password-stdin"], input=f"{PASSWORD}\n"
    )
    assert again.exit_code == 1 and "already exists" in again.output
    listed = runner.invoke(cli_app, ["users", "list"])
    assert listed.exit_code == 0 and "ops@example.com" in listed.output and "never" in listed.output
