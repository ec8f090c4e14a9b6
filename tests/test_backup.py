"""transfer-backup: a consistent copy of a serving SQLite node, what it holds, and restoring it.

The copy is one snapshot taken with SQLite's online backup API while client threads keep
writing through a real node process; it verifies on its own (transfer-verify-log --database)
and its manifest's numbers are the copy's. Restored in place of the node's database, with
the node's log.latest_checkpoint_file kept where it is, it is refused when the node signed
more since (LOG_BEHIND_SIGNED_CHECKPOINT) and starts when it holds the last signed tree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from storage.migrate import head_revision, upgrade
from tests.support import (
    PATIENT,
    ROOT,
    ServerProcess,
    create_pg_database,
    drop_pg_database,
    new_lookup_code,
    new_national_id,
    with_schools,
    write_config,
)
from transfer.client import ClientTls, TransferClient
from transfer.server.backup import main as backup_main
from transfer.v1 import common_pb2

pytestmark = pytest.mark.slow

T = TypeVar("T")


def _client(server: ServerProcess, pki: Path, identity: str) -> TransferClient:
    return TransferClient(server.address, ClientTls.from_pki(pki, identity), timeout=10, retry=PATIENT)


def _node(tmp_path: Path, pki: Path) -> tuple[ServerProcess, Path, Path]:
    """A node process on tmp_path/node.db (its latest-checkpoint file beside it, by default): server, config, db."""
    db = tmp_path / "node.db"
    config = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{db}")
    return ServerProcess(config, tmp_path / "server.log"), config, db


def _transfers(server: ServerProcess, pki: Path, n: int) -> None:
    with _client(server, pki, "school-S1") as s1, _client(server, pki, "school-S2") as s2:
        for _ in range(n):
            code = new_lookup_code()
            s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
            s2.accept_transfer(s1.initiate_transfer(code, "S2").transfer.id)


def _run(*args: str, stderr: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        check=False,
        timeout=120,
    )


def _backup(*args: str) -> subprocess.CompletedProcess[str]:
    return _run("transfer.server.backup", *args)


def _verify(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run("transfer.server.verify", "--config", str(config), "--quiet", *args)


def _restore(copy: Path, db: Path) -> None:
    """The restore drill's step 2 for SQLite: the old files (with their -wal and -shm) moved aside, the copy in."""
    aside = db.parent / "replaced"
    aside.mkdir(exist_ok=True)
    for f in db.parent.glob(db.name + "*"):
        f.rename(aside / f.name)
    shutil.copyfile(copy, db)


def _what_the_copy_holds(copy: Path) -> dict[str, Any]:
    """The copy's numbers, read with sqlite3 directly (not with the code under test)."""
    conn = sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True)
    try:
        latest = conn.execute("SELECT size, root, note FROM log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return {
            "schema_revision": conn.execute("SELECT version_num FROM alembic_version").fetchone()[0],
            "log_size": conn.execute("SELECT count(*) FROM log_leaves").fetchone()[0],
            "checkpoint": {"size": latest[0], "root": base64.b64encode(latest[1]).decode(), "note": latest[2]},
            "records": conn.execute("SELECT count(*) FROM records").fetchone()[0],
            "transfers": conn.execute("SELECT count(*) FROM transfers").fetchone()[0],
            "sha256": hashlib.sha256(copy.read_bytes()).hexdigest(),
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        }
    finally:
        conn.close()


def _under_load(server: ServerProcess, pki: Path, take: Callable[[], T]) -> tuple[T, int]:
    """`take()` while three client threads make transfers (at least 60 before, 6 after it, at most 1,200 in all):
    its result and the number of transfers made when the load stopped."""
    done = [0]
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            with _client(server, pki, "school-S1") as s1, _client(server, pki, "school-S2") as s2:
                for _ in range(400):  # bounded, whatever happens
                    if stop.is_set():
                        return
                    code = new_lookup_code()
                    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
                    s2.accept_transfer(s1.initiate_transfer(code, "S2").transfer.id)
                    with lock:
                        done[0] += 1
        except BaseException as exc:
            errors.append(exc)

    def wait_for(n: int) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not errors:
            with lock:
                if done[0] >= n:
                    return done[0]
            time.sleep(0.02)
        raise AssertionError(f"the load did not reach {n} transfers: {errors}")

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(60)
        taken = take()
        made = wait_for(done[0] + 6)  # the node went on writing: it signs more than the copy holds
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    return taken, made


