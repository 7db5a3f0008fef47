"""Rates for a shipment from an account's shipping connections, within a time budget.

Every connection asked is asked at once; the budget is one deadline for all of them. A connection that has not
answered by then is cancelled (its HTTP client closed) and left out, named with the reason, as is one that
refused or failed: one slow or broken carrier never holds up or spoils the others' rates. Used by checkout
quotes (`POST /api/v1/rates/quote`) and by the label-buying flow, through `rates_source`, as the rates callback
of `rules.decide`.

Which connections: by default every active shipping connection of the account whose connector declares
`shipping.rates`; those of them that cannot be used now (paused, waiting to be authorised again) are named in
`left_out` with what to do. Every query is scoped to the account.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from crossdock import model
from crossdock.connectors.base import Capability, Role, ShippingRates
from crossdock.connectors.registry import get_spec
from crossdock.engine.connections import ACTIVE, open_connector, unavailable_message
from crossdock.engine.errors import JobError, RetryableError
from crossdock.hub import Hub
from crossdock.logs import get_logger, redact_text
from crossdock.store import tables as t
from crossdock.store.repo import NotFound, Tenant

log = get_logger(__name__)


@dataclass
class Gathered:
    # Every rate has connection_id set to the connection that offered it, and a price (see priced_rates).
    rates: list[model.Rate]
    # Connection id -> why it is not in `rates`, in words that say what happened and, where it helps, what to do.
    left_out: dict[uuid.UUID, str]
    # The connections of `left_out` that failed for a passing fault (5xx, 429, timeout, no answer within the
    # budget): asked again later, they may well answer.
    passing: set[uuid.UUID] = field(default_factory=set)


@dataclass(frozen=True)
class _Candidate:
    id: uuid.UUID
    title: str


async def gather_rates(
    hub: Hub,
    account_id: uuid.UUID,
    shipment: model.Shipment,
    order: model.Order,
    *,
    connection_ids: Sequence[uuid.UUID] | None = None,
    budget_s: float,
) -> Gathered:
    """The rates these connections (None: every rates-capable active shipping connection of the account) offer
    for the shipment, asked concurrently and waited for `budget_s` seconds at most."""
    candidates, left_out = await _candidates(hub, account_id, connection_ids)
    if not candidates:
        return Gathered([], left_out)
    tasks = {
        candidate: asyncio.create_task(
            _ask(hub, account_id, candidate, shipment, order), name=f"rates {candidate.id}"
        )
        for candidate in candidates
    }
    try:
        await asyncio.wait(tasks.values(), timeout=max(budget_s, 0.0))
    finally:
        # Also when the caller itself is cancelled: no task outlives the gathering, and each one's connector is
        # closed by open_connector as its cancellation unwinds.
        unfinished = [task for task in tasks.values() if not task.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)
    rates: list[model.Rate] = []
    passing: set[uuid.UUID] = set()
    for candidate, task in tasks.items():
        if task.cancelled():
            left_out[candidate.id] = f"{candidate.title} answered nothing within {budget_s:g} s"
            passing.add(candidate.id)
            continue
        offered, reason, passed = task.result()
        if passed:
            passing.add(candidate.id)
        if reason is not None:
            left_out[candidate.id] = reason
        else:
            rates.extend(offered)
    return Gathered(rates, left_out, passing)


class RatesSource:
    """The rates callback for `rules.decide`: `await source(None)` gives every rates-capable active shipping
    connection's rates, `await source(connection_id)` that one connection's. Each connection is asked once
    however many rules name it (an earlier `source(None)` answers later questions about single connections),
    and each gathering gets the whole budget. `left_out` collects why connections gave no rates."""

    def __init__(
        self,
        hub: Hub,
        account_id: uuid.UUID,
        shipment: model.Shipment,
        order: model.Order,
        *,
        budget_s: float,
    ) -> None:
        self.hub = hub
        self.account_id = account_id
        self.shipment = shipment
        self.order = order
        self.budget_s = budget_s
        self.left_out: dict[uuid.UUID, str] = {}
        # The connections of left_out that failed for a passing fault (see Gathered.passing).
        self.passing: set[uuid.UUID] = set()
        self._rates: dict[uuid.UUID, list[model.Rate]] = {}
        self._everyone: list[uuid.UUID] | None = None

    def _asked(self, connection_id: uuid.UUID) -> bool:
        return connection_id in self._rates or connection_id in self.left_out

    async def __call__(self, connection_id: uuid.UUID | None) -> list[model.Rate]:
        if connection_id is not None:
            if not self._asked(connection_id):
                await self._gather([connection_id])
            return list(self._rates.get(connection_id, []))
        if self._everyone is None:
            candidates, unavailable = await _candidates(self.hub, self.account_id, None)
            for cid, reason in unavailable.items():
                self.left_out.setdefault(cid, reason)
            self._everyone = [c.id for c in candidates]
            missing = [cid for cid in self._everyone if not self._asked(cid)]
            if missing:
                await self._gather(missing)
        return [rate for cid in self._everyone for rate in self._rates.get(cid, [])]

    async def _gather(self, connection_ids: list[uuid.UUID]) -> None:
        gathered = await gather_rates(
            self.hub,
            self.account_id,
            self.shipment,
            self.order,
            connection_ids=connection_ids,
            budget_s=self.budget_s,
        )
        for rate in gathered.rates:
            assert rate.connection_id is not None
            self._rates.setdefault(rate.connection_id, []).append(rate)
        self.passing |= gathered.passing
        for cid in connection_ids:
            if cid in gathered.left_out:
                self.left_out[cid] = gathered.left_out[cid]
            else:
                self._rates.setdefault(cid, [])


def rates_source(
    hub: Hub, account_id: uuid.UUID, shipment: model.Shipment, order: model.Order, *, budget_s: float
) -> RatesSource:
    """An async rates callback for `rules.decide` (a `rules.RatesFor`); see RatesSource."""
    return RatesSource(hub, account_id, shipment, order, budget_s=budget_s)


async def _candidates(
    hub: Hub, account_id: uuid.UUID, connection_ids: Sequence[uuid.UUID] | None
) -> tuple[list[_Candidate], dict[uuid.UUID, str]]:
    """The connections to ask, in a stable order, and those named or found that cannot be asked, with why."""
    async with hub.db.autocommit_session() as session:  # one read, without a transaction around it
        stmt = Tenant(session, account_id).scoped(t.Connection)
        if connection_ids is not None:
            if not connection_ids:
                return [], {}
            stmt = stmt.where(t.Connection.id.in_(list(connection_ids)))
        rows = list((await session.scalars(stmt.order_by(t.Connection.created_at, t.Connection.id))).all())
    found = {row.id: row for row in rows}
    wanted = list(dict.fromkeys(connection_ids)) if connection_ids is not None else [row.id for row in rows]
    candidates: list[_Candidate] = []
    left_out: dict[uuid.UUID, str] = {}
    for cid in wanted:
        row = found.get(cid)
        if row is None:
            left_out[cid] = f"connection {cid} does not exist in this account"
            continue
        reason, title = _why_not(row)
        named = connection_ids is not None
        if reason is None:
            candidates.append(_Candidate(row.id, title))
        elif named or reason.kind == "unavailable":
            left_out[cid] = reason.text
    return candidates, left_out


@dataclass(frozen=True)
class _Reason:
    # "not_rating": the connection never offers rates (asked about only when named); "unavailable": it could,
    # but cannot be used now.
    kind: str
    text: str


def _why_not(row: t.Connection) -> tuple[_Reason | None, str]:
    """Why this connection is not asked for rates, or None; and its connector's title."""
    try:
        spec = get_spec(row.connector)
    except KeyError:
        unknown = f"connection {row.id} uses '{row.connector}', a connector this hub does not know"
        return _Reason("not_rating", unknown), row.connector
    if spec.role is not Role.SHIPPING or Capability.SHIPPING_RATES not in spec.capabilities:
        return _Reason("not_rating", f"{spec.title} connection {row.id} has no rates capability"), spec.title
    if row.status != ACTIVE:
        text = unavailable_message(row) or (
            f"connection {row.id} ({row.connector}) is {row.status}: set it active again to get its rates"
        )
        return _Reason("unavailable", text), spec.title
    return None, spec.title


