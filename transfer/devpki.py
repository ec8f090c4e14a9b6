"""A complete development PKI in one command, for demos and tests.

    python -m transfer.devpki --out pki --province 01 --school S1 --school S2

writes (ECDSA P-256, PEM):

    ca.pem / ca.key                     the node's CA
    node.pem / node.key                 the node (server and client auth;
                                        SAN localhost and 127.0.0.1)
    school-<code>.pem / .key            each school's system (role school)
    school-admin-<code>.pem / .key      each school's admin (role school_admin)
    province-admin.pem / .key           the province admin
    auditor.pem / .key                  a read-only auditor
    signing-ca.pem / .key               a CA for teachers' signing certificates
    teacher-<name>.pem / .key           for each --teacher name[:rsa|ecdsa|ed25519]:
                                        a teacher's signing certificate
    log.key / log.vkey                  the node's Ed25519 key for signing log
                                        checkpoints (signed-note formats), named
                                        after the node's default log origin
                                        (hocba.invalid/province/<code>/log;
                                        --node-name to name it otherwise)
    seal.key / seal.vkey                the node's Ed25519 key sealing transfer
                                        packages and receipts it sends to peers
    witness.key / witness.vkey          the key of the node's own witness of its
                                        peers' logs (a [witness] section), named
                                        hocba.invalid/province/<code>/witness;
                                        witness.vkey is the cosignature/v1
                                        verifier key (type 0x04) peers configure
                                        (--no-witness-key to leave it out)

A standalone witness (`transfer-witness serve`) for development gets its own
directory, with no CA and no province:

    python -m transfer.devpki --out wit --witness hocba.invalid/witness --listen 127.0.0.1:7390
        --log-vkey pki01/log.vkey --log-vkey pki79/log.vkey       (one command line)

writes witness.key / witness.vkey and a witness.toml (listen as given, by
default 127.0.0.1:0; state file witness.sqlite) that witnesses the logs of those verifier keys,
each under its key's name as the origin (docs/operations.md, Witnessing in a
federation).

The node certificate doubles as its client certificate towards peer nodes,
which trust this CA for this province only.

The identities are URI names (see `transfer.identity`), so the demo and the
tests use exactly the production mTLS path. Keys are written mode 0600.
This is for development: production CAs live elsewhere.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from transfer.domain.model import Role
from transfer.domain.provinces import is_province
from transfer.domain.validation import SCHOOL_CODE
from transfer.identity import province_uri, role_uri, school_uri, uris_of
from transfer.ledger.note import cosignature_signer, generate_key, parse_vkey
from transfer.server.config import DEFAULT_DOMAIN, default_origin


@dataclass(frozen=True)
class Credential:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hocba dev PKI"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """Digital signatures plus the `allowed` usages; everything else off."""
    flags = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign"),
        False,
    )
    return x509.KeyUsage(digital_signature=True, **(flags | allowed), encipher_only=False, decipher_only=False)


def _self_signed_ca(
    key: ec.EllipticCurvePrivateKey,
    name: x509.Name,
    *,
    days: int,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """A CA certificate for `key` that may sign end-entity certificates only (path length 0)."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(minutes=5))
        .not_valid_after(not_after or now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _read_ca(out: Path, stem: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The key and certificate a previous run wrote as `stem`.key and `stem`.pem into `out`."""
    key = serialization.load_pem_private_key((out / f"{stem}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key, x509.load_pem_x509_certificate((out / f"{stem}.pem").read_bytes())


class DevCA:
    def __init__(self, out: Path, *, days: int = 365, common_name: str = "hocba dev CA") -> None:
        self.out = out
        self.days = days
        out.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(common_name)
        self.cert = _self_signed_ca(self.key, self.name, days=days)
        (out / "ca.pem").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(out / "ca.key", self.key)

    @classmethod
    def load(cls, out: Path, *, days: int = 365) -> DevCA:
        """The CA a previous run wrote into `out` (ca.pem / ca.key), to issue more certificates from."""
        ca = cls.__new__(cls)
        ca.out, ca.days = out, days
        ca.key, ca.cert = _read_ca(out, "ca")
        ca.name = ca.cert.subject
        return ca

    @property
    def ca_file(self) -> Path:
        return self.out / "ca.pem"

    def renew(self, stem: str, into: Path | None = None) -> Credential:
        """A renewal of `<stem>.pem`: the same identity (common name, URI names, server or client use), a
        new key, serial and validity, written as `<stem>.pem` / `<stem>.key` into `into` (default: over the
        old ones), as an operator's renewal would bring them."""
        old = x509.load_pem_x509_certificate((self.out / f"{stem}.pem").read_bytes())
        uris = uris_of(old)
        usages = old.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        cn = old.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return self.issue(stem, str(cn), uris, server=ExtendedKeyUsageOID.SERVER_AUTH in usages, out=into or self.out)

    def issue(
        self,
        stem: str,
        common_name: str,
        uris: list[str],
        *,
        server: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        out: Path | None = None,
    ) -> Credential:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            names += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=5))
            .not_valid_after(not_after or now + timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        out = out or self.out
        out.mkdir(parents=True, exist_ok=True)
        cred = Credential(out / f"{stem}.pem", out / f"{stem}.key")
        cred.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(cred.key, key)
        return cred

    def node(self, province: str) -> Credential:
        return self.issue("node", f"node {province}", [role_uri(Role.NODE), province_uri(province)], server=True)

    def school(self, province: str, code: str, *, admin: bool = False) -> Credential:
        role = Role.SCHOOL_ADMIN if admin else Role.SCHOOL
        stem = f"school-admin-{code}" if admin else f"school-{code}"
        return self.issue(stem, f"{role.value} {code}", [role_uri(role), province_uri(province), school_uri(code)])

    def province_admin(self, province: str) -> Credential:
        return self.issue(
            "province-admin", f"province admin {province}", [role_uri(Role.PROVINCE_ADMIN), province_uri(province)]
        )

    def auditor(self, province: str) -> Credential:
        return self.issue("auditor", f"auditor {province}", [role_uri(Role.AUDITOR), province_uri(province)])


KEY_TYPES = ("ecdsa", "rsa", "ed25519")
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def new_signing_key(key_type: str) -> SigningKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type must be one of {', '.join(KEY_TYPES)}")


class SigningCA:
    """A CA for teachers' personal signing certificates (chứng thư số), as a
    licensed Vietnamese CA would issue them. Development only."""

    def __init__(
        self,
        out: Path,
        *,
        days: int = 365,
        common_name: str = "hocba dev signing CA",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> None:
        self.out = out
        self.days = days
        out.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(common_name)
        self.cert = _self_signed_ca(self.key, self.name, days=days, not_before=not_before, not_after=not_after)
        (out / "signing-ca.pem").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(out / "signing-ca.key", self.key)

    @classmethod
    def load(cls, out: Path, *, days: int = 365) -> SigningCA:
        """The signing CA a previous run wrote into `out`."""
        ca = cls.__new__(cls)
        ca.out, ca.days = out, days
        ca.key, ca.cert = _read_ca(out, "signing-ca")
        ca.name = ca.cert.subject
        return ca

    def teacher(
        self,
        name: str,
        key_type: str = "ecdsa",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        write: bool = True,
    ) -> tuple[bytes, SigningKey]:
        """A teacher's certificate (PEM) and private key; written as teacher-<name>.pem/.key."""
        key = new_signing_key(key_type)
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"teacher {name}"))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=5))
            .not_valid_after(not_after or now + timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(content_commitment=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if write:
            (self.out / f"teacher-{name}.pem").write_bytes(pem)
            _write_key(self.out / f"teacher-{name}.key", key)
        return pem, key


def write_note_key(out: Path, stem: str, name: str) -> str:
    """Write an Ed25519 signed-note key pair: <stem>.key (private) and <stem>.vkey; return the vkey."""
    skey, vkey = generate_key(name)
    fd = os.open(out / f"{stem}.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(skey + "\n")
    (out / f"{stem}.vkey").write_text(vkey + "\n")
    return vkey


def write_witness_key(out: Path, name: str, stem: str = "witness") -> str:
    """Write a witness's key: <stem>.key (a note key, 0600) and <stem>.vkey, its cosignature/v1 verifier key
    (type 0x04), as `transfer-witness generate-key` and `transfer.keygen --stem witness` do; return the vkey."""
    skey, _ = generate_key(name)
    vkey = cosignature_signer(skey).vkey
    fd = os.open(out / f"{stem}.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(skey + "\n")
    (out / f"{stem}.vkey").write_text(vkey + "\n")
    return vkey


def dev_witness_name(province: str, domain: str = DEFAULT_DOMAIN) -> str:
    """The name of a dev node's witness key: <domain>/province/<code>/witness."""
    return f"{domain}/province/{province}/witness"


def make_dev_witness(out: Path, name: str, log_vkeys: list[str], *, listen: str = "127.0.0.1:0") -> str:
    """Write a standalone development witness into `out`: witness.key / witness.vkey and witness.toml for
    `transfer-witness serve --config out/witness.toml`, witnessing the log of each of `log_vkeys` (a log's
    verifier key, named after its origin). Returns the witness's vkey."""
    logs = [parse_vkey(v.strip()) for v in log_vkeys]
    if not logs:
        raise ValueError("a witness needs at least one log's verifier key")
    if len({v.name for v in logs}) != len(logs):
        raise ValueError("two log verifier keys name the same origin")
    out.mkdir(parents=True, exist_ok=True)
    vkey = write_witness_key(out, name)
    tables = "".join(
        f'\n[[log]]\norigin = "{v.name}"\nvkeys = ["{k.strip()}"]\n' for v, k in zip(logs, log_vkeys, strict=True)
    )
    (out / "witness.toml").write_text(
        f'listen = "{listen}"\nkey_file = "witness.key"\nstate_file = "witness.sqlite"\n{tables}', encoding="utf-8"
    )
    return vkey


def make_dev_pki(
    out: Path,
    province: str,
    schools: list[str],
    *,
    days: int = 365,
    node_name: str | None = None,
    teachers: list[str] | None = None,
    witness_key: bool = True,
) -> DevCA:
    """Write the whole development PKI for one node into `out`.

    `teachers` are "name" or "name:keytype" (ecdsa, rsa, ed25519). `witness_key`: also write the key of the
    node's own witness (witness.key / witness.vkey).
    """
    if not is_province(province):
        raise ValueError(f"{province!r} is not a province code")
    for code in schools:
        if not SCHOOL_CODE.fullmatch(code):
            raise ValueError(f"{code!r} is not a valid school code")
    ca = DevCA(out, days=days, common_name=f"hocba dev CA {province}")
    ca.node(province)
    ca.province_admin(province)
    ca.auditor(province)
    for code in schools:
        ca.school(province, code)
        ca.school(province, code, admin=True)
    # C2SP tlog-checkpoint: the log key's name should be the log's origin (the default one here).
    write_note_key(out, "log", node_name or default_origin(DEFAULT_DOMAIN, province))
    write_note_key(out, "seal", f"{node_name or f'hocba-node-{province}'}-seal")
    if witness_key:
        write_witness_key(out, f"{node_name}-witness" if node_name else dev_witness_name(province))
    signing = SigningCA(out, days=days)
    for spec in teachers or []:
        name, _, key_type = spec.partition(":")
        if not SCHOOL_CODE.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid teacher name (letters, digits, '.', '_', '-')")
        signing.teacher(name, key_type or "ecdsa")
    return ca


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="transfer-devpki",
        description="Generate a development PKI for one node, or (--witness) a standalone witness's key and config.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--province", help="the node's province code, e.g. 01 (required without --witness)")
    parser.add_argument("--school", action="append", default=[], help="a school code (repeatable)")
    parser.add_argument("--days", type=int, default=365, help="validity of every certificate")
    parser.add_argument(
        "--teacher", action="append", default=[], help="a teacher's signing certificate: name[:rsa|ecdsa|ed25519]"
    )
    parser.add_argument(
        "--node-name",
        help="the log key's name (default: the default origin, hocba.invalid/province/<province>/log)",
    )
    parser.add_argument(
        "--no-witness-key", action="store_true", help="do not write the node's witness key (witness.key/.vkey)"
    )
    parser.add_argument("--witness", metavar="NAME", help="write a standalone witness named NAME instead of a PKI")
    parser.add_argument(
        "--log-vkey",
        action="append",
        default=[],
        type=Path,
        help="with --witness: a log.vkey file of a log it witnesses (repeatable)",
    )
    parser.add_argument("--listen", default="127.0.0.1:0", help="with --witness: its host:port (default 127.0.0.1:0)")
    ns = parser.parse_args(argv)
    try:
        if ns.witness:
            vkeys = [p.read_text(encoding="utf-8").strip() for p in ns.log_vkey]
            print(make_dev_witness(ns.out, ns.witness, vkeys, listen=ns.listen))
        elif ns.province is None:
            raise ValueError("--province is required (or --witness NAME for a standalone witness)")
        else:
            make_dev_pki(
                ns.out,
                ns.province,
                ns.school,
                days=ns.days,
                node_name=ns.node_name,
                teachers=ns.teacher,
                witness_key=not ns.no_witness_key,
            )
    except (OSError, ValueError) as exc:  # NoteError is a ValueError
        print(f"transfer-devpki: {exc}", file=sys.stderr)
        return 2
    files = sorted(p.name for p in ns.out.iterdir())
    print(f"wrote {len(files)} files to {ns.out}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
