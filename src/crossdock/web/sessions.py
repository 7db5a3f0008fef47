"""Panel sessions: a random cookie secret (stored hashed) bound to one account, a CSRF token per session, an
idle timeout, and an end on sign-out, on a password change or when the API token that opened it is revoked."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.security.tokens import hash_token
from crossdock.store import tables as t
from crossdock.store.types import utcnow

COOKIE = "crossdock_session"
IDLE_TIMEOUT = timedelta(hours=12)
# The expiry moves on with use, written at most once a minute so that pages stay reads.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass
class Signed:
    """A signed-in browser: its session row, account and who it is (an e-mail address or an API token's name)."""

    session: t.PanelSession
    account: t.Account
    who: str


async def start_session(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None = None,
    token_id: uuid.UUID | None = None,
) -> str:
    """Store a new panel session and answer the cookie secret (shown only to the browser)."""
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        t.PanelSession(
            account_id=account_id,
            user_id=user_id,
            token_id=token_id,
            secret_hash=hash_token(secret),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + IDLE_TIMEOUT,
        )
    )
    await session.execute(delete(t.PanelSession).where(t.PanelSession.expires_at < now))
    await session.flush()
    return secret


async def load_session(session: AsyncSession, secret: str | None) -> Signed | None:
    """The signed-in browser with this cookie secret, in one query (every page and live region asks): None when
    the session is unknown or expired, its user disabled or its API token revoked."""
    if not secret or len(secret) > 200:
        return None
    now = utcnow()
    s = t.PanelSession
    found = (
        await session.execute(
            select(s, t.Account, t.User.email, t.ApiToken.name, t.ApiToken.prefix)
            .join(t.Account, t.Account.id == s.account_id)
            .outerjoin(
                t.User,
                and_(t.User.id == s.user_id, t.User.account_id == s.account_id, t.User.disabled_at.is_(None)),
            )
            .outerjoin(
                t.ApiToken,
                and_(
                    t.ApiToken.id == s.token_id,
                    t.ApiToken.account_id == s.account_id,
                    t.ApiToken.revoked_at.is_(None),
                ),
            )
            .where(s.secret_hash == hash_token(secret), s.expires_at > now)
        )
    ).first()
    if found is None:
        return None
    row, account, email, token_name, token_prefix = found
    if email is not None:
        who = email
    elif token_name is not None:
        who = f"API token {token_name} ({token_prefix}…)"
    else:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        row.expires_at = now + IDLE_TIMEOUT
    return Signed(session=row, account=account, who=who)


async def end_session(session: AsyncSession, row: t.PanelSession) -> None:
    await session.execute(delete(t.PanelSession).where(t.PanelSession.id == row.id))


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