async def _ask(
    hub: Hub, account_id: uuid.UUID, candidate: _Candidate, shipment: model.Shipment, order: model.Order
) -> tuple[list[model.Rate], str | None, bool]:
    """One connection's rates, or the reason it has none, and whether that reason is a passing fault. Never
    raises but for its own cancellation."""
    title = candidate.title
    try:
        async with open_connector(hub, account_id, candidate.id) as (_row, connector):
            if not isinstance(connector, ShippingRates):
                return [], f"{title} connection {candidate.id} has no rates capability", False
            offered = await connector.rates(shipment, order)
    except JobError as exc:
        return [], _said_by(title, redact_text(exc.message)), isinstance(exc, RetryableError)
    except NotFound:
        return [], f"connection {candidate.id} does not exist in this account any more", False
    except (SQLAlchemyError, OSError) as exc:
        # The hub's own database (the connection, its secrets, its rate limiter) out of reach for a moment: a
        # passing fault, not the connection's.
        return [], f"{title} was not asked: the hub's database did not answer ({type(exc).__name__})", True
    except Exception as exc:  # a connector's defect must not cost the other connections their rates
        log.error(
            "rates failed unexpectedly",
            connection_id=str(candidate.id),
            connector=title,
            error=f"{type(exc).__name__}: {redact_text(str(exc))}",
        )
        return [], f"{title} failed unexpectedly ({type(exc).__name__}); the hub's log has the details", False
    return (*priced_rates(title, [_offered_by(rate, candidate.id) for rate in offered]), False)


def priced_rates(title: str, offered: list[model.Rate]) -> tuple[list[model.Rate], str | None]:
    """The rates with a price, or why there are none. A rate without a price is no quote: rules and checkouts
    compare prices, and never take an unknown one for zero. The connectors' mappers give every rate its price
    (a Shippo rate without an amount, a karrio rate without a total charge are mapping problems), so one without
    is a connector's defect, logged."""
    quoted = [rate for rate in offered if rate.price is not None]
    if len(quoted) < len(offered):
        log.error("rates without a price left out", connector=title, count=len(offered) - len(quoted))
    if offered and not quoted:
        return [], f"{title} quoted no price for any of its rates"
    return quoted, None


def _offered_by(rate: model.Rate, connection_id: uuid.UUID) -> model.Rate:
    if rate.connection_id == connection_id:
        return rate
    return rate.model_copy(update={"connection_id": connection_id})


def _said_by(title: str, message: str) -> str:
    """The connector's own words, said to come from it unless they say so already."""
    return message if title.lower() in message.lower() else f"{title}: {message}"
