"""An operator's mistakes at start-up: each is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage import migrate
from storage.database import sync_url
from tests.support import ROOT, write_config
from transfer.server.importer import main as import_main
from transfer.server.verify import main as verify_main

pytestmark = pytest.mark.slow


def run_server(config: Path, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Start `python -m transfer.server` expecting it to refuse; its exit status and output lines."""
    proc = subprocess.run(
        [sys.executable, "-m", "transfer.server", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def refusal(lines: list[str]) -> str:
    """The node's one-line reason for not starting (JSON log), after checking that no traceback was printed."""
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
    entry = json.loads(lines[-1])
    assert entry["level"] == "ERROR" and entry["msg"].startswith("cannot start: "), entry
    return str(entry["msg"])


def test_an_unmigrated_database_is_refused_without_auto_migrate(tmp_path: Path, pki: Path, database_url: str) -> None:
    """With database.auto_migrate = false, a database without the schema is refused, naming transfer-migrate."""
    cfg = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    status, lines = run_server(cfg, {"TRANSFER_DATABASE_AUTO_MIGRATE": "false"})
    assert status == 1
    assert "transfer-migrate" in refusal(lines)
    assert not (tmp_path / "node.port").exists()


@pytest.mark.parametrize("auto_migrate", ["true", "false"])
def test_a_database_newer_than_the_code_is_refused(
    tmp_path: Path, pki: Path, database_url: str, auto_migrate: str
) -> None:
    """A database migrated by a newer version (a revision this code does not know) is refused with one line."""
    migrate.upgrade(database_url)
    engine = create_engine(sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    cfg = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    status, lines = run_server(cfg, {"TRANSFER_DATABASE_AUTO_MIGRATE": auto_migrate})
    assert status == 1
    assert "schema revision 9999" in refusal(lines)
    assert migrate.current_revision(database_url) == "9999"


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_urls(tmp_path: Path) -> list[str]:
    return [
        f"postgresql://hocba:secret@127.0.0.1:{_closed_port()}/hocba",  # no server there
        f"sqlite:///{tmp_path / 'no-such-dir' / 'node.db'}",  # a directory that does not exist
    ]


def test_an_unreachable_database_stops_the_server_with_one_line(tmp_path: Path, pki: Path) -> None:
    """A database the node cannot reach or open: exit 1 with one line naming it (password hidden), no traceback."""
    for i, url in enumerate(unreachable_urls(tmp_path)):
        cfg = write_config(tmp_path / f"node{i}.toml", pki=pki, database_url=url)
        status, lines = run_server(cfg)
        assert status == 1
        message = refusal(lines)
        assert "cannot connect to" in message and "secret" not in message


def test_the_tools_report_an_unreachable_database_in_one_line(
    tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """transfer-migrate, transfer-import and transfer-verify-log: one line on stderr and a non-zero status."""
    csv_path = tmp_path / "records.csv"
    csv_path.write_text("lookup_code,national_id,level,custodian_school\n", encoding="utf-8")
    for i, url in enumerate(unreachable_urls(tmp_path)):
        cfg = write_config(tmp_path / f"node{i}.toml", pki=pki, database_url=url)
        statuses = (
            migrate.main([url]),
            import_main(["--config", str(cfg), str(csv_path)]),
            verify_main(["--config", str(cfg), "--quiet"]),
        )
        assert statuses == (1, 2, 2)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 3, err
        assert all("cannot connect to" in line and "secret" not in line for line in err), err
    assert not (tmp_path / "no-such-dir").exists()


def test_verify_log_makes_no_database_file(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """transfer-verify-log on a SQLite path with no file there says so and leaves no file behind."""
    db = tmp_path / "node.db"
    cfg = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{db}")
    assert verify_main(["--config", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such database file" in err[0], err
    assert list(tmp_path.glob("node.db*")) == []


def test_a_port_in_use_stops_the_server_with_one_line(tmp_path: Path, pki: Path) -> None:
    """node.listen on a port another process holds: exit 1 with one line naming the address, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        cfg = write_config(
            tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}", listen=listen
        )
        status, lines = run_server(cfg)
    assert status == 1
    assert f"cannot listen on {listen}" in refusal(lines)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("TRANSFER_TLS_KEY_FILE", "ca.pem", "not an unencrypted PEM private key"),
        ("TRANSFER_TLS_KEY_FILE", "school-S1.key", "is not the key of tls.cert_file"),
        ("TRANSFER_TLS_CERT_FILE", "node.key", "tls.cert_file"),
        ("TRANSFER_TLS_CA_FILE", "node.key", "tls.ca_file"),
    ],
)
def test_unusable_tls_files_stop_the_server_before_the_database_is_made(
    tmp_path: Path, pki: Path, setting: str, value: str, message: str
) -> None:
    """A TLS file that is not what its key says: one line naming the key, and no database file created."""
    db = tmp_path / "node.db"
    cfg = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{db}")
    status, lines = run_server(cfg, {setting: str(pki / value)})
    assert status == 1
    assert message in refusal(lines)
    assert not db.exists()


def test_unusable_signing_and_peer_files_stop_the_server_with_one_line(tmp_path: Path, pki: Path) -> None:
    """signing.ca_file or a peer's ca_file that holds no certificate: one line naming the file, exit 1."""
    peer = f"""
[seal]
key_file = "{pki / "seal.key"}"

[[peers]]
province = "79"
address = "127.0.0.1:1"
ca_file = "{pki / "node.key"}"
seal_vkey_file = "{pki / "seal.vkey"}"
log_vkey_file = "{pki / "log.vkey"}"
"""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    for cfg in (
        write_config(tmp_path / "signing.toml", pki=pki, database_url=url, signing_ca=pki / "node.key"),
        write_config(tmp_path / "peer.toml", pki=pki, database_url=url, extra=peer),
    ):
        status, lines = run_server(cfg)
        assert status == 1
        assert f"{pki / 'node.key'}: no PEM certificate" in refusal(lines)
