"""The systemd units in deploy/systemd: valid for systemd, and their commands work as written.

Each unit is checked as systemd reads it (`systemd-analyze verify`, with the install path replaced by
this checkout's venv), and its commands are run the way systemd would run them ($$ and %% unescaped):
the node unit's pre-start check against a real configuration, the backup unit's shell line against a
serving node, whose copy and manifest it makes and checks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, ServerProcess, write_config
from transfer.server.config import ServerLimits

UNITS = ROOT / "deploy" / "systemd"
INSTALLED_BIN = "/opt/hocba/venv/bin/"
BIN = str(Path(sys.executable).parent) + "/"


def _unit(name: str) -> dict[str, list[str]]:
    """A unit file's keys (section.key -> its values, in order); comments and blank lines left out."""
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        keys.setdefault(f"{section}.{key}", []).append(value)
    return keys


def _as_run(command: str) -> str:
    """A command line as systemd runs it: specifiers and variables unescaped, the venv moved to this checkout's."""
    return command.replace(INSTALLED_BIN, BIN).replace("$$", "$").replace("%%", "%")


def test_each_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say of the node, backup and timer units."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    names = sorted(p.name for p in UNITS.iterdir())
    assert names == ["hocba-backup.service", "hocba-backup.timer", "hocba-node.service"]
    for name in names:
        (tmp_path / name).write_text((UNITS / name).read_text().replace(INSTALLED_BIN, BIN))
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in names)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_node_unit_checks_its_configuration_and_allows_enough_open_files(tmp_path: Path, pki: Path) -> None:
    """ExecStartPre is transfer-server --check-config on the ExecStart's configuration, and LimitNOFILE covers the
    default max_connections plus the 256 files the node keeps for itself, so the node's own check passes."""
    unit = _unit("hocba-node.service")
    (start,) = unit["Service.ExecStart"]
    (check,) = unit["Service.ExecStartPre"]
    assert check == start + " --check-config"
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert int(unit["Service.LimitNOFILE"][0]) >= ServerLimits().max_connections + 256
    config = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}")
    done = subprocess.run(
        _as_run(check).replace("/etc/hocba/node.toml", str(config)).split(),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "configuration is valid"), done.stderr


@pytest.mark.slow
def test_the_backup_unit_copies_a_serving_node_and_checks_the_copy(tmp_path: Path, pki: Path) -> None:
    """The backup unit's shell line, run as systemd would, writes one dated copy of a serving SQLite node into
    its state directory with its manifest beside it, then --describe checks it (exit 0)."""
    unit = _unit("hocba-backup.service")
    assert unit["Service.Type"] == ["oneshot"]
    (line,) = unit["Service.ExecStart"]
    assert "hocba-backups" in unit["Service.StateDirectory"][0].split()
    db = tmp_path / "node.db"
    config = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{db}")
    copies = tmp_path / "backups"
    copies.mkdir()
    server = ServerProcess(config, tmp_path / "server.log")
    server.start()
    try:
        command = _as_run(line).replace("/etc/hocba/node.toml", str(config))
        command = command.replace("/var/lib/hocba-backups", str(copies))
        argv = ["/bin/sh", "-c", command.split("/bin/sh -c ", 1)[1].strip("'")]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    made = sorted(p.name for p in copies.iterdir())
    assert len(made) == 2 and re.fullmatch(r"node-\d{8}T\d{4}Z\.db", made[0]), made
    assert made[1] == made[0] + ".manifest.json"
    assert f"matches its manifest {copies / made[1]}" in done.stdout, done.stdout
    assert "integrity: ok" in done.stdout, done.stdout
