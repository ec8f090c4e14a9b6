"""Signed notes, checkpoints and cosignatures: the shared known-answer vectors (tests/data/note-vectors.json)
and the properties our log's own notes must have."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.ledger.note import (
    MAX_SIGNATURES,
    Checkpoint,
    CosignatureV1Signer,
    CosignatureV1Verifier,
    ECDSAVerifier,
    Ed25519Signer,
    Ed25519Verifier,
    KeyVerifier,
    NoteError,
    Signature,
    cosignature_message,
    cosignature_signer,
    cosignature_timestamp,
    generate_key,
    key_id,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_signature_line,
    parse_skey,
    parse_vkey,
    sign_note,
    signature_line,
    vkey_for,
)

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "note-vectors.json").read_text(encoding="utf-8"))
KEYS: list[dict[str, Any]] = VECTORS["ed25519_keys"]
KEY = {k["name"]: k for k in KEYS}
NEGATIVE = {n["id"]: n for n in VECTORS["negative"]}
PETER = KEY["PeterNeumann"]


def b64d(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def skey_of(key: dict[str, Any]) -> str:
    """The vector's skey, or one built from its Ed25519 seed in Go's format (EnochRoot lists only the seed)."""
    if "skey" in key:
        return str(key["skey"])
    material = b64e(bytes([0x01]) + bytes.fromhex(key["ed25519_seed_hex"]))
    return f"PRIVATE+KEY+{key['name']}+{key['key_id_hex']}+{material}"


def verifier(vkey: str) -> KeyVerifier:
    v = parse_vkey(vkey)
    assert isinstance(v, KeyVerifier)
    return v


def message(entry: dict[str, Any]) -> bytes:
    return bytes.fromhex(entry["message_hex"]) if "message_hex" in entry else str(entry["message"]).encode()


def sig_lines(signed_note: str) -> list[str]:
    return [line for line in signed_note.split("\n") if line.startswith("\u2014 ")]


def by_id(entries: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] = lambda e: True) -> list[Any]:
    return [pytest.param(e, id=e["id"]) for e in entries if keep(e)]


def test_vector_sections_are_complete() -> None:
    """The copied vector file holds as many entries per section as its own counts say (no truncated copy)."""
    for section, count in VECTORS["counts"].items():
        assert len(VECTORS[section]) == count, section


# -- ed25519_keys -------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS, ids=[k["name"] for k in KEYS])
def test_vkey_parses_to_its_name_key_id_and_public_key(key: dict[str, Any]) -> None:
    """Each vkey parses to an Ed25519 verifier with the listed name, key ID and public key, and re-encodes exactly."""
    v = verifier(key["vkey"])
    assert isinstance(v, Ed25519Verifier)
    assert (v.name, v.key_id.hex(), v.type_byte, v.public_key.hex()) == (
        key["name"],
        key["key_id_hex"],
        key["signature_type"],
        key["public_key_hex"],
    )
    assert v.vkey == key["vkey"]
    assert key_id(key["name"], 0x01, bytes.fromhex(key["public_key_hex"])).hex() == key["key_id_hex"]
    assert vkey_for(key["name"], bytes.fromhex(key["public_key_hex"])) == key["vkey"]


SEEDED = [k for k in KEYS if "ed25519_seed_hex" in k]


@pytest.mark.parametrize("key", SEEDED, ids=[k["name"] for k in SEEDED])
def test_skey_derives_its_vkey(key: dict[str, Any]) -> None:
    """Each skey (or one built from the listed seed) parses to a signer whose signatures the vkey accepts."""
    seed = bytes.fromhex(key["ed25519_seed_hex"])
    assert (
        ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw().hex()
        == (key["public_key_hex"])
    )
    signer = parse_skey(skey_of(key))
    assert isinstance(signer, Ed25519Signer)
    assert (signer.name, signer.key_id.hex(), signer.vkey) == (key["name"], key["key_id_hex"], key["vkey"])
    probe = b"probe\n"
    assert parse_vkey(key["vkey"]).verify(probe, signer.sign(probe))
    assert not parse_vkey(key["vkey"]).verify(b"other\n", signer.sign(probe))


# -- signed_notes -------------------------------------------------------------


@pytest.mark.parametrize("entry", by_id(VECTORS["signed_notes"]))
def test_signed_note_opens_with_the_listed_keys(entry: dict[str, Any]) -> None:
    """Each signed note opens with the keys of its listed signatures; exactly those are verified, others ignored."""
    valid = [s for s in entry["signatures"] if s["valid"]]
    note, verified = open_note(entry["signed_note"], [parse_vkey(KEY[s["key_name"]]["vkey"]) for s in valid])
    assert note.text == entry["text"]
    assert len(note.signatures) == len(sig_lines(entry["signed_note"]))
    assert verified == [
        Signature(s["key_name"], bytes.fromhex(s["key_id_hex"]), b64d(s["signature_b64"])) for s in valid
    ]


@pytest.mark.parametrize("entry", by_id(VECTORS["signed_notes"]))
def test_listed_signatures_verify_only_when_marked_valid(entry: dict[str, Any]) -> None:
    """Every listed signature is in the note, and its key's verifier accepts it exactly when it is marked valid."""
    lines = parse_note(entry["signed_note"]).signatures
    for s in entry["signatures"]:
        sig = Signature(s["key_name"], bytes.fromhex(s["key_id_hex"]), b64d(s["signature_b64"]))
        assert sig in lines
        assert parse_vkey(KEY[s["key_name"]]["vkey"]).verify(entry["text"].encode(), sig.data) is s["valid"]


