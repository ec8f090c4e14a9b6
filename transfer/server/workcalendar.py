"""The node's calendar of days that are not working days, for transfer deadlines.

Vietnam's public holidays come from the `holidays` package's VN calendar
(Tết, from the 29th or 30th of the twelfth lunar month to the 5th of the
first, Hùng Kings' day, 30/4, 1/5, 2/9 and the day beside it, 1/1, and the
days off the government moves or adds when a holiday falls on a weekend).
The configuration adds dates to them (`calendar.extra_holidays`, and the older
`transfers.holidays`) and takes dates out (`calendar.not_holidays`); see
docs/operations.md, Calendar.

The package computes the lunar holidays for the years 1901 to 2100 and knows
nothing outside them: for a day of a year it has no data for, the calendar
counts only the configured days, and says so once per year in a WARNING
(rather than silently count Tết as working days). Saturdays the government
makes working days in exchange for a day off are not counted as working days:
the deadline is then a day later, never earlier.

The domain (transfer/domain/workdays.py) sees only `day in calendar`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import date

import holidays

log = logging.getLogger("transfer.calendar")

# The country calendars `calendar.public_holidays` may name ("" turns them off).
COUNTRIES = ("VN",)


class WorkCalendar:
    """`day in calendar`: whether `day` is a public holiday (of `country`, unless taken out) or an added one.

    Safe to use from several threads (the writer's, on PostgreSQL): each year is computed once, under a lock."""

    def __init__(self, country: str = "VN", extra: Iterable[date] = (), removed: Iterable[date] = ()) -> None:
        if country not in ("", *COUNTRIES):
            raise ValueError(f"unknown country calendar {country!r}")
        self.country = country
        self.extra = frozenset(extra)
        self.removed = frozenset(removed)
        if self.extra & self.removed:
            raise ValueError(f"both added and removed: {sorted(self.extra & self.removed)[0]}")
        self._years: dict[int, frozenset[date]] = {}
        self._lock = threading.Lock()
        if country:
            cls = holidays.country_holidays(country).__class__
            self.first_year: int = cls.start_year
            self.last_year: int = cls.end_year
        else:
            self.first_year = self.last_year = 0

    def covers(self, year: int) -> bool:
        """Whether the country calendar has data for `year` (always false without one)."""
        return bool(self.country) and self.first_year <= year <= self.last_year

    def public_holidays(self, year: int) -> frozenset[date]:
        """The country's public holidays (days off) of `year`; empty when it has no data for the year."""
        found = self._years.get(year)
        if found is not None:
            return found
        with self._lock:
            if year not in self._years:
                if self.covers(year):
                    self._years[year] = frozenset(holidays.country_holidays(self.country, years=year))
                else:
                    if self.country:
                        log.warning(
                            "no public holiday data for this year: deadlines count only the configured holidays",
                            extra={
                                "year": year,
                                "country": self.country,
                                "covered": f"{self.first_year}-{self.last_year}",
                            },
                        )
                    self._years[year] = frozenset()
            return self._years[year]

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date):
            return False
        if day in self.extra:
            return True
        if day in self.removed:
            return False
        return day in self.public_holidays(day.year)
