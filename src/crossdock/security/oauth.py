"""OAuth 2.0 authorisation flows: the hub's app credentials per connector, and state nonces bound to a browser.

A flow starts at `/oauth/{connector}/start`: we make a random state nonce (sent to the remote, stored hashed) and
a browser secret (set as an HttpOnly cookie, stored hashed beside the state). The callback is accepted only with
both: the state proves the remote sends back what we started, the cookie proves it is the same browser that
started it, so a callback URL handed to someone else (login CSRF, RFC 6749 section 10.12) is refused. A state is
used once: the check that accepts it marks it used in the same UPDATE, so a replayed callback, even one racing
the first, finds no row to claim.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.store import tables as t
from crossdock.store.types import utcnow

STATE_TTL = timedelta(minutes=10)
# The cookie's name carries a hash prefix of its state, so two flows started in two tabs keep their own cookie.
COOKIE_PREFIX = "crossdock_oauth_"


class OAuthApp(BaseModel):
    """One OAuth app registered at a remote, configured once per hub (CROSSDOCK_OAUTH_APPS or [oauth_apps.X])."""

    client_id: str = Field(description="The app's client id (Shopify API key, eBay App ID, LWA client id).")
    client_secret: SecretStr = Field(
        description="The app's client secret (Shopify API secret key, eBay Cert ID)."
    )
    scopes: list[str] = Field(
        default_factory=list, description="Scopes to ask for; empty: the connector's defaults."
    )
    redirect_base: str | None = Field(
        default=None,
        description="Where the remote sends the browser back: <redirect_base>/oauth/<connector>/callback; "
        "default: public_url. Register that callback URL with the remote.",
    )
    authorize_url: str | None = Field(
        default=None,
        description="The remote's consent page, for sandboxes and regions ({shop} is replaced for Shopify).",
    )
    token_url: str | None = Field(
        default=None,
        description="The remote's token endpoint, for sandboxes and regions ({shop} for Shopify).",
    )
    api_base_url: str | None = Field(
        default=None,
        description="Base URL stored on connections made through this app (sandboxes, regions); "
        "default: the connector's own.",
    )
    ru_name: str | None = Field(
        default=None, description="eBay: the RuName registered for the callback URL (eBay's redirect_uri)."
    )
    application_id: str | None = Field(
        default=None,
        description="Amazon: the SP-API application id (amzn1.sp.solution...) for the consent URL.",
    )
    draft: bool = Field(
        default=False, description="Amazon: the app is still in draft, so consent URLs carry version=beta."
    )
    marketplace_ids: list[str] = Field(
        default_factory=list,
        description="Amazon: marketplaces new connections read, unless start names some.",
    )

    def secret(self) -> str:
        return self.client_secret.get_secret_value()


class StateRefused(ValueError):
    """A callback whose state cannot be accepted; the message says why and to start again. 403 when the state
    is good but the browser is not the one that started the flow."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StartedFlow:
    state: str  # sent to the remote in the authorize URL
    browser_secret: str  # the cookie's value
    cookie_name: str
    expires_at: datetime


@dataclass(frozen=True)
class ClaimedFlow:
    account_id: uuid.UUID
    connector: str
    details: dict[str, Any]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cookie_name(state: str) -> str:
    return COOKIE_PREFIX + digest("cookie:" + state)[:16]


async def start_flow(
    session: AsyncSession,
    account_id: uuid.UUID,
    connector: str,
    details: dict[str, Any],
    *,
    ttl: timedelta = STATE_TTL,
) -> StartedFlow:
    """Store a new flow's state (hashed), bound to a new browser secret (hashed)."""
    state = secrets.token_urlsafe(32)
    browser_secret = secrets.token_urlsafe(32)
    expires_at = utcnow() + ttl
    session.add(
        t.OAuthState(
            account_id=account_id,
            connector=connector,
            state_hash=digest(state),
            browser_hash=digest(browser_secret),
            details=details,
            expires_at=expires_at,
        )
    )
    await session.flush()
    return StartedFlow(state, browser_secret, cookie_name(state), expires_at)


async def claim_flow(
    session: AsyncSession, connector: str, state: str | None, browser_secret: str | None
) -> ClaimedFlow:
    """Accept a callback's state once: it must exist for this connector, be unused and unexpired, and come with
    the browser secret it was started with. Marks it used in the same statement that checks it."""
    again = f"start the connection again from /oauth/{connector}/start"
    if not state:
        raise StateRefused(f"the callback has no state parameter; {again}")
    now = utcnow()
    state_hash = digest(state)
    browser_hash = digest(browser_secret) if browser_secret else None
    if browser_hash is not None:
        claimed = await session.execute(
            update(t.OAuthState)
            .where(
                t.OAuthState.state_hash == state_hash,
                t.OAuthState.connector == connector,
                t.OAuthState.browser_hash == browser_hash,
                t.OAuthState.used_at.is_(None),
                t.OAuthState.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) == 1:
            claimed_row = (
                await session.execute(
                    select(t.OAuthState.account_id, t.OAuthState.details).where(
                        t.OAuthState.state_hash == state_hash
                    )
                )
            ).one()
            return ClaimedFlow(claimed_row.account_id, connector, dict(claimed_row.details or {}))
    # Nothing claimed: find out why, to say so (the row, if any, is left as it was).
    row = (
        await session.scalars(
            select(t.OAuthState).where(
                t.OAuthState.state_hash == state_hash, t.OAuthState.connector == connector
            )
        )
    ).first()
    if row is None:
        raise StateRefused(f"this authorisation's state is unknown; {again}")
    if row.used_at is not None:
        raise StateRefused(f"this authorisation was already completed once and cannot be replayed; {again}")
    if row.expires_at <= now:
        minutes = int(STATE_TTL.total_seconds() // 60)
        raise StateRefused(f"this authorisation expired (it must finish within {minutes} minutes); {again}")
    raise StateRefused(
        "this authorisation was started in another browser (its cookie is missing or different); "
        f"finish it in the browser that started it, or {again}",
        status=403,
    )


class FlowRefused(ValueError):
    """A start or callback request that cannot go on; `field` names the parameter at fault, if one is."""

    def __init__(self, message: str, field: str | None = None, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


def callback_param(params: Mapping[str, str], name: str, remote: str) -> str:
    """A parameter the remote's redirect must carry back (the code, the account it was granted for); a callback
    without it is refused naming it."""
    value = params.get(name, "")
    if not value:
        raise FlowRefused(f"{remote}'s callback has no {name}", name)
    return value


@dataclass(frozen=True)
class Grant:
    """What a code exchange gives the connection: settings, credentials (for the vault) and a default name."""

    settings: dict[str, Any]
    secrets: dict[str, str]
    name: str
    base_url: str | None = None


def token_answer(response: httpx.Response, remote: str, *required: str) -> dict[str, Any]:
    """The JSON object a token endpoint answered, with `required` non-empty text fields (a 502 otherwise; the
    body itself is never quoted: it holds tokens)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise FlowRefused(f"{remote}'s token endpoint did not answer a JSON object; start again", status=502)
    for name in required:
        if not isinstance(body.get(name), str) or not body[name]:
            raise FlowRefused(f"{remote}'s token answer has no {name}; start again", status=502)
    return body
