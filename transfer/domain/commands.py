"""Commands: what a caller asks the use cases to do, validated at construction.

The server builds them from requests; an invalid command never exists, it
raises `InvalidArgument` naming every bad field.
"""

from __future__ import annotations

from dataclasses import dataclass

from transfer.domain import validation as check
from transfer.domain.errors import Violations
from transfer.domain.model import RecordLevel, TransferDirection, TransferState
from transfer.domain.ports import ReadAhead


@dataclass(frozen=True, slots=True)
class RegisterSchool:
    code: str
    name: str

    def __post_init__(self) -> None:
        v = Violations()
        check.school_code(v, self.code, "code")
        check.text(v, self.name, "name", max_len=check.MAX_SCHOOL_NAME, required=True)
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class UpdateSchool:
    code: str
    name: str | None
    active: bool | None

    def __post_init__(self) -> None:
        v = Violations()
        check.school_code(v, self.code, "school.code")
        if self.name is not None:
            check.text(v, self.name, "school.name", max_len=check.MAX_SCHOOL_NAME, required=True)
        if self.name is None and self.active is None:
            v.add("update_mask", "names no field to change (use name, active)", "EMPTY_UPDATE_MASK")
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class RegisterRecord:
    lookup_code: str
    national_id: str
    level: RecordLevel
    custodian_school: str  # empty: the calling school

    @classmethod
    def parse(cls, lookup_code: str, national_id: str, level: int, custodian_school: str) -> RegisterRecord:
        v = Violations()
        check.lookup_code(v, lookup_code)
        check.national_id(v, national_id)
        check.enum_value(v, level, RecordLevel, "level")
        check.school_code(v, custodian_school, "custodian_school", required=False)
        v.raise_if_any()
        return cls(lookup_code, national_id, RecordLevel(level), custodian_school)


@dataclass(frozen=True, slots=True)
class InitiateTransfer:
    lookup_code: str
    to_school: str
    to_province: str  # empty: this node's province

    def __post_init__(self) -> None:
        v = Violations()
        check.lookup_code(v, self.lookup_code)
        check.school_code(v, self.to_school, "to_school")
        check.province_code(v, self.to_province, "to_province")
        v.raise_if_any()

    def reads(self) -> ReadAhead:
        return ReadAhead(records=(self.lookup_code,), schools=(self.to_school,))


@dataclass(frozen=True, slots=True)
class DecideTransfer:
    """Accept, reject or cancel one transfer; `reason` as the decision needs."""

    transfer_id: str
    state: TransferState
    reason: str = ""

    def __post_init__(self) -> None:
        v = Violations()
        check.transfer_id(v, self.transfer_id)
        check.text(
            v,
            self.reason,
            "reason",
            max_len=check.MAX_REASON,
            required=self.state is TransferState.REJECTED,
            required_reason="REASON_REQUIRED",
        )
        v.raise_if_any()

    def reads(self) -> ReadAhead:
        return ReadAhead(transfers=(self.transfer_id,))


@dataclass(frozen=True, slots=True)
class ListTransfers:
    school: str
    direction: TransferDirection
    states: tuple[TransferState, ...]

    @classmethod
    def parse(cls, school: str, direction: int, states: list[int]) -> ListTransfers:
        v = Violations()
        check.school_code(v, school, "school", required=False)
        check.enum_value(v, direction, TransferDirection, "direction")
        for i, s in enumerate(states):
            check.enum_value(v, s, TransferState, f"states[{i}]")
        v.raise_if_any()
        return cls(
            school,
            TransferDirection(direction),
            tuple(sorted({TransferState(s) for s in states})),
        )
