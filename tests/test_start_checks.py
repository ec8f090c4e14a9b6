"""What an operator meets when a key file or the checkpoint file is wrong: one line naming the config key and
the file, the same at --check-config as at start; and a checkpoint file that stops being writable while the
node runs, said with its reason and without a flood of tracebacks."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from tests.federation import wait_for
from tests.support import (
    FakeClock,
    ServerProcess,
    load_config,
    new_lookup_code,
    new_national_id,
    run_module,
    running_node,
    write_config,
)
from transfer.client import RetryPolicy
from transfer.domain.errors import Unavailable
from transfer.ledger.note import generate_key
from transfer.server.app import StartRefused
from transfer.unavailable import UNAVAILABLE_LOG_SECONDS

NO_RETRY = RetryPolicy(attempts=1)


def _config(tmp_path: Path, pki: Path, *, log_lines: str = "", extra: str = "", key: Path | None = None) -> Path:
    """A SQLite node's configuration, with `log_lines` added to [log] and its log key file replaced by `key`."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}", extra=extra)
    text = path.read_text(encoding="utf-8")
    text = text.replace("checkpoint_interval_seconds = 0.2\n", f"checkpoint_interval_seconds = 0.2\n{log_lines}")
    if key is not None:
        text = text.replace(f'key_file = "{pki / "log.key"}"', f'key_file = "{key}"')
    path.write_text(text, encoding="utf-8")
    return path


def _refused_both_ways(config: Path) -> str:
    """The one line --check-config prints and the one line a start logs, which must say the same; returns it."""
    checked = run_module("transfer.server", "--check-config", "--config", str(config))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    (line,) = checked.stderr.splitlines()
    assert line.startswith("transfer-server: configuration error: ")
    message = line.removeprefix("transfer-server: configuration error: ")
    started = run_module("transfer.server", "--config", str(config))
    assert started.returncode == 1, started.stderr
    errors = [json.loads(line) for line in started.stderr.splitlines()]
    assert [e["msg"] for e in errors if e["level"] == "ERROR"] == [f"cannot start: {message}"], started.stderr
    assert not any("exc" in e for e in errors)
    return message


@pytest.mark.parametrize(
    ("what", "log_lines", "extra"),
    [
        ("log.key_file", "", ""),
        ("log.next_key_file", 'next_key_file = "{missing}"\n', ""),
        ("log.previous_vkey_files", 'previous_vkey_files = ["{missing}"]\n', ""),
        ("seal.key_file", "", '[seal]\nkey_file = "{missing}"\n'),
    ],
)
def test_a_missing_key_file_is_named_with_its_config_key(
    tmp_path: Path, pki: Path, what: str, log_lines: str, extra: str
) -> None:
    """A key file that does not exist: one line `<config key> <file>: cannot be read: <why>`, at --check-config
    and at start (it used to be `cannot start: [Errno 2] No such file or directory: '…'`, naming no key)."""
    missing = tmp_path / "nope.key"
    config = _config(
        tmp_path,
        pki,
        log_lines=log_lines.format(missing=missing),
        extra=extra.format(missing=missing),
        key=missing if what == "log.key_file" else None,
    )
    message = _refused_both_ways(config)
    assert message == f"{what} {missing}: cannot be read: No such file or directory"


def test_a_key_file_that_is_not_a_key_is_named_with_its_config_key(tmp_path: Path, pki: Path) -> None:
    """A log key file that is not UTF-8 text (it escaped as a UnicodeDecodeError traceback) or not a signed-note
    key: one line naming log.key_file and the file."""
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\xff\xfe\x00")
    assert _refused_both_ways(_config(tmp_path, pki, key=binary)) == (
        f"log.key_file {binary}: not a signed-note key: not UTF-8 text"
    )
    pem = pki / "node.key"
    assert _refused_both_ways(_config(tmp_path, pki, key=pem)).startswith(
        f"log.key_file {pem}: not a signed-note private key"
    )


