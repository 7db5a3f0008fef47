"""Panel users: create, change a password, and check a sign-in under a rate limit on refused attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.security.passwords import hash_password, needs_rehash, password_problem, verify_password
from crossdock.store import tables as t
from crossdock.store.repo import Conflict, NotFound
from crossdock.store.types import utcnow

# Refused sign-ins counted per e-mail address and per client address over this window.
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_CLIENT = 20


def normalise_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise Conflict(f"not a valid e-mail address: {exc}", field="email") from None


async def create_user(session: AsyncSession, account_id: uuid.UUID, email: str, password: str) -> t.User:
    address = normalise_email(email)
    problem = password_problem(password)
    if problem:
        raise Conflict(f"the password {problem}", field="password")
    if await session.scalar(select(t.User.id).where(t.User.email == address)) is not None:
        raise Conflict(f"a user with the address {address} already exists", field="email")
    row = t.User(account_id=account_id, email=address, password_hash=hash_password(password))
    session.add(row)
    await session.flush()
    return row


async def get_user_by_email(session: AsyncSession, email: str) -> t.User:
    row = await session.scalar(select(t.User).where(t.User.email == normalise_email(email)))
    if row is None:
        raise NotFound("user", email)
    return row


async def list_users(session: AsyncSession, account_id: uuid.UUID) -> Sequence[t.User]:
    query = select(t.User).where(t.User.account_id == account_id).order_by(t.User.email)
    return (await session.scalars(query)).all()


async def set_password(session: AsyncSession, user: t.User, password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise Conflict(f"the password {problem}", field="password")
    user.password_hash = hash_password(password)
    # A new password ends every session the old one opened.
    await session.execute(delete(t.PanelSession).where(t.PanelSession.user_id == user.id))
    await session.execute(delete(t.LoginFailure).where(t.LoginFailure.key == _email_key(user.email)))
    await session.flush()


@dataclass(frozen=True)
class SignIn:
    user: t.User | None
    # Set when refused because of too many refused attempts: how long to wait.
    retry_after: timedelta | None = None


def _email_key(email: str) -> str:
    return f"email:{email}"


def _client_key(client: str) -> str:
    return f"client:{client}"


async def _recent_failures(session: AsyncSession, key: str) -> tuple[int, datetime | None]:
    since = utcnow() - FAILURE_WINDOW
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(t.LoginFailure.at)).where(
                t.LoginFailure.key == key, t.LoginFailure.at > since
            )
        )
    ).one()
    return int(count), oldest


async def check_sign_in(session: AsyncSession, email: str, password: str, client: str) -> SignIn:
    """The user these credentials belong to, or SignIn(None) with a refusal recorded. Over the limit nothing is
    checked at all and the answer says how long to wait."""
    try:
        address = normalise_email(email)
    except Conflict:
        address = email.strip().lower()[:300]
    for key, limit in (
        (_email_key(address), MAX_FAILURES_PER_EMAIL),
        (_client_key(client), MAX_FAILURES_PER_CLIENT),
    ):
        count, oldest = await _recent_failures(session, key)
        if count >= limit and oldest is not None:
            wait = oldest + FAILURE_WINDOW - utcnow()
            return SignIn(None, retry_after=max(wait, timedelta(seconds=1)))
    user = await session.scalar(select(t.User).where(t.User.email == address))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled_at is not None:
        now = utcnow()
        session.add_all(
            [t.LoginFailure(key=_email_key(address), at=now), t.LoginFailure(key=_client_key(client), at=now)]
        )
        await session.execute(delete(t.LoginFailure).where(t.LoginFailure.at < now - FAILURE_WINDOW))
        await session.flush()
        return SignIn(None)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    await session.execute(delete(t.LoginFailure).where(t.LoginFailure.key == _email_key(address)))
    await session.flush()
    return SignIn(user)
