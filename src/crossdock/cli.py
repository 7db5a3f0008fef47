"""The `crossdock` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from crossdock import __version__
from crossdock.cli_connections import register as register_connection_commands
from crossdock.config import Settings
from crossdock.engine.cli_jobs import register as register_engine_commands
from crossdock.hub import Hub
from crossdock.logs import configure_logging, server_log_config
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.migrate import head_revision, is_current, upgrade
from crossdock.web.cli_users import register as register_user_commands

T = TypeVar("T")

app = typer.Typer(
    name="crossdock",
    help="crossdock: the order-fulfilment integration hub. Every command has --help.",
    no_args_is_help=True,
    add_completion=False,
)
accounts_app = typer.Typer(help="Accounts (tenants).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders.", no_args_is_help=True)
keys_app = typer.Typer(help="The credential vault's keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(tokens_app, name="tokens")
app.add_typer(orders_app, name="orders")
app.add_typer(keys_app, name="keys")
register_engine_commands(app)  # worker, jobs list|retry|cancel, replay
register_connection_commands(app)  # connections add|list|update|pause|resume|remove, sync
register_user_commands(app)  # users create|list|set-password|disable

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account", "-a", help="Account id or name; may be left out when there is only one account."
    ),
]


class CliError(Exception):
    """A failure the user can act on, raised inside a command's work: printed without a traceback, exit
    status 1 (as _fail does)."""


def _fail(message: str) -> NoReturn:
    """Say what went wrong and what to do, and exit with status 1: the same whether a command fails while
    checking its arguments or inside its work."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (uvicorn[standard] brings it; `crossdock serve` runs on it through
    uvicorn), else None for asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(work: Callable[[Hub], Awaitable[T]], *, migrate: bool = False, long_running: bool = False) -> T:
    """Run a command's work with a hub. `long_running` (a worker) runs it on uvloop's event loop where installed,
    as `crossdock serve` runs: less of each job's CPU in the loop, its socket writes and its tasks."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)

    async def main() -> T:
        hub = Hub.from_settings(settings)
        try:
            if migrate:
                await upgrade(hub.db)
            elif not await is_current(hub.db):
                if hub.settings.is_sqlite:
                    await upgrade(hub.db)
                else:
                    _fail(
                        f"the database schema is not at {head_revision()}; run 'crossdock migrate' first "
                        "(on PostgreSQL crossdock migrates only when asked)"
                    )
            return await work(hub)
        finally:
            await hub.close()

    try:
        with asyncio.Runner(loop_factory=_event_loop_factory() if long_running else None) as runner:
            return runner.run(main())
    except CliError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


async def _resolve_account(hub: Hub, ident: str | None) -> t.Account:
    async with hub.db.session() as session:
        accounts = list(await repo.list_accounts(session))
    if ident is None:
        if len(accounts) == 1:
            return accounts[0]
        if not accounts:
            _fail("there is no account yet; create one with 'crossdock accounts create NAME'")
        names = ", ".join(f"{a.name} ({a.id})" for a in accounts)
        _fail(f"there are several accounts; choose one with --account (one of: {names})")
    for account in accounts:
        if str(account.id) == ident or account.name == ident:
            return account
    _fail(f"no account with id or name '{ident}'; see 'crossdock accounts list'")


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"crossdock {__version__}")
        raise typer.Exit()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run any number of times)."""

    async def work(hub: Hub) -> str | None:
        return head_revision()

    revision = _run(work, migrate=True)
    out.print(f"database schema at revision {revision}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Also run a job worker in this process.")
    ] = True,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port, one core each at most (each with its own job worker "
            "unless --no-workers). /metrics then sums what every process counted.",
        ),
    ] = 1,
) -> None:
    """Run the hub's HTTP server (runs migrations first), and a job worker unless --no-workers."""
    import uvicorn

    from crossdock.api.app import MULTIPROCESS_DIR_ENV, SERVE_WORKERS_ENV, server_app, server_process_app

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    _run(lambda hub: asyncio.sleep(0), migrate=True)
    with contextlib.ExitStack() as stack:
        target: Any
        if processes > 1:
            # uvicorn starts the processes and starts a new one for any that dies; each builds its own app (and
            # database pool, hook-key cache, inbox writer) from the environment, which carries what they share.
            metrics_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="crossdock-metrics-"))
            os.environ.setdefault(MULTIPROCESS_DIR_ENV, metrics_dir)
            os.environ[SERVE_WORKERS_ENV] = "1" if workers else "0"
            target = f"{server_process_app.__module__}:{server_process_app.__name__}"
            options: dict[str, Any] = {"factory": True, "workers": processes}
        else:
            target, options = server_app(settings, run_workers=workers), {}
        uvicorn.run(
            target,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            log_config=server_log_config(settings.log_format),
            **options,
        )


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port for the hub.", envvar="DEMO_PORT")] = 8000,
    token: Annotated[
        str | None, typer.Option(help="Use this as the demo account's API token.", envvar="DEMO_TOKEN")
    ] = None,
) -> None:
    """Run the hub on SQLite with the Shopify, eBay, Amazon, Shippo and MyParcel.com sandboxes: orders arrive,
    labels are bought, tracking comes back. Prints the URLs and how to sign in; Ctrl-C stops everything."""
    from crossdock.demo import DemoError, run_demo

    def say(line: str) -> None:
        out.print(line, soft_wrap=True, highlight=False, markup=False)
        sys.stdout.flush()

    try:
        run_demo(port=port, token=token or None, say=say)
    except DemoError as exc:
        _fail(str(exc))


