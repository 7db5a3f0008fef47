"""Command line for the engine: `crossdock worker`, `crossdock jobs list|retry|cancel`, `crossdock replay`.

The commands reuse crossdock.cli's runner (settings, logging, schema check), imported when a command runs
because crossdock.cli registers these commands while it is itself being imported.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from crossdock.hub import Hub
from crossdock.store import tables as t

jobs_app = typer.Typer(
    help="Jobs: list them, retry dead ones, cancel waiting or running ones.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AccountOpt = Annotated[
    str | None, typer.Option("--account", "-a", help="Account id or name; all accounts when left out.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.command("worker")(worker)
    app.command("replay")(replay)


def job_dict(row: t.Job) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "account_id": str(row.account_id) if row.account_id else None,
        "kind": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "run_at": row.run_at.isoformat(),
        "queueing_key": row.queueing_key,
        "lock_key": row.lock_key,
        "order_id": str(row.order_id) if row.order_id else None,
        "worker_id": row.worker_id,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def _uuid(value: str, what: str) -> uuid.UUID:
    from crossdock import cli

    try:
        return uuid.UUID(value)
    except ValueError:
        cli.err.print(f"[red]error:[/red] '{value}' is not a {what} id (a UUID)")
        raise typer.Exit(1) from None


# crossdock worker ----------------------------------------------------------------------------------------------
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Jobs run at once (CROSSDOCK_WORKER_CONCURRENCY)."),
    ] = None,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Also import this module, which registers job kinds (repeatable)."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics of this worker on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run jobs until SIGINT/SIGTERM; then stop claiming and let running jobs finish (CROSSDOCK_WORKER_GRACE_S).

    On PostgreSQL run as many workers as you like, on any machines; on SQLite run one (or `crossdock serve`)."""
    from crossdock import cli
    from crossdock.engine.worker import Worker, load_job_modules

    async def work(hub: Hub) -> None:
        load_job_modules([*hub.settings.job_modules, *(imports or [])])
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=metrics_host)
        running = Worker(hub, concurrency=concurrency)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, running.stop)
        cli.err.print(
            f"worker {running.worker_id} running {running.concurrency} jobs at once; stop with Ctrl-C"
        )
        await running.run()

    cli._run(work, long_running=True)


# crossdock jobs ... --------------------------------------------------------------------------------------------
@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        str | None, typer.Option(help=f"Only jobs in this status: {', '.join(t.JOB_STATUSES)}.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    account: AccountOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    from crossdock import cli
    from crossdock.engine import queue

    if status is not None and status not in t.JOB_STATUSES:
        cli.err.print(f"[red]error:[/red] status must be one of {', '.join(t.JOB_STATUSES)}")
        raise typer.Exit(1)

    async def work(hub: Hub) -> list[t.Job]:
        account_id = (await cli._resolve_account(hub, account)).id if account else None
        async with hub.db.session() as session:
            return await queue.list_jobs(
                session, account_id=account_id, status=status, kind=kind, limit=limit
            )

    rows = cli._run(work)
    if as_json:
        cli._print_json([job_dict(r) for r in rows])
        return
    table = Table("id", "kind", "status", "attempts", "run at", "last error")
    for r in rows:
        error = (r.last_error or "")[:80]
        table.add_row(
            str(r.id), r.kind, r.status, f"{r.attempts}/{r.max_attempts}", r.run_at.isoformat(), error
        )
    cli.out.print(table)


def _job_action(job_id: str, account: str | None, as_json: bool, action: str) -> None:
    from crossdock import cli
    from crossdock.engine import queue
    from crossdock.store.repo import Conflict, NotFound

    ident = _uuid(job_id, "job")

    async def work(hub: Hub) -> t.Job:
        account_id = (await cli._resolve_account(hub, account)).id if account else None
        try:
            async with hub.db.transaction() as session:
                if action == "retry":
                    return await queue.retry_job(session, ident, account_id)
                return await queue.cancel_job(session, ident, account_id)
        except (NotFound, Conflict) as exc:
            raise cli.CliError(str(exc)) from None

    row = cli._run(work)
    if as_json:
        cli._print_json(job_dict(row))
    elif action == "retry":
        cli.out.print(f"job {row.id} ({row.kind}) queued again")
    elif row.status == "cancelled":
        cli.out.print(f"job {row.id} ({row.kind}) cancelled")
    else:
        cli.out.print(f"job {row.id} ({row.kind}) is running; its worker stops it within a few seconds")


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a dead, cancelled or failed job again now, with a fresh budget of attempts."""
    _job_action(job_id, account, as_json, "retry")


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a waiting job, or stop a running one."""
    _job_action(job_id, account, as_json, "cancel")


# crossdock replay ----------------------------------------------------------------------------------------------
def replay(
    connection: Annotated[str, typer.Option("--connection", help="The connection's id.")],
    since: Annotated[
        str | None,
        typer.Option(
            help="Only payloads received at or after this time (ISO 8601; UTC when no zone is given)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Process a connection's stored inbound payloads again (e.g. after a mapping fix). Safe to repeat."""
    from crossdock import cli
    from crossdock.engine import inbox

    ident = _uuid(connection, "connection")
    start: datetime | None = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            cli.err.print(
                f"[red]error:[/red] --since '{since}' is not an ISO 8601 time, e.g. 2026-03-01T12:00:00Z"
            )
            raise typer.Exit(1) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)

    async def work(hub: Hub) -> int:
        async with hub.db.transaction() as session:
            if await session.get(t.Connection, ident) is None:
                raise cli.CliError(f"there is no connection {ident}")
            return await inbox.replay(session, connection_id=ident, since=start)

    count = cli._run(work)
    if as_json:
        cli._print_json({"connection_id": str(ident), "queued": count})
        return
    cli.out.print(f"{count} stored payload(s) queued for processing; a running worker picks them up")
