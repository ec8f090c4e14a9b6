"""Upgrading a node's database that holds data, from each older revision to head, on each engine."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text

from storage import migrate
from storage.database import sync_url
from storage.schema import metadata

LOOKUP = "0123456789abcdef0123456789abcdef"
US = 1_795_000_000_000_000


def _insert(conn: Connection, table: str, row: dict[str, Any]) -> None:
    names = ", ".join(row)
    values = ", ".join(f":{k}" for k in row)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({values})"), row)


def _seed(conn: Connection, revision: str) -> None:
    """Rows a node at `revision` could hold, with every foreign key between them in use."""
    for code in ("S1", "S2"):
        _insert(conn, "schools", {"code": code, "name": f"Trường {code}", "province": "01", "active": True,
                                  "created_at_us": US, "updated_at_us": US})  # fmt: skip
    _insert(conn, "records", {"lookup_code": LOOKUP, "national_id": "001234567890", "level": 1,
                              "custodian_school": "S2", "open_transfer_id": None,
                              "created_at_us": US, "updated_at_us": US})  # fmt: skip
    _insert(conn, "transfers", {"id": "t" * 32, "lookup_code": LOOKUP, "from_school": "S1", "from_province": "01",
                                "to_school": "S2", "to_province": "01", "scope": 1, "state": 2, "reason": "",
                                "created_at_us": US, "deadline_us": US + 1, "decided_at_us": US + 1,
                                "initiated_by": "school:S1", "decided_by": "school:S2"})  # fmt: skip
    _insert(conn, "transfer_events", {"transfer_id": "t" * 32, "from_school": "S1", "to_school": "S2", "state": 2,
                                      "reason": "", "decided_by": "school:S2", "occurred_at_us": US + 1})  # fmt: skip
    _insert(conn, "idempotency_keys", {"principal": "school:S1", "request_id": "r1", "fingerprint": b"f" * 32,
                                       "response": b"x", "created_at_us": US})  # fmt: skip
    if revision >= "0002":
        _insert(conn, "log_leaves", {"idx": 0, "data": b"entry"})
    if revision >= "0003":
        _insert(conn, "teachers", {"id": "a" * 32, "school": "S2", "code": "GV1", "name": "Nguyễn Thị A", "status": 1,
                                   "created_at_us": US, "updated_at_us": US})  # fmt: skip
        _insert(conn, "pages", {"id": "p" * 32, "lookup_code": LOOKUP, "issuing_school": "S2",
                                "school_year": "2025-2026", "segment": "full", "grade": 1, "class_name": "1A",
                                "media_type": "application/pdf", "payload": b"%PDF", "payload_sha256": b"s" * 32,
                                "payload_size": 4, "version": 1, "digest": b"d" * 32, "state": 1, "lock_track": 1,
                                "lock_due_us": US, "created_at_us": US, "updated_at_us": US,
                                "locked_at_us": None})  # fmt: skip
        _insert(conn, "signing_tasks", {"page_id": "p" * 32, "requirement": "homeroom", "role": 1, "subject": "",
                                        "school": "S2", "duty_key": "k", "assignee": "a" * 32, "signed_by": None,
                                        "signature": None, "certificate_sha256": None,
                                        "signed_at_us": None})  # fmt: skip


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004", "0005", "0006", "0007"])
def test_a_database_with_data_upgrades_from_each_revision(database_url: str, revision: str) -> None:
    """A database made at an older revision and holding rows reaches head with its rows and the declared schema."""
    migrate.upgrade(database_url, revision)
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            _seed(conn, revision)
        migrate.upgrade(database_url)
        assert migrate.current_revision(database_url) == migrate.head_revision()
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            count = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                     for t in ("schools", "records", "transfers", "transfer_events", "pages", "signing_tasks")}  # fmt: skip
            assert count == {"schools": 2, "records": 1, "transfers": 1, "transfer_events": 1,
                             "pages": int(revision >= "0003"), "signing_tasks": int(revision >= "0003")}  # fmt: skip
            if revision >= "0003" and revision < "0004":  # pages made before 0004 get their school's province
                assert conn.execute(text("SELECT issuing_province FROM pages")).scalar_one() == "01"
    finally:
        engine.dispose()


def _schema_and_rows(database_url: str) -> tuple[list[str], dict[str, list[tuple[Any, ...]]]]:
    """The database's tables with their columns, and every row of every table."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            tables = [
                f"{t}({', '.join(c['name'] for c in inspector.get_columns(t))})" for t in inspector.get_table_names()
            ]
            rows = {t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}"))), key=repr)
                    for t in inspector.get_table_names()}  # fmt: skip
        return sorted(tables), rows
    finally:
        engine.dispose()


def test_a_downgrade_is_refused_with_status_2_and_the_database_left_as_it_was(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`transfer-migrate --revision 0005` on a database at head refuses (exit 2, a message naming both
    revisions and --downgrade) and changes nothing: it printed a line and exited 0 doing nothing before."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            _seed(conn, migrate.head_revision())
    finally:
        engine.dispose()
    before = _schema_and_rows(database_url)
    capsys.readouterr()
    assert migrate.main([database_url, "--current"]) == 0
    assert capsys.readouterr().out.endswith(f" is at revision {migrate.head_revision()}\n")
    assert migrate.main([database_url, "--revision", "0005"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"is at revision {migrate.head_revision()}, above 0005: refusing to downgrade" in err
    assert "--downgrade" in err
    assert migrate.current_revision(database_url) == migrate.head_revision()
    assert _schema_and_rows(database_url) == before
    # the same for "base", and a revision at or above the database's is no downgrade
    assert migrate.main([database_url, "--revision", "base"]) == 2
    assert migrate.main([database_url, "--revision", migrate.head_revision()]) == 0
    assert _schema_and_rows(database_url) == before


def test_an_explicit_downgrade_runs_the_downgrade_steps_and_the_upgrade_comes_back(database_url: str) -> None:
    """With --downgrade the migrations above the revision are undone (their tables go), and a later
    upgrade brings the schema back to the declared one."""
    migrate.upgrade(database_url)
    assert migrate.main([database_url, "--revision", "0007", "--downgrade"]) == 0
    assert migrate.current_revision(database_url) == "0007"
    tables, _ = _schema_and_rows(database_url)
    assert not any(t.startswith(("node_secrets(", "log_cosignatures(")) for t in tables)
    assert migrate.main([database_url]) == 0
    migrate.check_models(database_url)


def test_alembic_check_finds_the_models_and_the_migrations_in_agreement(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`alembic check` (transfer-migrate --check) on a fresh database migrated to head finds no
    difference between storage/schema.py and the migrations; on a database behind head it fails (1)."""
    migrate.upgrade(database_url)
    migrate.check_models(database_url)
    assert migrate.main([database_url, "--check"]) == 0
    assert "the schema matches the models" in capsys.readouterr().out
    assert migrate.main([database_url, "--revision", "0008", "--downgrade"]) == 0
    assert migrate.main([database_url, "--check"]) == 1
