"""engine: inbox, jobs, sync runs and cursors

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:07:57.386071
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crossdock.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duplicate_of", sa.Uuid(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_inbox_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_inbox_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["duplicate_of"], ["inbox.id"], name=op.f("fk_inbox_duplicate_of_inbox"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_inbox_order_id_orders"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbox_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_inbox_connection_received", ["connection_id", "received_at"], unique=False)
        batch_op.create_index("ix_inbox_received", ["received_at"], unique=False)
        batch_op.create_index(
            "uq_inbox_dedup",
            ["connection_id", "kind", "dedup_key"],
            unique=True,
            postgresql_where=sa.text("duplicate_of IS NULL"),
            sqlite_where=sa.text("duplicate_of IS NULL"),
        )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("queueing_key", sa.String(length=255), nullable=True),
        sa.Column("lock_key", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("periodic_task", sa.String(length=100), nullable=True),
        sa.Column("periodic_tick", sa.BigInteger(), nullable=True),
        sa.Column("created_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_jobs_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_jobs_order_id_orders"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_account_created", ["account_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_jobs_claim", ["status", "run_at"], unique=False)
        batch_op.create_index("ix_jobs_order", ["order_id"], unique=False)
        batch_op.create_index("ix_jobs_worker", ["worker_id"], unique=False)
        batch_op.create_index(
            "uq_jobs_lock_key_running",
            ["lock_key"],
            unique=True,
            postgresql_where=sa.text("lock_key IS NOT NULL AND status = 'running'"),
            sqlite_where=sa.text("lock_key IS NOT NULL AND status = 'running'"),
        )
        batch_op.create_index(
            "uq_jobs_periodic_tick",
            ["periodic_task", "periodic_tick"],
            unique=True,
            postgresql_where=sa.text("periodic_task IS NOT NULL"),
            sqlite_where=sa.text("periodic_task IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_jobs_queueing_key_waiting",
            ["queueing_key"],
            unique=True,
            postgresql_where=sa.text("queueing_key IS NOT NULL AND status IN ('queued', 'failed')"),
            sqlite_where=sa.text("queueing_key IS NOT NULL AND status IN ('queued', 'failed')"),
        )

    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("read", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
        sa.Column("cursor_from", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cursor_to", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_sync_runs_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_sync_runs_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_sync_runs_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_runs_account_id"), ["account_id"], unique=False)
        batch_op.create_index(
            "ix_sync_runs_account_started", ["account_id", "started_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_sync_runs_connection_stream", ["connection_id", "stream", "started_at"], unique=False
        )

    op.create_table(
        "cursors",
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("watermark", crossdock.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("updated_at", crossdock.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cursors_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_cursors_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name=op.f("fk_cursors_run_id_sync_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("connection_id", "stream", name=op.f("pk_cursors")),
    )
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cursors_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cursors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cursors_account_id"))

    op.drop_table("cursors")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_runs_connection_stream")
        batch_op.drop_index("ix_sync_runs_account_started")
        batch_op.drop_index(batch_op.f("ix_sync_runs_account_id"))

    op.drop_table("sync_runs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_jobs_queueing_key_waiting",
            postgresql_where=sa.text("queueing_key IS NOT NULL AND status IN ('queued', 'failed')"),
            sqlite_where=sa.text("queueing_key IS NOT NULL AND status IN ('queued', 'failed')"),
        )
        batch_op.drop_index(
            "uq_jobs_periodic_tick",
            postgresql_where=sa.text("periodic_task IS NOT NULL"),
            sqlite_where=sa.text("periodic_task IS NOT NULL"),
        )
        batch_op.drop_index(
            "uq_jobs_lock_key_running",
            postgresql_where=sa.text("lock_key IS NOT NULL AND status = 'running'"),
            sqlite_where=sa.text("lock_key IS NOT NULL AND status = 'running'"),
        )
        batch_op.drop_index("ix_jobs_worker")
        batch_op.drop_index("ix_jobs_order")
        batch_op.drop_index("ix_jobs_claim")
        batch_op.drop_index("ix_jobs_account_created")

    op.drop_table("jobs")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_inbox_dedup",
            postgresql_where=sa.text("duplicate_of IS NULL"),
            sqlite_where=sa.text("duplicate_of IS NULL"),
        )
        batch_op.drop_index("ix_inbox_received")
        batch_op.drop_index("ix_inbox_connection_received")
        batch_op.drop_index(batch_op.f("ix_inbox_account_id"))

    op.drop_table("inbox")
