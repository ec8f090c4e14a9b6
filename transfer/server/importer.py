"""Bulk import of records: `transfer-import --config node.toml records.csv`.

For a province bringing its existing records onto a node (and for the
benchmarks' million-record seeding). The CSV has a header line and the
columns `lookup_code,national_id,level,custodian_school`; `level` is 1, 2, 3
or `primary`, `lower-secondary`, `upper-secondary` (as transfer-cli spells
them; `lower_secondary` and `upper_secondary` are read too). Each row gets the checks
of RegisterRecord (formats, an active school of this node, no second record
with that lookup code, one record per pupil and level).

Rows go through the node's writer in batches (one transaction per batch), so
the import may run beside a live node. A row already imported with the same
content counts as present, so an interrupted import is simply run again.
Refused rows are written, with their line and reason, to the rejects file;
the exit status is then 1. Progress (rows, rate, ETA) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from storage import migrate
from storage.database import DatabaseUnreachable, open_database
from storage.store import Store
from storage.writer import Writer
from transfer.domain.commands import RegisterRecord
from transfer.domain.errors import DomainError
from transfer.domain.model import RecordLevel
from transfer.domain.ports import SystemClock
from transfer.domain.services import ImportOutcome, Records
from transfer.server import logs
from transfer.server.config import ConfigError, load

COLUMNS = ["lookup_code", "national_id", "level", "custodian_school"]
BATCH = 5000


class ImportHalted(Exception):
    """The file cannot be read on from `line` (the rows before it were handled)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


def _level(text: str) -> int:
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        if not text.isascii():  # "prımary".upper() is "PRIMARY"
            raise KeyError(text)
        return int(RecordLevel[text.upper().replace("-", "_")])
    except KeyError:
        return 0  # refused by the checks, with the field named


def _rows(f: TextIO, rejects: list[tuple[int, str, str]]) -> Iterator[tuple[int, RegisterRecord]]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != COLUMNS:
        raise ValueError(f"the first line must be the header {','.join(COLUMNS)}")
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: a row is named by its first line
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a NUL byte, or a field beyond the csv module's size limit
            raise ImportHalted(start, f"not readable as CSV ({exc})") from None
        if not row:
            continue
        if len(row) != len(COLUMNS):
            rejects.append((start, "BAD_ROW", f"expected {len(COLUMNS)} columns, got {len(row)}"))
            continue
        code, nid, level, school = (c.strip() for c in row)
        try:
            yield start, RegisterRecord.parse(code, nid, _level(level), school)
        except DomainError as exc:
            where = "; ".join(f"{v.field}: {v.description}" for v in exc.field_violations) or exc.message
            rejects.append((start, exc.reason, where))


class Progress:
    """How far the import is, on stderr: a bar redrawn in place when stderr is a terminal, otherwise (a log
    file, a pipe) a plain line at each tenth of the rows, so a log holds no carriage returns."""

    def __init__(self, total: int, out: TextIO = sys.stderr, *, terminal: bool | None = None) -> None:
        self.total = total
        self.out = out
        self.terminal = out.isatty() if terminal is None else terminal
        self.start = time.monotonic()
        self.last = 0.0
        self.open_line = False
        self.tenths = 0

    def show(self, done: int, final: bool = False) -> None:
        if not self.terminal:
            tenths = 10 * done // max(self.total, 1)
            if tenths > self.tenths or (final and done and not self.tenths):
                self.tenths = tenths
                pct = 100 * done // max(self.total, 1)
                self.out.write(f"transfer-import: {done:,}/{self.total:,} rows ({pct}%)\n")
                self.out.flush()
            return
        now = time.monotonic()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        width = 30
        filled = width * done // max(self.total, 1)
        eta = (self.total - done) / rate if rate > 0 else 0
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if final else ""
        self.out.write(f"\r[{bar}] {done}/{self.total} rows  {rate:,.0f}/s  ETA {eta:4.0f} s{end}")
        self.out.flush()
        self.open_line = not final

    def end(self) -> None:
        """End the bar's line, if one is open, so what is printed next starts on its own."""
        if self.open_line:
            self.out.write("\n")
            self.out.flush()
            self.open_line = False