@pytest.mark.parametrize(
    ("log_key", "log_lines", "seal_key", "first"),
    [
        ("seal.key", "", "seal.key", "log.key_file"),  # the reviewer's case
        ("log.key", "", "log.key", "log.key_file"),
        ("log.key", 'next_key_file = "{pki}/seal.key"\n', "seal.key", "log.next_key_file"),
    ],
)
def test_the_log_key_must_not_be_the_seal_key(
    tmp_path: Path, pki: Path, log_key: str, log_lines: str, seal_key: str, first: str
) -> None:
    """A log key (or next log key) that is the seal key is refused at --check-config and at start, naming both
    config keys and files (--check-config said "configuration is valid")."""
    config = _config(
        tmp_path,
        pki,
        key=pki / log_key,
        log_lines=log_lines.format(pki=pki),
        extra=f'[seal]\nkey_file = "{pki / seal_key}"\n',
    )
    message = _refused_both_ways(config)
    log_file = pki / ("seal.key" if first == "log.next_key_file" else log_key)
    assert message.startswith(f"{first} {log_file} and seal.key_file {pki / seal_key} hold the same key"), message


def test_a_checkpoint_signed_by_another_key_says_to_check_the_key_configuration_first(
    tmp_path: Path, pki: Path, clock: FakeClock
) -> None:
    """A start with another log key than the one that signed log.latest_checkpoint_file (a rotation done without
    log.previous_vkey_files): LATEST_CHECKPOINT_UNREADABLE names the key that signed the file and the configured
    ones, and says first to check log.key_file / log.previous_vkey_files, before the restore advice (which came
    alone). With the old vkey in log.previous_vkey_files the node starts."""
    config = _config(tmp_path, pki)
    with running_node(load_config(config), pki, clock) as node:
        node.client("province-admin").register_school("S1", "Trường S1")
        latest = load_config(config).latest_checkpoint_file
        wait_for("a first checkpoint", lambda: latest.is_file() or None)
    old_vkey = (pki / "log.vkey").read_text(encoding="utf-8").strip()
    name = old_vkey.split("+")[0]
    skey, new_vkey = generate_key(name)
    new_key = tmp_path / "new-log.key"
    new_key.write_text(skey + "\n", encoding="utf-8")
    rotated = _config(tmp_path, pki, key=new_key)
    with pytest.raises(StartRefused) as info, running_node(load_config(rotated), pki, clock):
        pass
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("LATEST_CHECKPOINT_UNREADABLE: ")
    old_id, new_id = "+".join(old_vkey.split("+")[:2]), "+".join(new_vkey.split("+")[:2])
    assert f"signed by the key {old_id}" in message and f"log.key_file {new_key} ({new_id})" in message, message
    check = message.index("check log.key_file and log.previous_vkey_files")
    assert check < message.index("restore the newest backup")
    assert str(load_config(rotated).latest_checkpoint_file) in message

    previous = tmp_path / "old-log.vkey"
    previous.write_text(old_vkey + "\n", encoding="utf-8")
    fixed = _config(tmp_path, pki, key=new_key, log_lines=f'previous_vkey_files = ["{previous}"]\n')
    with running_node(load_config(fixed), pki, clock) as node:
        assert node.node is not None and node.node.previous_log_vkeys == (old_vkey,)


@pytest.mark.parametrize("where", ["proc", "file"])
def test_check_config_refuses_a_checkpoint_file_that_cannot_be_written(tmp_path: Path, pki: Path, where: str) -> None:
    """log.latest_checkpoint_file in a directory the node cannot write (under /proc; below a file): --check-config
    said "configuration is valid" and only the start failed; now both print the same line."""
    if where == "proc":
        latest = Path("/proc/hocba-test/latest-checkpoint")
    else:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("", encoding="utf-8")
        latest = blocker / "latest-checkpoint"
    config = _config(tmp_path, pki, log_lines=f'latest_checkpoint_file = "{latest}"\n')
    message = _refused_both_ways(config)
    assert message.startswith(f"log.latest_checkpoint_file {latest}: cannot be written: "), message


