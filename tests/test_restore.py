"""A node never signs over a log it has lost.

The node keeps a copy of the latest checkpoint it signed outside its database
(`log.latest_checkpoint_file`; by default beside a SQLite file, required with
PostgreSQL). Started on a database that no longer holds that tree (restored
from an older backup, or another node's), or without the file on a database
that holds signed checkpoints, it refuses to start: signing would publish a
second, different tree of a size it already signed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.support import (
    FakeClock,
    create_pg_database,
    drop_pg_database,
    load_config,
    new_lookup_code,
    running_node,
    write_config,
)
from transfer.devpki import make_dev_pki
from transfer.server.app import StartRefused
from transfer.server.config import Config
from transfer.server.verify import main as verify_log


def _config(tmp_path: Path, name: str, pki: Path, url: str, latest: Path) -> tuple[Config, Path]:
    path = write_config(tmp_path / f"{name}.toml", pki=pki, database_url=url, latest_checkpoint_file=latest)
    return load_config(path), path


def _serve(config: Config, pki: Path, clock: FakeClock, schools: list[str], transfers: int = 0, **options: bool) -> str:
    """Start the node, register `schools`, log `transfers` transfers from S1 to S2, stop it;
    the latest checkpoint's note."""
    with running_node(config, pki, clock, **options) as node:
        admin = node.client("province-admin")
        for code in schools:
            admin.register_school(code, f"Trường {code}")
        s1, s2 = node.client("school-S1"), node.client("school-S2")
        for _ in range(transfers):
            code = new_lookup_code()
            s1.register_record(code, f"{uuid.uuid4().int % 10**12:012d}", 1)
            s2.accept_transfer(s1.initiate_transfer(code, "S2").transfer.id)
        assert node.node is not None
        node.run(node.node.publish_checkpoint)
        note = admin.get_checkpoint().checkpoint
        # On the file before anyone could be given it, not only at stop.
        assert config.latest_checkpoint_file is not None
        assert config.latest_checkpoint_file.read_text(encoding="utf-8") == note
        return note


def _refused(config: Config, pki: Path, clock: FakeClock, reason: str) -> str:
    with pytest.raises(StartRefused) as info, running_node(config, pki, clock):
        pass
    message = str(info.value)
    assert message.startswith(reason) and str(config.latest_checkpoint_file) in message
    return message


