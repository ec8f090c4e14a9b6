"""Node configuration: a TOML file, then environment overrides.

    [node]
    province = "01"                 # the node's province code (its id)
    name = "hocba.hanoi.example"    # the node's name
    domain = "hocba.invalid"        # the DNS name of the deployment (makes the log's origin unique)
    listen = "127.0.0.1:50051"      # host:port; port 0 picks a free one
    port_file = ""                  # if set, the bound port is written here

    [tls]                           # mutual TLS is mandatory
    ca_file = "pki/ca.pem"          # CA whose certificates clients present
    cert_file = "pki/node.pem"
    key_file = "pki/node.key"
    revoked = []                    # client certificates refused (CERTIFICATE_REVOKED): "serial:0x<hex>",
                                    # "serial:<decimal>" or "sha256:<hex of the DER certificate>"
    revoked_file = ""               # more of them, one a line ('#' starts a comment)
                                    # SIGHUP re-reads all of [tls] and the peers' ca_file (docs/operations.md)

    [database]
    url = "sqlite:///var/node.db"   # or postgresql://user@host:port/db
    sqlite_synchronous = "FULL"     # FULL: a commit is on disk when answered
    auto_migrate = true             # run Alembic migrations at start-up
    unavailable_after_seconds = 4   # PostgreSQL: a transaction waiting this long answers UNAVAILABLE

    [transfers]
    deadline_working_days = 5       # receiving school's time to decide
    inter_province_deadline_working_days = 8  # the same for transfers from other provinces
    holidays = ["2026-09-02"]       # days that are not working days (the same as calendar.extra_holidays)
    utc_offset = "+07:00"           # local time of deadlines
    expiry_sweep_seconds = 30       # how often overdue transfers expire

    [calendar]                      # days that are not working days, for deadlines
    public_holidays = "VN"          # Vietnam's public holidays (Tết included); "" for none
    extra_holidays = ["2027-02-11"] # more days off (a province's own, one the government adds)
    not_holidays = ["2027-11-24"]   # public holidays that are working days here after all

    [log]
    key_file = "pki/log.key"        # Ed25519 key signing checkpoints (signed-note skey)
    origin = ""                     # checkpoints' first line; default: <node.domain>/province/<province>/log
    next_key_file = ""              # during a key rotation: the new key, signing every checkpoint too
    previous_vkey_files = []        # after one: the retired keys' vkeys, checking older checkpoints
    checkpoint_interval_seconds = 1 # how often a grown log gets a new checkpoint
    latest_checkpoint_file = "state/latest-checkpoint"  # a copy of the latest signed checkpoint, kept
                                    # outside the database: the node will not start on a database
                                    # that no longer holds that tree (a restored backup). Default
                                    # with SQLite: <database file without suffix>.latest-checkpoint
                                    # beside it; required with PostgreSQL
    witness_quorum = 1              # how many of log.witnesses must cosign a checkpoint for it to
                                    # count as witnessed; default: all of them (0 without witnesses)
    witness_startup_seconds = 10    # how long the start-up check waits for the witnesses' sizes

    [[log.witnesses]]               # one table per witness cosigning this log's checkpoints (C2SP
    name = "witness.example.org/w1" # tlog-witness); the name is its key's name
    vkey = "witness.example.org/w1+1a2b3c4d+BF..."  # its cosignature/v1 verifier key, or:
    # vkey_file = "witnesses/w1.vkey"
    url = "https://witness.example.org"  # POST <url>/add-checkpoint

    [signing]
    ca_file = "pki/signing-ca.pem"  # CAs of teachers' signing certificates (PEM bundle)

    [pages]
    lock_completed = "06-30"        # pages of pupils who completed the year lock then
    lock_supplementary = "08-15"    # pages of pupils needing supplementary assessment

    [seal]
    key_file = "pki/seal.key"       # Ed25519 key sealing packages and receipts sent to peers

    [[peers]]                       # one table per peer node (another province)
    province = "79"
    address = "node79.example:50051"
    server_name = "node79.example"  # the name its TLS certificate carries
    ca_file = "peers/79/ca.pem"     # the CA that issued its node certificate
    seal_vkey_file = "peers/79/seal.vkey"
    log_vkey_file = "peers/79/log.vkey"
    log_origin = ""                 # its log's origin; default: the name of the key in log_vkey_file
                                    # (C2SP: a log key is named after its origin)
    witness_vkey_files = []         # optional: the cosignature/v1 vkeys of the peer's witnesses, pinned;
    witness_quorum = 0              # with them, how many must cosign (default: all): the node then keeps
                                    # a witnessed proof bundle of each receipt the peer gives it

    [witness]                       # optional: this node cosigns its peers' checkpoints (C2SP tlog-witness)
    listen = "0.0.0.0:7380"         # host:port of its HTTP endpoint (POST /add-checkpoint)
    key_file = "keys/witness.key"   # the witness's own Ed25519 key (never the log or seal key)
    state_file = "state/witness.sqlite"  # what it cosigned per peer; default with SQLite:
                                    # <database file without suffix>.witness.sqlite beside it;
                                    # required with PostgreSQL
    name = "hocba.example.vn/province/01/witness"  # optional: the key's name, checked at start

    [metrics]
    listen = "127.0.0.1:9464"       # host:port of the Prometheus /metrics endpoint (plain HTTP);
                                    # empty or absent: no endpoint (docs/operations.md, Monitoring)

    [idempotency]
    retention_days = 30             # how long a request_id is remembered

    [server]
    shutdown_grace_seconds = 10     # in-flight calls get this long on SIGTERM
    max_batch = 128                 # commands per group commit
    health_probe_seconds = 5        # how often the database is probed for the readiness health status
    handshake_timeout_seconds = 5   # a connection must finish TLS and HTTP/2 set-up within this
    max_connections = 3000          # open connections at once; more are closed at once
    max_concurrent_streams = 100    # calls at once on one connection
    max_watch_streams_per_caller = 32  # WatchTransfers streams one caller may hold open
    max_connection_idle_seconds = 600  # a connection without calls for this long is closed
    max_connection_age_seconds = 3600  # every connection is closed after about this long...
    max_connection_age_grace_seconds = 600  # ...once its calls end, or this much later
    keepalive_time_seconds = 60     # a connection with calls open is pinged after this long quiet...
    keepalive_timeout_seconds = 20  # ...and closed, with its calls, if the ping is not answered in this
    min_client_ping_interval_seconds = 30  # clients' keepalive pings may come this often at most...
    max_ping_strikes = 2            # ...and the connection is closed after this many that come sooner

    [logging]
    level = "INFO"
    format = "json"                 # or "text"
    reads = "debug"                 # successful reads' call lines: "debug", "info" or "sample:0.01"

Every key except the peers' can be overridden by an environment variable
named TRANSFER_<SECTION>_<KEY>, e.g. TRANSFER_DATABASE_URL. Relative paths are
resolved against the config file's directory.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from storage.database import UNAVAILABLE_AFTER_S, sqlite_file, url_problem
from transfer.domain.provinces import is_province
from transfer.ledger.note import NoteError
from transfer.ledger.witnessed import cosignature_verifier
from transfer.revocation import revoked_entry_problem
from transfer.server.workcalendar import COUNTRIES


class ConfigError(ValueError):
    """The configuration is unusable; the message says which key and why."""


@dataclass(frozen=True)
class PeerConfig:
    """Another province's node this node exchanges transfers with."""

    province: str
    address: str
    ca_file: Path
    seal_vkey_file: Path
    log_vkey_file: Path
    server_name: str = ""
    log_origin: str = ""  # "" : the name of the key in log_vkey_file
    # The peer's witness policy, pinned: its witnesses' cosignature/v1 vkeys and how many must cosign
    # (docs/federation.md, "Witnessed bundles of the peer's receipts"); none: receipts are kept as sealed.
    witness_vkeys: tuple[str, ...] = ()
    witness_quorum: int = 0


