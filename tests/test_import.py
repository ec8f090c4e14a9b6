"""Bulk import of records (`transfer-import`) into a live node's database."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.support import ROOT, RunningNode, new_lookup_code, new_national_id
from transfer.client import TransferClient
from transfer.server.importer import main as import_main
from transfer.v1 import common_pb2


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lookup_code", "national_id", "level", "custodian_school"])
        w.writerows(rows)
    return path


def test_import_takes_good_rows_refuses_bad_ones_and_can_be_rerun(
    node: RunningNode, s1: TransferClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert node.config_path is not None
    present_code, present_nid = new_lookup_code(), new_national_id()
    s1.register_record(present_code, present_nid, common_pb2.RECORD_LEVEL_PRIMARY)
    taken = new_lookup_code()
    s1.register_record(taken, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    good = [[new_lookup_code(), new_national_id(), "primary", "S2"] for _ in range(1200)]
    dup_student = new_national_id()
    rows = [
        *good[:600],
        [present_code, present_nid, "1", "S1"],  # line 602: the same record: already present
        [taken, new_national_id(), "1", "S1"],  # 603: another record has this lookup code
        ["not-hex", new_national_id(), "1", "S1"],  # 604: malformed
        [new_lookup_code(), new_national_id(), "1", "S404"],  # 605: unknown school
        [new_lookup_code(), dup_student, "2", "S1"],  # 606
        [new_lookup_code(), dup_student, "lower_secondary", "S1"],  # 607: the same pupil and level again
        [new_lookup_code(), new_national_id(), "9", "S1"],  # 608: no such level
        ["a", "b"],  # 609: wrong column count
        *good[600:],
    ]
    data = _write(tmp_path / "records.csv", rows)
    assert import_main(["--config", str(node.config_path), str(data)]) == 1
    assert "imported 1201, already present 1, refused 6" in capsys.readouterr().err
    with (tmp_path / "records.rejects.csv").open(encoding="utf-8") as f:
        refused = {int(r["line"]): r["reason"] for r in csv.DictReader(f)}
    assert refused == {
        603: "RECORD_EXISTS",
        604: "INVALID_LOOKUP_CODE",
        605: "UNKNOWN_SCHOOL",
        607: "STUDENT_RECORD_EXISTS",
        608: "INVALID_ENUM",
        609: "BAD_ROW",
    }
    s2 = node.client("school-S2")
    assert sum(1 for _ in s2.iter_records(page_size=500)) == 1200
    assert s2.get_record(good[0][0]).national_id == good[0][1]

    # Run again (as after an interruption): nothing new, nothing doubled.
    assert import_main(["--config", str(node.config_path), str(data)]) == 1
    assert "imported 0, already present 1202, refused 6" in capsys.readouterr().err
    assert sum(1 for _ in s2.iter_records(page_size=500)) == 1200


def test_import_refuses_a_file_without_the_header(node: RunningNode, tmp_path: Path) -> None:
    assert node.config_path is not None
    bad = tmp_path / "bad.csv"
    bad.write_text("code,id\n1,2\n", encoding="utf-8")
    assert import_main(["--config", str(node.config_path), str(bad)]) == 2


def test_an_unreadable_line_stops_the_import_saying_where_and_keeps_what_came_before(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line the CSV reader cannot read (here a field beyond its size limit) stops the import with its line
    number; every row before it is imported, the refusals found so far are written, a quoted field spanning
    two lines does not shift the line numbers, and an odd digit such as "²" is a refused level, not a crash."""
    assert node.config_path is not None
    rows = [
        ["not-hex", new_national_id(), "1", "S1"],  # line 2: refused
        [new_lookup_code(), new_national_id(), "²", "S1"],  # 3: refused (not a level)
        [new_lookup_code(), new_national_id(), "1", "S2\nS3"],  # 4-5: one row over two lines, refused
        *[[new_lookup_code(), new_national_id(), "1", "S2"] for _ in range(7)],  # 6-12
    ]
    data = _write(tmp_path / "records.csv", rows)
    with data.open("a", encoding="utf-8") as f:
        f.write(new_lookup_code() + "," + "1" * 200_000 + ",1,S1\n")  # line 13
        f.write(",".join([new_lookup_code(), new_national_id(), "1", "S2"]) + "\n")  # 14: never read
    assert import_main(["--config", str(node.config_path), str(data)]) == 2
    err = capsys.readouterr().err
    assert "stopped at line 13" in err and "run it again" in err
    with (tmp_path / "records.rejects.csv").open(encoding="utf-8") as f:
        refused = {int(r["line"]): r["reason"] for r in csv.DictReader(f)}
    assert refused == {2: "INVALID_LOOKUP_CODE", 3: "INVALID_ENUM", 4: "INVALID_SCHOOL_CODE"}
    assert sum(1 for _ in node.client("school-S2").iter_records(page_size=500)) == 7


