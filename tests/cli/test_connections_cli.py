"""`crossdock connections ...` and `crossdock sync`, run in-process against real SQLite and the Shopify sandbox
on a loopback socket: a scripted setup prints the connection (with --json, an object with its id), refused
credentials store nothing and name the flag, a pull prints its counts, and a pull whose holder was killed is
taken over."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossdock.cli import app
from crossdock.sandbox import create_sandbox_app
from crossdock.sandbox.common import SandboxConfig
from crossdock.sandbox.common.server import run_in_thread

TOKEN = "shpat_cli_sandbox"
SHOP = "cli-test.myshopify.com"
runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def refused(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0, (args, result.output)
    return result.output


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CROSSDOCK_ALLOW_PRIVATE_URLS", "1")  # the sandbox listens on 127.0.0.1
    config = SandboxConfig(seed=3, orders=120, token=TOKEN, fast_limits=True, extra={"shop": SHOP})
    with run_in_thread(create_sandbox_app("shopify", config)) as url:
        yield url


def add_shop(account_id: str, url: str, *extra: str) -> dict[str, object]:
    out = run(
        "connections", "add", "shopify", "--account", account_id, "--shop-url", f"https://{SHOP}",
        "--access-token", TOKEN, "--api-secret", "shpss_cli", "--base-url", url, "--json", *extra,
    )  # fmt: skip
    return dict(json.loads(out))


def test_connection_commands_have_help() -> None:
    for args in (
        ["connections"],
        ["connections", "add"],
        ["connections", "list"],
        ["connections", "update"],
        ["connections", "pause"],
        ["connections", "resume"],
        ["connections", "remove"],
        ["sync"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.stdout


def test_add_prints_the_connection_as_json_and_sync_pulls_then_pulls_only_changes(
    home: Path, shop: str
) -> None:
    account = json.loads(run("accounts", "create", "Acme", "--json"))

    added = add_shop(account["id"], shop)

    assert uuid.UUID(str(added["id"])) and added["connector"] == "shopify" and added["status"] == "active"
    assert TOKEN not in json.dumps(added) and "shpss_cli" not in json.dumps(added)
    listed = json.loads(run("connections", "list", "--account", account["id"], "--json"))
    assert [c["id"] for c in listed] == [added["id"]]

    first = json.loads(run("sync", str(added["id"]), "--since", "2020-01-01", "--json"))
    assert (first["status"], first["read"], first["created"]) == ("succeeded", 120, 120)
    again = json.loads(run("sync", str(added["id"]), "--json"))
    assert again["created"] == 0 and again["read"] < 120
    assert (
        len(json.loads(run("orders", "list", "--account", account["id"], "--limit", "250", "--json"))) == 120
    )

    human = run("sync", str(added["id"]))
    assert "orders read" in human and "0 new" in human


def test_refused_credentials_store_nothing_and_the_message_names_what_to_fix(home: Path, shop: str) -> None:
    account = json.loads(run("accounts", "create", "Acme", "--json"))
    out = refused(
        "connections", "add", "shopify", "--account", account["id"], "--shop-url", f"https://{SHOP}",
        "--access-token", "shpat_wrong", "--base-url", shop,
    )  # fmt: skip
    assert "shpat_wrong" not in out
    assert "access_token" in out or "access token" in out.lower()
    assert json.loads(run("connections", "list", "--account", account["id"], "--json")) == []

    missing = refused("connections", "add", "shopify", "--account", account["id"], "--base-url", shop)
    assert "--shop-url" in missing or "--access-token" in missing

    wrong_flag = refused(
        "connections", "add", "shopify", "--account", account["id"], "--lwa-url", "https://x"
    )
    assert "--lwa-url does not apply to Shopify" in wrong_flag


def test_a_pull_whose_holder_was_killed_is_taken_over_and_a_live_one_is_not(home: Path, shop: str) -> None:
    import asyncio

    from sqlalchemy import select, update

    from crossdock.cli_connections import _connection, _hold_sync_lock
    from crossdock.config import Settings
    from crossdock.engine.sync import sync_key
    from crossdock.hub import Hub
    from crossdock.store import tables as t
    from crossdock.store.types import utcnow

    account = json.loads(run("accounts", "create", "Acme", "--json"))
    added = add_shop(account["id"], shop, "--no-check")
    connection_id = uuid.UUID(str(added["id"]))

    async def holder(age: timedelta) -> uuid.UUID:
        """The lock a `crossdock sync` holds while it runs, its last heartbeat `age` ago."""
        hub = Hub.from_settings(Settings())
        try:
            row = await _connection(hub, str(connection_id))
            job_id = await _hold_sync_lock(hub, row, sync_key(connection_id))
            async with hub.db.transaction() as session:
                await session.execute(
                    update(t.Job).where(t.Job.id == job_id).values(heartbeat_at=utcnow() - age)
                )
            return job_id
        finally:
            await hub.close()

    async def status(job_id: uuid.UUID) -> tuple[str, str | None]:
        hub = Hub.from_settings(Settings())
        try:
            async with hub.db.session() as session:
                row = (await session.scalars(select(t.Job).where(t.Job.id == job_id))).one()
                return row.status, row.last_error
        finally:
            await hub.close()

    dead = asyncio.run(holder(timedelta(hours=1)))
    taken = json.loads(run("sync", str(connection_id), "--since", "2020-01-01", "--json"))
    assert taken["created"] == 120
    state, why = asyncio.run(status(dead))
    assert state == "dead" and "stopped sending heartbeats" in (why or "")

    live = asyncio.run(holder(timedelta(seconds=0)))
    busy = refused("sync", str(connection_id), "--json")
    assert "running already" in busy
    assert asyncio.run(status(live))[0] == "running"
