"""Storage: SQLAlchemy 2 tables and repositories, Alembic migrations, the blob store."""
