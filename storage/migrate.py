"""Create or upgrade a node's schema with Alembic.

    python -m storage.migrate sqlite:///var/node.db      # upgrade to head
    python -m storage.migrate URL --revision REV         # to a given revision

The server runs the upgrade at start-up unless told not to, so a fresh node
needs no separate step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine

from storage.database import (
    CONNECT_TIMEOUT_S,
    DatabaseUnreachable,
    connect,
    describe,
    is_sqlite,
    sqlite_engine,
    sync_url,
    url_problem,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _engine(url: str) -> Engine:
    if is_sqlite(url):
        return sqlite_engine(url, writer=True)
    return create_engine(sync_url(url), connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (idempotent)."""
    engine = _engine(url)
    try:
        with connect(engine, url) as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # Alembic's batch mode rebuilds a SQLite table by copying it and
                # dropping the old one, which enforced foreign keys refuse while
                # other rows reference it. The pragma is ignored inside a
                # transaction, so it is set before the migration's begins; the
                # keys are checked as a whole before the commit instead.
                driver = conn.connection.driver_connection
                assert driver is not None
                driver.execute("PRAGMA foreign_keys=OFF")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                conn.rollback()
                raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")
            conn.commit()
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = _engine(url)
    try:
        with connect(engine, url) as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


class SchemaMismatch(Exception):
    """The database's schema is not the one this version of the code works with; the message says what to do."""


def prepare(url: str, *, upgrade_schema: bool) -> None:
    """Make sure the database at `url` has this version's schema, upgrading it if `upgrade_schema`.

    Raises SchemaMismatch when it was migrated by a newer version (a revision
    this code does not know), or is behind and may not be upgraded here."""
    current, head = current_revision(url), head_revision()
    if current is not None:
        try:
            known = ScriptDirectory.from_config(alembic_config()).get_revision(current) is not None
        except CommandError:
            known = False
        if not known:
            raise SchemaMismatch(
                f"{describe(url)} has schema revision {current}, which this version does not know "
                f"(it knows up to {head}): a newer version migrated it; run that version"
            )
    if current == head:
        return
    if not upgrade_schema:
        raise SchemaMismatch(
            f"{describe(url)} has schema revision {current or 'none (no tables)'}, this version needs {head}: "
            "run transfer-migrate <database URL>, or set database.auto_migrate = true"
        )
    upgrade(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer-migrate", description="Create or upgrade a node's database schema.")
    parser.add_argument("url", help="database URL: sqlite:///path.db or postgresql://...")
    parser.add_argument("--revision", default="head")
    ns = parser.parse_args(argv)
    problem = url_problem(ns.url)
    if problem is not None:
        print(f"transfer-migrate: {problem}", file=sys.stderr)
        return 2
    try:
        upgrade(ns.url, ns.revision)
        print(f"{describe(ns.url)} is at revision {current_revision(ns.url)}")
    except (DatabaseUnreachable, CommandError) as exc:
        print(f"transfer-migrate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
