"""Back up a SQLite node while it serves: `transfer-backup --config node.toml DEST`.

Makes a consistent copy of the node's database with SQLite's online backup API
(storage/backup.py: one snapshot, the node's writes go on meanwhile), writes it atomically
to DEST (never over an existing file without --force), and beside it DEST.manifest.json,
which says what the copy holds: schema revision, log size, the latest checkpoint in it,
the numbers of records and transfers, and the copy's SHA-256. The same is printed (as
JSON with --json). `transfer-backup --describe COPY` says it again from a copy, and checks
the copy against its manifest.

What a backup is: the database file and its manifest, nothing else. The node's
`log.latest_checkpoint_file` is deliberately left out: a restore is checked against it
(the node refuses a database behind what it signed), so it must never come back with an
old copy. Key files are not included either (docs/operations.md, Log keys).

PostgreSQL is refused with the documented procedure (pg_basebackup and WAL archiving,
or pg_dump): docs/operations.md, Backups and restores.
Exit status: 0 copied (or described, matching its manifest), 1 nothing copied (the source is
not a node's SQLite database, the destination exists, an I/O error) or a copy that does not
match its manifest, 2 usage (arguments, configuration, a PostgreSQL database).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from storage.backup import BackupRefused, CopyDescription, backup_sqlite, describe, write_atomically
from storage.database import describe as describe_url
from storage.database import is_sqlite, sqlite_file, url_problem
from storage.migrate import head_revision
from transfer.server.config import ConfigError, load

MANIFEST_FORMAT = "hocba-transfer-backup/1"
EXCLUDED = (
    "log.latest_checkpoint_file: the latest checkpoint the node signed stays where it is; a restored copy is "
    "checked against it and must never be restored with it (docs/operations.md, Backups and restores)"
)
POSTGRESQL_REFUSED = (
    "transfer-backup copies SQLite databases only. Back up a PostgreSQL node with PostgreSQL's tools: "
    "pg_basebackup with continuous WAL archiving (point-in-time recovery, which can bring back every entry "
    "up to the last signed checkpoint), or pg_dump for a logical copy; see docs/operations.md, Backups and restores"
)


def manifest_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".manifest.json")


def _root(copy: CopyDescription) -> str | None:
    return base64.b64encode(copy.checkpoint_root).decode("ascii") if copy.checkpoint_root is not None else None


def _facts(copy: CopyDescription) -> dict[str, Any]:
    return {
        "file": copy.path.name,
        "bytes": copy.size_bytes,
        "sha256": copy.sha256,
        "schema_revision": copy.schema_revision,
        "log_size": copy.log_size,
        "checkpoint": None
        if copy.checkpoint_size is None
        else {
            "size": copy.checkpoint_size,
            "root": _root(copy),
            "origin": copy.checkpoint_origin,
            "note": copy.checkpoint_note,
        },
        "records": copy.records,
        "transfers": copy.transfers,
        "integrity": copy.integrity,
    }


def _print_facts(copy: CopyDescription, out: TextIO) -> None:
    head = head_revision()
    behind = "" if copy.schema_revision == head else f" (this version's is {head}: the node migrates it at start-up)"
    print(f"  schema revision: {copy.schema_revision}{behind}", file=out)
    print(f"  log: {copy.log_size:,} entries", file=out)
    if copy.checkpoint_size is None:
        print("  latest checkpoint: none signed in this copy", file=out)
    else:
        print(
            f"  latest checkpoint: size {copy.checkpoint_size:,}, root {_root(copy)}, origin {copy.checkpoint_origin}",
            file=out,
        )
    print(f"  records: {copy.records:,}, transfers: {copy.transfers:,}", file=out)
    print(f"  integrity: {copy.integrity}", file=out)
    print(f"  sha256: {copy.sha256} ({copy.size_bytes:,} bytes)", file=out)


class _TerminalProgress:
    """`copied N/M pages` on one line of stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        pct = done * 100 // total if total else 100
        self.stream.write(f"\r  copied {done:,}/{total:,} pages ({pct}%)")
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _source(ns: argparse.Namespace) -> tuple[Path, Path | None]:
    """The SQLite file to copy and the node's latest-checkpoint file (when known); raises ValueError for usage."""
    latest: Path | None = None
    if ns.config is not None:
        cfg = load(ns.config)
        url, latest = cfg.database_url, cfg.latest_checkpoint_file
    else:
        url = ns.database
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(f"--database: {problem}")
    if not is_sqlite(url):
        raise ValueError(f"{describe_url(url)}: {POSTGRESQL_REFUSED}")
    path = sqlite_file(url)
    if path is None:
        raise ValueError(f"{url}: an in-memory database has nothing to back up")
    return Path(path), latest


