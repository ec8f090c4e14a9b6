"""Signed notes, checkpoints and witness cosignatures, as the rest of the
transparency-log world writes them.

The node signs each checkpoint of its log with an Ed25519 key as a signed note
(c2sp.org/signed-note, the format of golang.org/x/mod/sumdb/note) whose text is
a C2SP checkpoint body (c2sp.org/tlog-checkpoint). Clients, verifiers and peers
open those notes with the log's verifier key, and may also require cosignatures
from witnesses (c2sp.org/tlog-cosignature, v1 Ed25519). Using the common format
means the same bytes can be checked by existing tools (Go's note package,
transparency-dev witnesses) and not only by this code.

Signature types (the byte after the name in a vkey):

* 0x01 Ed25519 over the note text: what our log signs with.
* 0x02 ECDSA P-256/SHA-256 (transparency-dev/witness, Sigstore Rekor): cheap
  to support with `cryptography`, and peers may run such logs or witnesses.
* 0x04 tlog-cosignature v1 (timestamped Ed25519): what witnesses add.

Everything else (0x05 RFC 6962 tree head signatures of CT logs, 0x06 ML-DSA-44
cosignatures, unassigned bytes) is refused by `parse_vkey` and, when it appears
in a note, ignored like any signature from an unknown key. The signed-note spec
asks implementations to support only the types their design needs; 0x05 is
specific to Certificate Transparency, and 0x06 signs a binary message that
leaves checkpoint extension lines unauthenticated, which would need its own
policy here before we accept it.

Pure: bytes and strings in and out, no I/O. Every refusal is a `NoteError`
whose message says what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

__all__ = [
    "MAX_SIGNATURES",
    "SIG_COSIGNATURE_V1",
    "SIG_ECDSA",
    "SIG_ED25519",
    "Checkpoint",
    "CosignatureV1Signer",
    "CosignatureV1Verifier",
    "ECDSAVerifier",
    "Ed25519Signer",
    "Ed25519Verifier",
    "KeyVerifier",
    "Note",
    "NoteError",
    "Signature",
    "Signer",
    "Verifier",
    "cosignature_message",
    "cosignature_signer",
    "cosignature_timestamp",
    "generate_key",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "parse_signature_line",
    "parse_skey",
    "parse_vkey",
    "sign_note",
    "signature_line",
    "skey_for",
    "vkey_for",
]

SIG_ED25519: Final = 0x01
SIG_ECDSA: Final = 0x02
SIG_COSIGNATURE_V1: Final = 0x04

# Go's note.Open stops at 100 so that a hostile note cannot make a verifier
# parse forever; C2SP requires accepting at least 16.
MAX_SIGNATURES: Final = 100

# tlog-cosignature: the timestamp "MUST NOT exceed 2^63 - 1".
_MAX_TIMESTAMP: Final = 2**63 - 1
_MAX_TREE_SIZE: Final = 2**64 - 1

_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_ED25519_KEY_SIZE: Final = 32
_ED25519_SIG_SIZE: Final = 64
_TIMESTAMP_SIZE: Final = 8
_ROOT_SIZE: Final = 32

# Unicode White_Space, which is what Go's unicode.IsSpace tests. Spelled out so
# the rule does not shift with the Python version's Unicode tables.
_SPACES: Final = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Note text may hold newlines but no other ASCII control character.
_CONTROL_BUT_NEWLINE: Final = re.compile("[\x00-\x09\x0b-\x1f]")
_CONTROL: Final = re.compile("[\x00-\x1f]")
_KEY_ID_HEX: Final = re.compile("[0-9a-fA-F]{8}")
# ASCII digits only: int() alone would also take "+1", " 1", "1_0" and non-ASCII digits.
_TREE_SIZE: Final = re.compile("0|[1-9][0-9]{0,19}")


class NoteError(ValueError):
    """Malformed input, a bad key, or a note that does not verify; the message says why."""


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: bytes  # 4 bytes
    data: bytes  # the signature bytes after the key ID (cosignature/v1: timestamp(8) || sig(64))


@dataclass(frozen=True)
class Note:
    """A note's text (ending in a newline) and all its signature lines, in order."""

    text: str
    signatures: tuple[Signature, ...]


