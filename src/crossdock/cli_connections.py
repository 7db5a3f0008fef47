"""Command line for connections and pulls: `crossdock connections add|list|update|pause|resume|remove` and
`crossdock sync CONNECTION_ID`.

Commands reuse crossdock.cli's runner (settings, logging, schema check, errors without tracebacks), imported when
a command runs because crossdock.cli registers these commands while it is itself being imported.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from crossdock.connectors.registry import SPECS, get_spec
from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t

connections_app = typer.Typer(
    help="Connections: link an account to a shop, marketplace or shipping service.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account", "-a", help="Account id or name; may be left out when there is only one account."
    ),
]

# Flags of `connections add` that name a connector's setting or secret. A flag given for a connector that does
# not take it is refused, naming the flag.
_SETTING_FLAGS = {"client_id": "--client-id", "marketplace_ids": "--marketplace-ids", "lwa_url": "--lwa-url"}
_SECRET_FLAGS = {
    "access_token": "--access-token",
    "api_secret": "--api-secret",
    "client_secret": "--client-secret",
    "refresh_token": "--refresh-token",
}


def register(app: typer.Typer) -> None:
    app.add_typer(connections_app, name="connections")
    app.command("sync")(sync)


def connection_dict(row: t.Connection, secret_names: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(row.id),
        "account_id": str(row.account_id),
        "connector": row.connector,
        "name": row.name,
        "status": row.status,
        "status_reason": row.status_reason,
        "base_url": row.base_url,
        "settings": row.settings,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }
    if secret_names is not None:
        data["secrets"] = secret_names  # names only: values never leave the vault
    return data


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    from crossdock import cli

    pairs: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            cli._fail(f"{flag} takes NAME=VALUE, got '{item}'")
        pairs[name.strip()] = value
    return pairs


def _shopify_domain(shop_url: str) -> str:
    from crossdock import cli
    from crossdock.security.signatures import is_shop_domain

    parts = urlsplit(shop_url if "://" in shop_url else f"https://{shop_url}")
    host = (parts.hostname or "").lower()
    if not is_shop_domain(host):
        cli._fail(
            f"--shop-url '{shop_url}' is not a shop's myshopify.com address (like https://acme.myshopify.com); "
            "the Admin API answers only there. To point the connection at a sandbox, give the shop's address "
            "here and the sandbox's with --base-url"
        )
    return host


@connections_app.command("add")
def connections_add(
    connector: Annotated[str, typer.Argument(help=f"One of: {', '.join(sorted(SPECS))}.")],
    account: AccountOpt = None,
    name: Annotated[
        str | None, typer.Option(help="A name for the connection; default: the connector's.")
    ] = None,
    shop_url: Annotated[
        str | None, typer.Option("--shop-url", help="Shopify: the shop, e.g. https://acme.myshopify.com.")
    ] = None,
    access_token: Annotated[
        str | None, typer.Option("--access-token", help="Shopify: the Admin API access token (shpat_...).")
    ] = None,
    api_secret: Annotated[
        str | None, typer.Option("--api-secret", help="Shopify: the app's API secret key (signs webhooks).")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="eBay App ID / Amazon LWA client id.")
    ] = None,
    client_secret: Annotated[
        str | None, typer.Option("--client-secret", help="eBay Cert ID / Amazon LWA client secret.")
    ] = None,
    refresh_token: Annotated[
        str | None, typer.Option("--refresh-token", help="eBay user / Amazon LWA refresh token.")
    ] = None,
    marketplace_ids: Annotated[
        str | None, typer.Option("--marketplace-ids", help="Amazon: comma separated, e.g. ATVPDKIKX0DER.")
    ] = None,
    lwa_url: Annotated[str | None, typer.Option("--lwa-url", help="Amazon: the LWA token URL.")] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="Where API calls go instead of the real API (a sandbox, a region)."),
    ] = None,
    setting: Annotated[
        list[str] | None, typer.Option("--setting", help="Any other setting, NAME=VALUE (repeatable).")
    ] = None,
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="Any other secret, NAME=VALUE (repeatable).")
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check/--no-check", help="Prove the credentials with one call before keeping them."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Connect an account to a remote with credentials you already have (custom-app tokens, refresh tokens).
    The credentials go into the vault; the connection is checked with one call and, for shops, its order
    webhooks are subscribed to this hub's /hooks address (CROSSDOCK_PUBLIC_URL)."""
    from crossdock import cli
    from crossdock.engine.connect import ConnectionRefused, connect

    try:
        spec = get_spec(connector)
    except KeyError as exc:
        cli._fail(str(exc.args[0]))
    settings: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    given_settings = {"client_id": client_id, "marketplace_ids": marketplace_ids, "lwa_url": lwa_url}
    given_secrets = {
        "access_token": access_token,
        "api_secret": api_secret,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    known_settings = {f.name for f in spec.settings}
    known_secrets = {f.name for f in spec.secrets}
    for key, value in given_settings.items():
        if value is not None:
            if key not in known_settings:
                cli._fail(f"{_SETTING_FLAGS[key]} does not apply to {spec.title} connections")
            settings[key] = value
    for key, value in given_secrets.items():
        if value is not None:
            if key not in known_secrets:
                cli._fail(f"{_SECRET_FLAGS[key]} does not apply to {spec.title} connections")
            secrets[key] = value
    if shop_url is not None:
        if "shop" not in known_settings:
            cli._fail(f"--shop-url does not apply to {spec.title} connections")
        settings["shop"] = _shopify_domain(shop_url)
    settings.update(_pairs(setting, "--setting"))
    secrets.update(_pairs(secret, "--secret"))

    async def work(hub: Hub) -> None:
        owner = await cli._resolve_account(hub, account)
        try:
            done = await connect(
                hub,
                owner.id,
                connector=spec.name,
                name=name or spec.title,
                settings=settings,
                secrets=secrets,
                base_url=base_url,
                check=check,
            )
        except ConnectionRefused as exc:
            flag = _flag_for(exc.field)
            if exc.field == "base_url":
                cli._fail(f"--base-url: {exc.message}")
            cli._fail(exc.message + (f" (give it with {flag})" if flag and "required" in exc.message else ""))
            return
        data = connection_dict(done.connection, sorted(secrets))
        data["checked"] = done.reached
        data["webhook_subscriptions"] = done.subscriptions
        if as_json:
            cli._print_json(data)
            return
        cli.out.print(f"Connected [bold]{spec.title}[/bold]: {done.connection.name} ({done.connection.id})")
        if check:
            cli.out.print(f"  reached: {done.reached}")
        if done.subscriptions:
            cli.out.print(
                f"  webhooks: {len(done.subscriptions)} subscription(s) to {hub.settings.public_url}"
            )
        cli.out.print(f"  pull its orders now with: crossdock sync {done.connection.id}")

    cli._run(work)


def _flag_for(field: str | None) -> str | None:
    if not field or "." not in field:
        return None
    kind, name = field.split(".", 1)
    if kind == "secrets":
        return _SECRET_FLAGS.get(name, f"--secret {name}=...")
    if name == "shop":
        return "--shop-url"
    return _SETTING_FLAGS.get(name, f"--setting {name}=...")


async def _connection(hub: Hub, ident: str) -> t.Connection:
    """A connection by id, in whichever account it is (the CLI is the operator's tool)."""
    from crossdock import cli

    try:
        connection_id = uuid.UUID(ident)
    except ValueError:
        cli._fail(f"'{ident}' is not a connection id; see 'crossdock connections list'")
    async with hub.db.session() as session:
        row = await session.get(t.Connection, connection_id)
    if row is None:
        cli._fail(f"no connection {connection_id}; see 'crossdock connections list'")
    return row


@connections_app.command("list")
def connections_list(account: AccountOpt = None, as_json: JsonOpt = False) -> None:
    """The account's connections, with their status and last pull."""
    from crossdock import cli

    async def work(hub: Hub) -> None:
        owner = await cli._resolve_account(hub, account)
        async with hub.db.session() as session:
            tenant = repo.Tenant(session, owner.id)
            rows = list(await tenant.list_connections())
            last = {
                run.connection_id: run
                for run in (
                    await session.scalars(
                        tenant.scoped(t.SyncRun).order_by(t.SyncRun.started_at)  # later ones win
                    )
                ).all()
            }
        if as_json:
            cli._print_json([connection_dict(row) for row in rows])
            return
        if not rows:
            cli.out.print("No connections yet; add one with 'crossdock connections add CONNECTOR --help'.")
            return
        table = Table("id", "connector", "name", "status", "last pull")
        for row in rows:
            run = last.get(row.id)
            pulled = (
                f"{run.status} {run.started_at:%Y-%m-%d %H:%M} ({run.created} new, {run.updated} updated)"
                if run
                else "never"
            )
            status = row.status + (f": {row.status_reason}" if row.status_reason else "")
            table.add_row(str(row.id), row.connector, row.name, status, pulled)
        cli.out.print(table)

    cli._run(work)


@connections_app.command("update")
def connections_update(
    connection: Annotated[str, typer.Argument(help="Connection id.")],
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="A new credential, NAME=VALUE (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace credentials (a rotated API secret, a new token). A connection waiting for re-authorisation
    becomes active again."""
    from crossdock import cli
    from crossdock.engine.connect import ConnectionRefused, update_secrets

    values = _pairs(secret, "--secret")
    if not values:
        cli._fail("nothing to update; give --secret NAME=VALUE")

    async def work(hub: Hub) -> None:
        row = await _connection(hub, connection)
        try:
            row = await update_secrets(hub, row.account_id, row.id, values)
        except ConnectionRefused as exc:
            cli._fail(exc.message)
        if as_json:
            cli._print_json(connection_dict(row, sorted(values)))
        else:
            cli.out.print(
                f"Updated {', '.join(sorted(values))} of {row.name} ({row.id}); status {row.status}"
            )

    cli._run(work)


def _set_status(connection: str, status: str, as_json: bool) -> None:
    from crossdock import cli
    from crossdock.engine.connect import set_status

    async def work(hub: Hub) -> None:
        row = await _connection(hub, connection)
        row = await set_status(hub, row.account_id, row.id, status)
        if as_json:
            cli._print_json(connection_dict(row))
        else:
            cli.out.print(f"{row.name} ({row.id}) is {row.status}")

    cli._run(work)


@connections_app.command("pause")
def connections_pause(
    connection: Annotated[str, typer.Argument(help="Connection id.")], as_json: JsonOpt = False
) -> None:
    """Stop scheduled pulls and pushes for this connection until it is resumed."""
    _set_status(connection, "paused", as_json)


@connections_app.command("resume")
def connections_resume(
    connection: Annotated[str, typer.Argument(help="Connection id.")], as_json: JsonOpt = False
) -> None:
    """Make a paused connection active again."""
    _set_status(connection, "active", as_json)


@connections_app.command("remove")
def connections_remove(
    connection: Annotated[str, typer.Argument(help="Connection id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Disconnect: remove the remote's webhook subscriptions to this hub, then the connection and its
    credentials. Orders imported through it stay."""
    from crossdock import cli
    from crossdock.engine.connect import disconnect

    if not yes and not typer.confirm(f"Remove connection {connection} and its credentials?"):
        raise typer.Exit(1)

    async def work(hub: Hub) -> None:
        row = await _connection(hub, connection)
        note = await disconnect(hub, row.account_id, row.id)
        cli.out.print(f"Removed {row.name} ({row.id})" + (f"; {note}" if note else ""))

    cli._run(work)


def _parse_since(value: str | None) -> datetime | None:
    from crossdock import cli

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        cli._fail(f"--since '{value}' is not a date; give YYYY-MM-DD or an ISO 8601 time")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sync(
    connection: Annotated[str, typer.Argument(help="Connection id (see 'crossdock connections list').")],
    since: Annotated[
        str | None,
        typer.Option(
            help="Read orders updated since this date (YYYY-MM-DD or ISO 8601, UTC when no offset): a backfill. "
            "Default: since the last pull, or CROSSDOCK_SYNC_BACKFILL_DAYS for a first pull."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pull a channel connection's orders now, with a progress bar, and print the run's counts. A pull that
    was cut short resumes where it stopped."""
    from crossdock import cli
    from crossdock.engine.errors import JobError
    from crossdock.engine.sync import STREAM, run_pull, sync_key
    from crossdock.engine.tuning import tune_long_running_process

    start = _parse_since(since)

    async def work(hub: Hub) -> None:
        # A pull here is a backfill as much as in a worker: the same collector settings (engine/tuning.py).
        tune_long_running_process()
        row = await _connection(hub, connection)
        lock = await _hold_sync_lock(hub, row, sync_key(row.id))
        bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=cli.err,
            disable=as_json,
            transient=False,
        )
        task = bar.add_task(f"{row.connector} {STREAM}", total=None, counts="starting")

        def show(run: t.SyncRun) -> None:
            bar.update(
                task,
                counts=f"{run.pages} pages, {run.read} read: {run.created} new, {run.updated} updated, "
                f"{run.skipped} unchanged, {run.invalid} invalid",
            )

        beating = asyncio.create_task(_heartbeat(hub, lock))
        try:
            with bar:
                run = await run_pull(
                    hub, row.account_id, row.id, trigger="manual", since=start, progress=show
                )
        except JobError as exc:
            beating.cancel()
            await _release_sync_lock(hub, lock, failed=exc.message)
            cli._fail(
                f"the pull stopped: {exc.message}. Run the same command again to resume where it stopped."
            )
            return
        except BaseException as exc:
            beating.cancel()
            await _release_sync_lock(hub, lock, failed=f"{type(exc).__name__}: {exc}")
            raise
        beating.cancel()
        await _release_sync_lock(hub, lock)
        data = {
            "run_id": str(run.id),
            "connection_id": str(row.id),
            "status": run.status,
            "pages": run.pages,
            "read": run.read,
            "created": run.created,
            "updated": run.updated,
            "skipped": run.skipped,
            "invalid": run.invalid,
            "since": run.cursor_from.isoformat() if run.cursor_from else None,
            "until": run.cursor_to.isoformat() if run.cursor_to else None,
        }
        if as_json:
            cli._print_json(data)
            return
        cli.out.print(
            f"Pulled {row.name}: {run.read} orders read in {run.pages} pages: {run.created} new, {run.updated} "
            f"updated, {run.skipped} unchanged, {run.invalid} invalid"
            + (" (see 'crossdock jobs list' and the inbox's quarantined payloads)" if run.invalid else "")
        )

    cli._run(work)


CLI_HOLDER = "crossdock sync (command line)"


async def _hold_sync_lock(hub: Hub, row: t.Connection, key: str) -> uuid.UUID:
    """Hold the connection's pull lock as a running job row, so no worker pulls the same connection at the same
    time (the jobs table allows one running job per lock key). A holder that sent no heartbeat within the
    worker lease (a killed `crossdock sync` or worker) is recovered as a worker would recover it, then taken."""
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from crossdock import cli
    from crossdock.engine import queue
    from crossdock.engine.sync import SYNC_JOB
    from crossdock.store.types import utcnow

    for _ in range(2):
        job_id, now = uuid.uuid4(), utcnow()
        try:
            async with hub.db.transaction() as session:
                session.add(
                    t.Job(
                        id=job_id,
                        account_id=row.account_id,
                        kind=SYNC_JOB,
                        payload={"connection_id": str(row.id), "trigger": "manual", "cli": True},
                        lock_key=key,
                        status="running",
                        attempts=1,
                        max_attempts=1,
                        run_at=now,
                        started_at=now,
                        heartbeat_at=now,
                        worker_id=CLI_HOLDER,
                        cancel_requested=False,
                        created_at=now,
                    )
                )
            return job_id
        except IntegrityError:
            pass
        async with hub.db.transaction() as session:
            stale = await queue.stalled(session, lease_s=hub.settings.worker_lease_s, lock_key=key)
            for holder in stale:
                await queue.fail(
                    session,
                    holder,
                    worker_id=None,
                    message=f"attempt {holder.attempts} was interrupted: {holder.worker_id} stopped sending "
                    "heartbeats; 'crossdock sync' took over the connection's pull",
                )
            held = await session.scalar(
                select(t.Job.id).where(t.Job.lock_key == key, t.Job.status == "running").limit(1)
            )
        if held is not None:
            break  # a live holder; a released lock or a recovered one is tried again
    cli._fail(
        f"a pull of {row.name} is running already (see 'crossdock jobs list --status running'); "
        "wait for it to finish"
    )


async def _heartbeat(hub: Hub, job_id: uuid.UUID) -> None:
    """Keep the lock's lease, as a worker does for its jobs: a lock whose holder died is taken over."""
    from sqlalchemy import update

    from crossdock.store.types import utcnow

    while True:
        await asyncio.sleep(hub.settings.worker_heartbeat_s)
        async with hub.db.transaction() as session:
            await session.execute(update(t.Job).where(t.Job.id == job_id).values(heartbeat_at=utcnow()))


async def _release_sync_lock(hub: Hub, job_id: uuid.UUID, *, failed: str | None = None) -> None:
    from sqlalchemy import update

    from crossdock.store.types import utcnow

    async with hub.db.transaction() as session:
        await session.execute(
            update(t.Job)
            .where(t.Job.id == job_id)
            .values(status="dead" if failed else "succeeded", last_error=failed, finished_at=utcnow())
        )
