"""Alembic environment. Migrations run on a connection handed in by crossdock.store.migrate."""

from __future__ import annotations

from alembic import context

from crossdock.store.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through 'crossdock migrate', which supplies the database connection"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; run 'crossdock migrate'")
run_migrations_online()