class Verifier(Protocol):
    """Checks signatures by one key; `parse_vkey` makes these."""

    name: str
    key_id: bytes

    def verify(self, text: bytes, sig: bytes) -> bool: ...


class Signer(Protocol):
    """Signs note texts with one key; `parse_skey` makes these."""

    name: str
    key_id: bytes

    def sign(self, text: bytes) -> bytes: ...


# -- helpers ------------------------------------------------------------------


def _utf8(s: str, what: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise NoteError(f"{what} is not valid UTF-8") from exc


def _check_name(name: str, what: str) -> None:
    if not name:
        raise NoteError(f"{what}: key name is empty")
    _utf8(name, f"{what}: key name")
    if "+" in name:
        raise NoteError(f"{what}: key name {name!r} contains '+'")
    if any(c in _SPACES for c in name):
        raise NoteError(f"{what}: key name {name!r} contains a space")
    # Go would accept these in a vkey, but such a name could never appear in a note.
    if _CONTROL.search(name):
        raise NoteError(f"{what}: key name {name!r} contains a control character")


def _b64decode(s: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"{what}: invalid base64") from exc
    # Stricter than Go, which ignores the unused low bits of the last character:
    # requiring the canonical encoding keeps every signed byte meaningful, so a
    # note that opens cannot be altered into another string that also opens.
    if base64.b64encode(raw).decode("ascii") != s:
        raise NoteError(f"{what}: non-canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parse_key_id(s: str, what: str) -> bytes:
    # Go parses the ID with strconv.ParseUint(s, 16, 32), which takes either case.
    if not _KEY_ID_HEX.fullmatch(s):
        raise NoteError(f"{what}: key ID {s!r} is not 8 hex digits")
    return bytes.fromhex(s)


def _encode_key(name: str, kid: bytes, type_byte: int, key: bytes) -> str:
    return f"{name}+{kid.hex()}+{_b64(bytes([type_byte]) + key)}"


def key_id(name: str, type_byte: int, key: bytes) -> bytes:
    """The recommended key ID: the first 4 bytes of SHA-256(name || 0x0A || type || key)."""
    if not 0 <= type_byte <= 0xFF:
        raise NoteError(f"signature type {type_byte} is not a byte")
    return hashlib.sha256(_utf8(name, "key name") + b"\n" + bytes([type_byte]) + key).digest()[:4]


# -- keys ---------------------------------------------------------------------


class KeyVerifier:
    """A verifier parsed from a vkey: its name, key ID, type and public key."""

    __slots__ = ("key_id", "name", "public_key", "type_byte")

    name: str
    key_id: bytes
    type_byte: int
    public_key: bytes  # the key material after the type byte

    def __init__(self, name: str, kid: bytes, type_byte: int, public_key: bytes) -> None:
        self.name = name
        self.key_id = kid
        self.type_byte = type_byte
        self.public_key = public_key

    @property
    def vkey(self) -> str:
        """This verifier's vkey string (the key ID in lowercase hex)."""
        return _encode_key(self.name, self.key_id, self.type_byte, self.public_key)

    def verify(self, text: bytes, sig: bytes) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}+{self.key_id.hex()})"


class Ed25519Verifier(KeyVerifier):
    """Type 0x01: Ed25519 over the note text."""

    __slots__ = ("_key",)

    def __init__(self, name: str, public_key: bytes) -> None:
        super().__init__(name, key_id(name, SIG_ED25519, public_key), SIG_ED25519, public_key)
        self._key = ed25519.Ed25519PublicKey.from_public_bytes(public_key)

    def verify(self, text: bytes, sig: bytes) -> bool:
        if len(sig) != _ED25519_SIG_SIZE:
            return False
        try:
            self._key.verify(sig, text)
        except InvalidSignature:
            return False
        return True