def test_a_database_that_lost_signed_entries_is_refused(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """Another, empty database; another database with a longer, different log; then the node's own again."""
    latest = tmp_path / "state" / "latest-checkpoint"
    config, _ = _config(tmp_path, "node", pki, database_url, latest)
    note = _serve(config, pki, clock, ["S1", "S2"], transfers=3)
    assert latest.read_text(encoding="utf-8") == note  # written at stop, synced
    size = int(note.splitlines()[1])
    assert size == 6

    if database_url.startswith("sqlite"):
        other_url = f"sqlite:///{tmp_path / 'other.db'}"
    else:
        base = os.environ["TRANSFER_TEST_PG"]
        other_url = create_pg_database(base)
    try:
        other, _ = _config(tmp_path, "other", pki, other_url, latest)
        message = _refused(other, pki, clock, "LOG_BEHIND_SIGNED_CHECKPOINT")
        assert f"holds 0 log entries, but this node has signed a checkpoint of {size}" in message

        # The other database gets a log of its own, longer: its tree at `size` is another one.
        elsewhere, _ = _config(tmp_path, "elsewhere", pki, other_url, tmp_path / "elsewhere-latest")
        _serve(elsewhere, pki, clock, ["S1", "S2"], transfers=size)
        _refused(other, pki, clock, "LOG_DIVERGES_FROM_SIGNED_CHECKPOINT")
        assert latest.read_text(encoding="utf-8") == note  # refused starts leave the copy alone
    finally:
        if not database_url.startswith("sqlite"):
            drop_pg_database(base, other_url)

    # Its own database: it starts, and the copy follows the log as it grows.
    again = _serve(config, pki, clock, [], transfers=1)
    assert int(again.splitlines()[1]) > size and latest.read_text(encoding="utf-8") == again


def test_a_restored_backup_is_refused_until_the_lost_entries_are_back(
    tmp_path: Path, pki: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite copied while the node was stopped, more entries signed, the old copy put back: the node
    (and `transfer-server`, exit status 1) refuses to start, naming the reason; the newer copy starts."""
    db = tmp_path / "node.db"
    latest = tmp_path / "latest-checkpoint"
    config, path = _config(tmp_path, "node", pki, f"sqlite:///{db}", latest)
    _serve(config, pki, clock, ["S1", "S2"], transfers=2)
    backup = tmp_path / "backup"
    backup.mkdir()
    for f in tmp_path.glob("node.db*"):
        shutil.copy2(f, backup / f.name)
    note = _serve(config, pki, clock, [], transfers=1)
    newer = tmp_path / "newer"
    newer.mkdir()
    for f in tmp_path.glob("node.db*"):
        shutil.move(f, newer / f.name)
    for f in backup.iterdir():
        shutil.copy2(f, tmp_path / f.name)

    _refused(config, pki, clock, "LOG_BEHIND_SIGNED_CHECKPOINT")
    proc = subprocess.run(
        [sys.executable, "-m", "transfer.server", "--config", str(path)],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "LOG_BEHIND_SIGNED_CHECKPOINT" in proc.stderr and "docs/operations.md" in proc.stderr
    assert latest.read_text(encoding="utf-8") == note
    # The operator's check before starting: transfer-verify-log says the same, naming the file.
    capsys.readouterr()
    assert verify_log(["--config", str(path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "entries this log signed are missing" in out and str(latest) in out

    for f in tmp_path.glob("node.db*"):
        f.unlink()
    for f in newer.iterdir():
        shutil.copy2(f, tmp_path / f.name)
    held = tmp_path / "from-a-receipt"
    held.write_text(note, encoding="utf-8")
    assert verify_log(["--config", str(path), "--quiet", "--checkpoint", str(held)]) == 0
    assert "2 held outside the database" in capsys.readouterr().out
    assert _serve(config, pki, clock, []) == note  # nothing new to sign: the same checkpoint


def test_an_unreadable_or_foreign_copy_is_refused(
    tmp_path: Path,
    pki: Path,
    clock: FakeClock,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    latest = tmp_path / "latest-checkpoint"
    config, path = _config(tmp_path, "node", pki, f"sqlite:///{tmp_path / 'node.db'}", latest)
    note = _serve(config, pki, clock, ["S1", "S2"], transfers=1)

    latest.write_text("not a checkpoint\n", encoding="utf-8")
    _refused(config, pki, clock, "LATEST_CHECKPOINT_UNREADABLE")

    # Signed by another log's key (same origin): not this node's.
    other_pki = tmp_path_factory.mktemp("other-pki")
    make_dev_pki(other_pki, "01", ["S1", "S2"])
    foreign, _ = _config(tmp_path, "foreign", other_pki, f"sqlite:///{tmp_path / 'foreign.db'}", latest)
    latest.unlink()
    foreign_note = _serve(foreign, other_pki, clock, ["S1", "S2"], transfers=1)
    assert latest.read_text(encoding="utf-8") == foreign_note
    _refused(config, pki, clock, "LATEST_CHECKPOINT_UNREADABLE")
    capsys.readouterr()
    assert verify_log(["--config", str(path), "--quiet"]) == 1
    assert "is not one this log signed" in capsys.readouterr().out

    latest.write_text(note, encoding="utf-8")
    assert _serve(config, pki, clock, []) == note


def test_a_checkpoint_on_the_file_but_not_in_the_database_is_no_fork(
    tmp_path: Path, pki: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash after the file was written but before the checkpoint was stored leaves the file ahead of
    the database's checkpoints, over entries the database holds: the node starts, signs that tree again
    (the same root), and the file does not go back. A lost file is refused (LATEST_CHECKPOINT_MISSING)
    unless the operator accepts it for one start, which gets a warning and writes the file again."""
    db = tmp_path / "node.db"
    latest = tmp_path / "latest-checkpoint"
    config, _ = _config(tmp_path, "node", pki, f"sqlite:///{db}", latest)
    note = _serve(config, pki, clock, ["S1", "S2"], transfers=2)
    size = int(note.splitlines()[1])
    with sqlite3.connect(db) as conn:  # as if the node had stopped between the file and the database
        (trigger,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'log_checkpoints_no_delete'").fetchone()
        conn.execute("DROP TRIGGER log_checkpoints_no_delete")
        conn.execute("DELETE FROM log_checkpoints WHERE size = ?", (size,))
        conn.execute(trigger)
    conn.close()
    again = _serve(config, pki, clock, [])
    assert again.splitlines()[:3] == note.splitlines()[:3]  # same origin, size and root, signed anew
    assert latest.read_text(encoding="utf-8") == again

    latest.unlink()
    with pytest.raises(StartRefused) as info, running_node(config, pki, clock):
        pass
    assert str(info.value).startswith("LATEST_CHECKPOINT_MISSING") and "--accept-missing-checkpoint-file" in str(
        info.value
    )
    assert not latest.exists()
    with caplog.at_level(logging.WARNING):
        _serve(config, pki, clock, [], accept_missing_checkpoint_file=True)
    assert any("latest_checkpoint_file is missing" in r.getMessage() for r in caplog.records)
    assert latest.read_text(encoding="utf-8") == again
    _serve(config, pki, clock, [])  # and the next start checks against it again


def _copy_database(url: str, tmp_path: Path, name: str) -> str:
    """A copy of the (stopped) node's database, as a backup holds it: its URL."""
    if url.startswith("sqlite"):
        src = Path(url.removeprefix("sqlite:///"))
        dst = tmp_path / name
        dst.mkdir()
        for f in src.parent.glob(src.name + "*"):
            shutil.copy2(f, dst / f.name)
        return f"sqlite:///{dst / src.name}"
    base = os.environ["TRANSFER_TEST_PG"]
    copy = base.rsplit("/", 1)[0] + f"/t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{copy.rsplit("/", 1)[1]}" TEMPLATE "{url.rsplit("/", 1)[1]}"')
    return copy


def test_a_restored_backup_is_refused_with_the_default_configuration(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """The issue's measurement, with no log.latest_checkpoint_file set by hand (SQLite: its default beside the
    database; PostgreSQL: the key the configuration must carry): a node that signed a larger tree, put back on
    its backup, refuses to start with LOG_BEHIND_SIGNED_CHECKPOINT and says how to recover, instead of signing
    a second tree at the sizes it signed; without the file it refuses too (LATEST_CHECKPOINT_MISSING)."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    config = load_config(path)
    if database_url.startswith("sqlite"):
        assert config.latest_checkpoint_file == tmp_path / "node.latest-checkpoint"
    _serve(config, pki, clock, ["S1", "S2"], transfers=2)
    backup_url = _copy_database(database_url, tmp_path, "backup")
    try:
        note = _serve(config, pki, clock, [], transfers=3)
        signed = int(note.splitlines()[1])
        if database_url.startswith("sqlite"):  # the backup put back in place of the database
            db = Path(database_url.removeprefix("sqlite:///"))
            for f in tmp_path.glob("node.db*"):
                f.unlink()
            for f in (tmp_path / "backup").iterdir():
                shutil.copy2(f, db.parent / f.name)
            restored = config
        else:  # the node pointed at the restored database, its state directory untouched
            restored = dataclasses.replace(config, database_url=backup_url)
        message = _refused(restored, pki, clock, "LOG_BEHIND_SIGNED_CHECKPOINT")
        assert f"this node has signed a checkpoint of {signed}" in message
        assert "point-in-time recovery" in message and "new log.origin" in message
        assert config.latest_checkpoint_file.read_text(encoding="utf-8") == note

        config.latest_checkpoint_file.unlink()  # "deleting the file forks again": not any more
        with pytest.raises(StartRefused) as info, running_node(restored, pki, clock):
            pass
        assert str(info.value).startswith("LATEST_CHECKPOINT_MISSING")
    finally:
        if not database_url.startswith("sqlite"):
            drop_pg_database(os.environ["TRANSFER_TEST_PG"], backup_url)


def test_a_checkpoint_file_that_cannot_be_written_stops_the_start(tmp_path: Path, pki: Path, clock: FakeClock) -> None:
    """log.latest_checkpoint_file in a place the node cannot write: refused at start, in one line naming it,
    rather than at the first checkpoint."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    latest = blocker / "latest-checkpoint"
    config, _ = _config(tmp_path, "node", pki, f"sqlite:///{tmp_path / 'node.db'}", latest)
    with pytest.raises(StartRefused) as info, running_node(config, pki, clock):
        pass
    assert str(info.value).startswith(f"log.latest_checkpoint_file {latest}: cannot be written")