def _reproducible(entry: dict[str, Any]) -> bool:
    names = [line.split(" ")[1] for line in sig_lines(entry["signed_note"])]
    return all(name in KEY and "ed25519_seed_hex" in KEY[name] for name in names)


@pytest.mark.parametrize("entry", by_id(VECTORS["signed_notes"], _reproducible))
def test_signing_reproduces_the_signed_note(entry: dict[str, Any]) -> None:
    """Signing the text with the notes' keys (all seeds known) gives back the signed note byte for byte."""
    names = [line.split(" ")[1] for line in sig_lines(entry["signed_note"])]
    assert sign_note(entry["text"], *(parse_skey(skey_of(KEY[n])) for n in names)) == entry["signed_note"]


def test_reproducible_signed_notes_are_the_go_ones() -> None:
    """The exact-signing test covers the two golang.org/x/mod notes (the others have no published seed)."""
    assert [e["id"] for e in VECTORS["signed_notes"] if _reproducible(e)] == [
        "sumdb-peterneumann",
        "sumdb-peter-and-enoch",
    ]


def test_known_key_verified_and_unknown_signature_kept_unverified() -> None:
    """With only PeterNeumann's key, the two-signature note opens with 1 verified and 1 unverified signature."""
    entry = next(e for e in VECTORS["signed_notes"] if e["id"] == "sumdb-peter-and-enoch")
    note, verified = open_note(entry["signed_note"], [parse_vkey(PETER["vkey"])])
    assert [s.name for s in verified] == ["PeterNeumann"]
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]


# -- cosignatures_v1 ----------------------------------------------------------

COSIGS = {c["id"]: c for c in VECTORS["cosignatures_v1"]}
REMORA = COSIGS["real-cosignature-remora-on-arche2025h1"]
ARCHE_NOTE = next(e for e in VECTORS["signed_notes"] if e["id"] == "real-checkpoint-arche2025h1")


def test_real_cosignature_verifies_over_the_documented_message() -> None:
    """The remora cosignature: key parses as type 0x04, timestamp and signed message are as documented, it verifies."""
    v = verifier(REMORA["cosigner_vkey"])
    assert isinstance(v, CosignatureV1Verifier)
    assert (v.name, v.key_id.hex(), v.type_byte, v.public_key.hex()) == (
        REMORA["cosigner_name"],
        REMORA["key_id_hex"],
        REMORA["signature_type"],
        REMORA["public_key_hex"],
    )
    assert key_id(v.name, 0x04, v.public_key).hex() == REMORA["key_id_hex"]
    sig = parse_signature_line(REMORA["signature_line"])
    assert (sig.name, sig.key_id.hex(), len(sig.data)) == (REMORA["cosigner_name"], REMORA["key_id_hex"], 8 + 64)
    timestamp = cosignature_timestamp(sig.data)
    assert timestamp == REMORA["timestamp"]
    assert sig.data[8:].hex() == REMORA["ed25519_signature_hex"]
    signed = cosignature_message(REMORA["checkpoint_body"], timestamp)
    assert signed == REMORA["signed_message"].encode()
    # Independently of the module: plain Ed25519 over that message.
    ed25519.Ed25519PublicKey.from_public_bytes(v.public_key).verify(sig.data[8:], signed)
    body = REMORA["checkpoint_body"].encode()
    assert v.verify(body, sig.data)
    later = (timestamp + 1).to_bytes(8, "big") + sig.data[8:]
    assert not v.verify(body, later)
    assert not v.verify(body.replace(b"1432088532", b"1432088533"), sig.data)


def test_real_checkpoint_opens_with_log_key_and_cosigner() -> None:
    """With the arche log key and the remora cosigner key, both verify; the other four lines are ignored."""
    note, verified = open_note(ARCHE_NOTE["signed_note"], [parse_vkey(k) for k in ARCHE_NOTE["verifier_keys"]])
    assert [(s.name, s.key_id.hex()) for s in verified] == [
        ("arche2025h1.staging.ct.transparency.dev", "ba2f06c0"),
        ("remora.n621.de", "da77ade7"),
    ]
    assert len(note.signatures) == 6
    cp = parse_checkpoint(note.text, origin=ARCHE_NOTE["checkpoint"]["origin"])
    assert (cp.size, cp.root.hex()) == (
        ARCHE_NOTE["checkpoint"]["tree_size"],
        ARCHE_NOTE["checkpoint"]["root_hash_hex"],
    )
    _, cosigned = open_note(ARCHE_NOTE["signed_note"], [parse_vkey(REMORA["cosigner_vkey"])])
    assert [s.name for s in cosigned] == ["remora.n621.de"]


