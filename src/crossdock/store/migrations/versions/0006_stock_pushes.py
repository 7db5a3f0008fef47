"""what each connection was last given of each stock level

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crossdock.store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stock_pushes",
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("location", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("available", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pushed_at", crossdock.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "sku", "location"),
    )
    op.create_index("ix_stock_pushes_account_id", "stock_pushes", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_stock_pushes_account_id", table_name="stock_pushes")
    op.drop_table("stock_pushes")
