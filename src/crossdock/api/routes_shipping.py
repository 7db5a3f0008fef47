"""REST API for the account's shipping policy: GET and PUT /api/v1/shipping/policy (sender address, packing,
ordered rules and fallback), the document the panel's rules editor edits."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from crossdock.api.deps import CallerDep
from crossdock.api.problems import documented
from crossdock.flows.policy import ShippingPolicy, load_policy, save_policy

router = APIRouter(prefix="/api/v1/shipping", tags=["shipping"])


class PolicyOut(BaseModel):
    version: int = Field(
        description="Send it back with the edit: an edit made on an older version is refused."
    )
    policy: ShippingPolicy


class PolicyIn(BaseModel):
    # The stored version is an SQL INTEGER (32-bit on PostgreSQL), and an edit stores the version after this
    # one: a number whose successor does not fit can match no saved version and must be refused here, not fail
    # in the database driver.
    version: int = Field(
        ge=0, le=2**31 - 2, description="The version the edit was made on (0 when none was saved yet)."
    )
    policy: ShippingPolicy


@router.get("/policy", response_model=PolicyOut)
async def get_policy(caller: CallerDep) -> PolicyOut:
    policy, version = await load_policy(caller.tenant.session, caller.tenant.account_id)
    return PolicyOut(version=version, policy=policy)


@router.put("/policy", response_model=PolicyOut, responses=documented(409))
async def put_policy(body: PolicyIn, caller: CallerDep) -> PolicyOut:
    """Replace the whole policy. Rules are tried in the order given; a rule naming a connection must name one
    of the account's shipping connections. 409 when someone saved a newer version meanwhile."""
    version = await save_policy(
        caller.tenant.session, caller.tenant.account_id, body.policy, version=body.version
    )
    return PolicyOut(version=version, policy=body.policy)