@dataclass(frozen=True)
class PeerWitnessConfig:
    """[witness]: the node's own C2SP witness, cosigning its peers' checkpoints (docs/witness.md)."""

    host: str
    port: int
    key_file: Path
    state_file: Path
    name: str = ""  # "" : whatever the key file names; otherwise the key's name must be this


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: where the node serves its Prometheus metrics (docs/operations.md, Monitoring)."""

    host: str
    port: int


@dataclass(frozen=True)
class WitnessConfig:
    """A witness asked to cosign this log's checkpoints: its key name, cosignature/v1 verifier key, base URL."""

    name: str
    vkey: str
    url: str


@dataclass(frozen=True)
class ServerLimits:
    """What callers may hold open on the node, and for how long (docs/operations.md, Limits)."""

    handshake_timeout_seconds: float = 5.0
    max_connections: int = 3_000
    max_concurrent_streams: int = 100
    max_watch_streams_per_caller: int = 32
    max_connection_idle_seconds: float = 600.0
    max_connection_age_seconds: float = 3600.0
    max_connection_age_grace_seconds: float = 600.0
    keepalive_time_seconds: float = 60.0
    keepalive_timeout_seconds: float = 20.0
    min_client_ping_interval_seconds: float = 30.0
    max_ping_strikes: int = 2