def test_cosignature_timestamp_is_extracted() -> None:
    """The parse-only transparency-dev vector: key ID, then uint64be timestamp 1727964367, then 64 bytes."""
    entry = COSIGS["formats-cosig-timestamp-parse"]
    raw = b64d(entry["signature_b64"])
    assert len(raw) == 4 + 8 + 64
    assert cosignature_timestamp(raw[4:]) == entry["expected_timestamp"]


def test_plain_signature_is_not_a_cosignature() -> None:
    """A 68-byte payload (key ID + 64-byte Ed25519 signature) has no timestamp: refused, and never verifies."""
    raw = b64d(COSIGS["formats-cosig-wrong-type"]["signature_b64"])
    assert len(raw) == 4 + 64
    with pytest.raises(NoteError, match="8\\+64"):
        cosignature_timestamp(raw[4:])
    assert not parse_vkey(REMORA["cosigner_vkey"]).verify(REMORA["checkpoint_body"].encode(), raw[4:])


def _cosign(key: ed25519.Ed25519PrivateKey, name: str, text: str, timestamp: int) -> tuple[str, str]:
    """A type-0x04 vkey and a cosignature line, built by hand from the spec (not by the module)."""
    pub = key.public_key().public_bytes_raw()
    kid = hashlib.sha256(name.encode() + b"\n\x04" + pub).digest()[:4]
    signed = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text.encode()
    data = kid + timestamp.to_bytes(8, "big") + key.sign(signed)
    return f"{name}+{kid.hex()}+{b64e(bytes([0x04]) + pub)}", "\u2014 " + f"{name} {b64e(data)}\n"


def test_own_cosignature_round_trip_and_domain_separation() -> None:
    """A witness cosignature added to our log's note verifies with its 0x04 key but not as a 0x01 key of the same name."""
    log = parse_skey(KEY["Log"]["skey"])
    text = Checkpoint("example.com/log", 7, bytes(32)).text()
    witness = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    cosigner_vkey, line = _cosign(witness, "witness.example", text, 1_700_000_000)
    signed = sign_note(text, log) + line
    _, verified = open_note(signed, [parse_vkey(KEY["Log"]["vkey"]), parse_vkey(cosigner_vkey)])
    assert [s.name for s in verified] == ["Log", "witness.example"]
    assert cosignature_timestamp(verified[1].data) == 1_700_000_000
    # Same name and key material as type 0x01: a different key ID, so the line is not its signature.
    plain = parse_vkey(vkey_for("witness.example", witness.public_key().public_bytes_raw()))
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(signed, [plain])
    # And a 0x04 verifier refuses a plain 0x01 signature of the text by the same key.
    assert not parse_vkey(cosigner_vkey).verify(text.encode(), witness.sign(text.encode()))


def test_cosignature_timestamp_above_2_63_is_refused() -> None:
    """tlog-cosignature caps the timestamp at 2^63-1: larger ones are refused and never verify."""
    with pytest.raises(NoteError, match="out of range"):
        cosignature_message("x\n", 2**63)
    with pytest.raises(NoteError, match="2\\^63"):
        cosignature_timestamp((2**63).to_bytes(8, "big") + bytes(64))
    assert cosignature_message("x\n", 2**63 - 1) == b"cosignature/v1\ntime 9223372036854775807\nx\n"


def test_every_cosignature_on_the_real_checkpoint_is_a_cosignature_v1() -> None:
    """The arche checkpoint's four witness lines are 4+8+64-byte cosignature/v1 payloads of one timestamp
    (the remora vector's); the remora line is the one its vkey verifies, the log's RFC 6962 line is not one."""
    note = parse_note(ARCHE_NOTE["signed_note"])
    witnesses = [s for s in note.signatures if s.name != ARCHE_NOTE["checkpoint"]["origin"]]
    assert [s.name for s in witnesses] == [
        "transparency.dev/DEV:witness-little-garden",
        "witness1.smartit.nu/witness1",
        "remora.n621.de",
        "witness.stagemole.eu",
    ]
    assert {cosignature_timestamp(s.data) for s in witnesses} == {REMORA["timestamp"]}
    remora = parse_vkey(REMORA["cosigner_vkey"])
    text = note.text.encode()
    assert [remora.verify(text, s.data) for s in witnesses if s.key_id == remora.key_id] == [True]
    assert next(s for s in witnesses if s.name == "remora.n621.de").key_id == remora.key_id