def test_check_config_writes_nothing_for_a_checkpoint_file_it_can_write(tmp_path: Path, pki: Path) -> None:
    """--check-config accepts a checkpoint file in a directory the node can write or make, and leaves neither the
    file nor the directory behind (the start makes them)."""
    latest = tmp_path / "state" / "sub" / "latest-checkpoint"
    config = _config(tmp_path, pki, log_lines=f'latest_checkpoint_file = "{latest}"\n')
    checked = run_module("transfer.server", "--check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert not (tmp_path / "state").exists()
    latest.parent.mkdir(parents=True)
    checked = run_module("transfer.server", "--check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert list(latest.parent.iterdir()) == []


def test_a_checkpoint_file_that_cannot_be_written_is_said_with_its_reason_at_most_every_10_s(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """log.latest_checkpoint_file replaced by a directory while the node runs: each failed publication counts as
    LATEST_CHECKPOINT_UNWRITABLE (it was UNEXPECTED), and is logged in one ERROR line naming the file and the OS
    error, without a traceback, at most every 10 s with the count of those not logged (it was a traceback every
    round); a publication a peer's receipt waits for fails with UNAVAILABLE and that reason (it was an OSError). readiness turns NOT_SERVING, and SERVING once
    the file can be written again."""
    caplog.set_level(logging.INFO)
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    config = load_config(path)
    latest = config.latest_checkpoint_file
    with running_node(config, pki, clock, path) as node:
        assert node.node is not None
        the_node = node.node
        admin = node.client("province-admin")
        admin.register_school("S1", "Trường S1")
        admin.register_school("S2", "Trường S2")
        wait_for("a first checkpoint", lambda: latest.is_file() or None)
        latest.unlink()
        (latest / "in-the-way").mkdir(parents=True)  # os.replace cannot put the file there
        began = time.monotonic()
        s1 = node.client("school-S1", retry=NO_RETRY)
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), 1)
        s1.initiate_transfer(code, "S2")  # the log grew: a checkpoint is due
        wait_for("failed rounds", lambda: the_node.publish_failures["LATEST_CHECKPOINT_UNWRITABLE"] >= 5 or None)
        wait_for("readiness NOT_SERVING", lambda: (not the_node._log_signs) or None)
        lines = [r for r in caplog.records if r.getMessage().startswith("checkpoint publication failed;")]
        elapsed = time.monotonic() - began
        failures = the_node.publish_failures["LATEST_CHECKPOINT_UNWRITABLE"]
        assert the_node.publish_failures["UNEXPECTED"] == 0
        assert 1 <= len(lines) <= 1 + elapsed // UNAVAILABLE_LOG_SECONDS + 1
        for line in lines:
            assert line.levelno == logging.ERROR and line.exc_info is None
            assert vars(line)["reason"] == "LATEST_CHECKPOINT_UNWRITABLE"
            assert str(latest) in line.getMessage() and "Is a directory" in line.getMessage(), line.getMessage()
            assert "\n" not in line.getMessage()
        assert sum(1 + vars(line)["not_logged"] for line in lines) <= failures
        with pytest.raises(Unavailable) as info:  # as a peer's receipt asks for one
            node.run(the_node.publish_checkpoint)
        assert info.value.reason == "LATEST_CHECKPOINT_UNWRITABLE"

        (latest / "in-the-way").rmdir()
        latest.rmdir()
        wait_for("readiness SERVING again", lambda: the_node._log_signs or None)
        assert latest.is_file()
    said = [r.getMessage() for r in caplog.records if r.name == "transfer.health"]
    assert "checkpoints are published again: readiness SERVING" in said


def test_a_misspelt_section_in_the_environment_is_named_not_ignored_in_silence(
    tmp_path: Path, pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRANSFER_DATBASE_URL (a section misspelt) would leave the node on its configured database without a word:
    --check-config and the start name it in a warning; the CLI's and the tests' own TRANSFER_* variables are not
    named (a misspelt key of a known section is refused outright, as tests/test_config.py shows)."""
    from transfer.server.config import unused_environment

    env = {"TRANSFER_DATBASE_URL": "postgresql://x/y", "TRANSFER_PKI": "pki", "TRANSFER_TEST_PG": "x",
           "TRANSFER_DATABASE_URL": "sqlite:///n.db", "HOME": "/root"}  # fmt: skip
    assert unused_environment(env) == ["TRANSFER_DATBASE_URL"]
    monkeypatch.setenv("TRANSFER_DATBASE_URL", "postgresql://x/y")
    config = _config(tmp_path, pki)
    checked = run_module("transfer.server", "--check-config", "--config", str(config))
    assert (checked.returncode, checked.stdout) == (0, "configuration is valid\n"), checked.stderr
    assert checked.stderr.splitlines() == [
        "transfer-server: warning: environment variable TRANSFER_DATBASE_URL names no configuration section and is "
        "ignored (TRANSFER_<SECTION>_<KEY>: docs/operations.md, Configuration)"
    ]
    server = ServerProcess(config, tmp_path / "server.log")
    server.start()
    server.stop()
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines() if line.startswith("{")]
    warned = [e for e in lines if e.get("variable") == "TRANSFER_DATBASE_URL"]
    assert len(warned) == 1 and warned[0]["level"] == "WARNING", lines
