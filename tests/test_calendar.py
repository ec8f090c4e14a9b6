"""Working-day deadlines count Vietnam's public holidays (Tết included), with the configured days
added and taken out; every instant is a fixed date or the test's FakeClock, never today."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import FakeClock, new_lookup_code, new_national_id, running_node, write_config
from transfer.domain.workdays import add_working_days, deadline_after
from transfer.server.config import ConfigError, load
from transfer.server.workcalendar import WorkCalendar
from transfer.v1 import common_pb2

VN = WorkCalendar("VN")
ICT = timedelta(hours=7)


def _at_nine(day: date) -> datetime:
    """09:00 in Hà Nội on `day`, as an instant."""
    return datetime(day.year, day.month, day.day, 9, tzinfo=UTC) - ICT


def _end_of(day: date) -> datetime:
    """Midnight after `day` in Hà Nội: the instant a deadline on `day` ends."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) - ICT


@pytest.mark.parametrize(
    ("opened", "days", "plain", "with_holidays"),
    [
        # Tết 2027: 29th of the 12th month Thu 4 Feb to the 5th day Wed 10 Feb (6-7 Feb a weekend)
        (date(2027, 2, 3), 5, date(2027, 2, 10), date(2027, 2, 17)),
        (date(2027, 2, 3), 8, date(2027, 2, 15), date(2027, 2, 22)),
        # Tết 2028: Mon 24 Jan to Fri 28 Jan (the 4th day is a Saturday)
        (date(2028, 1, 21), 5, date(2028, 1, 28), date(2028, 2, 4)),
        (date(2028, 1, 21), 8, date(2028, 2, 2), date(2028, 2, 9)),
        # 30/4 (Fri) and 1/5 (Sat, given back on Mon 3/5) 2027
        (date(2027, 4, 29), 5, date(2027, 5, 6), date(2027, 5, 10)),
        (date(2027, 4, 29), 8, date(2027, 5, 11), date(2027, 5, 13)),
        # 2/9 (Thu) and the day beside it, 3/9 (Fri) 2027
        (date(2027, 9, 1), 5, date(2027, 9, 8), date(2027, 9, 10)),
        (date(2027, 9, 1), 8, date(2027, 9, 13), date(2027, 9, 15)),
    ],
)
def test_deadlines_of_5_and_8_working_days_skip_tet_and_the_national_holidays(
    opened: date, days: int, plain: date, with_holidays: date
) -> None:
    """A transfer opened at 09:00 in Hà Nội is due at the end of the 5th (8th) working day after, the
    public holidays of the VN calendar not counted: across Tết 2027 and 2028, 30/4-1/5 and 2/9."""
    assert add_working_days(opened, days) == plain  # weekends only, as before
    assert add_working_days(opened, days, VN) == with_holidays
    assert deadline_after(_at_nine(opened), days, holidays=VN) == _end_of(with_holidays)


def test_added_and_removed_days_change_the_public_holidays() -> None:
    """An added day is a holiday, a removed public holiday is a working day, and they move the deadline."""
    added = WorkCalendar("VN", extra=[date(2027, 2, 11)])
    removed = WorkCalendar("VN", removed=[date(2027, 2, 10)])
    assert date(2027, 2, 11) in added and date(2027, 2, 11) not in VN
    assert date(2027, 2, 10) not in removed and date(2027, 2, 10) in VN
    opened = _at_nine(date(2027, 2, 3))
    assert deadline_after(opened, 5, holidays=added) == _end_of(date(2027, 2, 18))
    assert deadline_after(opened, 5, holidays=removed) == _end_of(date(2027, 2, 16))
    assert date(2027, 2, 5) not in WorkCalendar("", extra=[date(2027, 2, 11)])  # without the VN calendar
    with pytest.raises(ValueError, match="both added and removed"):
        WorkCalendar("VN", extra=[date(2027, 2, 11)], removed=[date(2027, 2, 11)])


def test_a_year_without_holiday_data_counts_only_the_configured_days_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The holidays package computes the VN calendar for 1901-2100 only: past it Tết is not known, so
    the calendar counts the configured days alone and logs one WARNING per year (not silently)."""
    calendar = WorkCalendar("VN", extra=[date(2101, 1, 3)])
    assert (calendar.first_year, calendar.last_year) == (1901, 2100)
    assert calendar.covers(2100) and not calendar.covers(2101)
    caplog.set_level(logging.WARNING, logger="transfer.calendar")
    assert date(2101, 1, 1) not in calendar  # New Year's Day: not known for 2101
    assert date(2101, 1, 3) in calendar
    assert date(2101, 2, 1) not in calendar
    warnings = [r for r in caplog.records if r.name == "transfer.calendar"]
    assert [(r.getMessage(), getattr(r, "year", None)) for r in warnings] == [
        ("no public holiday data for this year: deadlines count only the configured holidays", 2101)
    ]
    assert date(2100, 1, 1) in calendar


@pytest.mark.parametrize(
    ("extra", "env", "due"),
    [
        ("", {}, date(2027, 2, 17)),  # the default: Vietnam's public holidays
        ('\n[calendar]\nextra_holidays = ["2027-02-11"]\n', {}, date(2027, 2, 18)),
        ('\n[calendar]\nnot_holidays = ["2027-02-10"]\n', {}, date(2027, 2, 16)),
        ("", {"TRANSFER_TRANSFERS_HOLIDAYS": "2027-02-11"}, date(2027, 2, 18)),  # the older key still adds
        ('\n[calendar]\npublic_holidays = ""\n', {}, date(2027, 2, 10)),  # weekends only
    ],
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_node_gives_a_transfer_opened_before_tet_its_deadline_after_it(
    tmp_path: Path, pki: Path, database_url: str, extra: str, env: dict[str, str], due: date
) -> None:
    """A real node whose clock says Wednesday 3 February 2027, 09:00 in Hà Nội, gives a transfer the
    end of the 5th working day after Tết as its deadline, moved by the configured calendar keys."""
    clock = FakeClock(_at_nine(date(2027, 2, 3)))
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url, extra=extra)
    with running_node(load(path, env=env), pki, clock, path) as node:
        admin = node.client("province-admin")
        admin.register_school("S1", "Trường S1")
        admin.register_school("S2", "Trường S2")
        s1 = node.client("school-S1")
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        t = s1.initiate_transfer(code, "S2").transfer
    assert t.deadline.ToDatetime(tzinfo=UTC) == _end_of(due)


def test_calendar_keys_are_checked(tmp_path: Path, pki: Path) -> None:
    """Dates must be YYYY-MM-DD, a day cannot be both added and removed, and only known calendars are named."""
    for extra, message in [
        ('[calendar]\nextra_holidays = ["2027-2-11"]\n', "calendar.extra_holidays: '2027-2-11' is not a YYYY-MM-DD"),
        ('[calendar]\nnot_holidays = ["x"]\n', "calendar.not_holidays: 'x' is not a YYYY-MM-DD"),
        (
            '[calendar]\nextra_holidays = ["2027-02-11"]\nnot_holidays = ["2027-02-11"]\n',
            "calendar.not_holidays: 2027-02-11 is also a holiday",
        ),
        ('[calendar]\npublic_holidays = "TH"\n', "calendar.public_holidays: one of VN"),
    ]:
        path = write_config(tmp_path / "node.toml", pki=pki, database_url="sqlite:///node.db", extra="\n" + extra)
        with pytest.raises(ConfigError, match=message):
            load(path)