def test_cosigner_signs_the_documented_message() -> None:
    """CosignatureV1Signer: key ID with type 0x04, signature = Ed25519 over the vector's exact signed message
    (deterministic, so checked byte for byte against a signature made without the module), 4+8+64 line."""
    seed = bytes.fromhex(KEY["EnochRoot"]["ed25519_seed_hex"])
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    signer = CosignatureV1Signer("witness.example/w1", key)
    pub = key.public_key().public_bytes_raw()
    assert signer.key_id == hashlib.sha256(b"witness.example/w1\n\x04" + pub).digest()[:4]
    assert signer.vkey == f"witness.example/w1+{signer.key_id.hex()}+" + b64e(bytes([0x04]) + pub)
    sig = signer.cosign(REMORA["checkpoint_body"], REMORA["timestamp"])
    assert sig.data == REMORA["timestamp"].to_bytes(8, "big") + key.sign(REMORA["signed_message"].encode())
    line = signature_line(sig)
    assert line == "\u2014 witness.example/w1 " + b64e(signer.key_id + sig.data) + "\n"
    assert len(b64d(line.split(" ")[2].rstrip("\n"))) == 4 + 8 + 64
    signed = ARCHE_NOTE["signed_note"] + line
    _, verified = open_note(signed, [parse_vkey(signer.vkey), parse_vkey(REMORA["cosigner_vkey"])])
    assert [s.name for s in verified] == ["remora.n621.de", "witness.example/w1"]
    # Built from the Go-format skey the witness keeps on disk: same key, type 0x04 identity.
    from_skey = cosignature_signer(skey_of(KEY["EnochRoot"]))
    assert from_skey.name == "EnochRoot" and from_skey.public_key == pub
    assert from_skey.key_id == key_id("EnochRoot", 0x04, pub) != bytes.fromhex(KEY["EnochRoot"]["key_id_hex"])


def test_cosigner_refuses_what_is_not_a_checkpoint_text() -> None:
    """A cosignature needs a note text ending in a newline and a timestamp within 0..2^63-1; a non-Ed25519 skey
    cannot make a cosigner."""
    signer = CosignatureV1Signer("w", ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)))
    with pytest.raises(NoteError):
        signer.cosign("no newline", 1)
    with pytest.raises(NoteError, match="out of range"):
        signer.cosign("x\n", 2**63)
    with pytest.raises(NoteError):
        cosignature_signer(KEY["PeterNeumann"]["vkey"])


# -- other_signature_types / cosignatures_mldsa44 -----------------------------
# Supported: 0x01 Ed25519 (our log's key), 0x04 cosignature/v1 (witnesses) and 0x02 ECDSA P-256 (transparency-dev
# witnesses and Sigstore-style logs; a few lines with `cryptography`). Not supported: 0x05 RFC 6962 tree head signatures
# (Certificate Transparency only) and 0x06 ML-DSA-44 cosignatures (their signed message leaves extension lines out,
# which needs a policy first); parse_vkey refuses those keys and open_note ignores their lines like any unknown key's.

OTHER = VECTORS["other_signature_types"]
ECDSA = [e for e in OTHER if e["signature_type"] == 2]
UNSUPPORTED = [e for e in OTHER if e["signature_type"] != 2] + [
    {**e, "vkey": e["cosigner_vkey"]} for e in VECTORS["cosignatures_mldsa44"]
]


@pytest.mark.parametrize("entry", by_id(ECDSA))
def test_ecdsa_note_opens(entry: dict[str, Any]) -> None:
    """Type 0x02: the key ID is SHA-256 of the DER SPKI; the note opens, and a changed text does not."""
    v = verifier(entry["vkey"])
    assert isinstance(v, ECDSAVerifier)
    assert v.key_id == hashlib.sha256(v.public_key).digest()[:4]
    assert v.vkey == entry["vkey"]
    note, verified = open_note(entry["signed_note"], [v])
    assert [s.name for s in verified] == [entry["vkey"].split("+")[0]]
    size = note.text.split("\n")[1]
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(entry["signed_note"].replace(f"\n{size}\n", f"\n{int(size) + 1}\n", 1), [v])


def test_ecdsa_keys_off_p256_or_with_wrong_id_are_refused() -> None:
    """A P-384 key, a key ID that is not SHA-256(SPKI)[:4], and non-DER key bytes are all refused."""
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = p384.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(NoteError, match="P-256"):
        parse_vkey(f"k+{hashlib.sha256(der).digest()[:4].hex()}+{b64e(bytes([0x02]) + der)}")
    good = ECDSA[0]["vkey"]
    name, kid, rest = good.split("+", 2)
    with pytest.raises(NoteError, match="does not match"):
        parse_vkey(f"{name}+{(int(kid, 16) ^ 1):08x}+{rest}")
    with pytest.raises(NoteError, match="DER"):
        parse_vkey(f"k+{hashlib.sha256(b'junk').digest()[:4].hex()}+{b64e(bytes([0x02]) + b'junk')}")


@pytest.mark.parametrize("entry", by_id(UNSUPPORTED))
def test_unsupported_signature_types_are_refused_and_ignored(entry: dict[str, Any]) -> None:
    """Types 0x05 and 0x06: parse_vkey refuses the key; their lines are ignored, alone (nothing verifies) or beside ours."""
    with pytest.raises(NoteError, match=f"unsupported signature type 0x{entry['signature_type']:02x}"):
        parse_vkey(entry["vkey"])
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(entry["signed_note"], [])
    note = parse_note(entry["signed_note"])
    ours = parse_skey(KEY["Log"]["skey"])
    signed = entry["signed_note"] + sig_lines(sign_note(note.text, ours))[0] + "\n"
    opened, verified = open_note(signed, [parse_vkey(KEY["Log"]["vkey"])])
    assert [s.name for s in verified] == ["Log"]
    assert opened.signatures[:-1] == note.signatures