# [server] key of each limit -> (type, lowest, highest)
LIMIT_BOUNDS: dict[str, tuple[type, float, float]] = {
    "handshake_timeout_seconds": (float, 0.5, 120),
    "max_connections": (int, 1, 1_000_000),
    "max_concurrent_streams": (int, 1, 10_000),
    "max_watch_streams_per_caller": (int, 1, 10_000),
    "max_connection_idle_seconds": (float, 1, 86_400),
    "max_connection_age_seconds": (float, 1, 7 * 86_400),
    "max_connection_age_grace_seconds": (float, 0, 86_400),
    "keepalive_time_seconds": (float, 1, 7_200),
    "keepalive_timeout_seconds": (float, 1, 600),
    "min_client_ping_interval_seconds": (float, 1, 7_200),
    "max_ping_strikes": (int, 1, 100),
}


@dataclass(frozen=True)
class Config:
    province: str
    name: str
    listen: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    database_url: str
    latest_checkpoint_file: Path
    port_file: Path | None = None
    sqlite_synchronous: str = "FULL"
    auto_migrate: bool = True
    database_unavailable_after_seconds: float = UNAVAILABLE_AFTER_S
    deadline_working_days: int = 5
    holidays: tuple[date, ...] = ()  # transfers.holidays and calendar.extra_holidays together
    not_holidays: tuple[date, ...] = ()
    public_holidays: str = "VN"
    utc_offset: timedelta = timedelta(hours=7)
    expiry_sweep_seconds: float = 30.0
    log_key_file: Path = Path("log.key")
    log_origin: str = ""
    log_next_key_file: Path | None = None
    log_previous_vkey_files: tuple[Path, ...] = ()
    domain: str = "hocba.invalid"
    checkpoint_interval_seconds: float = 1.0
    signing_ca_file: Path | None = None
    lock_completed: tuple[int, int] = (6, 30)
    lock_supplementary: tuple[int, int] = (8, 15)
    inter_province_deadline_working_days: int = 8
    seal_key_file: Path | None = None
    peers: tuple[PeerConfig, ...] = ()
    witnesses: tuple[WitnessConfig, ...] = ()
    witness_quorum: int = 0
    witness_startup_seconds: float = 10.0
    witness: PeerWitnessConfig | None = None
    metrics: MetricsConfig | None = None
    idempotency_retention_days: int = 30
    shutdown_grace_seconds: float = 10.0
    max_batch: int = 128
    health_probe_seconds: float = 5.0
    limits: ServerLimits = ServerLimits()
    log_level: str = "INFO"
    log_format: str = "json"
    # The share of successful reads whose call line is at INFO (the rest are at DEBUG): logging.reads.
    log_reads: float = 0.0
    # [tls] revoked / revoked_file: the deny list of client certificates (transfer/revocation.py)
    tls_revoked: tuple[str, ...] = ()
    tls_revoked_file: Path | None = None


# section -> key -> (type, required)
SCHEMA: dict[str, dict[str, tuple[type, bool]]] = {
    "node": {
        "province": (str, True),
        "name": (str, False),
        "domain": (str, False),
        "listen": (str, False),
        "port_file": (str, False),
    },
    "tls": {
        "ca_file": (str, True),
        "cert_file": (str, True),
        "key_file": (str, True),
        "revoked": (list, False),
        "revoked_file": (str, False),
    },
    "database": {
        "url": (str, True),
        "sqlite_synchronous": (str, False),
        "auto_migrate": (bool, False),
        "unavailable_after_seconds": (float, False),
    },
    "seal": {"key_file": (str, False)},
    "transfers": {
        "deadline_working_days": (int, False),
        "inter_province_deadline_working_days": (int, False),
        "holidays": (list, False),
        "utc_offset": (str, False),
        "expiry_sweep_seconds": (float, False),
    },
    "calendar": {"public_holidays": (str, False), "extra_holidays": (list, False), "not_holidays": (list, False)},
    "log": {
        "key_file": (str, True),
        "origin": (str, False),
        "next_key_file": (str, False),
        "previous_vkey_files": (list, False),
        "checkpoint_interval_seconds": (float, False),
        "latest_checkpoint_file": (str, False),
        "witness_quorum": (int, False),
        "witness_startup_seconds": (float, False),
    },
    "signing": {"ca_file": (str, False)},
    "pages": {"lock_completed": (str, False), "lock_supplementary": (str, False)},
    "idempotency": {"retention_days": (int, False)},
    "server": {
        "shutdown_grace_seconds": (float, False),
        "max_batch": (int, False),
        "health_probe_seconds": (float, False),
        **{key: (kind, False) for key, (kind, _, _) in LIMIT_BOUNDS.items()},
    },
    "logging": {"level": (str, False), "format": (str, False), "reads": (str, False)},
    "witness": {"listen": (str, False), "key_file": (str, False), "state_file": (str, False), "name": (str, False)},
    "metrics": {"listen": (str, False)},
}

ENV_PREFIX = "TRANSFER_"

