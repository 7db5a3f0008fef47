"""The command line, run in-process against a real SQLite database in a temporary home."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossdock.cli import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def test_every_command_has_help() -> None:
    for args in (
        [],
        ["serve"],
        ["migrate"],
        ["demo"],
        ["sandbox"],
        ["accounts"],
        ["accounts", "create"],
        ["accounts", "list"],
        ["tokens"],
        ["tokens", "create"],
        ["tokens", "list"],
        ["tokens", "revoke"],
        ["orders"],
        ["orders", "list"],
        ["keys"],
        ["keys", "rotate"],
        ["keys", "generate"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.stdout


def test_accounts_tokens_and_orders(home: Path) -> None:
    created = json.loads(run("accounts", "create", "Acme", "--json"))
    assert created["name"] == "Acme" and created["token"].startswith("cdk_")
    assert (home / "crossdock.db").exists()

    token = json.loads(run("tokens", "create", "--name", "ci", "--json"))
    assert token["account_id"] == created["id"]
    listed = json.loads(run("tokens", "list", "--json"))
    assert {t["name"] for t in listed} == {"default", "ci"}
    assert all(created["token"] not in json.dumps(t) and token["token"] not in json.dumps(t) for t in listed)

    run("tokens", "revoke", token["id"])
    listed = json.loads(run("tokens", "list", "--json"))
    assert [t["revoked"] for t in listed if t["name"] == "ci"] == [True]
    assert json.loads(run("orders", "list", "--json")) == []


def test_several_accounts_need_the_account_option(home: Path) -> None:
    run("accounts", "create", "Acme")
    run("accounts", "create", "Globex")
    result = runner.invoke(app, ["tokens", "list"])
    assert result.exit_code == 1
    assert "choose one with --account" in result.output
    assert json.loads(run("tokens", "list", "--account", "Globex", "--json"))[0]["name"] == "default"


def test_unknown_status_and_bad_token_id_are_explained(home: Path) -> None:
    run("accounts", "create", "Acme")
    result = runner.invoke(app, ["orders", "list", "--status", "lost"])
    assert result.exit_code == 1 and "use one of" in result.output
    result = runner.invoke(app, ["tokens", "revoke", "nope"])
    assert result.exit_code == 1 and "crossdock tokens list" in result.output


def test_keys_rotate_with_the_key_file(home: Path) -> None:
    run("accounts", "create", "Acme")
    before = (home / "vault.keys").read_text()
    result = json.loads(run("keys", "rotate", "--json"))
    assert result["key_source"] == "key file"
    assert result["retired_key_ids"] == result["previous_key_ids"]
    assert (home / "vault.keys").read_text() != before


def test_keys_rotate_with_a_single_environment_key_says_what_to_do(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = run("keys", "generate").strip()
    monkeypatch.setenv("CROSSDOCK_SECRET_KEY", key)
    result = runner.invoke(app, ["keys", "rotate"])
    assert result.exit_code == 1
    assert "put a new key first" in result.output


def test_a_worker_runs_on_uvloops_event_loop_as_the_server_does(home: Path) -> None:
    import asyncio

    import uvloop

    from crossdock.cli import _run
    from crossdock.hub import Hub

    async def loop_of(_hub: Hub) -> type:
        return type(asyncio.get_running_loop())

    assert _run(loop_of, long_running=True) is uvloop.Loop
    # Short commands keep asyncio's own loop.
    assert _run(loop_of) is not uvloop.Loop