def test_rfc6962_line_in_arche_note_uses_the_type_5_key_id_rule() -> None:
    """The arche note's first line is the log's RFC 6962 signature: a key ID our Ed25519 key does not have, so ignored."""
    rome = next(e for e in OTHER if e["signature_type"] == 5)
    log_id = hashlib.sha256(b64d(rome["log_spki_der_b64"])).digest()
    assert log_id.hex() == rome["log_id_hex"]
    origin = rome["signed_note"].split("\n")[0]
    assert key_id(origin, 0x05, log_id).hex() == rome["vkey"].split("+")[1]
    first = parse_note(ARCHE_NOTE["signed_note"]).signatures[0]
    assert first.name == "arche2025h1.staging.ct.transparency.dev"
    assert first.key_id.hex() != KEY["arche2025h1.staging.ct.transparency.dev"]["key_id_hex"]


# -- tree_notes ---------------------------------------------------------------

TREE = VECTORS["tree_notes"][0]


def test_sumdb_tree_text_parses_as_a_checkpoint() -> None:
    """The Go sumdb tree body parses with its size and root (the RFC 6962 leaf hash of "hello world")."""
    cp = parse_checkpoint(TREE["text"], origin="go.sum database tree")
    assert cp.size == TREE["tree_size"]
    assert (
        cp.root.hex() == TREE["record_hash_hex"] == hashlib.sha256(b"\x00" + TREE["record_input"].encode()).hexdigest()
    )
    assert cp.extensions == ()
    assert cp.text() == TREE["text"]


@pytest.mark.parametrize("text", TREE["bad_texts"], ids=["wrong-origin", "hex-size", "root-not-32-bytes"])
def test_bad_sumdb_tree_texts_are_refused(text: str) -> None:
    """Each bad tree text is refused: the first only by the origin check, the others by parse_checkpoint itself."""
    with pytest.raises(NoteError):
        parse_checkpoint(text, origin="go.sum database tree")
    if not text.startswith("not-"):
        with pytest.raises(NoteError):
            parse_checkpoint(text)


# -- negative -----------------------------------------------------------------

COVERED_NEGATIVES: set[str] = set()


def covers(*ids: str) -> list[str]:
    COVERED_NEGATIVES.update(ids)
    return list(ids)


@pytest.mark.parametrize("case", covers("vkey-wrong-length", "vkey-unknown-algorithm"))
def test_bad_vkeys_are_refused(case: str) -> None:
    """A vkey with a key of the wrong length or an unknown type byte is refused."""
    with pytest.raises(NoteError):
        parse_vkey(NEGATIVE[case]["vkey"])


def _substrings(s: str) -> list[str]:
    return [s[i:j] for i in range(len(s) + 1) for j in range(i, len(s) + 1) if (i, j) != (0, len(s))]


def _increments(s: str) -> list[str]:
    raw = s.encode("ascii")
    return [(raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :]).decode("ascii") for i in range(len(raw))]


KEY_MUTATIONS = NEGATIVE[covers("vkey-every-proper-substring-and-every-byte-plus-one")[0]]


@pytest.mark.parametrize("mutate", [_substrings, _increments], ids=["proper-substrings", "byte-plus-one"])
@pytest.mark.parametrize(("kind", "parse"), [("vkey", parse_vkey), ("skey", parse_skey)], ids=["vkey", "skey"])
def test_every_key_mutation_is_refused(
    kind: str, parse: Callable[[str], object], mutate: Callable[[str], list[str]]
) -> None:
    """Every proper substring and every one-byte-incremented copy of PeterNeumann's vkey and skey is refused."""
    original = KEY_MUTATIONS[kind]
    assert parse(original) is not None
    accepted = []
    cases = mutate(original)
    for candidate in cases:
        try:
            parse(candidate)
        except NoteError:
            continue
        accepted.append(candidate)
    assert accepted == []
    assert len(cases) >= len(original)


MALFORMED = covers(
    "malformed-text-only",
    "malformed-text-and-blank-no-sigs",
    "malformed-sig-line-missing-final-newline",
    "malformed-leading-control-char",
    "malformed-invalid-utf8",
    "malformed-space-in-key-name",
    "malformed-junk-after-signatures",
)


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_notes_are_refused(case: str) -> None:
    """Each malformed note fails parsing, and so opening, as a malformed note even though the key is known."""
    entry = NEGATIVE[case]
    with pytest.raises(NoteError, match="malformed"):
        parse_note(message(entry))
    with pytest.raises(NoteError, match="malformed"):
        open_note(message(entry), [parse_vkey(k) for k in entry["verifier_keys"]])