# The placeholder domain (RFC 2606 reserves .invalid): a production node sets its own, or its
# log's origin is the same as every other node's that kept the default.
DEFAULT_DOMAIN = "hocba.invalid"
_DOMAIN = re.compile(r"(?=.{1,200}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")
# C2SP tlog-checkpoint: the origin SHOULD be a schema-less URL with neither spaces nor '+'.
_ORIGIN = re.compile(r"[\x21-\x2a\x2c-\x7e]{1,200}")


def default_origin(domain: str, province: str) -> str:
    """The log's origin when log.origin is not set: unique to the deployment's domain and the province."""
    return f"{domain}/province/{province}/log"


def _coerce(section: str, key: str, kind: type, value: Any, *, from_env: bool) -> Any:
    where = f"{section}.{key}"
    value = _typed(where, kind, value, from_env=from_env)
    # The operating system cuts names at a NUL: refuse it here rather than fail later.
    texts = value if kind is list else [value]
    if any(isinstance(t, str) and "\0" in t for t in texts):
        raise ConfigError(f"{where}: must not contain a NUL character")
    return value


def _typed(where: str, kind: type, value: Any, *, from_env: bool) -> Any:
    if from_env:
        text = str(value).strip()
        try:
            if kind is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if kind in (int, float) and not text.isascii():  # int("５") and float("١.٥") would take them
                raise ValueError(text)
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
            if kind is list:
                return [p.strip() for p in text.split(",") if p.strip()]
            return text
        except ValueError:
            raise ConfigError(f"{where}: cannot read {text!r} as {kind.__name__}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _merge(raw: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for section, keys in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}]; known: {', '.join(SCHEMA)}")
        if not isinstance(keys, Mapping):
            raise ConfigError(f"[{section}] must be a table")
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"unknown key {section}.{key}; known: {', '.join(SCHEMA[section])}")
            merged.setdefault(section, {})[key] = _coerce(section, key, SCHEMA[section][key][0], value, from_env=False)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in SCHEMA:
            continue  # TRANSFER_* variables of other tools (the CLI, the tests)
        if key not in SCHEMA[section]:  # most likely a typo: say so rather than run without it
            raise ConfigError(f"{name}: unknown key {section}.{key}; known: {', '.join(SCHEMA[section])}")
        merged.setdefault(section, {})[key] = _coerce(section, key, SCHEMA[section][key][0], value, from_env=True)
    for section, keys in SCHEMA.items():
        for key, (_, required) in keys.items():
            if required and key not in merged.get(section, {}):
                raise ConfigError(f"{section}.{key} is required (or set {ENV_PREFIX}{section.upper()}_{key.upper()})")
    return merged


# TRANSFER_* variables that are not the node's configuration: the CLI's (transfer-cli), the fault injection of the
# tests (TRANSFER_FAULTS, which the node reads itself), the test suite's and the benchmarks' databases.
OTHER_TOOLS_VARIABLES = frozenset(
    {"TRANSFER_ADDRESS", "TRANSFER_AS", "TRANSFER_PKI", "TRANSFER_CA", "TRANSFER_CERT", "TRANSFER_KEY",
     "TRANSFER_FAULTS", "TRANSFER_TEST_PG", "TRANSFER_BENCH_PG"}
)  # fmt: skip


def unused_environment(env: Mapping[str, str] | None = None) -> list[str]:
    """The TRANSFER_* variables that name no section of the configuration and no other tool's setting: most likely
    a misspelt section (TRANSFER_DATBASE_URL), which the node would otherwise run without. A misspelt key of a
    known section is refused by load() itself."""
    env = os.environ if env is None else env
    return sorted(
        name
        for name in env
        if name.startswith(ENV_PREFIX)
        and name not in OTHER_TOOLS_VARIABLES
        and name[len(ENV_PREFIX) :].lower().partition("_")[0] not in SCHEMA
    )


_OFFSET = re.compile(r"([+-])([0-9]{2}):([0-9]{2})")  # ASCII digits: \d also takes "０７"
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # date.fromisoformat alone takes "2026-W36-3"
_MONTH_DAY = re.compile(r"[0-9]{2}-[0-9]{2}")


def _days(get: Callable[[str, str, Any], Any], section: str, key: str) -> list[date]:
    """A list of YYYY-MM-DD dates (`transfers.holidays`, `calendar.*`), each at most once."""
    days: list[date] = []
    for h in get(section, key, []):
        try:
            if not _DAY.fullmatch(str(h)):
                raise ValueError(h)
            day = date.fromisoformat(str(h))
        except ValueError:
            raise ConfigError(f"{section}.{key}: {h!r} is not a YYYY-MM-DD date") from None
        if day not in days:
            days.append(day)
    return days


