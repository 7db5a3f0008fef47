"""fulfillments: the carrier and tracking URL the channel was sent, beside its tracking number

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 01:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fulfillments") as batch:
        batch.add_column(sa.Column("pushed_carrier", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("pushed_tracking_url", sa.String(length=2000), nullable=True))
    # A fulfillment pushed before these columns existed was pushed with its carrier and URL as they stand
    # (a later change of either was not sent, which is what these columns let the push job see from now on).
    op.execute(
        "UPDATE fulfillments SET pushed_carrier = carrier, pushed_tracking_url = tracking_url "
        "WHERE pushed_tracking_number IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("fulfillments") as batch:
        batch.drop_column("pushed_tracking_url")
        batch.drop_column("pushed_carrier")
