"""shipments: an index on the remote's id of a label, by which a shipping platform's webhooks find their shipment

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 21:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.create_index(batch.f("ix_shipments_external_id"), ["external_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_index(batch.f("ix_shipments_external_id"))
