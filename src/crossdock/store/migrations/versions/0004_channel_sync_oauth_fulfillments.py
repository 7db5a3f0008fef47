"""channel sync resume state, OAuth states, fulfillment push bookkeeping

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crossdock.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("cursors") as batch:
        batch.add_column(sa.Column("resume", JSON, nullable=True))
    with op.batch_alter_table("fulfillments") as batch:
        batch.add_column(sa.Column("pushed_tracking_number", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
    op.create_index(
        "uq_fulfillments_shipment",
        "fulfillments",
        ["shipment_id"],
        unique=True,
        postgresql_where=sa.text("shipment_id IS NOT NULL"),
        sqlite_where=sa.text("shipment_id IS NOT NULL"),
    )
    op.create_table(
        "oauth_states",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("created_at", crossdock.store.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", crossdock.store.types.UTCDateTime(), nullable=False),
        sa.Column("used_at", crossdock.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("state_hash"),
    )
    op.create_index("ix_oauth_states_account_id", "oauth_states", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_oauth_states_account_id", table_name="oauth_states")
    op.drop_table("oauth_states")
    op.drop_index("uq_fulfillments_shipment", table_name="fulfillments")
    with op.batch_alter_table("fulfillments") as batch:
        batch.drop_column("error")
        batch.drop_column("pushed_tracking_number")
    with op.batch_alter_table("cursors") as batch:
        batch.drop_column("resume")