def test_a_database_failure_during_an_import_is_reported_without_the_rows_values(
    node: RunningNode, database_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A write the database refuses mid-import (here a trigger stands in for a clash with the live node,
    whose PostgreSQL error quotes the row in a DETAIL line) ends the import in one line, status 2, and no
    national id reaches the terminal."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's DETAIL lines quote values; SQLite's messages do not")
    assert node.config_path is not None
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION clash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE unique_violation"
            " USING MESSAGE = 'duplicate key value', DETAIL = 'Key (national_id)=(' || NEW.national_id"
            " || ') already exists.'; END $$"
        )
        conn.execute("CREATE TRIGGER clash BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION clash()")
    national_id = new_national_id()
    data = _write(tmp_path / "records.csv", [[new_lookup_code(), national_id, "primary", "S1"]])
    capfd.readouterr()
    assert import_main(["--config", str(node.config_path), str(data)]) == 2
    out, err = capfd.readouterr()
    assert national_id not in out + err
    lines = [line for line in err.splitlines() if line.startswith("transfer-import:")]
    assert len(lines) == 1 and "Traceback" not in err, err


def test_an_interrupted_import_says_so_in_one_line_and_can_be_rerun(node: RunningNode, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) during an import: one line saying what was kept, status 130, no traceback; running
    it again imports the rest."""
    assert node.config_path is not None
    rows = [[new_lookup_code(), new_national_id(), "primary", "S3"] for _ in range(60_000)]
    data = _write(tmp_path / "records.csv", rows)
    args = [sys.executable, "-m", "transfer.server.importer", "--config", str(node.config_path), str(data)]
    with subprocess.Popen(args, stderr=subprocess.PIPE, cwd=ROOT) as proc:
        assert proc.stderr is not None
        seen, deadline = b"", time.monotonic() + 60
        while b"rows" not in seen and time.monotonic() < deadline:  # the progress bar: importing has begun
            seen += os.read(proc.stderr.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        err = seen + proc.stderr.read()
        assert proc.wait(60) == 130, err
    last = err.decode().replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("transfer-import: interrupted") and b"Traceback" not in err, err
    assert import_main(["--config", str(node.config_path), str(data)]) == 0
    assert sum(1 for _ in node.client("school-S3").iter_records(page_size=1000)) == len(rows)


def test_progress_bar_only_on_a_terminal(node: RunningNode, tmp_path: Path) -> None:
    """The redrawn progress bar goes to a terminal only; piped stderr gets plain lines at each tenth, no \\r."""
    import pty

    assert node.config_path is not None
    data = _write(
        tmp_path / "records.csv", [[new_lookup_code(), new_national_id(), "primary", "S3"] for _ in range(40)]
    )
    args = [sys.executable, "-m", "transfer.server.importer", "--config", str(node.config_path), str(data)]
    piped = subprocess.run(args, capture_output=True, cwd=ROOT, timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr
    assert b"\r" not in piped.stderr and b"40/40 rows (100%)\n" in piped.stderr, piped.stderr

    again = _write(tmp_path / "more.csv", [[new_lookup_code(), new_national_id(), "primary", "S3"] for _ in range(40)])
    leader, follower = pty.openpty()
    try:
        args[-1] = str(again)
        proc = subprocess.run(args, stderr=follower, stdout=subprocess.DEVNULL, cwd=ROOT, timeout=120, check=False)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0, seen
    assert b"\r[" in seen and b"40/40 rows" in seen, seen


def test_import_reads_levels_as_the_cli_spells_them() -> None:
    """The CSV's level column takes transfer-cli's spelling (lower-secondary) and the older lower_secondary."""
    from transfer.server.importer import _level

    assert _level("lower-secondary") == _level("lower_secondary") == common_pb2.RECORD_LEVEL_LOWER_SECONDARY
    assert _level("upper-secondary") == common_pb2.RECORD_LEVEL_UPPER_SECONDARY
    assert _level("primary") == _level("1") == common_pb2.RECORD_LEVEL_PRIMARY
    assert _level("lower secondary") == 0  # refused by the checks, with the field named