def test_a_backup_under_load_verifies_and_is_refused_once_the_node_signed_more(tmp_path: Path, pki: Path) -> None:
    """Taken while three client threads make transfers through a node process: one consistent snapshot whose log
    verifies with transfer-verify-log against its own checkpoints and whose manifest states its numbers; put back in
    place of the database after the node signed further, the node refuses to start (LOG_BEHIND_SIGNED_CHECKPOINT)."""
    server, config, db = _node(tmp_path, pki)
    server.start()
    with with_schools(server, pki):
        copy = tmp_path / "backups" / "node-copy.db"
        copy.parent.mkdir()
        made, after_backup = _under_load(
            server, pki, lambda: _backup("--config", str(config), str(copy), "--json", "--step-pages", "8")
        )
        assert server.terminate() == 0

    assert made.returncode == 0, made.stderr
    printed = json.loads(made.stdout)
    manifest = json.loads((copy.parent / "node-copy.db.manifest.json").read_text(encoding="utf-8"))
    assert printed == {**manifest, "manifest": str(copy.parent / "node-copy.db.manifest.json")}
    assert manifest["steps"] > 1  # copied in steps, each between the node's commits
    holds = _what_the_copy_holds(copy)
    assert holds["journal_mode"] == "delete"  # one file: no -wal to lose
    assert not list(copy.parent.glob("*.partial*")) and not list(copy.parent.glob("node-copy.db-*"))
    for key in ("schema_revision", "log_size", "records", "transfers", "sha256"):
        assert manifest[key] == holds[key], key
    assert manifest["schema_revision"] == head_revision()
    assert manifest["checkpoint"]["size"] == holds["checkpoint"]["size"]
    assert manifest["checkpoint"]["root"] == holds["checkpoint"]["root"]
    assert manifest["checkpoint"]["note"] == holds["checkpoint"]["note"]
    assert manifest["integrity"] == "ok" and manifest["bytes"] == copy.stat().st_size
    assert "log.latest_checkpoint_file" in manifest["excluded"][0]
    # One snapshot: each of the three clients has at most one record without its transfer, or one transfer
    # offered (one entry) and not yet accepted (the second); nothing else is half there.
    assert 0 <= holds["records"] - holds["transfers"] <= 3
    assert 2 * holds["transfers"] - 3 <= holds["log_size"] <= 2 * holds["transfers"]
    latest = tmp_path / "node.latest-checkpoint"
    signed = int(latest.read_text(encoding="utf-8").splitlines()[1])
    assert 0 < holds["log_size"] < signed and 2 * after_backup <= signed

    # The copy's log verifies on its own (its checkpoints, the node's keys); checked against the checkpoint the
    # node signed since, it is behind; neither read changed a byte of it.
    verified = _verify(config, "--database", f"sqlite:///{copy}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"log verified: {holds['log_size']:,} entries" in verified.stdout
    behind = _verify(config, "--database", f"sqlite:///{copy}", "--checkpoint", str(latest))
    assert behind.returncode == 1 and "entries this log signed are missing" in behind.stdout
    described = _backup("--describe", str(copy))
    assert described.returncode == 0 and "matches its manifest" in described.stdout, described.stdout

    # Restored in place, the latest-checkpoint file kept: refused, saying why and how to recover.
    note = latest.read_text(encoding="utf-8")
    _restore(copy, db)
    with pytest.raises(RuntimeError) as refused:
        server.start()
    assert server.proc is not None and server.proc.returncode == 1
    assert "LOG_BEHIND_SIGNED_CHECKPOINT" in str(refused.value)
    assert f"holds {holds['log_size']} log entries, but this node has signed a checkpoint of {signed}" in str(
        refused.value
    )
    assert latest.read_text(encoding="utf-8") == note
    assert _verify(config).returncode == 1  # the operator's check says the same before any start


def test_a_backup_after_the_last_checkpoint_restores_and_starts(tmp_path: Path, pki: Path) -> None:
    """A backup of the stopped node holds its last signed checkpoint: restored after the database is lost, the log
    verifies against the node's latest-checkpoint file, the node starts, goes on, and its log verifies again."""
    server, config, db = _node(tmp_path, pki)
    server.start()
    with with_schools(server, pki):
        _transfers(server, pki, 5)
        assert server.terminate() == 0
        latest = tmp_path / "node.latest-checkpoint"
        note = latest.read_text(encoding="utf-8")

        copy = tmp_path / "node-stopped.db"
        made = _backup("--config", str(config), str(copy))
        assert made.returncode == 0, made.stderr
        holds = _what_the_copy_holds(copy)
        assert holds["checkpoint"]["note"] == note and holds["log_size"] == int(note.splitlines()[1]) == 10
        assert f"log: {holds['log_size']:,} entries" in made.stdout
        assert f"not included: log.latest_checkpoint_file ({latest})" in made.stdout

        _restore(copy, db)  # the database lost (its -wal and -shm with it), the copy in its place
        assert _verify(config).returncode == 0
        server.start()
        _transfers(server, pki, 1)
        assert server.terminate() == 0
        assert int(latest.read_text(encoding="utf-8").splitlines()[1]) == 12
        verified = _verify(config)
        assert verified.returncode == 0 and "log verified: 12 entries" in verified.stdout, verified.stdout


@pytest.fixture
def node_db(tmp_path: Path) -> Path:
    """A node's (empty) database, as transfer-migrate makes it."""
    db = tmp_path / "node.db"
    upgrade(f"sqlite:///{db}")
    return db


def test_an_existing_destination_is_replaced_only_with_force(
    node_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy or a manifest already at the destination: nothing written, exit status 1, --force named; with
    --force both are replaced."""
    dest = tmp_path / "out" / "copy.db"
    dest.parent.mkdir()
    dest.write_bytes(b"yesterday's backup")
    assert backup_main(["--database", f"sqlite:///{node_db}", str(dest)]) == 1
    assert "exists" in capsys.readouterr().err and dest.read_bytes() == b"yesterday's backup"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.db"]

    dest.unlink()
    manifest = dest.parent / "copy.db.manifest.json"
    manifest.write_text("{}", encoding="utf-8")
    assert backup_main(["--database", f"sqlite:///{node_db}", str(dest)]) == 1
    assert "--force" in capsys.readouterr().err and not dest.exists()

    dest.write_bytes(b"yesterday's backup")
    assert backup_main(["--database", f"sqlite:///{node_db}", str(dest), "--force"]) == 0
    assert _what_the_copy_holds_no_checkpoint(dest)["log_size"] == 0
    assert json.loads(manifest.read_text(encoding="utf-8"))["sha256"] == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.db", "copy.db.manifest.json"]
    assert "latest checkpoint: none signed in this copy" in capsys.readouterr().out


def _what_the_copy_holds_no_checkpoint(copy: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True)
    try:
        return {"log_size": conn.execute("SELECT count(*) FROM log_leaves").fetchone()[0]}
    finally:
        conn.close()


def test_a_postgresql_database_is_refused_with_the_procedure(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL URL, given or from the node's configuration: exit status 2, nothing written, and the message
    names pg_basebackup with WAL archiving, pg_dump and the runbook's section."""
    dest = tmp_path / "copy.db"
    config = write_config(tmp_path / "node.toml", pki=pki, database_url="postgresql://hocba@127.0.0.1:1/hocba")
    for args in (["--database", "postgresql://hocba:secret@127.0.0.1:1/hocba"], ["--config", str(config)]):
        assert backup_main([*args, str(dest)]) == 2
        err = capsys.readouterr().err
        for words in ("SQLite databases only", "pg_basebackup", "WAL archiving", "point-in-time", "pg_dump"):
            assert words in err
        assert "docs/operations.md, Backups and restores" in err and "secret" not in err
    assert list(tmp_path.iterdir()) == [config]


def test_a_file_that_is_not_a_nodes_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another application's SQLite file, a file that is not SQLite, a path with nothing there: exit status 1 with
    a line saying which, no copy, no temporary file left, and the missing file not created."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, but long enough to have a header " * 10, encoding="utf-8")
    missing = tmp_path / "missing.db"
    out = tmp_path / "out"
    out.mkdir()
    cases = {
        other: "not a node's database (it has no alembic_version, records, transfers, log_leaves",
        text: "not a SQLite database",
        missing: "no such database file",
    }
    for source, words in cases.items():
        assert backup_main(["--database", f"sqlite:///{source}", str(out / "copy.db")]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"transfer-backup: {source}") and words in err, err
        assert list(out.iterdir()) == []
    assert not missing.exists()
    assert backup_main(["--describe", str(other)]) == 1
    assert "not a node's database" in capsys.readouterr().err


def test_progress_goes_to_stderr_only_on_a_terminal(node_db: Path, tmp_path: Path) -> None:
    """With stderr a terminal, a line of pages copied; piped, none (and the summary on stdout either way)."""
    primary, secondary = os.openpty()
    try:
        on_tty = _run(
            "transfer.server.backup", "--database", f"sqlite:///{node_db}", str(tmp_path / "a.db"), "--step-pages", "4",
            stderr=secondary,
        )  # fmt: skip
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the writing side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert on_tty.returncode == 0 and "backup written" in on_tty.stdout
    assert b"copied" in shown and b"pages (100%)" in shown
    piped = _backup("--database", f"sqlite:///{node_db}", str(tmp_path / "b.db"), "--step-pages", "4")
    assert piped.returncode == 0 and piped.stderr == "" and "backup written" in piped.stdout


def _pg(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the drill's second engine
def test_the_restore_drill_on_postgresql_with_a_logical_copy(tmp_path: Path, pki: Path, database_url: str) -> None:
    """docs/operations.md's drill on PostgreSQL: pg_dump under load restored with pg_restore into a new database
    verifies with transfer-verify-log --database; the node pointed at it after signing more refuses to start
    (LOG_BEHIND_SIGNED_CHECKPOINT); a dump of the stopped node, restored, starts, goes on and verifies."""
    base, pg_url = os.environ["TRANSFER_TEST_PG"], database_url
    latest = tmp_path / "state" / "latest-checkpoint"  # apart from the database, as PostgreSQL requires
    config = write_config(tmp_path / "node.toml", pki=pki, database_url=pg_url, latest_checkpoint_file=latest)
    servers = [ServerProcess(config, tmp_path / "server.log")]
    copies: list[str] = []
    try:
        server = servers[0]
        server.start()
        with _client(server, pki, "province-admin") as admin:
            for code in ("S1", "S2"):
                admin.register_school(code, f"Trường {code}")
        under_load = tmp_path / "under-load.dump"
        _under_load(server, pki, lambda: _pg("pg_dump", "-Fc", "-f", str(under_load), "-d", pg_url))
        assert server.terminate() == 0
        signed = int(latest.read_text(encoding="utf-8").splitlines()[1])

        copies.append(create_pg_database(base))
        _pg("pg_restore", "--no-owner", "-d", copies[0], str(under_load))
        verified = _verify(config, "--database", copies[0])
        assert verified.returncode == 0 and "log verified" in verified.stdout, verified.stdout + verified.stderr
        behind = _verify(config, "--database", copies[0], "--checkpoint", str(latest))
        assert behind.returncode == 1 and "entries this log signed are missing" in behind.stdout

        servers.append(ServerProcess(config, tmp_path / "restored.log", env={"TRANSFER_DATABASE_URL": copies[0]}))
        with pytest.raises(RuntimeError) as refused:
            servers[-1].start()
        assert "LOG_BEHIND_SIGNED_CHECKPOINT" in str(refused.value)
        assert f"but this node has signed a checkpoint of {signed}" in str(refused.value)

        stopped = tmp_path / "stopped.dump"
        _pg("pg_dump", "-Fc", "-f", str(stopped), "-d", pg_url)
        copies.append(create_pg_database(base))
        _pg("pg_restore", "--no-owner", "-d", copies[1], str(stopped))
        assert _verify(config, "--database", copies[1], "--checkpoint", str(latest)).returncode == 0
        servers.append(ServerProcess(config, tmp_path / "second.log", env={"TRANSFER_DATABASE_URL": copies[1]}))
        servers[-1].start()
        _transfers(servers[-1], pki, 1)
        assert servers[-1].terminate() == 0
        assert int(latest.read_text(encoding="utf-8").splitlines()[1]) == signed + 2
        again = _verify(config, "--database", copies[1], "--checkpoint", str(latest))
        assert again.returncode == 0 and f"log verified: {signed + 2:,} entries" in again.stdout, again.stdout
    finally:
        for s in servers:
            s.stop()
        for url in copies:
            drop_pg_database(base, url)


def test_describe_says_when_a_copy_no_longer_matches_its_manifest(
    node_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--describe recomputes a copy's facts: exit 0 naming the manifest it matches; a copy changed since (one byte
    appended) is exit 1, naming the sha256 that differs."""
    copy = tmp_path / "copy.db"
    assert backup_main(["--database", f"sqlite:///{node_db}", str(copy)]) == 0
    capsys.readouterr()
    assert backup_main(["--describe", str(copy)]) == 0
    assert f"matches its manifest {copy}.manifest.json" in capsys.readouterr().out
    with copy.open("ab") as f:
        f.write(b"\0")
    assert backup_main(["--describe", str(copy), "--json"]) == 1
    described = json.loads(capsys.readouterr().out)
    assert [p.split(":")[0] for p in described["problems"]] == ["bytes", "sha256"]