def _describe_copy(path: Path, as_json: bool) -> int:
    copy = describe(path)
    manifest = manifest_path(path)
    problems: list[str] = []
    recorded: dict[str, Any] | None = None
    if manifest.exists():
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        facts = _facts(copy)
        problems = [
            f"{key}: the manifest says {recorded.get(key)!r}, the copy holds {facts[key]!r}"
            for key in facts
            if key != "file" and recorded.get(key) != facts[key]
        ]
    if as_json:
        print(json.dumps({**_facts(copy), "manifest": str(manifest) if recorded else None, "problems": problems}))
    else:
        print(f"{path}:")
        _print_facts(copy, sys.stdout)
        if recorded is None:
            print(f"  no manifest ({manifest} does not exist)")
        elif not problems:
            print(f"  matches its manifest {manifest} (taken {recorded.get('taken_at')})")
        for p in problems:
            print(f"  DOES NOT MATCH ITS MANIFEST: {p}")
    return 1 if problems or copy.integrity != "ok" else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="transfer-backup",
        description="Copy a SQLite node's database consistently while it serves, and say what the copy holds.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="the node's configuration (its database.url is copied)")
    source.add_argument("--database", metavar="URL", help="the database to copy: sqlite:///path.db")
    source.add_argument("--describe", type=Path, metavar="COPY", help="say what a copy holds; check its manifest")
    parser.add_argument("dest", type=Path, nargs="?", help="the copy to write (and DEST.manifest.json beside it)")
    parser.add_argument("--force", action="store_true", help="replace DEST and its manifest if they exist")
    parser.add_argument("--json", action="store_true", help="print the manifest as one JSON object")
    parser.add_argument("--step-pages", type=int, default=1024, help="pages copied per step (default 1024)")
    ns = parser.parse_args(argv)
    if ns.describe is not None:
        if ns.dest is not None:
            parser.error("--describe takes no DEST")
        try:
            return _describe_copy(ns.describe, ns.json)
        except (BackupRefused, OSError, ValueError) as exc:
            print(f"transfer-backup: {exc}", file=sys.stderr)
            return 1
    if ns.dest is None:
        parser.error("DEST is required")
    if ns.step_pages < 1:
        parser.error("--step-pages must be at least 1")
    try:
        db, latest = _source(ns)
    except (ConfigError, ValueError) as exc:
        print(f"transfer-backup: {exc}", file=sys.stderr)
        return 2
    dest: Path = ns.dest
    manifest = manifest_path(dest)
    progress = _TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
    taken_at = datetime.now(UTC)
    try:
        try:
            result = backup_sqlite(
                db, dest, force=ns.force, also_absent=(manifest,), step_pages=ns.step_pages, progress=progress
            )
        finally:
            if progress is not None:
                progress.end()
        document = {
            "format": MANIFEST_FORMAT,
            **_facts(result.copy),
            "source": str(db),
            "taken_at": taken_at.isoformat().replace("+00:00", "Z"),
            "seconds": round(result.seconds, 3),
            "pages": result.pages,
            "steps": result.steps,
            "excluded": [EXCLUDED],
        }
        write_atomically(manifest, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    except (BackupRefused, OSError) as exc:
        print(f"transfer-backup: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a partial copy is removed; a copy without its manifest is not a backup
        print("transfer-backup: interrupted; take the backup again", file=sys.stderr)
        return 130
    if ns.json:
        print(json.dumps({**document, "manifest": str(manifest)}))
        return 0
    copy = result.copy
    print(f"backup written: {dest}")
    print(
        f"  taken from {db} in {result.seconds:.2f} s, one snapshot "
        f"({result.pages:,} pages in {result.steps:,} step{'s' if result.steps != 1 else ''})"
    )
    _print_facts(copy, sys.stdout)
    print(f"  manifest: {manifest}")
    if latest is not None:
        print(f"  not included: log.latest_checkpoint_file ({latest}); a restore is checked against it")
    else:
        print("  not included: the node's log.latest_checkpoint_file; a restore is checked against it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