async def run_import(config_path: Path, csv_path: Path, rejects_path: Path) -> tuple[ImportOutcome, int]:
    cfg = load(config_path)
    migrate.prepare(cfg.database_url, upgrade_schema=cfg.auto_migrate)
    db = open_database(
        cfg.database_url,
        sqlite_synchronous=cfg.sqlite_synchronous,
        unavailable_after=cfg.database_unavailable_after_seconds,
    )
    writer = Writer(db, max_batch=1)
    writer.start()
    store = Store(db, writer)
    records = Records(SystemClock())
    with csv_path.open(encoding="utf-8") as f:
        total = sum(1 for _ in f) - 1
    progress = Progress(total)
    outcome = ImportOutcome()
    rejects: list[tuple[int, str, str]] = []
    done = 0
    batch: list[tuple[int, RegisterRecord]] = []
    try:
        with csv_path.open(encoding="utf-8", newline="") as f:
            try:
                for item in _rows(f, rejects):
                    batch.append(item)
                    if len(batch) == BATCH:
                        done += await _flush(store, records, batch, outcome)
                        batch = []
                        progress.show(done + len(rejects))
            finally:  # rows read before a line that stops the import are still imported
                if batch:
                    done += await _flush(store, records, batch, outcome)
        progress.show(done + len(rejects), final=True)
    finally:
        progress.end()
        await writer.stop()
        await db.close()
        # Written whatever happened, so refusals found before a stop are not lost.
        rejects += outcome.refused
        rejects.sort()
        if rejects:
            with rejects_path.open("w", encoding="utf-8", newline="") as out:
                w = csv.writer(out)
                w.writerow(["line", "reason", "detail"])
                w.writerows(rejects)
    return outcome, len(rejects)


async def _flush(
    store: Store, records: Records, batch: list[tuple[int, RegisterRecord]], outcome: ImportOutcome
) -> int:
    result: ImportOutcome = await store.write(lambda uow: records.import_batch(uow, batch))
    outcome.added += result.added
    outcome.present += result.present
    outcome.refused += result.refused
    return len(batch)


@contextlib.contextmanager
def _reporting_itself() -> Iterator[None]:
    """Warnings as text lines (database DETAIL lines withheld: they quote values), and the writer
    quiet: the import reports a failed write itself, in one line."""
    root, writer = logging.getLogger(), logging.getLogger("storage.writer")
    handlers, level, writer_level = root.handlers[:], root.level, writer.level
    logs.configure("WARNING", "text")
    writer.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        writer.setLevel(writer_level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer-import", description="Import records from a CSV file.")
    parser.add_argument("--config", type=Path, required=True, help="the node's configuration file")
    parser.add_argument("csv", type=Path, help=f"header {','.join(COLUMNS)}, then one record per line")
    parser.add_argument("--rejects", type=Path, help="where refused rows go (default: <csv>.rejects.csv)")
    ns = parser.parse_args(argv)
    rejects_path = ns.rejects or ns.csv.with_suffix(".rejects.csv")
    try:
        with _reporting_itself():
            outcome, refused = asyncio.run(run_import(ns.config, ns.csv, rejects_path))
    except ImportHalted as exc:
        print(
            f"transfer-import: stopped at {exc}. The rows before it were imported (refused ones are in"
            f" {rejects_path} if any); fix the file and run it again: rows already imported are skipped.",
            file=sys.stderr,
        )
        return 2
    except (ConfigError, OSError, ValueError, migrate.SchemaMismatch, DatabaseUnreachable) as exc:
        print(f"transfer-import: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"transfer-import: interrupted. The batches before it were imported (refused rows so far are in"
            f" {rejects_path} if any); run it again to finish: rows already imported are skipped.",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # the database refused a write (e.g. a clash with the live node)
        # Only the first line: PostgreSQL's DETAIL line after it quotes the row, national id included.
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(
            f"transfer-import: stopped: the database refused a batch ({type(exc).__name__}: {first}). The"
            f" batches before it were imported; run it again: rows already imported are skipped.",
            file=sys.stderr,
        )
        return 2
    print(f"imported {outcome.added}, already present {outcome.present}, refused {refused}", file=sys.stderr)
    if refused:
        print(f"refused rows (line, reason, detail): {rejects_path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
