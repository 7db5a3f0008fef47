"""`crossdock jobs list|retry|cancel`, `crossdock replay` and `crossdock worker --help`, in-process on SQLite."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from sqlalchemy import select, update
from typer.testing import CliRunner

from crossdock.cli import app
from crossdock.config import Settings
from crossdock.engine.inbox import receive
from crossdock.engine.jobs import enqueue
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (args, result.output)
    return result.output


def _seed(home: Path) -> dict[str, str]:
    async def work() -> dict[str, str]:
        hub = Hub.from_settings(Settings(home=home))
        try:
            async with hub.db.transaction() as session:
                account = await repo.create_account(session, "Acme")
                connection = await repo.Tenant(session, account.id).create_connection(
                    connector="shopify", name="Shop", vault=hub.vault
                )
                dead = await enqueue(session, account_id=account.id, kind="label.buy", payload={})
                waiting = await enqueue(session, account_id=account.id, kind="sync.orders", payload={})
                await session.execute(update(t.Job).where(t.Job.id == dead).values(status="dead", attempts=8))
                for n in range(3):
                    await receive(
                        session,
                        account_id=account.id,
                        connection_id=connection.id,
                        kind="shopify.orders/create",
                        dedup_key=f"hook-{n}",
                        headers={},
                        body=b"{}",
                    )
            return {"dead": str(dead), "waiting": str(waiting), "connection": str(connection.id)}
        finally:
            await hub.close()

    return asyncio.run(work())


def _jobs(home: Path, kind: str) -> list[t.Job]:
    async def work() -> list[t.Job]:
        hub = Hub.from_settings(Settings(home=home))
        try:
            async with hub.db.session() as session:
                return list((await session.scalars(select(t.Job).where(t.Job.kind == kind))).all())
        finally:
            await hub.close()

    return asyncio.run(work())


def test_jobs_list_retry_cancel_and_replay(home: Path) -> None:
    run("migrate")
    ids = _seed(home)
    listed = json.loads(run("jobs", "list", "--status", "dead", "--json"))
    assert [j["id"] for j in listed] == [ids["dead"]] and listed[0]["attempts"] == 8
    assert "label.buy" in run("jobs", "list")

    assert json.loads(run("jobs", "retry", ids["dead"], "--json"))["status"] == "queued"
    assert "cancelled" in run("jobs", "cancel", ids["waiting"])
    assert "nothing to cancel" in run("jobs", "cancel", ids["waiting"], code=1)
    assert "does not exist" in run("jobs", "retry", str(uuid.uuid4()), code=1)
    assert "not a job id" in run("jobs", "retry", "nope", code=1)
    assert "status must be one of" in run("jobs", "list", "--status", "lost", code=1)

    # The three stored payloads were queued when received; replay queues them again only once they have run.
    assert json.loads(run("replay", "--connection", ids["connection"], "--json"))["queued"] == 0
    processing = _jobs(home, "inbox.process")
    assert len(processing) == 3
    asyncio.run(_mark_done(home))
    assert json.loads(run("replay", "--connection", ids["connection"], "--json"))["queued"] == 3
    later = "2999-01-01T00:00:00"
    assert (
        json.loads(run("replay", "--connection", ids["connection"], "--since", later, "--json"))["queued"]
        == 0
    )
    assert "not an ISO 8601 time" in run(
        "replay", "--connection", ids["connection"], "--since", "May", code=1
    )


async def _mark_done(home: Path) -> None:
    hub = Hub.from_settings(Settings(home=home))
    try:
        async with hub.db.transaction() as session:
            await session.execute(update(t.Job).values(status="succeeded"))
    finally:
        await hub.close()


def test_engine_commands_have_help() -> None:
    for args in (["worker"], ["jobs"], ["jobs", "list"], ["jobs", "retry"], ["jobs", "cancel"], ["replay"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output
    assert "--no-workers" in runner.invoke(app, ["serve", "--help"]).output
