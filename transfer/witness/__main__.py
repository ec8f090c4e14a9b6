"""`transfer-witness`: run a witness, make its key, and check split-view evidence offline.

    transfer-witness generate-key NAME KEY_FILE      # prints the witness's vkey (type 0x04)
    transfer-witness serve --config witness.toml     # prints "listening on http://host:port/prefix"
    transfer-witness export-evidence STATE_FILE DIR  # one JSON file per split view kept
    transfer-witness verify-evidence FILE --vkey LOG_VKEY

Exit status: 0 done (verify-evidence: the evidence proves a split view), 1 the evidence does
not hold, 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.witness import StateUnavailable, WitnessState
from transfer.ledger.note import (
    CosignatureV1Signer,
    NoteError,
    Verifier,
    cosignature_signer,
    generate_key,
    parse_vkey,
)
from transfer.ledger.witness import Evidence, verify_evidence
from transfer.witness.server import KeyFileError, Witness, make_server
from transfer.witness.server import load_signer as load_key_file


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclass(frozen=True)
class WitnessConfig:
    host: str
    port: int
    prefix: str
    key_file: Path
    state_file: Path
    logs: dict[str, list[Verifier]]


def load_config(path: Path) -> WitnessConfig:
    """Read witness.toml: listen, prefix, key_file, state_file and [[log]] tables (origin, vkeys)."""
    try:
        doc: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    known = {"listen", "prefix", "key_file", "state_file", "log"}
    if unknown := sorted(set(doc) - known):
        raise ConfigError(f"{path}: unknown settings {unknown}")
    base = path.parent
    listen = doc.get("listen", "127.0.0.1:7380")
    host, sep, port = str(listen).rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{path}: listen must be host:port, not {listen!r}")
    prefix = doc.get("prefix", "")
    if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
        raise ConfigError(f"{path}: prefix must be empty or a path starting with '/'")
    for key in ("key_file", "state_file"):
        if not isinstance(doc.get(key), str):
            raise ConfigError(f"{path}: {key} is required (a path)")
    logs: dict[str, list[Verifier]] = {}
    tables = doc.get("log", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: at least one [[log]] with origin and vkeys is required")
    for table in tables:
        origin, vkeys = table.get("origin"), table.get("vkeys")
        if not isinstance(origin, str) or not isinstance(vkeys, list) or not vkeys:
            raise ConfigError(f"{path}: each [[log]] needs origin (a string) and vkeys (a non-empty list)")
        if origin in logs:
            raise ConfigError(f"{path}: log {origin!r} is configured twice")
        try:
            logs[origin] = [parse_vkey(v) for v in vkeys]
        except (NoteError, AttributeError) as exc:
            raise ConfigError(f"{path}: log {origin!r}: {exc}") from None
    return WitnessConfig(
        host=host.strip("[]"),
        port=int(port),
        prefix=prefix.rstrip("/"),
        key_file=base / doc["key_file"],
        state_file=base / doc["state_file"],
        logs=logs,
    )


def load_signer(path: Path) -> CosignatureV1Signer:
    try:
        return load_key_file(path)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None


def _serve(ns: argparse.Namespace) -> int:
    cfg = load_config(ns.config)
    signer = load_signer(cfg.key_file)
    try:
        state = WitnessState(cfg.state_file)
    except StateUnavailable as exc:
        raise ConfigError(f"state_file: {exc}") from None
    witness = Witness(signer, state, cfg.logs)
    server = make_server(cfg.host, cfg.port, witness, cfg.prefix)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"witness {signer.vkey}", flush=True)
    print(f"listening on http://{host}:{port}{cfg.prefix}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _generate_key(ns: argparse.Namespace) -> int:
    try:
        skey, _ = generate_key(ns.name)
    except NoteError as exc:
        raise ConfigError(str(exc)) from None
    path: Path = ns.key_file
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror} (a key is never overwritten)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(skey + "\n")
    print(cosignature_signer(skey).vkey)
    return 0


def _export(ns: argparse.Namespace) -> int:
    if not ns.state_file.exists():
        raise ConfigError(f"{ns.state_file}: no such state file")
    ns.out.mkdir(parents=True, exist_ok=True)
    try:
        found = WitnessState(ns.state_file).evidence()
    except StateUnavailable as exc:
        raise ConfigError(str(exc)) from None
    for i, evidence in enumerate(found, 1):
        target = ns.out / f"evidence-{i}.json"
        target.write_text(evidence.to_json(), encoding="utf-8")
        print(target)
    return 0


def _verify(ns: argparse.Namespace) -> int:
    try:
        verifiers = [parse_vkey(v) for v in ns.vkey]
        evidence = Evidence.from_json(ns.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, NoteError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    try:
        first, second = verify_evidence(evidence, verifiers)
    except ValueError as exc:
        print(f"transfer-witness: evidence does not hold: {exc}", file=sys.stderr)
        return 1
    print(
        f"split view of {evidence.origin} ({evidence.kind}): size {first.size} root {first.root.hex()} "
        f"and size {second.size} root {second.root.hex()}, both signed by the log"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer-witness", description="A C2SP tlog-witness.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the witness")
    p.add_argument("--config", type=Path, required=True)
    p.set_defaults(run=_serve)
    p = sub.add_parser("generate-key", help="write a new witness key file and print its vkey")
    p.add_argument("name", help="the witness's name, e.g. witness.example.org/w1")
    p.add_argument("key_file", type=Path)
    p.set_defaults(run=_generate_key)
    p = sub.add_parser("export-evidence", help="write the split-view evidence kept in a state file")
    p.add_argument("state_file", type=Path)
    p.add_argument("out", type=Path)
    p.set_defaults(run=_export)
    p = sub.add_parser("verify-evidence", help="check split-view evidence offline")
    p.add_argument("file", type=Path)
    p.add_argument("--vkey", action="append", required=True, help="the log's verifier key (repeatable)")
    p.set_defaults(run=_verify)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = ns.run(ns)
    except ConfigError as exc:
        print(f"transfer-witness: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