def _sqlite_url_relative_to(url: str, base: Path) -> str:
    """sqlite:///relative.db is taken relative to the config file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        path = url[len(prefix) :]
        if path and path != ":memory:":
            return prefix + str((base / path).resolve())
    return url


def _default_latest_file(database_url: str) -> Path:
    """Where the copy of the latest signed checkpoint goes when log.latest_checkpoint_file is not set: beside
    a SQLite file (`node.db` -> `node.latest-checkpoint`, a name that `node.db*` does not match, so copying a
    database with its -wal file does not take it along). PostgreSQL has no such place: the key is required."""
    path = sqlite_file(database_url)
    if path is None:
        raise ConfigError(
            "log.latest_checkpoint_file is required with a PostgreSQL database (or set "
            "TRANSFER_LOG_LATEST_CHECKPOINT_FILE): a path on storage that the database's backups and restores "
            "do not touch, where the node keeps a copy of the latest checkpoint it signed"
        )
    db = Path(path)
    return db.with_name((db.stem or db.name) + ".latest-checkpoint")


def load(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read `path` (may be None: environment only) and apply the environment."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # not TOML, or not UTF-8
            raise ConfigError(f"{path}: {exc}") from None
        base = path.resolve().parent
    peers_raw = raw.pop("peers", []) if isinstance(raw, dict) else []
    witnesses_raw: Any = []
    if isinstance(raw, dict) and isinstance(raw.get("log"), dict):
        witnesses_raw = raw["log"].pop("witnesses", [])
    c = _merge(raw, env)

    def get(section: str, key: str, default: Any = None) -> Any:
        return c.get(section, {}).get(key, default)

    url_error = url_problem(get("database", "url"))
    if url_error is not None:
        raise ConfigError(f"database.url: {url_error}")
    province = get("node", "province")
    if not is_province(province):
        raise ConfigError(f"node.province: {province!r} is not one of the 34 province codes")
    sync = get("database", "sqlite_synchronous", "FULL").upper()
    if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError("database.sqlite_synchronous: one of OFF, NORMAL, FULL, EXTRA")
    unavailable_after = get("database", "unavailable_after_seconds", UNAVAILABLE_AFTER_S)
    if not 1 <= unavailable_after <= 600:
        raise ConfigError("database.unavailable_after_seconds: between 1 and 600")
    days = get("transfers", "deadline_working_days", 5)
    if not 1 <= days <= 60:
        raise ConfigError("transfers.deadline_working_days: between 1 and 60")
    holidays = _days(get, "transfers", "holidays")
    holidays += [d for d in _days(get, "calendar", "extra_holidays") if d not in holidays]
    not_holidays = _days(get, "calendar", "not_holidays")
    if both := sorted(set(holidays) & set(not_holidays)):
        raise ConfigError(f"calendar.not_holidays: {both[0]} is also a holiday the configuration adds")
    public_holidays = get("calendar", "public_holidays", "VN")
    if public_holidays not in ("", *COUNTRIES):
        raise ConfigError(f'calendar.public_holidays: one of {", ".join(COUNTRIES)}, or "" for none')
    m = _OFFSET.fullmatch(get("transfers", "utc_offset", "+07:00"))
    if not m or int(m[3]) >= 60:
        raise ConfigError("transfers.utc_offset: like +07:00")
    offset = timedelta(hours=int(m[2]), minutes=int(m[3])) * (1 if m[1] == "+" else -1)
    if not timedelta(hours=-12) <= offset <= timedelta(hours=14):
        raise ConfigError("transfers.utc_offset: between -12:00 and +14:00")
    retention = get("idempotency", "retention_days", 30)
    if not 1 <= retention <= 3650:
        raise ConfigError("idempotency.retention_days: between 1 and 3650")
    sweep = get("transfers", "expiry_sweep_seconds", 30.0)
    if not 0 < sweep < math.inf:  # NaN fails this too
        raise ConfigError("transfers.expiry_sweep_seconds: must be positive and finite")
    level = get("logging", "level", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level: one of DEBUG, INFO, WARNING, ERROR")
    fmt = get("logging", "format", "json")
    if fmt not in ("json", "text"):
        raise ConfigError("logging.format: json or text")
    reads = _log_reads(get("logging", "reads", "debug"))
    max_batch = get("server", "max_batch", 128)
    if not 1 <= max_batch <= 10_000:
        raise ConfigError("server.max_batch: between 1 and 10000")
    health_probe = get("server", "health_probe_seconds", 5.0)
    if not 0.1 <= health_probe <= 3600:
        raise ConfigError("server.health_probe_seconds: between 0.1 and 3600")
    port_file = get("node", "port_file", "")
    interval = get("log", "checkpoint_interval_seconds", 1.0)
    if not 0 < interval < math.inf:  # NaN fails this too
        raise ConfigError("log.checkpoint_interval_seconds: must be positive and finite")
    name = get("node", "name", f"hocba-node-{province}")
    database_url = _sqlite_url_relative_to(get("database", "url"), base)
    latest_file = get("log", "latest_checkpoint_file", "")
    latest_checkpoint_file = (base / latest_file) if latest_file else _default_latest_file(database_url)
    domain = get("node", "domain", DEFAULT_DOMAIN)
    if not _DOMAIN.fullmatch(domain):
        raise ConfigError(f"node.domain: {domain!r} is not a lower-case DNS name (like hocba.example.vn)")
    origin = get("log", "origin", "") or default_origin(domain, province)
    if not _ORIGIN.fullmatch(origin):
        raise ConfigError(
            f"log.origin: {origin!r} must be printable, without spaces or '+' (a schema-less URL like "
            "hocba.example.vn/province/01/log)"
        )
    next_key = get("log", "next_key_file", "")
    previous_vkeys = get("log", "previous_vkey_files", [])
    if not all(isinstance(p, str) and p for p in previous_vkeys):
        raise ConfigError("log.previous_vkey_files: a list of file names")
    lock_dates = []
    for key, default in (("lock_completed", "06-30"), ("lock_supplementary", "08-15")):
        text = get("pages", key, default)
        try:
            if not _MONTH_DAY.fullmatch(text):
                raise ValueError(text)
            month, day = (int(x) for x in text.split("-"))
            date(2024, month, day)  # a leap year admits 02-29
        except ValueError:
            raise ConfigError(f"pages.{key}: {text!r} is not a MM-DD date") from None
        lock_dates.append((month, day))
    revoked = get("tls", "revoked", [])
    for entry in revoked:
        problem = revoked_entry_problem(entry)
        if problem is not None:
            raise ConfigError(f"tls.revoked: {problem}")
    revoked_file = get("tls", "revoked_file", "")
    signing_ca = get("signing", "ca_file", "")
    peers = _peers(peers_raw, base, province)
    seal_key = get("seal", "key_file", "")
    if peers and not seal_key:
        raise ConfigError("seal.key_file is required when peers are configured")
    inter_days = get("transfers", "inter_province_deadline_working_days", 8)
    if not 1 <= inter_days <= 60:
        raise ConfigError("transfers.inter_province_deadline_working_days: between 1 and 60")
    grace = get("server", "shutdown_grace_seconds", 10.0)
    if not 0 < grace <= 3600:
        raise ConfigError("server.shutdown_grace_seconds: above 0 and at most 3600")
    limits = _limits(c.get("server", {}))
    witnesses = _witnesses(witnesses_raw, base)
    quorum = get("log", "witness_quorum", len(witnesses))
    if witnesses and not 1 <= quorum <= len(witnesses):
        raise ConfigError(f"log.witness_quorum: between 1 and {len(witnesses)} (the number of log.witnesses)")
    if not witnesses and quorum != 0:
        raise ConfigError("log.witness_quorum: 0 without log.witnesses")
    startup_wait = get("log", "witness_startup_seconds", 10.0)
    if not 0 < startup_wait <= 600:  # NaN fails this too
        raise ConfigError("log.witness_startup_seconds: above 0 and at most 600")
    witness = None
    if "witness" in raw or "witness" in c:  # an empty [witness] table is a mistake, not "off"
        witness = _witness(c.get("witness", {}), base, database_url, latest_checkpoint_file, peers)
    metrics = _metrics(get("metrics", "listen", ""))
    return Config(
        province=province,
        name=name,
        domain=domain,
        listen=get("node", "listen", "127.0.0.1:50051"),
        port_file=(base / port_file) if port_file else None,
        ca_file=base / get("tls", "ca_file"),
        cert_file=base / get("tls", "cert_file"),
        key_file=base / get("tls", "key_file"),
        database_url=database_url,
        sqlite_synchronous=sync,
        auto_migrate=get("database", "auto_migrate", True),
        database_unavailable_after_seconds=unavailable_after,
        deadline_working_days=days,
        holidays=tuple(holidays),
        not_holidays=tuple(not_holidays),
        public_holidays=public_holidays,
        utc_offset=offset,
        expiry_sweep_seconds=sweep,
        log_key_file=base / get("log", "key_file"),
        log_origin=origin,
        log_next_key_file=(base / next_key) if next_key else None,
        log_previous_vkey_files=tuple(base / str(p) for p in previous_vkeys),
        checkpoint_interval_seconds=interval,
        latest_checkpoint_file=latest_checkpoint_file,
        signing_ca_file=(base / signing_ca) if signing_ca else None,
        lock_completed=lock_dates[0],
        lock_supplementary=lock_dates[1],
        inter_province_deadline_working_days=inter_days,
        seal_key_file=(base / seal_key) if seal_key else None,
        peers=peers,
        witnesses=witnesses,
        witness_quorum=quorum,
        witness_startup_seconds=startup_wait,
        witness=witness,
        metrics=metrics,
        idempotency_retention_days=retention,
        shutdown_grace_seconds=grace,
        max_batch=max_batch,
        health_probe_seconds=health_probe,
        limits=limits,
        log_level=level,
        log_format=fmt,
        log_reads=reads,
        tls_revoked=tuple(revoked),
        tls_revoked_file=(base / revoked_file) if revoked_file else None,
    )


_SAMPLE = re.compile(r"sample:(0|1|0?\.[0-9]{1,6}|1\.0{1,6})")


def _log_reads(text: str) -> float:
    """logging.reads: "debug" (0), "info" (1) or "sample:<share>" with 0 < share <= 1 in decimals."""
    if text == "debug":
        return 0.0
    if text == "info":
        return 1.0
    match = _SAMPLE.fullmatch(text)
    share = float(match.group(1)) if match else 0.0
    if not 0 < share <= 1:
        raise ConfigError(
            f'logging.reads: {text!r} is not "debug", "info" or "sample:<share>" with a share above 0 and at most 1 '
            '(like "sample:0.01")'
        )
    return share


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


def _limits(server: Mapping[str, Any]) -> ServerLimits:
    values: dict[str, Any] = {}
    for key, (_, low, high) in LIMIT_BOUNDS.items():
        if key in server:
            if not low <= server[key] <= high:  # NaN is refused too
                raise ConfigError(f"server.{key}: between {_plain(low)} and {_plain(high)}")
            values[key] = server[key]
    return ServerLimits(**values)


def _tables(raw: Any, name: str, known: set[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The tables of the array of tables [[name]] with where each stands ("name[i]"), each checked, as it
    comes, to be a table of `known` keys only."""
    if not isinstance(raw, list):
        raise ConfigError(f"{name} must be an array of tables: [[{name}]]")
    for i, item in enumerate(raw):
        where = f"{name}[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where} must be a table")
        unknown = set(item) - known
        if unknown:
            raise ConfigError(f"unknown key {where}.{sorted(unknown)[0]}; known: {', '.join(sorted(known))}")
        yield where, item


