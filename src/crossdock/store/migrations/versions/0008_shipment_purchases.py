"""shipments: idempotency key, purchase start, chosen rate and decision, lines and error

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import crossdock.store.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("purchase_started_at", crossdock.store.types.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("rate", JSON, nullable=True))
        batch.add_column(sa.Column("decision", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lines", JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.create_unique_constraint("uq_shipments_idempotency_key", ["idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_constraint("uq_shipments_idempotency_key", type_="unique")
        for column in ("error", "lines", "decision", "rate", "purchase_started_at", "idempotency_key"):
            batch.drop_column(column)
