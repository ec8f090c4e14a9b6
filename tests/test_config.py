"""Node configuration: TOML, environment overrides, and clear errors."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from transfer.server.__main__ import main as server_main
from transfer.server.config import ConfigError, ServerLimits, load

MINIMAL = """
[node]
province = "01"
[tls]
ca_file = "pki/ca.pem"
cert_file = "pki/node.pem"
key_file = "pki/node.key"
[database]
url = "sqlite:///var/node.db"
[log]
key_file = "pki/log.key"
"""


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    """Unset keys take documented defaults; relative paths resolve against the config file."""
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL)
    c = load(p, env={})
    assert c.deadline_working_days == 5 and c.sqlite_synchronous == "FULL"
    assert c.utc_offset == timedelta(hours=7) and c.listen == "127.0.0.1:50051"
    assert c.ca_file == tmp_path / "pki/ca.pem"
    assert c.database_url == f"sqlite:///{tmp_path / 'var/node.db'}"
    assert c.latest_checkpoint_file == tmp_path / "var/node.latest-checkpoint"  # beside the SQLite file
    assert c.database_unavailable_after_seconds == 4.0
    p.write_text(MINIMAL + 'latest_checkpoint_file = "state/latest"\n')
    assert load(p, env={}).latest_checkpoint_file == tmp_path / "state/latest"


def test_environment_overrides(tmp_path: Path) -> None:
    """TRANSFER_<SECTION>_<KEY> overrides the file, with types converted."""
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL)
    env = {
        "TRANSFER_DATABASE_URL": "postgresql://u@127.0.0.1:5432/db",
        "TRANSFER_TRANSFERS_DEADLINE_WORKING_DAYS": "8",
        "TRANSFER_TRANSFERS_HOLIDAYS": "2026-09-02, 2026-09-03",
        "TRANSFER_DATABASE_AUTO_MIGRATE": "false",
        "TRANSFER_DATABASE_UNAVAILABLE_AFTER_SECONDS": "2.5",
        "TRANSFER_LOG_LATEST_CHECKPOINT_FILE": "/var/lib/hocba-state/latest-checkpoint",
        "UNRELATED": "x",
    }
    c = load(p, env=env)
    assert c.database_url == "postgresql://u@127.0.0.1:5432/db"
    assert c.database_unavailable_after_seconds == 2.5
    assert c.deadline_working_days == 8 and not c.auto_migrate
    assert c.holidays == (date(2026, 9, 2), date(2026, 9, 3))
    assert c.latest_checkpoint_file == Path("/var/lib/hocba-state/latest-checkpoint")


def test_a_postgresql_database_needs_a_latest_checkpoint_file(tmp_path: Path) -> None:
    """PostgreSQL has no file to keep the latest checkpoint beside: the configuration must name one."""
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL.replace("sqlite:///var/node.db", "postgresql://u@127.0.0.1:5432/db"))
    with pytest.raises(ConfigError, match=r"log\.latest_checkpoint_file is required with a PostgreSQL database"):
        load(p, env={})
    p.write_text(p.read_text() + 'latest_checkpoint_file = "state/latest"\n')
    assert load(p, env={}).latest_checkpoint_file == tmp_path / "state/latest"


def test_server_limits_have_defaults_and_overrides(tmp_path: Path) -> None:
    """The [server] limits default to the documented values; the file and the environment set them."""
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL)
    assert load(p, env={}).limits == ServerLimits()
    assert ServerLimits().handshake_timeout_seconds == 5 and ServerLimits().max_watch_streams_per_caller == 32
    p.write_text(MINIMAL + "[server]\nmax_concurrent_streams = 8\nmax_connection_age_grace_seconds = 0\n")
    limits = load(p, env={"TRANSFER_SERVER_KEEPALIVE_TIME_SECONDS": "30"}).limits
    assert (limits.max_concurrent_streams, limits.max_connection_age_grace_seconds) == (8, 0.0)
    assert limits.keepalive_time_seconds == 30.0 and limits.max_connections == 3_000


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (MINIMAL.replace('"01"', '"00"'), {}, "node.province"),
        (MINIMAL + "[nope]\n", {}, "unknown section"),
        (MINIMAL.replace("[database]", "[database]\ncolour = 1"), {}, "unknown key database.colour"),
        (MINIMAL.replace('url = "sqlite:///var/node.db"', ""), {}, "database.url is required"),
        (MINIMAL, {"TRANSFER_TRANSFERS_DEADLINE_WORKING_DAYS": "many"}, "cannot read"),
        (MINIMAL + "[transfers]\nholidays = ['2026-13-01']\n", {}, "not a YYYY-MM-DD"),
        (MINIMAL + "[transfers]\nholidays = ['2026-W36-3']\n", {}, "not a YYYY-MM-DD"),
        (MINIMAL + "[transfers]\nholidays = ['２０２６-０９-０２']\n", {}, "not a YYYY-MM-DD"),
        (MINIMAL + "[transfers]\nutc_offset = '+０７:００'\n", {}, "like \\+07:00"),
        (MINIMAL + "[pages]\nlock_completed = '０６-３０'\n", {}, "not a MM-DD"),
        (MINIMAL, {"TRANSFER_TRANSFERS_DEADLINE_WORKING_DAYS": "５"}, "cannot read"),
        (MINIMAL, {"TRANSFER_DATABASE_UNAVAILABLE_AFTER_SECONDS": "١٠"}, "cannot read"),
        (MINIMAL + "[transfers]\ndeadline_working_days = '5'\n", {}, "expected int"),
        ("[node\n", {}, "node.toml"),
        (MINIMAL + "[transfers]\nutc_offset = '+15:00'\n", {}, "between -12:00 and \\+14:00"),
        (MINIMAL + "[transfers]\nutc_offset = '+07:75'\n", {}, "like \\+07:00"),
        (MINIMAL + "[idempotency]\nretention_days = 0\n", {}, "retention_days: between 1"),
        (MINIMAL, {"TRANSFER_DATABASE_URI": "postgresql://x"}, "TRANSFER_DATABASE_URI: unknown key database.uri"),
        (MINIMAL, {"TRANSFER_DATABASE_URL": "mysql://u@h/db"}, "database.url: mysql: expected sqlite"),
        (MINIMAL, {"TRANSFER_DATABASE_URL": "node.db"}, "database.url: not a database URL"),
        (MINIMAL + "[server]\nshutdown_grace_seconds = 0\n", {}, "shutdown_grace_seconds: above 0"),
        (MINIMAL, {"TRANSFER_SERVER_SHUTDOWN_GRACE_SECONDS": "-5"}, "shutdown_grace_seconds: above 0"),
        (MINIMAL, {"TRANSFER_SERVER_HEALTH_PROBE_SECONDS": "0"}, "health_probe_seconds: between 0.1 and 3600"),
        (MINIMAL, {"TRANSFER_CALENDAR_NOT_HOLIDAYS": "2027-02-30"}, "calendar.not_holidays: '2027-02-30' is not"),
        (MINIMAL.replace("[database]", "[database]\nunavailable_after_seconds = 0.5"), {}, "between 1 and 600"),
        (MINIMAL, {"TRANSFER_DATABASE_UNAVAILABLE_AFTER_SECONDS": "3600"}, "unavailable_after_seconds: between 1"),
        (MINIMAL + "[server]\nhandshake_timeout_seconds = 0\n", {}, "handshake_timeout_seconds: between 0.5 and 120"),
        (MINIMAL, {"TRANSFER_SERVER_HANDSHAKE_TIMEOUT_SECONDS": "nan"}, "handshake_timeout_seconds: between"),
        (MINIMAL + "[server]\nmax_watch_streams_per_caller = 0\n", {}, "max_watch_streams_per_caller: between 1"),
        (MINIMAL + "[server]\nmax_concurrent_streams = 1.5\n", {}, "max_concurrent_streams: expected int"),
        (MINIMAL, {"TRANSFER_SERVER_MAX_CONNECTIONS": "0"}, "max_connections: between 1 and 1000000"),
        (MINIMAL, {"TRANSFER_SERVER_KEEPALIVE_TIME_SECONDS": "inf"}, "keepalive_time_seconds: between 1 and 7200"),
        (MINIMAL + "[server]\nmax_connection_age_grace_seconds = -1\n", {}, "age_grace_seconds: between 0 and"),
        (MINIMAL + "[server]\nmax_ping_strikes = 0\n", {}, "max_ping_strikes: between 1 and 100"),
    ],
)
def test_bad_configuration_is_explained(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    """Each configuration mistake raises ConfigError naming the key."""
    p = tmp_path / "node.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(p, env=env)


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        (MINIMAL.encode().replace(b'"01"', b'"01\xff"'), {}, "can't decode"),  # not UTF-8
        (MINIMAL + "checkpoint_interval_seconds = nan\n", {}, "checkpoint_interval_seconds: must be positive and"),
        (MINIMAL + "[transfers]\nexpiry_sweep_seconds = inf\n", {}, "expiry_sweep_seconds: must be positive and fin"),
        (MINIMAL, {"TRANSFER_LOG_CHECKPOINT_INTERVAL_SECONDS": "inf"}, "checkpoint_interval_seconds: must be pos"),
        (MINIMAL.replace('"pki/ca.pem"', '"pki/ca\\u0000.pem"'), {}, "tls.ca_file: must not contain a NUL"),
        (MINIMAL + '[[peers]]\nprovince = "79"\naddress = "h:1"\nca_file = "c\\u0000"\nseal_vkey_file = "s"\n'
         'log_vkey_file = "l"\n', {}, "peers\\[0\\].ca_file: must not contain a NUL"),
    ],
)  # fmt: skip
def test_unreadable_or_unusable_values_are_configuration_errors(
    tmp_path: Path, data: str | bytes, env: dict[str, str], message: str
) -> None:
    """A file that is not UTF-8, a NaN or infinite interval, a NUL in a path: ConfigError naming the key (the
    first escaped as UnicodeDecodeError; the others were accepted, to fail or wait for ever later)."""
    p = tmp_path / "node.toml"
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(ConfigError, match=message):
        load(p, env=env)


def test_server_exits_2_on_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The server refuses to start on a bad configuration, with status 2 and one line."""
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL.replace('"01"', '"00"'))
    assert server_main(["--config", str(p)]) == 2
    assert "configuration error: node.province" in capsys.readouterr().err
    assert server_main(["--config", str(tmp_path / "missing.toml")]) == 2