# Accounts -------------------------------------------------------------------------------------------------
@accounts_app.command("create")
def accounts_create(
    name: Annotated[str, typer.Argument(help="The account's name, e.g. the merchant.")],
    as_json: JsonOpt = False,
) -> None:
    """Create an account and print its id and a first API token (shown only now)."""

    async def work(hub: Hub) -> tuple[t.Account, str]:
        async with hub.db.transaction() as session:
            try:
                account = await repo.create_account(session, name)
            except repo.Conflict as exc:
                _fail(str(exc))
            _row, token = await repo.Tenant(session, account.id).create_token("default")
            return account, token

    account, token = _run(work)
    if as_json:
        _print_json({"id": str(account.id), "name": account.name, "token": token})
        return
    out.print(f"account [bold]{account.name}[/bold] created: {account.id}")
    out.print(f"API token (shown only now, keep it safe): {token}")


@accounts_app.command("list")
def accounts_list(as_json: JsonOpt = False) -> None:
    """List accounts."""

    async def work(hub: Hub) -> list[t.Account]:
        async with hub.db.session() as session:
            return list(await repo.list_accounts(session))

    rows = _run(work)
    if as_json:
        _print_json([{"id": str(a.id), "name": a.name, "created_at": a.created_at.isoformat()} for a in rows])
        return
    table = Table("id", "name", "created")
    for a in rows:
        table.add_row(str(a.id), a.name, a.created_at.isoformat(timespec="seconds"))
    out.print(table if rows else "no accounts yet: crossdock accounts create NAME")


# Tokens ---------------------------------------------------------------------------------------------------
@tokens_app.command("create")
def tokens_create(
    account: AccountOpt = None,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token for an account; it is printed once and stored only as a hash."""

    async def work(hub: Hub) -> tuple[t.ApiToken, str]:
        acct = await _resolve_account(hub, account)
        async with hub.db.transaction() as session:
            return await repo.Tenant(session, acct.id).create_token(name)

    row, token = _run(work)
    if as_json:
        _print_json({"id": str(row.id), "account_id": str(row.account_id), "name": row.name, "token": token})
        return
    out.print(f"token {row.id} ({row.name}) created; shown only now:")
    out.print(token)


@tokens_app.command("list")
def tokens_list(account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """List an account's tokens (their prefixes only)."""

    async def work(hub: Hub) -> list[t.ApiToken]:
        acct = await _resolve_account(hub, account)
        async with hub.db.session() as session:
            return list(await repo.Tenant(session, acct.id).list_tokens())

    rows = _run(work)
    if as_json:
        _print_json(
            [
                {
                    "id": str(r.id),
                    "name": r.name,
                    "prefix": r.prefix,
                    "created_at": r.created_at.isoformat(),
                    "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
                    "revoked": r.revoked_at is not None,
                }
                for r in rows
            ]
        )
        return
    table = Table("id", "name", "prefix", "created", "last used", "state")
    for r in rows:
        table.add_row(
            str(r.id),
            r.name,
            r.prefix + "…",
            r.created_at.isoformat(timespec="seconds"),
            r.last_used_at.isoformat(timespec="seconds") if r.last_used_at else "never",
            "revoked" if r.revoked_at else "active",
        )
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see 'crossdock tokens list').")],
    account: AccountOpt = None,
) -> None:
    """Revoke a token; requests with it are refused from now on."""
    try:
        ident = uuid.UUID(token_id)
    except ValueError:
        err.print(f"[red]error:[/red] '{token_id}' is not a token id; see 'crossdock tokens list'")
        raise typer.Exit(1) from None

    async def work(hub: Hub) -> t.ApiToken:
        acct = await _resolve_account(hub, account)
        async with hub.db.transaction() as session:
            try:
                return await repo.Tenant(session, acct.id).revoke_token(ident)
            except repo.NotFound as exc:
                _fail(f"{exc}; see 'crossdock tokens list'")
                raise

    row = _run(work)
    out.print(f"token {row.id} ({row.name}) revoked")


