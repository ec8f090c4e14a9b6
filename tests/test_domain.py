"""Pure rules: working-day deadlines, validation, paging tokens, the state machine."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transfer.domain import paging, validation
from transfer.domain.commands import DecideTransfer, InitiateTransfer, RegisterRecord
from transfer.domain.errors import InvalidArgument, Violations
from transfer.domain.model import TRANSITIONS, Actor, Role, Transfer, TransferScope, TransferState
from transfer.domain.provinces import province_names
from transfer.domain.workdays import add_working_days, deadline_after


def test_provinces_are_the_34_units() -> None:
    """The packaged list holds the 34 provincial units, Hà Nội 01 and Hồ Chí Minh 79 among them."""
    names = province_names()
    assert len(names) == 34
    assert names["01"] == "Hà Nội" and "79" in names


def test_working_days_skip_weekends_and_holidays() -> None:
    """Counting skips Saturdays, Sundays and configured holidays."""
    friday = date(2026, 11, 27)
    assert add_working_days(friday, 1) == date(2026, 11, 30)  # Monday
    assert add_working_days(friday, 5) == date(2026, 12, 4)
    assert add_working_days(friday, 1, holidays={date(2026, 11, 30)}) == date(2026, 12, 1)
    assert add_working_days(friday, 0) == friday


def test_deadline_is_end_of_last_working_day_local_time() -> None:
    """Five working days from Monday 09:00 (UTC+7) end at midnight after the next Monday, local time."""
    start = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 09:00 in Hà Nội
    deadline = deadline_after(start, 5)
    assert deadline == datetime(2026, 12, 1, 0, 0, tzinfo=UTC) - timedelta(hours=7)
    # 23:30 UTC Sunday is already Monday in Hà Nội.
    late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    assert deadline_after(late, 1) == datetime(2026, 11, 25, 0, 0, tzinfo=UTC) - timedelta(hours=7)


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 1, 1)), st.integers(0, 40))
def test_working_day_count_is_exact(start: date, n: int) -> None:
    """Between start and the result lie exactly n weekdays, and the result is a weekday (n > 0)."""
    end = add_working_days(start, n)
    days = [start + timedelta(days=i) for i in range(1, (end - start).days + 1)]
    assert sum(d.weekday() < 5 for d in days) == n
    if n:
        assert end.weekday() < 5


@given(st.text(max_size=40))
def test_lookup_code_validation_matches_its_definition(s: str) -> None:
    """A lookup code is valid exactly when it is 32 lowercase hex characters."""
    v = Violations()
    validation.lookup_code(v, s)
    expected = len(s) == 32 and all(c in "0123456789abcdef" for c in s)
    assert (not v.items) == expected


@given(st.text(alphabet="0123456789a ", max_size=14))
def test_national_id_validation_matches_its_definition(s: str) -> None:
    """A national id is valid exactly when it is 12 ASCII digits."""
    v = Violations()
    validation.national_id(v, s)
    assert (not v.items) == (len(s) == 12 and s.isdigit())


def test_commands_reject_bad_fields_at_construction() -> None:
    """Commands cannot exist invalid: construction raises InvalidArgument naming each field."""
    with pytest.raises(InvalidArgument) as info:
        InitiateTransfer("XYZ", "", "00")
    assert [v.field for v in info.value.field_violations] == ["lookup_code", "to_school", "to_province"]
    with pytest.raises(InvalidArgument):
        DecideTransfer("a" * 32, TransferState.REJECTED, "")
    assert DecideTransfer("a" * 32, TransferState.CANCELLED, "").reason == ""
    with pytest.raises(InvalidArgument):
        RegisterRecord.parse("a" * 32, "001234567890", 4, "")


TOKENS = paging.Tokens(b"k" * paging.SECRET_BYTES)
CALLER = Actor(Role.SCHOOL, "01", "S1")


@given(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=30)), st.integers(0, 10_000))
def test_page_tokens_round_trip_and_bind_to_query_and_caller(key: int | str, size: int) -> None:
    """A token gives back its key to the same caller for the same query, and is refused for any other."""
    token = TOKENS.next_token(CALLER, key, ("transfers", "S1", 1))
    req = TOKENS.page_request(CALLER, size, token, ("transfers", "S1", 1))
    assert req.after == key and 1 <= req.size <= paging.MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        TOKENS.page_request(CALLER, size, token, ("transfers", "S1", 2))
    with pytest.raises(InvalidArgument):
        TOKENS.page_request(Actor(Role.SCHOOL_ADMIN, "01", "S1"), size, token, ("transfers", "S1", 1))
    with pytest.raises(InvalidArgument):  # another node's (another secret's) token
        paging.Tokens(b"j" * paging.SECRET_BYTES).page_request(CALLER, size, token, ("transfers", "S1", 1))


@given(st.text(max_size=60))
def test_arbitrary_page_tokens_never_crash(token: str) -> None:
    """Any string as a page token is either the empty first page or a clean INVALID_ARGUMENT."""
    try:
        TOKENS.page_request(CALLER, 10, token, ("x",))
    except InvalidArgument as err:
        assert err.reason == "INVALID_PAGE_TOKEN"


@given(st.binary(max_size=200))
def test_arbitrary_cursors_never_crash(raw: bytes) -> None:
    """Any bytes as a cursor (base64url, as the node writes them) are a clean INVALID_CURSOR."""
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    try:
        assert TOKENS.parse_cursor(CALLER, "S1", cursor) is None and not raw
    except InvalidArgument as err:
        assert err.reason == "INVALID_CURSOR"


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"k": 1, "f": "' + b"0" * 5000 + b'"}'])
def test_deeply_nested_or_oversized_page_tokens_are_refused(raw: bytes) -> None:
    """Tokens of the earlier unsealed form, huge or not, are refused as not issued here."""
    token = base64.urlsafe_b64encode(raw).decode()
    with pytest.raises(InvalidArgument) as refused:
        TOKENS.page_request(CALLER, 10, token, ("x",))
    assert refused.value.reason == "INVALID_PAGE_TOKEN"


def _transfer(state: TransferState = TransferState.REQUESTED) -> Transfer:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    return Transfer(
        "a" * 32, "b" * 32, "S1", "01", "S2", "01", TransferScope.INTRA_PROVINCE, state, "", now, now, None, "x", None
    )


@given(st.lists(st.sampled_from(list(TransferState)), max_size=6))
def test_state_machine_only_leaves_requested_once(moves: list[TransferState]) -> None:
    """From REQUESTED exactly one move to a terminal state succeeds; terminal states never change."""
    t = _transfer()
    applied = []
    for target in moves:
        if t.can_move_to(target):
            t = t.decided(target, by="x", at=t.created_at)
            applied.append(target)
        else:
            with pytest.raises(ValueError):
                t.decided(target, by="x", at=t.created_at)
    assert len(applied) <= 1
    assert all(a is not TransferState.REQUESTED for a in applied)
    assert all(not TRANSITIONS[s] for s in TransferState if s is not TransferState.REQUESTED)


def test_actor_scope() -> None:
    """Schools act for themselves only; province admins for any school; peers and auditors for none."""
    assert Actor(Role.SCHOOL, "01", "S1").acts_for("S1")
    assert not Actor(Role.SCHOOL, "01", "S1").acts_for("S2")
    assert Actor(Role.SCHOOL_ADMIN, "01", "S1").acts_for("S1")
    assert Actor(Role.PROVINCE_ADMIN, "01", None, "admin").acts_for("S2")
    assert not Actor(Role.PEER, "79", None, "node").acts_for("S1")
    assert not Actor(Role.AUDITOR, "01", None, "a").acts_for("S1")
    assert Actor(Role.SCHOOL, "01", "S1", "cert A").principal == Actor(Role.SCHOOL, "01", "S1", "cert B").principal


def test_remembered_chain_links_never_vouch_for_an_impostor(tmp_path: Path) -> None:
    """The trust remembers verified certificate links; a certificate with the
    same names but another issuer key must still be refused, also once the
    genuine one is remembered, and after the memory overflowed."""
    from cryptography import x509

    from transfer.devpki import SigningCA
    from transfer.domain.errors import FailedPrecondition
    from transfer.domain.signatures import SigningTrust

    genuine = SigningCA(tmp_path / "genuine")
    impostor = SigningCA(tmp_path / "impostor")  # same CA name, other key
    trust = SigningTrust([genuine.cert], remember=2)
    now = datetime.now(UTC)
    good = x509.load_pem_x509_certificate(genuine.teacher("A", write=False)[0])
    bad = x509.load_pem_x509_certificate(impostor.teacher("A", write=False)[0])
    assert good.issuer == bad.issuer and good.subject == bad.subject
    for _ in range(2):  # the second round runs from memory
        trust.check_chain(good, [], now)
        with pytest.raises(FailedPrecondition) as refused:
            trust.check_chain(bad, [], now)
        assert refused.value.reason == "UNTRUSTED_CERTIFICATE"
    others = [x509.load_pem_x509_certificate(genuine.teacher(f"T{i}", write=False)[0]) for i in range(3)]
    for cert in others:  # more links than it remembers: the oldest are forgotten
        trust.check_chain(cert, [], now)
    trust.check_chain(good, [], now)
    with pytest.raises(FailedPrecondition):
        trust.check_chain(bad, [], now)
    with pytest.raises(FailedPrecondition) as expired:  # dates are checked every time
        trust.check_chain(good, [], now + timedelta(days=4000))
    assert expired.value.reason == "CERTIFICATE_NOT_VALID"
