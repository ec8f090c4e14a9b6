"""Persistence: SQLAlchemy Core tables, repositories, the unit of work, the
single writer, and Alembic migrations. The only package that speaks SQL."""