# Orders ---------------------------------------------------------------------------------------------------
@orders_app.command("list")
def orders_list(
    account: AccountOpt = None,
    status: Annotated[str | None, typer.Option(help="Only orders in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=250, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List an account's orders, most recently updated first."""
    from crossdock.api.schemas import OrderOut
    from crossdock.model import OrderStatus

    try:
        wanted = OrderStatus(status) if status else None
    except ValueError:
        err.print(
            f"[red]error:[/red] unknown status '{status}'; use one of: {', '.join(s.value for s in OrderStatus)}"
        )
        raise typer.Exit(1) from None

    async def work(hub: Hub) -> list[OrderOut]:
        acct = await _resolve_account(hub, account)
        async with hub.db.session() as session:
            page = await repo.Tenant(session, acct.id).list_orders(status=wanted, limit=limit)
            return [OrderOut.of(r) for r in page.items]

    rows = _run(work)
    if as_json:
        _print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("number", "status", "customer", "total", "lines", "updated")
    for r in rows:
        total = r.totals.total
        table.add_row(
            r.external_number or str(r.id)[:8],
            r.status.value,
            r.customer.name or r.customer.email or "",
            str(total) if total else "",
            str(len(r.lines)),
            r.updated_at.isoformat(timespec="seconds"),
        )
    out.print(table if rows else "no orders yet")


# Keys -----------------------------------------------------------------------------------------------------
@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random vault key (for CROSSDOCK_SECRET_KEY)."""
    from crossdock.security.vault import VaultKey

    out.print(VaultKey.generate().encode())


@keys_app.command("rotate")
def keys_rotate(as_json: JsonOpt = False) -> None:
    """Re-encrypt every stored secret under a new key, with no downtime for reads.

    With the key file (the default) a new key is generated, every secret re-sealed under it, and the old key
    removed. With CROSSDOCK_SECRET_KEY, put the new key first and keep the old ones after it; this re-seals
    everything under the first key, after which the others can be dropped from the variable.
    """
    from crossdock.security.rotation import reseal_all
    from crossdock.security.vault import VaultKey

    async def work(hub: Hub) -> dict[str, Any]:
        vault = hub.vault
        if vault.key_file is None and len(vault.keys) < 2:
            _fail(
                "CROSSDOCK_SECRET_KEY holds one key: put a new key first (make one with 'crossdock keys generate'), "
                "keep the old key after a comma, restart the servers, then run 'crossdock keys rotate'"
            )
        old_ids = [k.id for k in vault.keys]
        if vault.key_file is not None:
            vault.add_primary(VaultKey.generate())
        result = await reseal_all(hub.db, vault)
        retired = vault.retire_all_but_primary() if vault.key_file is not None else []
        return {
            "resealed": result.resealed,
            "already_current": result.already_current,
            "primary_key_id": vault.primary.id,
            "retired_key_ids": retired,
            "previous_key_ids": old_ids,
            "key_source": "key file" if vault.key_file is not None else "CROSSDOCK_SECRET_KEY",
        }

    result = _run(work)
    if as_json:
        _print_json(result)
        return
    out.print(f"{result['resealed']} secrets re-encrypted under key {result['primary_key_id']}")
    if result["key_source"] == "key file":
        out.print(f"retired keys: {', '.join(result['retired_key_ids']) or 'none'}")
    else:
        out.print(
            "every secret now uses the first key of CROSSDOCK_SECRET_KEY; you can drop the others from it"
        )


# Sandboxes ------------------------------------------------------------------------------------------------
@app.command()
def sandbox(
    name: Annotated[str, typer.Argument(help="shopify, ebay, amazon, shippo or myparcelcom.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 9000,
    orders: Annotated[int, typer.Option(help="Orders to seed.")] = 0,
    seed: Annotated[int, typer.Option(help="Seed for generated data.")] = 1,
    token: Annotated[str | None, typer.Option(help="A fixed valid access token.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Where the sandbox sends its webhooks.")] = None,
    faults: Annotated[
        str | None,
        typer.Option(
            help="e.g. 'latency=50ms,5xx=0.2,429=0.1,timeout=0.05,malformed=0.01,dup_webhooks=0.3,seed=7'."
        ),
    ] = None,
    fast_limits: Annotated[
        bool, typer.Option("--fast-limits", help="Scale rate limits up for tests.")
    ] = False,
) -> None:
    """Serve a local emulator of an external API (a sandbox) on 127.0.0.1."""
    from crossdock.sandbox.cli import run_sandbox

    try:
        run_sandbox(name, port, orders, seed, token, webhook_url, faults, fast_limits)
    except (KeyError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc.args[0] if exc.args else exc}")
        raise typer.Exit(1) from None


def main() -> None:
    app()