def test_check_config_reads_the_files_it_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--check-config fails, naming the file, when a key or certificate the configuration names is missing or unusable."""
    from transfer.devpki import make_dev_pki

    make_dev_pki(tmp_path / "pki", "01", ["S1"])
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL)
    assert server_main(["--check-config", "--config", str(p)]) == 0
    for old, new in (("pki/node.key", "pki/missing.key"), ("pki/log.key", "pki/ca.pem")):
        p.write_text(MINIMAL.replace(old, new))
        capsys.readouterr()
        assert server_main(["--check-config", "--config", str(p)]) == 1
        assert new in capsys.readouterr().err


def _check_config_with_open_files(config: Path, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    """`transfer-server --check-config` in a process that may open `soft` files (at most `hard`)."""
    return subprocess.run(
        [sys.executable, "-m", "transfer.server", "--check-config", "--config", str(config)],
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_max_connections_must_fit_the_open_file_limit(tmp_path: Path) -> None:
    """A process that may not open server.max_connections files and some is refused, saying which limit to
    change; one whose hard limit allows it raises its own soft limit and starts."""
    from transfer.devpki import make_dev_pki

    make_dev_pki(tmp_path / "pki", "01", ["S1"])
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL + "[server]\nmax_connections = 1000\n")
    refused = _check_config_with_open_files(p, 512, 1024)
    assert refused.returncode == 1, refused.stderr
    assert "server.max_connections = 1000 needs 1256 open files" in refused.stderr
    assert "at most 1024 (ulimit -n" in refused.stderr
    raised = _check_config_with_open_files(p, 512, 2048)
    assert raised.returncode == 0, raised.stderr


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ('witness_vkey_files = ["{pki}/log.vkey"]\n', "must be a cosignature/v1 key"),
        ('witness_vkey_files = ["{pki}/witness.vkey"]\nwitness_quorum = 2\n', "witness_quorum: between 1 and 1"),
        ('witness_vkey_files = ["{pki}/witness.vkey", "{pki}/witness.vkey"]\n', "is named twice"),
        ("witness_quorum = 1\n", "witness_quorum: 0 without witness_vkey_files"),
        ('witness_vkey_files = ["{pki}/absent.vkey"]\n', "absent.vkey cannot be read"),
    ],
)
def test_a_peers_witness_policy_is_checked(tmp_path: Path, pki: Path, keys: str, message: str) -> None:
    """A peer's pinned witness policy ([[peers]] witness_vkey_files, witness_quorum) is refused when a key is not a
    cosignature/v1 key, named twice or unreadable, or the quorum is out of range: ConfigError naming the peer."""
    peer = '[[peers]]\nprovince = "79"\naddress = "h:1"\nca_file = "c"\nseal_vkey_file = "s"\nlog_vkey_file = "l"\n'
    p = tmp_path / "node.toml"
    p.write_text(MINIMAL + '[seal]\nkey_file = "k"\n' + peer + keys.format(pki=pki))
    with pytest.raises(ConfigError, match=re.escape("peers[0].") + ".*" + re.escape(message)):
        load(p, env={})
    p.write_text(MINIMAL + '[seal]\nkey_file = "k"\n' + peer + f'witness_vkey_files = ["{pki}/witness.vkey"]\n')
    (peer_config,) = load(p, env={}).peers
    assert peer_config.witness_quorum == 1 and peer_config.witness_vkeys == (
        (pki / "witness.vkey").read_text().strip(),
    )
