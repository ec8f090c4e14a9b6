"""The log's leaf format: exact round trips, strict decoding, no personal data."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transfer.domain.leaves import (
    DepartureLeaf,
    LeafError,
    LeafKind,
    TransferLeaf,
    decode_any,
    decode_leaf,
    departure_reason_digest,
    record_digest,
    transfer_leaf,
)
from transfer.domain.model import Transfer, TransferScope, TransferState

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
codes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=20)
instants = st.integers(0, 253_402_300_799_000_000).map(
    lambda us: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
)


@st.composite
def leaves(draw: st.DrawFn) -> TransferLeaf:
    kind = draw(st.sampled_from(list(LeafKind)))
    return TransferLeaf(
        kind=kind,
        time=draw(instants),
        transfer_id=draw(st.binary(min_size=16, max_size=16)).hex(),
        record=draw(st.binary(min_size=32, max_size=32)),
        from_province=draw(st.sampled_from(["01", "79", "48"])),
        from_school=draw(codes),
        to_province=draw(st.sampled_from(["01", "79"])),
        to_school=draw(codes),
        actor=draw(st.text(max_size=60)),
        deadline=draw(instants) if kind is LeafKind.TRANSFER_REQUESTED else None,
        reason=draw(st.binary(min_size=32, max_size=32))
        if kind in (LeafKind.TRANSFER_REJECTED, LeafKind.TRANSFER_CANCELLED)
        else None,
    )


@given(leaves())
def test_round_trip(leaf: TransferLeaf) -> None:
    """Decoding an encoded leaf gives back exactly the event."""
    assert decode_leaf(leaf.encode()) == leaf


@given(leaves(), st.data())
def test_truncation_and_trailing_bytes_are_refused(leaf: TransferLeaf, data: st.DataObject) -> None:
    """Any strict prefix, and any extra byte, is not a leaf."""
    raw = leaf.encode()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(LeafError):
        decode_leaf(raw[:cut])
    with pytest.raises(LeafError):
        decode_leaf(raw + b"\x00")


def test_unknown_version_and_kind_are_refused() -> None:
    """A leaf of another version or an unknown kind is refused, not guessed at."""
    raw = bytearray(_transfer_leaf(TransferState.ACCEPTED).encode())
    with pytest.raises(LeafError, match="version"):
        decode_leaf(bytes([2]) + bytes(raw[1:]))
    with pytest.raises(LeafError, match="kind"):
        decode_leaf(bytes(raw[:1]) + bytes([99]) + bytes(raw[2:]))


def _transfer_leaf(state: TransferState, reason: str = "") -> TransferLeaf:
    t = Transfer(
        "0123456789abcdef0123456789abcdef", "aa" * 16, "S1", "01", "S2", "01", TransferScope.INTRA_PROVINCE,
        state, reason, T0, T0 + timedelta(days=8), None if state is TransferState.REQUESTED else T0, "school:S1",
        None if state is TransferState.REQUESTED else "school:S2",
    )  # fmt: skip
    return transfer_leaf(t, "school:S2", T0)


@pytest.mark.parametrize("state", list(TransferState))
def test_each_transfer_change_has_its_kind(state: TransferState) -> None:
    """Every transfer state maps to its leaf kind; the record appears only as a digest."""
    leaf = _transfer_leaf(state, reason="Gia đình chuyển nhà" if state is TransferState.REJECTED else "")
    assert leaf.kind.name == f"TRANSFER_{state.name}"
    raw = leaf.encode()
    assert decode_leaf(raw).record == record_digest("aa" * 16)
    assert b"aa" * 16 not in raw and "Gia đình".encode() not in raw


def test_a_departure_names_its_reason_by_a_salted_digest_and_old_entries_still_read() -> None:
    """Kind 36 carries SHA-256 over the handoff's salt and the reason code (five codes would be
    guessed from an unsalted digest); entries of kind 32, written before the salt with the code
    in clear, still decode exactly as they were written."""
    salt = bytes(range(16))
    maternity = departure_reason_digest(2, salt)
    assert maternity == hashlib.sha256(b"hocba:departure-reason:v1:" + salt + b"\x02").digest()
    assert maternity != departure_reason_digest(2, bytes(16)) != departure_reason_digest(1, bytes(16))
    leaf = DepartureLeaf(T0, "ab" * 16, "S1", "cd" * 16, maternity, date(2026, 12, 1), date(2027, 6, 1), "admin:S1")
    raw = leaf.encode()
    assert raw[1] == LeafKind.TEACHER_LEFT and decode_any(raw) == leaf
    assert b"\x02" + struct.pack(">II", 20788, 20970) not in raw  # the code is not next to the dates
    for cut in range(len(raw)):
        with pytest.raises(LeafError):
            decode_any(raw[:cut])

    old = (  # as the encoder before migration 0005 wrote it
        bytes([1, 32]) + struct.pack(">Q", 1_795_399_200_000_000) + bytes.fromhex("ab" * 16) + b"\x02S1"
        + bytes.fromhex("cd" * 16) + b"\x02" + struct.pack(">II", 20788, 20970) + b"\x08admin:S1"
    )  # fmt: skip
    legacy = decode_any(old)
    assert isinstance(legacy, DepartureLeaf) and legacy.kind is LeafKind.TEACHER_DEPARTED
    assert legacy.reason == b"\x02" and (legacy.effective, legacy.end) == (date(2026, 12, 1), date(2027, 6, 1))
    assert legacy.encode() == old
