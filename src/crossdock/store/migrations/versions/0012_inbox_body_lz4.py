"""inbox: payload bodies compressed with lz4 on PostgreSQL, where the server has it

PostgreSQL compresses a value of a few kilobytes or more before storing it (TOAST), with pglz unless the column
says otherwise. A Shopify order webhook's body is such a value, and pglz's compression took about 30 % of the
database's CPU per stored webhook (perf, bench/webhook_ingest.py); lz4 does the same work several times faster at
a slightly lower ratio. The setting applies to values stored from now on; those stored already stay as they are
and remain readable (postgresql.org/docs/15/sql-altertable.html, SET COMPRESSION). A server built without lz4
(or older than PostgreSQL 14, which has no per-column compression) keeps pglz. SQLite compresses nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 00:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    # The compression methods this server was built with are the values its default_toast_compression accepts.
    methods = bind.scalar(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
    return bool(methods) and "lz4" in methods


def upgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE inbox ALTER COLUMN body SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        op.execute("ALTER TABLE inbox ALTER COLUMN body SET COMPRESSION DEFAULT")
