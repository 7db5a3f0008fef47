"""What a panel page knows about its caller: the account, its scoped repository, who signed in, the CSRF token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from crossdock.hub import Hub
from crossdock.store import tables as t
from crossdock.store.repo import Tenant


@dataclass
class Panel:
    hub: Hub
    db: AsyncSession
    account: t.Account
    tenant: Tenant
    who: str
    csrf: str
    session_id: uuid.UUID
