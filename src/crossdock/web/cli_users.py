"""`crossdock users create|list|set-password|disable`: the people who sign in to the control panel.

Commands reuse crossdock.cli's runner, imported when a command runs because crossdock.cli registers these
commands while it is itself being imported. Passwords are asked for without echo (twice for a new one), or read
from standard input with --password-stdin for scripts; they never appear in arguments or output.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from crossdock.hub import Hub
from crossdock.store import repo
from crossdock.store import tables as t
from crossdock.store.types import utcnow
from crossdock.web import users

users_app = typer.Typer(
    help="Control-panel users: create, list, set-password, disable.", no_args_is_help=True
)

AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account", "-a", help="Account id or name; may be left out when there is only one account."
    ),
]
StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="The user's e-mail address; they sign in with it.")],
    account: AccountOpt = None,
    password_stdin: StdinOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create a panel user of an account; asks for the password (at least 10 characters)."""
    from crossdock import cli

    password = _password(password_stdin)

    async def work(hub: Hub) -> t.User:
        acct = await cli._resolve_account(hub, account)
        async with hub.db.transaction() as session:
            try:
                return await users.create_user(session, acct.id, email, password)
            except repo.Conflict as exc:
                raise cli.CliError(f"{exc.field}: {exc}" if exc.field else str(exc)) from None

    row = cli._run(work)
    if as_json:
        sys.stdout.write(
            json.dumps({"id": str(row.id), "account_id": str(row.account_id), "email": row.email}) + "\n"
        )
        return
    cli.out.print(f"user {row.email} created; sign in at /login of the hub")


@users_app.command("list")
def list_users(account: AccountOpt = None) -> None:
    """List an account's panel users."""
    from crossdock import cli

    async def work(hub: Hub) -> list[t.User]:
        acct = await cli._resolve_account(hub, account)
        async with hub.db.session() as session:
            return list(await users.list_users(session, acct.id))

    rows = cli._run(work)
    if not rows:
        cli.out.print("no users yet; create one with 'crossdock users create EMAIL'")
        return
    table = Table("e-mail", "created", "last sign-in", "state")
    for row in rows:
        table.add_row(
            row.email,
            row.created_at.isoformat(timespec="seconds"),
            row.last_login_at.isoformat(timespec="seconds") if row.last_login_at else "never",
            "disabled" if row.disabled_at else "active",
        )
    cli.out.print(table)


@users_app.command("set-password")
def set_password(
    email: Annotated[str, typer.Argument(help="The user's e-mail address.")],
    password_stdin: StdinOpt = False,
) -> None:
    """Give a user a new password; their open sessions end and refused sign-ins are forgotten."""
    from crossdock import cli

    password = _password(password_stdin)

    async def work(hub: Hub) -> None:
        async with hub.db.transaction() as session:
            try:
                user = await users.get_user_by_email(session, email)
                await users.set_password(session, user, password)
            except (repo.Conflict, repo.NotFound) as exc:
                raise cli.CliError(str(exc)) from None

    cli._run(work)
    cli.out.print(f"the password of {email} is changed; their sessions have ended")


@users_app.command("disable")
def disable(email: Annotated[str, typer.Argument(help="The user's e-mail address.")]) -> None:
    """Stop a user from signing in; their open sessions end at once."""
    from crossdock import cli

    async def work(hub: Hub) -> None:
        async with hub.db.transaction() as session:
            try:
                user = await users.get_user_by_email(session, email)
            except repo.NotFound as exc:
                raise cli.CliError(str(exc)) from None
            user.disabled_at = utcnow()

    cli._run(work)
    cli.out.print(f"{email} can no longer sign in")
