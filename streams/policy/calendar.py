"""Calendar-aware time arithmetic on UTC epoch milliseconds, in the policy's time zone.

Retention law counts in calendar units of a *local* calendar ("3 years after", "5 years from
the end of the financial year", "90 days after the day"): Norwegian law counts in Norwegian
time, so an invoice issued at 00:30 on 1 January in Oslo (23:30 UTC on 31 December) belongs to
the new financial year. Every function that depends on a local date takes the zone
(``Europe/Oslo`` unless the policy file says otherwise).

Where a date does not exist in the target year (29 February) we round *forward*, and where a
wall-clock time occurs twice or not at all (daylight saving changes) we take the later
instant, because every retention period is a minimum.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MS_PER_DAY = 86_400_000
DEFAULT_ZONE = "Europe/Oslo"


class UnknownTimeZone(ValueError):
    """A time zone name the tz database does not know."""


@cache
def zone(name: str) -> tzinfo:
    """The tz database zone ``name`` (UTC for "UTC"); raises :class:`UnknownTimeZone`."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        known = f"a tz database name, e.g. {DEFAULT_ZONE}"
        raise UnknownTimeZone(f"unknown time zone {name!r} ({known})") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def to_datetime(ms: int, tz: tzinfo = UTC) -> datetime:
    """The instant as an aware datetime in ``tz``."""
    return _utc(ms).astimezone(tz)


def to_ms(moment: datetime) -> int:
    """Exact epoch milliseconds (float timestamps would round some instants 1 ms early)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: event times must carry a time zone")
    return (moment - _EPOCH) // _MS


def _wall_to_ms(wall: datetime, tz: tzinfo | None = None) -> int:
    """A local wall-clock time (in ``tz``, or its own zone) as an instant; of a time that
    happens twice (autumn) or never (spring gap), the later reading, so a period never ends
    early."""
    if tz is not None:
        wall = wall.replace(tzinfo=tz)
    return max(to_ms(wall.replace(fold=0)), to_ms(wall.replace(fold=1)))


def iso(ms: int) -> str:
    """ISO-8601 UTC with a Z, to the second: the form used in decisions and summaries."""
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_date(ms: int, tz: tzinfo) -> date:
    """The calendar date of an instant in ``tz``."""
    return to_datetime(ms, tz).date()


def start_of_day(day: date, tz: tzinfo) -> int:
    """The instant ``day`` begins in ``tz`` (local midnight)."""
    return _wall_to_ms(datetime.combine(day, time(), tzinfo=tz))


def add_years(ms: int, years: int, tz: tzinfo = UTC) -> int:
    """The same wall-clock time ``years`` calendar years later in ``tz``; 29 Feb rolls forward
    to 1 Mar."""
    if years == 0:
        return ms  # not even through the wall clock: an instant stays itself
    start = to_datetime(ms, tz)
    try:
        moved = start.replace(year=start.year + years)
    except ValueError:  # 29 February into a non-leap year
        moved = start.replace(year=start.year + years, month=3, day=1)
    return _wall_to_ms(moved)


def add_months(ms: int, months: int, tz: tzinfo = UTC) -> int:
    """The same wall-clock time ``months`` calendar months later in ``tz``; a day the month
    lacks rolls forward to the first of the next month (31 January + 1 month = 1 March)."""
    if months == 0:
        return ms  # not even through the wall clock: an instant stays itself
    start = to_datetime(ms, tz)
    total = start.month - 1 + months
    year, month = start.year + total // 12, total % 12 + 1
    try:
        moved = start.replace(year=year, month=month)
    except ValueError:
        moved = start.replace(year=year + month // 12, month=month % 12 + 1, day=1)
    return _wall_to_ms(moved)


def add_days(ms: int, days: int, tz: tzinfo = UTC) -> int:
    """The same wall-clock time ``days`` calendar days later in ``tz`` (a day across a daylight
    saving change is 23 or 25 hours long)."""
    if days == 0:
        return ms  # not even through the wall clock: an instant stays itself
    if tz is UTC:
        return ms + days * MS_PER_DAY
    start = to_datetime(ms, tz)
    return _wall_to_ms(start.replace(tzinfo=None) + timedelta(days=days), tz)


def add_hours(ms: int, hours: int) -> int:
    return ms + hours * 3_600_000


def end_of_financial_year(ms: int, tz: tzinfo = UTC) -> int:
    """31 December 24:00 in ``tz`` of the year the instant falls in there (Norwegian financial
    years are calendar years, counted in Norwegian time)."""
    year = to_datetime(ms, tz).year
    return _wall_to_ms(datetime(year + 1, 1, 1, tzinfo=tz))


def end_of_day(ms: int, tz: tzinfo = UTC) -> int:
    """24:00 of the local day the instant falls in (the next local midnight)."""
    return start_of_day(local_date(ms, tz) + timedelta(days=1), tz)
