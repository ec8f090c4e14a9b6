"""`transfer-audit`: check several nodes' logs, and the federation's promises between them, as an auditor.

For each node (given in a small TOML file, `--config`, or with `--node`): its address, the TLS files of
an auditor certificate its CA issued, and the values pinned out of band — the log's origin and verifier
key, and optionally a checkpoint of that log kept from an earlier audit. The node's log is read through
`LogService` with the client's `LogVerifier` (transfer/client/logverify.py): `GetLogInfo` must name the
pinned origin and key, the latest checkpoint must be signed by the pinned key for the pinned origin and be
consistent with the pinned checkpoint (`GetConsistencyProof`), and the entries (`ListEntries`, paged) must
make its root (a mismatch is named with inclusion proofs). The entries of the logs that verified are then
checked against the federation's rules (transfer/domain/custody.py, docs/audit.md).

Exit status: 0 every log verified and every rule passed; 1 a log did not verify or a rule broke (even if
another node could not be read); 2 the arguments or files were unusable, or a node could not be read.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from transfer.client import ClientTls, RetryPolicy, TransferClient, TransferError
from transfer.client.client import ClientTlsError
from transfer.client.logverify import LogVerificationError, LogVerifier, open_checkpoint
from transfer.domain.custody import DEFAULT_HORIZON, NodeEntries, Report, Rule, check_federation
from transfer.ledger.note import Checkpoint, NoteError, Verifier, parse_vkey
from transfer.ledger.witnessed import Witnessed, check_witnessed, cosignature_verifier

USAGE, BROKEN, PASSED = 2, 1, 0

_KEYS = {
    "province": True,
    "address": True,
    "origin": True,
    "vkey": False,
    "vkey_file": False,
    "ca_file": False,
    "cert_file": False,
    "key_file": False,
    "pki": False,
    "server_name": False,
    "checkpoint_file": False,
    "witness_vkey_files": False,
    "witness_quorum": False,
}
WITNESS_WAIT = 5  # re-reads of a checkpoint short of its quorum, a second apart: cosignatures arrive moments late


class UsageError(Exception):
    """Arguments or files the audit cannot run with (exit status 2)."""


@dataclass(frozen=True)
class Pin:
    """One node as the auditor knows it, from out of band."""

    province: str
    address: str
    origin: str
    vkey: str
    tls: ClientTls
    server_name: str | None
    checkpoint_file: Path | None
    witnesses: tuple[Verifier, ...] = ()  # the node's witnesses, pinned (cosignature/v1 keys)
    witness_quorum: int = 0  # how many of them must have cosigned its checkpoint (0: no witness policy)


def _pin(spec: Mapping[str, Any], base: Path, where: str) -> Pin:
    """A node's pin from its TOML table or `--node` items; relative paths are relative to `base`."""
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    missing = [k for k, required in _KEYS.items() if required and not spec.get(k)]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}")
    for key, value in spec.items():
        if key == "witness_vkey_files":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise UsageError(f"{where}: witness_vkey_files must be a list of file names")
        elif key == "witness_quorum":
            if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
                raise UsageError(f"{where}: witness_quorum must be a whole number")
        elif not isinstance(value, str):
            raise UsageError(f"{where}: {key} must be a string")

    def path(key: str) -> Path | None:
        value = spec.get(key)
        return None if not value else base / value

    province = spec["province"]
    if len(province) != 2 or not province.isdigit():
        raise UsageError(f"{where}: province must be a two-digit code, not {province!r}")
    pki = path("pki")  # a dev PKI directory: its CA and its auditor certificate
    files = {
        "ca_file": path("ca_file") or (pki / "ca.pem" if pki else None),
        "cert_file": path("cert_file") or (pki / "auditor.pem" if pki else None),
        "key_file": path("key_file") or (pki / "auditor.key" if pki else None),
    }
    absent = [k for k, v in files.items() if v is None]
    if absent:
        raise UsageError(f"{where}: missing {', '.join(absent)} (or pki)")
    if bool(spec.get("vkey")) == bool(spec.get("vkey_file")):
        raise UsageError(f"{where}: give the pinned log key as exactly one of vkey and vkey_file")
    try:
        vkey_file = path("vkey_file")
        vkey = vkey_file.read_text(encoding="utf-8").strip() if vkey_file else spec["vkey"].strip()
        verifier = parse_vkey(vkey)
        tls = ClientTls.from_files(files["ca_file"], files["cert_file"], files["key_file"])  # type: ignore[arg-type]
        checkpoint_file = path("checkpoint_file")
        if checkpoint_file is not None:
            open_checkpoint(checkpoint_file.read_text(encoding="utf-8"), verifier, spec["origin"])
        witnesses = tuple(
            cosignature_verifier((base / f).read_text(encoding="utf-8").strip())
            for f in spec.get("witness_vkey_files", [])
        )
    except (OSError, UnicodeDecodeError, NoteError, ClientTlsError, LogVerificationError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    if len({w.name for w in witnesses}) != len(witnesses):
        raise UsageError(f"{where}: a witness is named twice in witness_vkey_files")
    quorum = int(spec.get("witness_quorum", len(witnesses)))
    if witnesses and not 1 <= quorum <= len(witnesses):
        raise UsageError(f"{where}: witness_quorum must be between 1 and {len(witnesses)} (the witnesses given)")
    if not witnesses and quorum:
        raise UsageError(f"{where}: witness_quorum without witness_vkey_files")
    return Pin(
        province, spec["address"], spec["origin"], vkey, tls, spec.get("server_name") or None, checkpoint_file,
        witnesses, quorum,
    )  # fmt: skip


def _node_spec(text: str) -> dict[str, Any]:
    """`--node` items; `witness_vkey_file=PATH`, repeatable, makes the list `witness_vkey_files`."""
    items: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--node {text}: want key=value items separated by commas")
        key = key.strip().replace("-", "_")
        if key == "witness_vkey_file":
            items.setdefault("witness_vkey_files", []).append(value.strip())
        else:
            items[key] = value.strip()
    return items


def pins_from(config: Path | None, nodes: Sequence[str]) -> tuple[list[Pin], timedelta | None]:
    """The nodes to audit (the config file's, then the command line's) and the config's horizon, if any."""
    pins: list[Pin] = []
    horizon = None
    if config is not None:
        try:
            raw = tomllib.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{config}: {exc}") from None
        unknown = sorted(set(raw) - {"nodes", "horizon_seconds"})
        if unknown:
            raise UsageError(f"{config}: unknown keys {', '.join(unknown)}")
        if "horizon_seconds" in raw:
            horizon = _horizon(raw["horizon_seconds"], f"{config}: horizon_seconds")
        tables = raw.get("nodes", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise UsageError(f"{config}: nodes must be [[nodes]] tables")
        for n, table in enumerate(tables):
            pins.append(_pin(table, config.parent, f"{config}: nodes[{n}]"))
    for text in nodes:
        pins.append(_pin(_node_spec(text), Path.cwd(), f"--node {text}"))
    if not pins:
        raise UsageError("no node to audit: give --config FILE or --node")
    provinces = [p.province for p in pins]
    if len(set(provinces)) != len(provinces):
        raise UsageError(f"one node per province: {', '.join(provinces)}")
    return pins, horizon


def _horizon(value: object, where: str) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10**9:
        raise UsageError(f"{where}: a number of seconds, 0 or more")
    return timedelta(seconds=value)


@dataclass
class NodeResult:
    pin: Pin
    entries: NodeEntries
    checkpoint: Checkpoint | None = None
    pinned_size: int | None = None
    problem: str = ""  # the log did not verify
    unreachable: str = ""  # the log could not be read
    witnessing: Witnessed | None = None  # with a witness policy: how its checkpoint stands with the witnesses

    @property
    def verified(self) -> bool:
        return self.checkpoint is not None and not self.problem and not self.unreachable


def read_node(pin: Pin, timeout: float, progress: Callable[[str, int, int], None]) -> NodeResult:
    """Read and verify one node's log; never raises for what the node serves or whether it answers."""
    result = NodeResult(pin, NodeEntries(pin.province))
    client = TransferClient(
        pin.address, pin.tls, timeout=timeout, server_name=pin.server_name,
        retry=RetryPolicy(attempts=4, initial_backoff=0.2, max_backoff=2.0, total_seconds=4 * timeout),
    )  # fmt: skip
    try:
        verifier = LogVerifier(client, pin.vkey, pin.checkpoint_file, origin=pin.origin, remember=False)
        pinned = verifier.trusted()
        result.pinned_size = pinned[0].size if pinned else None
        verifier.check_log_info()
        result.checkpoint = verifier.audit(
            each=result.entries.add, progress=lambda done, total: progress(pin.province, done, total)
        )
        if pin.witnesses:
            assert verifier.latest_note is not None
            result.witnessing = _witnessed(client, pin, result.checkpoint, verifier.latest_note)
    except LogVerificationError as exc:
        result.problem = str(exc)
    except TransferError as exc:
        if exc.reason == "NO_CHECKPOINT" and result.pinned_size:
            result.problem = f"the node serves no checkpoint, but one of size {result.pinned_size} was pinned"
        else:
            result.unreachable = str(exc)
    finally:
        client.close()
    return result


def _witnessed(client: TransferClient, pin: Pin, checkpoint: Checkpoint, note: str) -> Witnessed:
    """The pinned witnesses' cosignatures on the audited checkpoint (`check_witnessed`); when short of the
    quorum, the same checkpoint is read again a few times, a second apart (cosignatures come moments late)."""
    key = parse_vkey(pin.vkey)
    for attempt in range(WITNESS_WAIT + 1):
        try:
            found = check_witnessed(note, key, pin.witnesses, pin.witness_quorum, pin.origin)
        except NoteError as exc:
            raise LogVerificationError(f"checkpoint {checkpoint.size} re-read: {exc}") from None
        if found.checkpoint != checkpoint:
            raise LogVerificationError(f"checkpoint {checkpoint.size} re-read with another root")
        if found.witnessed or attempt == WITNESS_WAIT:
            return found
        time.sleep(1.0)
        note = client.get_checkpoint(checkpoint.size).checkpoint
    raise AssertionError("not reached")


class _Progress:
    """Progress lines on stderr, at most about one a second per log, and the last one always."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = 0.0

    def __call__(self, province: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (done < total and now - self.last < 1.0):
            return
        self.last = now
        pct = f" ({done * 100 // total}%)" if total else ""
        print(f"  reading {province}: {done:,}/{total:,} entries{pct}", file=sys.stderr, flush=True)


def print_summary(results: Sequence[NodeResult], report: Report) -> None:
    newest = f"{report.newest:%Y-%m-%d %H:%M:%S} UTC" if report.newest else "none"
    print(
        f"transfer-audit: {len(results)} logs, horizon {int(report.horizon.total_seconds())} s, newest entry {newest}"
    )
    for r in results:
        head = f"node {r.pin.province}  {r.pin.origin}"
        if r.unreachable:
            print(f"{head}  NOT READ: {r.unreachable}")
        elif r.problem:
            print(f"{head}  LOG DOES NOT VERIFY: {r.problem}")
        else:
            assert r.checkpoint is not None
            pinned = f", consistent with the pinned size {r.pinned_size}" if r.pinned_size is not None else ""
            print(
                f"{head}  size {r.checkpoint.size}  checkpoint verified{pinned}, {r.checkpoint.size} entries match its root"
                + _witness_summary(r.witnessing)
            )
    print(f"{'rule':<22} {'checked':>8} {'passed':>8} {'failed':>8} {'in flight':>10} {'not checked':>12}")
    for rule in Rule:
        t = report.tallies[rule]
        print(f"{rule.value:<22} {t.checked:>8} {t.passed:>8} {t.failed:>8} {t.in_flight:>10} {t.not_checked:>12}")
    for finding in report.findings:
        print(f"BROKEN {finding}")
    if report.unchecked_provinces:
        print(
            f"not checked: entries naming {', '.join(sorted(report.unchecked_provinces))} (no verified log of theirs)"
        )


def _witness_summary(w: Witnessed | None) -> str:
    if w is None:
        return ""
    if w.witnessed:
        return f", witnessed by {', '.join(w.cosigned)} ({len(w.cosigned)} of quorum {w.quorum})"
    invalid = f"; cosignatures that do not verify: {', '.join(w.invalid)}" if w.invalid else ""
    return (
        f", NOT WITNESSED: cosigned by {len(w.cosigned)} of {w.quorum} needed, missing: {', '.join(w.missing)}"
        + invalid
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="transfer-audit",
        description="Verify several nodes' logs and check the federation's promises between them (docs/audit.md).",
        epilog="Exit status: 0 all verified and passed; 1 a log did not verify or a rule broke; "
        "2 bad arguments or files, or a node could not be read (when nothing broke).",
    )
    parser.add_argument("--config", type=Path, help="a TOML file with one [[nodes]] table per node")
    parser.add_argument(
        "--node",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="a node: province, address, origin, vkey_file (or vkey), ca_file, cert_file, key_file (or pki, "
        "a dev PKI directory), and optionally server_name, checkpoint_file, witness_vkey_file (repeatable: "
        "its pinned witnesses) and witness_quorum (default: all of them) (repeatable)",
    )
    parser.add_argument(
        "--horizon",
        type=float,
        metavar="SECONDS",
        help=f"how long a message may wait for its counterpart (default {int(DEFAULT_HORIZON.total_seconds())})",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, seconds")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    ns = parser.parse_args(argv)
    try:
        pins, configured = pins_from(ns.config, ns.node)
        horizon = DEFAULT_HORIZON if configured is None else configured
        if ns.horizon is not None:
            horizon = _horizon(ns.horizon, "--horizon")
        if not 0 < ns.timeout < 3600:
            raise UsageError("--timeout: seconds, more than 0")
    except UsageError as exc:
        print(f"transfer-audit: {exc}", file=sys.stderr)
        return USAGE
    progress = _Progress(ns.quiet)
    results = [read_node(pin, ns.timeout, progress) for pin in pins]
    report = check_federation([r.entries for r in results if r.verified], horizon)
    print_summary(results, report)
    short = [r for r in results if r.witnessing is not None and not r.witnessing.witnessed]
    for r in short:
        assert r.witnessing is not None
        print(
            f"BROKEN [witnessed] node {r.pin.province} checkpoint {r.witnessing.checkpoint.size}: "
            f"missing the cosignatures of {', '.join(r.witnessing.missing)}"
        )
    broken = not report.ok or any(r.problem for r in results) or bool(short)
    unread = any(r.unreachable for r in results)
    if broken:
        print("RESULT: BROKEN")
        return BROKEN
    if unread:
        print("RESULT: INCOMPLETE (a node could not be read)")
        return USAGE
    print("RESULT: PASSED")
    return PASSED


if __name__ == "__main__":
    sys.exit(main())