class CosignatureV1Verifier(KeyVerifier):
    """Type 0x04: a witness's timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature).

    The signature data is uint64be timestamp || Ed25519 signature over
    `cosignature_message(text, timestamp)`; the type byte in the key ID and the
    "cosignature/v1" header keep it from being confused with a 0x01 signature.
    """

    __slots__ = ("_key",)

    def __init__(self, name: str, public_key: bytes) -> None:
        super().__init__(name, key_id(name, SIG_COSIGNATURE_V1, public_key), SIG_COSIGNATURE_V1, public_key)
        self._key = ed25519.Ed25519PublicKey.from_public_bytes(public_key)

    def verify(self, text: bytes, sig: bytes) -> bool:
        try:
            timestamp = cosignature_timestamp(sig)
        except NoteError:
            return False
        try:
            self._key.verify(sig[_TIMESTAMP_SIZE:], cosignature_message(text, timestamp))
        except InvalidSignature:
            return False
        return True


class ECDSAVerifier(KeyVerifier):
    """Type 0x02: ECDSA P-256 with SHA-256, DER signature over the note text.

    The key is a DER SubjectPublicKeyInfo and, as transparency-dev/witness
    defines it, the key ID is SHA-256 of that DER alone (no name, no type byte).
    """

    __slots__ = ("_key",)

    def __init__(self, name: str, spki_der: bytes) -> None:
        try:
            key = serialization.load_der_public_key(spki_der)
        except (ValueError, TypeError) as exc:
            raise NoteError(f"verifier key {name}: not a DER public key") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            # The spec allows P-384 and P-521 but does not say which hash goes with them.
            raise NoteError(f"verifier key {name}: ECDSA keys must be on P-256")
        super().__init__(name, hashlib.sha256(spki_der).digest()[:4], SIG_ECDSA, spki_der)
        self._key = key

    def verify(self, text: bytes, sig: bytes) -> bool:
        try:
            self._key.verify(sig, text, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def parse_vkey(vkey: str) -> Verifier:
    """Parse "<name>+<8 hex key ID>+base64(type byte || key)" into a verifier (a `KeyVerifier`)."""
    # Split on the first two '+' only: a name cannot hold one, base64 can.
    name, sep1, rest = vkey.partition("+")
    id_hex, sep2, key_b64 = rest.partition("+")
    if not (sep1 and sep2):
        raise NoteError("malformed verifier key: want <name>+<key id>+<base64 key>")
    _check_name(name, "verifier key")
    kid = _parse_key_id(id_hex, f"verifier key {name}")
    raw = _b64decode(key_b64, f"verifier key {name}")
    if not raw:
        raise NoteError(f"verifier key {name}: no key material")
    type_byte, key = raw[0], raw[1:]
    verifier: KeyVerifier
    if type_byte in (SIG_ED25519, SIG_COSIGNATURE_V1):
        if len(key) != _ED25519_KEY_SIZE:
            raise NoteError(f"verifier key {name}: Ed25519 key is {len(key)} bytes, want 32")
        verifier = Ed25519Verifier(name, key) if type_byte == SIG_ED25519 else CosignatureV1Verifier(name, key)
    elif type_byte == SIG_ECDSA:
        verifier = ECDSAVerifier(name, key)
    else:
        raise NoteError(f"verifier key {name}: unsupported signature type 0x{type_byte:02x}")
    # The ID is recomputed, never trusted: it is what ties a signature line to this key.
    if verifier.key_id != kid:
        raise NoteError(f"verifier key {name}: key ID {id_hex} does not match the key (want {verifier.key_id.hex()})")
    return verifier


class Ed25519Signer:
    """Signs note texts with an Ed25519 key (type 0x01)."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    name: str
    key_id: bytes
    public_key: bytes

    def __init__(self, name: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        _check_name(name, "signer")
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes_raw()
        self.key_id = key_id(name, SIG_ED25519, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key matching this signer."""
        return _encode_key(self.name, self.key_id, SIG_ED25519, self.public_key)

    def sign(self, text: bytes) -> bytes:
        return self._key.sign(text)

    def __repr__(self) -> str:  # never the private key
        return f"Ed25519Signer({self.name}+{self.key_id.hex()})"


def parse_skey(skey: str) -> Signer:
    """Parse "PRIVATE+KEY+<name>+<8 hex key ID>+base64(0x01 || 32-byte Ed25519 seed)" (an `Ed25519Signer`)."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise NoteError("malformed signer key: want PRIVATE+KEY+<name>+<key id>+<base64 key>")
    _, _, name, id_hex, key_b64 = parts
    _check_name(name, "signer key")
    kid = _parse_key_id(id_hex, f"signer key {name}")
    raw = _b64decode(key_b64, f"signer key {name}")
    if not raw:
        raise NoteError(f"signer key {name}: no key material")
    if raw[0] != SIG_ED25519:
        raise NoteError(f"signer key {name}: unsupported signature type 0x{raw[0]:02x}")
    if len(raw) - 1 != _ED25519_KEY_SIZE:
        raise NoteError(f"signer key {name}: Ed25519 seed is {len(raw) - 1} bytes, want 32")
    signer = Ed25519Signer(name, ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:]))
    # The ID names the public key, so it can only be checked after deriving it.
    if signer.key_id != kid:
        raise NoteError(f"signer key {name}: key ID {id_hex} does not match the key")
    return signer


def generate_key(name: str) -> tuple[str, str]:
    """A new Ed25519 key pair for `name`: (skey, vkey)."""
    return skey_for(name, ed25519.Ed25519PrivateKey.generate())


def skey_for(name: str, private_key: ed25519.Ed25519PrivateKey) -> tuple[str, str]:
    """The signed-note (skey, vkey) of an Ed25519 private key, named `name`."""
    signer = Ed25519Signer(name, private_key)
    seed = signer._key.private_bytes_raw()
    return f"PRIVATE+KEY+{_encode_key(name, signer.key_id, SIG_ED25519, seed)}", signer.vkey


def vkey_for(name: str, public_key: bytes) -> str:
    """The Ed25519 (type 0x01) vkey for a raw 32-byte public key."""
    _check_name(name, "verifier key")
    if len(public_key) != _ED25519_KEY_SIZE:
        raise NoteError(f"Ed25519 public key is {len(public_key)} bytes, want 32")
    return _encode_key(name, key_id(name, SIG_ED25519, public_key), SIG_ED25519, public_key)


# -- cosignatures -------------------------------------------------------------


def cosignature_message(text: bytes | str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: "cosignature/v1\\ntime <timestamp>\\n" followed by the note text."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} is out of range")
    body = _utf8(text, "note text") if isinstance(text, str) else text
    return b"cosignature/v1\ntime %d\n" % timestamp + body


def cosignature_timestamp(data: bytes) -> int:
    """The timestamp of a cosignature/v1 (`Signature.data` = uint64be timestamp || 64-byte signature)."""
    if len(data) != _TIMESTAMP_SIZE + _ED25519_SIG_SIZE:
        raise NoteError(f"a cosignature/v1 is 8+64 bytes after the key ID, not {len(data)}")
    timestamp = int.from_bytes(data[:_TIMESTAMP_SIZE], "big")
    if timestamp > _MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} exceeds 2^63-1")
    return timestamp


class CosignatureV1Signer:
    """A witness's cosignature/v1 key (type 0x04, c2sp.org/tlog-cosignature).

    The key ID is computed with type byte 0x04, so the same Ed25519 key never
    yields a line that a type 0x01 verifier of that name would take for its own.
    The signed message does not name the witness: one key serves one witness.
    """

    __slots__ = ("_key", "key_id", "name", "public_key")

    name: str
    key_id: bytes
    public_key: bytes

    def __init__(self, name: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        _check_name(name, "cosigner")
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes_raw()
        self.key_id = key_id(name, SIG_COSIGNATURE_V1, self.public_key)

    @property
    def vkey(self) -> str:
        """The type 0x04 verifier key that checks this witness's cosignatures."""
        return _encode_key(self.name, self.key_id, SIG_COSIGNATURE_V1, self.public_key)

    def cosign(self, text: str, timestamp: int) -> Signature:
        """The cosignature of a checkpoint's note text at `timestamp` (POSIX seconds)."""
        message = cosignature_message(_check_text(text), timestamp)
        return Signature(self.name, self.key_id, timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + self._key.sign(message))

    def __repr__(self) -> str:  # never the private key
        return f"CosignatureV1Signer({self.name}+{self.key_id.hex()})"


def cosignature_signer(skey: str) -> CosignatureV1Signer:
    """A cosigner from an Ed25519 skey in Go's format (PRIVATE+KEY+<name>+<id>+base64(0x01 || seed)).

    The private key file is the ordinary note key (as transparency-dev's
    NewSignerForCosignatureV1 reads it); the cosigner's own key ID and vkey use type 0x04.
    """
    signer = parse_skey(skey)
    if not isinstance(signer, Ed25519Signer):
        raise NoteError("a cosigner key must be an Ed25519 key")
    return CosignatureV1Signer(signer.name, signer._key)


def signature_line(sig: Signature) -> str:
    """One note signature line, "— <name> base64(key ID || signature)", with its newline."""
    _check_name(sig.name, "signature")
    if len(sig.key_id) != 4 or not sig.data:
        raise NoteError(f"signature by {sig.name}: want a 4-byte key ID and a signature")
    return f"{_SIG_PREFIX}{sig.name} {_b64(sig.key_id + sig.data)}\n"


# -- notes --------------------------------------------------------------------


def _check_text(text: str) -> bytes:
    if not text.endswith("\n"):
        raise NoteError("note text must be non-empty and end with a newline")
    data = _utf8(text, "note text")
    if _CONTROL_BUT_NEWLINE.search(text):
        raise NoteError("note text contains a control character")
    # Go's Sign allows this, but the blank line would read as part of the separator.
    if text == "\n" or text.endswith("\n\n"):
        raise NoteError("note text must not end with a blank line")
    return data


def sign_note(text: str, *signers: Signer) -> str:
    """The signed note: `text`, a blank line, and one signature line per signer, in order.

    The text must be what `parse_note` accepts and then some: non-empty UTF-8
    ending in a newline, no control characters but newlines, and no blank last
    line. (Go's note.Sign checks only the final newline, so it can produce notes
    that note.Open then refuses; here that is an error at signing time.)
    """
    data = _check_text(text)
    if not signers:
        raise NoteError("a note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signers: verifiers would refuse the note")
    seen: set[tuple[str, bytes]] = set()
    lines = []
    for signer in signers:
        _check_name(signer.name, "signer")
        if len(signer.key_id) != 4:
            raise NoteError(f"signer {signer.name}: key ID must be 4 bytes")
        if (signer.name, signer.key_id) in seen:
            raise NoteError(f"signer {signer.name}+{signer.key_id.hex()} given twice")
        seen.add((signer.name, signer.key_id))
        sig = signer.sign(data)
        if not sig:
            raise NoteError(f"signer {signer.name} returned an empty signature")
        lines.append(f"{_SIG_PREFIX}{signer.name} {_b64(signer.key_id + sig)}\n")
    return text + "\n" + "".join(lines)


def parse_signature_line(line: str) -> Signature:
    """Parse one "— <name> base64(key ID || signature)" line, without its newline."""
    if not line.startswith(_SIG_PREFIX):
        raise NoteError("malformed note: signature line does not start with an em dash and a space")
    name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    try:
        _check_name(name, "signature line")
    except NoteError as exc:
        raise NoteError(f"malformed note: {exc}") from None
    raw = _b64decode(b64, f"malformed note: signature by {name}")
    if len(raw) < 5:
        raise NoteError(f"malformed note: signature by {name} is too short")
    return Signature(name, raw[:4], raw[4:])


def parse_note(msg: bytes | str) -> Note:
    """Split a signed note into its text and signature lines, checking structure only (no signatures)."""
    data = msg.encode("utf-8", "surrogatepass") if isinstance(msg, str) else bytes(msg)
    try:
        decoded = data.decode("utf-8")  # strict: refuses surrogates, overlong forms, ...
    except UnicodeDecodeError:
        raise NoteError("malformed note: not valid UTF-8") from None
    if _CONTROL_BUT_NEWLINE.search(decoded):
        raise NoteError("malformed note: contains a control character other than newline")
    # The text may contain blank lines; the last one separates it from the signatures.
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block:
        raise NoteError("malformed note: no signature lines")
    if not block.endswith("\n"):
        raise NoteError("malformed note: the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(parse_signature_line(line) for line in lines))


def open_note(msg: bytes | str, verifiers: Iterable[Verifier]) -> tuple[Note, list[Signature]]:
    """Parse a signed note and check it against the known keys.

    Every signature whose (name, key ID) is a known key must verify, or the
    whole note is refused (a bad signature from a trusted key means something is
    wrong, and C2SP says to reject). Signatures from unknown keys are ignored, so
    logs can rotate keys and witnesses can add cosignatures. At least one known
    signature must verify. Returns the note and its verified signatures, one per
    key (a key that signed twice is still one signer, so a quorum count over the
    list cannot be inflated by repeating a line).
    """
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        key = (verifier.name, bytes(verifier.key_id))
        if key in known:
            raise NoteError(f"ambiguous key {verifier.name}+{verifier.key_id.hex()}")
        known[key] = verifier
    note = parse_note(msg)
    text = note.text.encode("utf-8")
    verified: dict[tuple[str, bytes], Signature] = {}
    for sig in note.signatures:
        found = known.get((sig.name, sig.key_id))
        if found is None:
            continue
        # Go skips a repeated line from the same key unchecked; here every one must verify.
        if not found.verify(text, sig.data):
            raise NoteError(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        verified.setdefault((sig.name, sig.key_id), sig)
    if not verified:
        raise NoteError("note has no verifiable signatures")
    return note, list(verified.values())


# -- checkpoints --------------------------------------------------------------


def _check_line(line: str, what: str) -> None:
    if not line:
        raise NoteError(f"checkpoint {what} is empty")
    if _CONTROL.search(line):
        raise NoteError(f"checkpoint {what} contains a control character")
    _utf8(line, f"checkpoint {what}")


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: the log's origin, tree size and root hash.

    Checked on construction, so `text()` always gives a body that
    `parse_checkpoint` accepts and a note can carry.
    """

    origin: str
    size: int
    root: bytes  # 32 bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= _MAX_TREE_SIZE:
            raise NoteError(f"checkpoint size {self.size!r} is not a uint64")
        if not isinstance(self.root, bytes) or len(self.root) != _ROOT_SIZE:
            raise NoteError("checkpoint root must be 32 bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            _check_line(line, "extension line")

    def text(self) -> str:
        """The note text: origin, size and base64 root, then the extension lines, each ending in a newline."""
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), _b64(self.root), *self.extensions))


def parse_checkpoint(text: str, *, origin: str | None = None) -> Checkpoint:
    """Parse a checkpoint body strictly (c2sp.org/tlog-checkpoint).

    With `origin`, the first line must be exactly that: a client must not take
    a checkpoint of some other log for the one it follows.
    """
    if not text.endswith("\n"):
        raise NoteError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint needs origin, size and root hash lines")
    first, size_line, root_line, *extensions = lines
    _check_line(first, "origin")
    if origin is not None and first != origin:
        raise NoteError(f"checkpoint is for {first!r}, not {origin!r}")
    if not _TREE_SIZE.fullmatch(size_line) or int(size_line) > _MAX_TREE_SIZE:
        raise NoteError(f"checkpoint size {size_line!r} is not a decimal uint64 without leading zeros")
    root = _b64decode(root_line, "checkpoint root hash")
    if len(root) != _ROOT_SIZE:
        raise NoteError(f"checkpoint root hash is {len(root)} bytes, want 32")
    for line in extensions:
        _check_line(line, "extension line")
    return Checkpoint(first, int(size_line), root, tuple(extensions))


def open_checkpoint(signed: str, verifier: Verifier | Sequence[Verifier], origin: str | None = None) -> Checkpoint:
    """A checkpoint whose signed note carries a valid signature by `verifier`
    (or by one of several: a log's current, next and previous keys; every
    signature by any of them must verify), and, given `origin`, which is of
    that log; NoteError otherwise."""
    note, _ = open_note(signed, list(verifier) if isinstance(verifier, Sequence) else [verifier])
    return parse_checkpoint(note.text, origin=origin)
