"""Persistence: SQLAlchemy Core tables, repositories, the unit of work, the
single writer, and Alembic migrations. The only package that speaks SQL."""

from transfer.extras import require_server_extra

require_server_extra("storage")
