"""The deny list of client certificates (`tls.revoked`, `tls.revoked_file`): the node refuses a listed
certificate with UNAUTHENTICATED / CERTIFICATE_REVOKED, whatever CA issued it.

An entry names one certificate, by its serial number (`serial:0x<hex>`, as `openssl x509 -serial`
prints it, colons allowed; or `serial:<decimal>`, as `step certificate inspect` prints it) or by the
SHA-256 of its DER encoding (`sha256:<hex>`, as `step certificate fingerprint` or `openssl x509
-fingerprint -sha256` print it, colons allowed). Serial numbers are unique per CA only; a CA issuing
random 64-bit or longer serials (step-ca, any CA following the CA/Browser Forum rules) makes a clash
between the node's CA and a peer's negligible, and a fingerprint names exactly one certificate.

Pure: no gRPC, no configuration.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

_HEX = re.compile(r"[0-9a-fA-F]+(:[0-9a-fA-F]+)*")


def _parse(entry: object) -> tuple[str, int | bytes]:
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not a string")
    kind, sep, value = entry.strip().partition(":")
    value = value.strip()
    kind = kind.lower()
    if sep and kind == "serial":
        if value.lower().startswith("0x") and _HEX.fullmatch(value[2:]):
            return "serial", int(value[2:].replace(":", ""), 16)
        if value.isascii() and value.isdigit():
            return "serial", int(value)
    elif sep and kind == "sha256" and _HEX.fullmatch(value):
        digest = value.replace(":", "").lower()
        if len(digest) == 64:
            return "sha256", bytes.fromhex(digest)
    raise ValueError(
        f"{entry!r}: write serial:0x<hex>, serial:<decimal> or sha256:<64 hex digits> (a certificate's SHA-256)"
    )


def revoked_entry_problem(entry: object) -> str | None:
    """What is wrong with one deny-list entry, or None."""
    try:
        _parse(entry)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Revocations:
    """Serial numbers and SHA-256 fingerprints of client certificates the node refuses."""

    serials: frozenset[int] = frozenset()
    fingerprints: frozenset[bytes] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[object]) -> Revocations:
        """From entries as written in `tls.revoked` (ValueError naming the first bad one)."""
        return cls._of(_parse(entry) for entry in entries)

    @classmethod
    def parse_file(cls, text: str) -> Revocations:
        """From a `tls.revoked_file`: one entry a line, blank lines and '#' comments ignored
        (ValueError naming the line of the first bad entry)."""

        def parsed() -> Iterator[tuple[str, int | bytes]]:
            for number, line in enumerate(text.splitlines(), 1):
                entry = line.split("#", 1)[0].strip()
                if entry:
                    try:
                        yield _parse(entry)
                    except ValueError as exc:
                        raise ValueError(f"line {number}: {exc}") from None

        return cls._of(parsed())

    @classmethod
    def _of(cls, parsed: Iterable[tuple[str, int | bytes]]) -> Revocations:
        serials, fingerprints = set(), set()
        for kind, value in parsed:
            if kind == "serial":
                assert isinstance(value, int)
                serials.add(value)
            else:
                assert isinstance(value, bytes)
                fingerprints.add(value)
        return cls(frozenset(serials), frozenset(fingerprints))

    def __or__(self, other: Revocations) -> Revocations:
        return Revocations(self.serials | other.serials, self.fingerprints | other.fingerprints)

    def __len__(self) -> int:
        return len(self.serials) + len(self.fingerprints)

    def revokes(self, cert: x509.Certificate) -> bool:
        if cert.serial_number in self.serials:
            return True
        return bool(self.fingerprints) and hashlib.sha256(cert.public_bytes(Encoding.DER)).digest() in self.fingerprints