PEER_KEYS = {
    "province", "address", "server_name", "ca_file", "seal_vkey_file", "log_vkey_file", "log_origin",
    "witness_vkey_files", "witness_quorum",
}  # fmt: skip
OPTIONAL_PEER_KEYS = {"server_name", "log_origin", "witness_vkey_files", "witness_quorum"}


def _peers(raw: Any, base: Path, own: str) -> tuple[PeerConfig, ...]:
    out: list[PeerConfig] = []
    for where, item in _tables(raw, "peers", PEER_KEYS):
        for key in PEER_KEYS - OPTIONAL_PEER_KEYS:
            if not isinstance(item.get(key), str) or not item[key]:
                raise ConfigError(f"{where}.{key} is required (a string)")
        for key, text in item.items():
            if isinstance(text, str) and "\0" in text:
                raise ConfigError(f"{where}.{key}: must not contain a NUL character")
        province = item["province"]
        if not is_province(province) or province == own:
            raise ConfigError(f"{where}.province: {province!r} must be another province's code")
        if any(p.province == province for p in out):
            raise ConfigError(f"{where}.province: {province} is configured twice")
        log_origin = item.get("log_origin", "")
        if not isinstance(log_origin, str) or (log_origin and not _ORIGIN.fullmatch(log_origin)):
            raise ConfigError(
                f"{where}.log_origin: {log_origin!r} must be printable, without spaces or '+' (the first line of "
                "the peer's checkpoints)"
            )
        out.append(
            PeerConfig(
                province=province,
                address=item["address"],
                ca_file=base / item["ca_file"],
                seal_vkey_file=base / item["seal_vkey_file"],
                log_vkey_file=base / item["log_vkey_file"],
                server_name=str(item.get("server_name", "")),
                log_origin=log_origin,
                **_peer_witnesses(item, base, where),
            )
        )
    return tuple(out)


