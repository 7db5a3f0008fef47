"""Request dependencies: the hub, a database session, and the account a bearer token belongs to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.api.problems import Problem
from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.repo import Tenant, account_for_token

bearer = HTTPBearer(auto_error=False, description="An API token made with 'crossdock tokens create'.")


async def get_hub(request: Request) -> Hub:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a thread hop on every request.
    hub: Hub = request.app.state.hub
    return hub


async def get_session(hub: Annotated[Hub, Depends(get_hub)]) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    async with hub.db.transaction() as session:
        yield session


@dataclass
class Caller:
    account: t.Account
    tenant: Tenant


UNAUTHORISED = {"WWW-Authenticate": 'Bearer realm="crossdock"'}


async def get_caller(
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(
            401,
            "Unauthorized",
            "send an API token as 'Authorization: Bearer <token>'; create one with 'crossdock tokens create'",
            kind="unauthorized",
            headers=UNAUTHORISED,
        )
    account = await account_for_token(session, credentials.credentials)
    if account is None:
        raise Problem(
            401,
            "Unauthorized",
            "this API token is unknown or revoked; create a new one with 'crossdock tokens create'",
            kind="unauthorized",
            headers=UNAUTHORISED,
        )
    return Caller(account=account, tenant=Tenant(session, account.id))


CallerDep = Annotated[Caller, Depends(get_caller)]
HubDep = Annotated[Hub, Depends(get_hub)]
