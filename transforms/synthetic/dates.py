"""Day numbers and the few calendar facts the generator needs.

Dates are carried as int32 days since 1970-01-01 so that whole columns can be compared
and shifted with numpy; polars reads the same integers as `pl.Date`. Registration times
are int64 seconds since 1970-01-01 on the Norwegian wall clock (naive local time), which
is what epj-a-csv writes; epj-b-jsonl adds the Europe/Oslo offset of that moment.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np

EPOCH = dt.date(1970, 1, 1)


def day(d: dt.date | str) -> int:
    """Day number of a date (or ISO string)."""
    if isinstance(d, str):
        d = dt.date.fromisoformat(d)
    return (d - EPOCH).days


def to_date(n: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(n))


def year_start(year: int) -> int:
    return day(dt.date(year, 1, 1))


def year_end(year: int) -> int:
    return day(dt.date(year, 12, 31))


SPAN_START = day("2017-01-01")
SPAN_END = day("2025-12-31")
WORLD_START = day("2005-01-01")  # earliest service start the world holds
OPEN = day("2099-12-31")  # end of a service that has not ended

_YEAR_STARTS = np.array([year_start(y) for y in range(1900, 2101)], dtype=np.int64)


def years_of(days: np.ndarray) -> np.ndarray:
    """Calendar year of each day number."""
    return (np.searchsorted(_YEAR_STARTS, np.asarray(days), side="right") - 1 + 1900).astype(np.int32)


def _last_sunday(year: int, month: int) -> dt.date:
    last = dt.date(year, month, 31)
    return last - dt.timedelta(days=(last.weekday() + 1) % 7)


@cache
def _dst_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Per year 1990–2100: first day of summer time and first day of winter time in Oslo."""
    tz = ZoneInfo("Europe/Oslo")
    starts, ends = [], []
    for y in range(1990, 2101):
        summer = _last_sunday(y, 3)
        winter = _last_sunday(y, 10)
        # Sanity check against the tz database at noon of those Sundays.
        assert dt.datetime(y, summer.month, summer.day, 12, tzinfo=tz).utcoffset() == dt.timedelta(hours=2)
        starts.append(day(summer))
        ends.append(day(winter))
    return np.array(starts), np.array(ends)


def oslo_offsets(local_seconds: np.ndarray) -> np.ndarray:
    """'+01:00' or '+02:00' for wall-clock times between 06:00 and 20:00 (no ambiguous hour)."""
    days = np.asarray(local_seconds) // 86400
    idx = years_of(days) - 1990
    starts, ends = _dst_bounds()
    summer = (days >= starts[idx]) & (days < ends[idx])
    return np.where(summer, "+02:00", "+01:00")
