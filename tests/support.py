"""Helpers for tests: accounts with tokens, a valid manual order body, and a free loopback port."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from crossdock.hub import Hub
from crossdock.store import repo


@dataclass
class Tenant:
    id: str
    token: str
    headers: dict[str, str]


async def new_account(hub: Hub, name: str) -> Tenant:
    async with hub.db.transaction() as session:
        account = await repo.create_account(session, name)
        _row, token = await repo.Tenant(session, account.id).create_token("test")
    return Tenant(str(account.id), token, {"Authorization": f"Bearer {token}"})


def order_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "status": "paid",
        "currency": "EUR",
        "external_number": "M-1001",
        "customer": {"name": "Ana Ruiz", "email": "ana@example.com"},
        "shipping_address": {
            "first_name": "Ana",
            "last_name": "Ruiz",
            "line1": "Calle Mayor 1",
            "city": "Madrid",
            "postal_code": "28013",
            "country": "ES",
            "phone": "+34 912 345 678",
        },
        "lines": [
            {
                "sku": "MUG-1",
                "title": "Mug",
                "quantity": 2,
                "unit_price": {"amount": "12.50", "currency": "EUR"},
                "weight": {"value": "350", "unit": "g"},
            }
        ],
        "totals": {"total": {"amount": "25.00", "currency": "EUR"}},
    }
    body.update(overrides)
    return body


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
