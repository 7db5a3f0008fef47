"""Panel test helpers: make a user, sign in through the real form, and read a page's CSRF token."""

from __future__ import annotations

import re
import uuid

import httpx

from crossdock.hub import Hub
from crossdock.web.users import create_user
from tests.support import Tenant

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def make_user(hub: Hub, tenant: Tenant, email: str | None = None) -> str:
    email = email or f"ops-{uuid.uuid4().hex[:8]}@example.com"
    async with hub.db.transaction() as session:
        await create_user(session, uuid.UUID(tenant.id), email, PASSWORD)
    return email


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login", data={"csrf_token": csrf_of(page.text), "email": email, "password": password, "next": "/"}
    )


async def signed_in(client: httpx.AsyncClient, hub: Hub, tenant: Tenant) -> str:
    """Sign the client in as a new user of the tenant and answer the session's CSRF token."""
    answer = await sign_in(client, await make_user(hub, tenant))
    assert answer.status_code == 303, answer.text
    return csrf_of((await client.get("/")).text)