def test_spaces_in_signature_lines_are_refused_even_with_final_newline() -> None:
    """With its final newline added, the "Bad Name" line is still malformed; so is a name with a no-break space."""
    msg = NEGATIVE["malformed-space-in-key-name"]["message"] + "\n"
    # As in Go, the name ends at the first space, so "Name x08go..." is read as (invalid) base64.
    with pytest.raises(NoteError, match="malformed note: signature by Bad: invalid base64"):
        parse_note(msg)
    with pytest.raises(NoteError, match="contains a space"):
        parse_note(msg.replace("Bad Name", "Bad\u00a0Name"))


def test_more_than_100_signatures_are_refused() -> None:
    """101 copies of a valid signature line are malformed; 100 open, with the one key verified once."""
    entry = NEGATIVE[covers("too-many-signatures")[0]]
    signed = next(e for e in VECTORS["signed_notes"] if e["id"] == "sumdb-peterneumann")
    line = sig_lines(signed["signed_note"])[0] + "\n"
    peter = [parse_vkey(k) for k in entry["verifier_keys"]]
    with pytest.raises(NoteError, match="more than 100"):
        open_note(signed["text"] + "\n" + line * (MAX_SIGNATURES + 1), peter)
    note, verified = open_note(signed["text"] + "\n" + line * MAX_SIGNATURES, peter)
    assert (len(note.signatures), len(verified)) == (100, 1)


def test_invalid_signature_from_known_key_rejects_the_note() -> None:
    """A well-formed line from a known key that does not verify rejects the whole note."""
    entry = NEGATIVE[covers("invalid-signature-from-known-key")[0]]
    assert len(parse_note(message(entry)).signatures) == 1
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(message(entry), [parse_vkey(k) for k in entry["verifier_keys"]])


def test_note_without_known_key_is_refused() -> None:
    """With no known keys, a note with two well-formed signatures has no verifiable signature."""
    entry = NEGATIVE[covers("no-known-key")[0]]
    assert [s.name for s in parse_note(message(entry)).signatures] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(message(entry), [])


def test_duplicate_verifier_is_ambiguous() -> None:
    """The same (name, key ID) twice in the verifier list is refused as an ambiguous key."""
    entry = NEGATIVE[covers("duplicate-verifier-in-list")[0]]
    with pytest.raises(NoteError, match="ambiguous key EnochRoot\\+af0cfe78"):
        open_note(message(entry), [parse_vkey(k) for k in entry["verifier_keys"]])


def test_clobbered_checkpoint_size_fails_every_known_key() -> None:
    """The arche note with size 42: refused with both keys, and with each key alone (log signature and cosignature)."""
    entry = NEGATIVE[covers("arche-checkpoint-clobbered-size")[0]]
    assert parse_checkpoint(parse_note(message(entry)).text).size == 42
    with pytest.raises(NoteError, match="invalid signature for key arche2025h1"):
        open_note(message(entry), [parse_vkey(k) for k in entry["verifier_keys"]])
    for vkey in entry["verifier_keys"]:
        with pytest.raises(NoteError, match="invalid signature"):
            open_note(message(entry), [parse_vkey(vkey)])


def test_every_negative_vector_is_covered() -> None:
    """Each entry of the negative section is exercised by a test above (a new one cannot be skipped silently)."""
    assert set(NEGATIVE) == COVERED_NEGATIVES


# -- format_examples_unverifiable ---------------------------------------------


@pytest.mark.parametrize("entry", by_id(VECTORS["format_examples_unverifiable"]))
def test_spec_examples_parse(entry: dict[str, Any]) -> None:
    """The spec's checkpoint and signature lines parse; the cosignature is 4+8+64 bytes with the stated timestamp."""
    cp = parse_checkpoint(entry["checkpoint_body"])
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.text() == entry["checkpoint_body"]
    log = parse_signature_line(entry["log_signature_line"])
    assert (log.name, len(log.key_id), len(log.data)) == ("example.com/behind-the-sofa", 4, 64)
    cosig = parse_signature_line(entry["cosignature_line"])
    assert (cosig.name, len(cosig.key_id), len(cosig.data)) == ("witness.example.com/w1", 4, 8 + 64)
    timestamp = cosignature_timestamp(cosig.data)
    assert timestamp == 1679315147
    assert (
        cosignature_message(entry["checkpoint_body"], timestamp) == entry["cosignature_signed_message_example"].encode()
    )
    note = parse_note(f"{entry['checkpoint_body']}\n{entry['log_signature_line']}\n{entry['cosignature_line']}\n")
    assert note.signatures == (log, cosig)


# -- our own notes ------------------------------------------------------------