def _peer_witnesses(item: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    """A peer's pinned witness policy: `witness_vkey_files` (cosignature/v1 vkeys, each once) and
    `witness_quorum` (between 1 and their number; default: all of them)."""
    files = item.get("witness_vkey_files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and f and "\0" not in f for f in files):
        raise ConfigError(f"{where}.witness_vkey_files: a list of file names")
    vkeys: list[str] = []
    names: set[str] = set()
    for f in files:
        try:
            vkey = (base / f).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}.witness_vkey_files: {f} cannot be read: {exc}") from None
        try:
            name = cosignature_verifier(vkey).name
        except NoteError as exc:
            raise ConfigError(f"{where}.witness_vkey_files: {f}: {exc}") from None
        if name in names:
            raise ConfigError(f"{where}.witness_vkey_files: the witness {name!r} is named twice")
        names.add(name)
        vkeys.append(vkey)
    quorum = item.get("witness_quorum", len(vkeys))
    if not isinstance(quorum, int) or isinstance(quorum, bool):
        raise ConfigError(f"{where}.witness_quorum: an integer")
    if vkeys and not 1 <= quorum <= len(vkeys):
        raise ConfigError(f"{where}.witness_quorum: between 1 and {len(vkeys)} (the number of witness_vkey_files)")
    if not vkeys and quorum:
        raise ConfigError(f"{where}.witness_quorum: 0 without witness_vkey_files")
    return {"witness_vkeys": tuple(vkeys), "witness_quorum": quorum}


WITNESS_KEYS = {"name", "vkey", "vkey_file", "url"}
_WITNESS_URL = re.compile(r"https?://[^\s/?#@]+(/[^\s?#]*)?")


def _witnesses(raw: Any, base: Path) -> tuple[WitnessConfig, ...]:
    """[[log.witnesses]]: each with a name, a cosignature/v1 vkey (inline or vkey_file) named so, and an
    http(s) URL; names, keys and URLs each once."""
    out: list[WitnessConfig] = []
    for where, item in _tables(raw, "log.witnesses", WITNESS_KEYS):
        for key, text in item.items():
            if not isinstance(text, str) or not text:
                raise ConfigError(f"{where}.{key}: a non-empty string")
            if "\0" in text:
                raise ConfigError(f"{where}.{key}: must not contain a NUL character")
        for key in ("name", "url"):
            if key not in item:
                raise ConfigError(f"{where}.{key} is required (a string)")
        if ("vkey" in item) == ("vkey_file" in item):
            raise ConfigError(f"{where}: set one of vkey and vkey_file")
        name = item["name"]
        if "vkey" in item:
            vkey = item["vkey"].strip()
        else:
            try:
                vkey = (base / item["vkey_file"]).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{where}.vkey_file: cannot be read: {exc}") from None
        try:
            verifier = cosignature_verifier(vkey)
        except NoteError as exc:
            raise ConfigError(f"{where}.vkey: {exc}") from None
        if verifier.name != name:
            raise ConfigError(f"{where}.name: {name!r} is not the name of its key ({verifier.name!r})")
        url = item["url"].rstrip("/")
        if not _WITNESS_URL.fullmatch(url):
            raise ConfigError(f"{where}.url: {item['url']!r} is not an http:// or https:// URL (no query)")
        for other in out:
            if other.name == name:
                raise ConfigError(f"{where}.name: {name!r} is configured twice")
            if other.url == url:
                raise ConfigError(f"{where}.url: {url!r} is configured twice")
        out.append(WitnessConfig(name=name, vkey=vkey, url=url))
    return tuple(out)


def _metrics(listen: str) -> MetricsConfig | None:
    """metrics.listen: host:port (an IPv6 host in brackets), or empty for no metrics endpoint."""
    listen = listen.strip()
    if not listen:
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics.listen: {listen!r} is not host:port (like 127.0.0.1:9464; empty: no metrics)")
    return MetricsConfig(host=host.strip("[]"), port=int(port))


def _witness(
    section: Mapping[str, Any],
    base: Path,
    database_url: str,
    latest_checkpoint_file: Path,
    peers: tuple[PeerConfig, ...],
) -> PeerWitnessConfig:
    """[witness]: listen and key_file required; state_file beside a SQLite database by default."""
    for key in ("listen", "key_file"):
        if not section.get(key):
            raise ConfigError(f"witness.{key} is required in [witness] (or set {ENV_PREFIX}WITNESS_{key.upper()})")
    if not peers:
        raise ConfigError("[witness]: there are no [[peers]] to witness (the witness cosigns its peers' logs)")
    listen = section["listen"]
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"witness.listen: {listen!r} is not host:port (port 0 picks a free one)")
    name = section.get("name", "")
    if name and not _ORIGIN.fullmatch(name):
        raise ConfigError(f"witness.name: {name!r} must be printable, without spaces or '+' (a key name)")
    state = section.get("state_file", "")
    if state:
        state_file = base / state
    else:
        db = sqlite_file(database_url)
        if db is None:
            raise ConfigError(
                "witness.state_file is required with a PostgreSQL database (or set TRANSFER_WITNESS_STATE_FILE): "
                "the witness keeps its own SQLite file, apart from the node's database"
            )
        state_file = Path(db).with_name((Path(db).stem or Path(db).name) + ".witness.sqlite")
    db_file = sqlite_file(database_url)
    if state_file.resolve() in (latest_checkpoint_file.resolve(), *([Path(db_file).resolve()] if db_file else [])):
        raise ConfigError(
            f"witness.state_file: {state_file} is the node's database or its latest checkpoint file; the witness "
            "shares no file with the node"
        )
    return PeerWitnessConfig(
        host=host.strip("[]"), port=int(port), key_file=base / section["key_file"], state_file=state_file, name=name
    )
