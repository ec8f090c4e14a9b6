"""Deadlines counted in working days (Monday to Friday, minus holidays).

The regulations give schools a number of working days to answer a transfer
request; the node's configuration says how many, and the node passes in the
calendar of holidays: anything that answers `day in holidays` (a set of dates,
or the node's public-holiday calendar, transfer/server/workcalendar.py). The
domain knows neither the configuration nor where the holidays come from.
A deadline is the end of the last allowed working day in the node's local
time (Vietnam keeps UTC+7 all year, so a fixed offset is exact).
"""

from __future__ import annotations

import functools
from collections.abc import Container
from datetime import UTC, date, datetime, time, timedelta, timezone


def add_working_days(start: date, days: int, holidays: Container[date] = ()) -> date:
    """The date `days` working days after `start` (which itself does not count)."""
    if days < 0:
        raise ValueError("days must not be negative")
    current = start
    remaining = days
    while remaining:
        current += timedelta(days=1)
        if current.weekday() < 5 and current not in holidays:
            remaining -= 1
    return current


def deadline_after(
    instant: datetime,
    days: int,
    *,
    utc_offset: timedelta = timedelta(hours=7),
    holidays: Container[date] = (),
) -> datetime:
    """End (exclusive: midnight after) of the `days`-th working day after `instant`'s local date."""
    local_day = instant.astimezone(timezone(utc_offset)).date()
    try:
        return _deadline(local_day, days, utc_offset, holidays)  # type: ignore[arg-type]
    except TypeError:  # unhashable holidays: compute without the memo
        return _deadline.__wrapped__(local_day, days, utc_offset, holidays)


@functools.lru_cache(maxsize=64)
def _deadline(local_day: date, days: int, utc_offset: timedelta, holidays: Container[date]) -> datetime:
    """Every transfer opened on one local day has the same deadline: computed once."""
    tz = timezone(utc_offset)
    last_day = add_working_days(local_day, days, holidays)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz)
    return end.astimezone(UTC)
