"""Log lines hold opaque ids only: a database error's text is logged without the row values it quotes."""

from __future__ import annotations

import logging
import sys

from sqlalchemy import create_engine, text

from storage.database import sync_url
from transfer.server.logs import JsonFormatter, TextFormatter

NATIONAL_ID = "012345678901"


def _formatted(exc: BaseException) -> list[str]:
    try:
        raise exc
    except BaseException:
        record = logging.makeLogRecord(
            {"msg": "write transaction failed", "levelname": "ERROR", "exc_info": sys.exc_info()}
        )
    return [JsonFormatter().format(record), TextFormatter().format(record)]


def test_a_database_errors_row_values_stay_out_of_the_log(database_url: str) -> None:
    """A unique violation on the engine itself (PostgreSQL quotes the key's values in a DETAIL line)."""
    engine = create_engine(sync_url(database_url))
    caught: BaseException | None = None
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        cur.execute("CREATE TEMPORARY TABLE pupils (national_id VARCHAR(12) UNIQUE)")
        insert = "INSERT INTO pupils VALUES (%s)" if "postgresql" in database_url else "INSERT INTO pupils VALUES (?)"
        cur.execute(insert, (NATIONAL_ID,))
        try:
            cur.execute(insert, (NATIONAL_ID,))
        except Exception as exc:  # the driver's own error, as the writer would log it
            caught = exc
        raw.rollback()
        conn.execute(text("SELECT 1"))
    engine.dispose()
    assert caught is not None
    for line in _formatted(caught):
        assert NATIONAL_ID not in line and "unique" in line.lower()


def test_detail_lines_are_withheld_in_both_formats() -> None:
    error = RuntimeError(
        f'duplicate key value violates unique constraint "uq_records_student_level"\n'
        f"DETAIL:  Key (national_id, level)=({NATIONAL_ID}, 1) already exists."
    )
    for line in _formatted(error):
        assert NATIONAL_ID not in line and "withheld" in line and "uq_records_student_level" in line
