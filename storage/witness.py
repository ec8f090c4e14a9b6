"""A witness's state file (SQLite, standard library): per origin the checkpoint it last cosigned,
and the split-view evidence it kept.

Standalone: the witness is its own program with its own small file, so this uses `sqlite3`
directly rather than the node's SQLAlchemy engine and migrations. Each add-checkpoint runs in
one `BEGIN IMMEDIATE` transaction: the read of the stored size, the check and the write of the
new checkpoint happen under SQLite's write lock, so two racing requests cannot both pass the
check against the same old size (c2sp.org/tlog-witness asks for exactly this atomicity).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from transfer.ledger.witness import Evidence, Stored

__all__ = ["LogSummary", "StateUnavailable", "WitnessState", "WitnessTransaction"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cosigned (
    origin TEXT PRIMARY KEY,
    size TEXT NOT NULL,           -- decimal: a uint64 does not fit SQLite's INTEGER
    root BLOB NOT NULL,
    note TEXT NOT NULL,           -- the log's signed note as submitted
    cosignature TEXT NOT NULL,    -- the signature line(s) the witness returned
    cosigned_at INTEGER NOT NULL  -- the cosignature's timestamp, POSIX seconds
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    document TEXT NOT NULL        -- Evidence.to_json()
);
"""


@dataclass(frozen=True)
class LogSummary:
    """What the state says of one log: the size last cosigned and when (None: never), the evidence kept."""

    cosigned_size: int | None
    cosigned_at: int | None
    evidence: Mapping[str, int]  # evidence kind (KIND_SAME_SIZE, KIND_BAD_PROOF) -> pieces kept


class StateUnavailable(Exception):
    """The state file could not be read or written (locked past the busy timeout, disk full, ...)."""


class WitnessTransaction:
    """One add-checkpoint's view of the state, inside its write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, origin: str) -> Stored | None:
        row = self._conn.execute("SELECT size, root, note FROM cosigned WHERE origin = ?", (origin,)).fetchone()
        if row is None:
            return None
        return Stored(int(row[0]), bytes(row[1]), row[2])

    def put(self, origin: str, size: int, root: bytes, note: str, cosignature: str, timestamp: int) -> None:
        self._conn.execute(
            "INSERT INTO cosigned (origin, size, root, note, cosignature, cosigned_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note, "
            "cosignature = excluded.cosignature, cosigned_at = excluded.cosigned_at",
            (origin, str(size), root, note, cosignature, timestamp),
        )

    def keep_evidence(self, evidence: Evidence, received_at: int) -> None:
        self._conn.execute(
            "INSERT INTO evidence (origin, received_at, document) VALUES (?, ?, ?)",
            (evidence.origin, received_at, evidence.to_json()),
        )


class WitnessState:
    """The state file. Each call opens its own connection, so request threads share nothing."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        try:
            conn = self._connect()
            try:
                conn.executescript(_SCHEMA)
            finally:
                conn.close()
        except sqlite3.Error as exc:  # not a database, a directory, no permission...
            raise StateUnavailable(f"{path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # a cosignature is returned only once its state is on disk
        return conn

    @contextmanager
    def transaction(self) -> Iterator[WitnessTransaction]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise StateUnavailable(str(exc)) from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield WitnessTransaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateUnavailable(str(exc)) from None
        finally:
            conn.close()

    def cosigned(self, origin: str) -> tuple[Stored, str] | None:
        """What was last cosigned for `origin` and the cosignature line(s) returned for it."""
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT size, root, note, cosignature FROM cosigned WHERE origin = ?", (origin,)
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else (Stored(int(row[0]), bytes(row[1]), row[2]), row[3])

    def evidence(self) -> list[Evidence]:
        """Every split-view evidence kept, oldest first."""
        conn = self._connect()
        try:
            rows = conn.execute("SELECT document FROM evidence ORDER BY id").fetchall()
        finally:
            conn.close()
        return [Evidence.from_json(row[0]) for row in rows]

    def summary(self) -> dict[str, LogSummary]:
        """Per origin: the size and time of its last cosigned checkpoint and the split-view evidence kept (two
        small reads, for the node's metrics); StateUnavailable if the file cannot be read."""
        try:
            conn = self._connect()
            try:
                cosigned = conn.execute("SELECT origin, size, cosigned_at FROM cosigned").fetchall()
                kept = conn.execute("SELECT origin, document FROM evidence").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StateUnavailable(str(exc)) from None
        counts: dict[str, Counter[str]] = {}
        for origin, document in kept:  # a few rows, if any: a split view is rare
            try:
                kind = Evidence.from_json(document).kind
            except ValueError:
                kind = "unreadable"
            counts.setdefault(origin, Counter())[kind] += 1
        out = {origin: LogSummary(int(size), int(at), {}) for origin, size, at in cosigned}
        for origin, by_kind in counts.items():
            found = out.get(origin, LogSummary(None, None, {}))
            out[origin] = LogSummary(found.cosigned_size, found.cosigned_at, dict(by_kind))
        return out