def test_generated_key_signs_a_checkpoint_that_opens_back() -> None:
    """generate_key -> sign_note(checkpoint) -> open_note -> parse_checkpoint gives back the same checkpoint."""
    skey, vkey = generate_key("log.example.vn/hocba")
    assert re.fullmatch(r"PRIVATE\+KEY\+log\.example\.vn/hocba\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", skey)
    v = verifier(vkey)
    assert v.key_id == key_id(v.name, 0x01, v.public_key)
    cp = Checkpoint("log.example.vn/hocba", 1234, hashlib.sha256(b"root").digest(), ("ext one",))
    signed = sign_note(cp.text(), parse_skey(skey))
    note, verified = open_note(signed, [v])
    assert [s.name for s in verified] == ["log.example.vn/hocba"]
    assert parse_checkpoint(note.text, origin="log.example.vn/hocba") == cp


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no final newline",
        "\n",
        "ends in a blank line\n\n",
        "tab\tinside\n",
        "bell\x07\n",
        "lone \ud800 surrogate\n",
    ],
    ids=["empty", "no-newline", "only-blank", "blank-last-line", "tab", "control", "surrogate"],
)
def test_sign_note_refuses_ill_formed_text(text: str) -> None:
    """Signing refuses text that is empty, lacks the final newline, ends in a blank line or holds control characters."""
    with pytest.raises(NoteError):
        sign_note(text, parse_skey(PETER["skey"]))


def test_sign_note_needs_distinct_signers() -> None:
    """Signing with no signer, or with the same key twice, is refused."""
    peter = parse_skey(PETER["skey"])
    with pytest.raises(NoteError, match="at least one"):
        sign_note("text\n")
    with pytest.raises(NoteError, match="twice"):
        sign_note("text\n", peter, peter)


def test_inner_blank_lines_belong_to_the_text() -> None:
    """A text may contain blank lines: the last blank line is the separator, and the note opens with the whole text."""
    text = "first\n\nsecond\n"
    signed = sign_note(text, parse_skey(PETER["skey"]))
    note, _ = open_note(signed, [parse_vkey(PETER["vkey"])])
    assert note.text == text


def test_str_and_bytes_notes_parse_alike() -> None:
    """parse_note takes the note as str or UTF-8 bytes with the same result; a lone surrogate is malformed."""
    signed = next(e for e in VECTORS["signed_notes"] if e["id"] == "sumdb-peter-and-enoch")["signed_note"]
    assert parse_note(signed) == parse_note(signed.encode())
    with pytest.raises(NoteError, match="UTF-8"):
        parse_note("a\ud800\n\n" + sig_lines(signed)[0] + "\n")


def test_second_bad_line_from_a_known_key_rejects() -> None:
    """Every line from a known key must verify, even after a valid one (Go would skip the repeat unchecked)."""
    signed = sign_note("text\n", parse_skey(PETER["skey"]))
    line = sig_lines(signed)[0]
    forged = line[: line.index(" ", 2) + 1] + b64e(bytes.fromhex(PETER["key_id_hex"]) + bytes(64))
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(signed + forged + "\n", [parse_vkey(PETER["vkey"])])


def test_non_canonical_base64_is_refused() -> None:
    """A signature whose last base64 character differs only in unused bits is refused, not read as the same bytes."""
    signed = next(e for e in VECTORS["signed_notes"] if e["id"] == "sumdb-peterneumann")["signed_note"]
    assert signed.endswith("AM=\n")
    with pytest.raises(NoteError, match="non-canonical"):
        parse_note(signed[: -len("M=\n")] + "N=\n")


@pytest.mark.parametrize(
    "name", ["", "with space", "no\u00a0break", "ideographic\u3000space", "plus+sign", "tab\tname", "ctl\x01"]
)
def test_invalid_key_names_are_refused(name: str) -> None:
    """Key names must be non-empty with no Unicode space, '+' or control character, for every way to make a key."""
    pub = bytes(32)
    with pytest.raises(NoteError):
        generate_key(name)
    with pytest.raises(NoteError):
        vkey_for(name, pub)
    with pytest.raises(NoteError):
        parse_vkey(f"{name}+{key_id(name, 1, pub).hex()}+{b64e(bytes([0x01]) + pub)}")


def test_vkey_for_refuses_wrong_key_length() -> None:
    """vkey_for takes a raw 32-byte Ed25519 public key only."""
    with pytest.raises(NoteError, match="32"):
        vkey_for("name", bytes(33))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n1\n",
        "origin\n1\n" + b64e(bytes(32)),
        "\n1\n" + b64e(bytes(32)) + "\n",
        "origin\n01\n" + b64e(bytes(32)) + "\n",
        "origin\n+1\n" + b64e(bytes(32)) + "\n",
        "origin\n 1\n" + b64e(bytes(32)) + "\n",
        "origin\n-1\n" + b64e(bytes(32)) + "\n",
        "origin\n1_0\n" + b64e(bytes(32)) + "\n",
        "origin\n\u0661\n" + b64e(bytes(32)) + "\n",
        f"origin\n{2**64}\n" + b64e(bytes(32)) + "\n",
        "origin\n1\n" + b64e(bytes(31)) + "\n",
        "origin\n1\n" + b64e(bytes(32))[:-2] + "B=\n",
        "origin\n1\n" + b64e(bytes(32)).rstrip("=") + "\n",
        "origin\n1\n" + b64e(bytes(32)) + "\n\n",
        "origin\n1\n" + b64e(bytes(32)) + "\next\n\n",
        "ori\tgin\n1\n" + b64e(bytes(32)) + "\n",
    ],
    ids=[
        "empty",
        "two-lines",
        "no-final-newline",
        "empty-origin",
        "leading-zero",
        "plus-sign",
        "leading-space",
        "negative",
        "underscore",
        "arabic-digit",
        "over-uint64",
        "short-root",
        "non-canonical-root",
        "unpadded-root",
        "empty-extension",
        "trailing-empty-extension",
        "control-in-origin",
    ],
)
def test_parse_checkpoint_is_strict(text: str) -> None:
    """parse_checkpoint refuses every body that breaks a c2sp tlog-checkpoint rule."""
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_parse_checkpoint_edges() -> None:
    """Size 0 and 2^64-1 are fine; a checkpoint of another origin is refused when the origin is given."""
    root = b64e(bytes(32))
    assert parse_checkpoint(f"o\n0\n{root}\n").size == 0
    assert parse_checkpoint(f"o\n{2**64 - 1}\n{root}\n").size == 2**64 - 1
    with pytest.raises(NoteError, match="not 'p'"):
        parse_checkpoint(f"o\n0\n{root}\n", origin="p")


@pytest.mark.parametrize(
    "fields",
    [
        ("", 1, bytes(32), ()),
        ("o\nx", 1, bytes(32), ()),
        ("o", -1, bytes(32), ()),
        ("o", 2**64, bytes(32), ()),
        ("o", 1, bytes(31), ()),
        ("o", 1, bytes(32), ("",)),
        ("o", 1, bytes(32), ("a\nb",)),
    ],
    ids=[
        "empty-origin",
        "newline-in-origin",
        "negative-size",
        "size-over-uint64",
        "short-root",
        "empty-extension",
        "newline-in-extension",
    ],
)
def test_checkpoint_refuses_fields_it_cannot_write(fields: tuple[str, int, bytes, tuple[str, ...]]) -> None:
    """A Checkpoint is checked when made, so text() always gives a body parse_checkpoint accepts."""
    with pytest.raises(NoteError):
        Checkpoint(*fields)


LOG_SIGNER = parse_skey(KEY["Log"]["skey"])
LOG_VERIFIER = parse_vkey(KEY["Log"]["vkey"])
LOG_NOTE = sign_note(Checkpoint("example.com/log", 12345, bytes(range(32)), ("ext",)).text(), LOG_SIGNER).encode()


def test_every_single_byte_change_or_deletion_is_refused() -> None:
    """Exhaustively: incrementing or deleting any one byte of a signed checkpoint makes it fail to open."""
    opened = []
    for i in range(len(LOG_NOTE)):
        for mutated in (
            LOG_NOTE[:i] + bytes([(LOG_NOTE[i] + 1) % 256]) + LOG_NOTE[i + 1 :],
            LOG_NOTE[:i] + LOG_NOTE[i + 1 :],
        ):
            try:
                open_note(mutated, [LOG_VERIFIER])
            except NoteError:
                continue
            opened.append(i)
    assert opened == []


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_mutations_never_open(data: st.DataObject) -> None:
    """Random byte replacements, insertions and deletions of a signed note never open (the note itself does)."""
    assert open_note(LOG_NOTE, [LOG_VERIFIER])
    msg = bytearray(LOG_NOTE)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        op = data.draw(st.sampled_from(["replace", "insert", "delete"]), label="op")
        i = data.draw(st.integers(0, len(msg) if op == "insert" else len(msg) - 1), label="at")
        if op == "replace":
            msg[i] ^= data.draw(st.integers(1, 255), label="xor")
        elif op == "insert":
            msg.insert(i, data.draw(st.integers(0, 255), label="byte"))
        else:
            del msg[i]
    if bytes(msg) == LOG_NOTE:
        return
    with pytest.raises(NoteError):
        open_note(bytes(msg), [LOG_VERIFIER])


LINES = st.text(st.characters(codec="utf-8", min_codepoint=0x20), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    origin=LINES,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(LINES, max_size=3).map(tuple),
)
def test_checkpoint_text_round_trips(origin: str, size: int, root: bytes, extensions: tuple[str, ...]) -> None:
    """Any valid checkpoint's text parses back to it, and signed as a note it opens back to the same text."""
    cp = Checkpoint(origin, size, root, extensions)
    assert parse_checkpoint(cp.text(), origin=origin) == cp
    note, _ = open_note(sign_note(cp.text(), LOG_SIGNER), [LOG_VERIFIER])
    assert parse_checkpoint(note.text) == cp


NAMES = st.text(
    st.characters(
        codec="utf-8", min_codepoint=0x21, exclude_characters="+\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    ).filter(lambda c: not "\u2000" <= c <= "\u200a"),
    min_size=1,
    max_size=20,
)


@settings(max_examples=50, deadline=None)
@given(NAMES)
def test_generated_keys_round_trip_for_any_valid_name(name: str) -> None:
    """For any valid name, generate_key gives an skey and vkey that parse back to that name and work together."""
    skey, vkey = generate_key(name)
    signer, v = parse_skey(skey), parse_vkey(vkey)
    assert (signer.name, v.name, signer.key_id) == (name, name, v.key_id)
    _, verified = open_note(sign_note("hello\n", signer), [v])
    assert [s.name for s in verified] == [name]
