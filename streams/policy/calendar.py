"""Calendar-aware time arithmetic on UTC epoch milliseconds.

Retention law counts in calendar units ("3 years after", "5 years from the end of the
financial year"). Where a date does not exist in the target year (29 February) we round
*forward*, because every retention period is a minimum.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MS_PER_DAY = 86_400_000


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Exact epoch milliseconds (float timestamps would round some instants 1 ms early)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: event times must carry a time zone")
    return (moment - _EPOCH) // _MS


def iso(ms: int) -> str:
    """ISO-8601 UTC with a Z, to the second: the form used in decisions and summaries."""
    return to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_years(ms: int, years: int) -> int:
    """The same instant ``years`` calendar years later; 29 Feb rolls forward to 1 Mar."""
    start = to_datetime(ms)
    try:
        moved = start.replace(year=start.year + years)
    except ValueError:  # 29 February into a non-leap year
        moved = start.replace(year=start.year + years, month=2, day=28) + timedelta(days=1)
    return to_ms(moved)


def add_months(ms: int, months: int) -> int:
    """The same instant ``months`` calendar months later; a day the month lacks rolls forward
    to the first of the next month (31 January + 1 month = 1 March)."""
    start = to_datetime(ms)
    total = start.month - 1 + months
    year, month = start.year + total // 12, total % 12 + 1
    try:
        moved = start.replace(year=year, month=month)
    except ValueError:
        first_next = start.replace(year=year + month // 12, month=month % 12 + 1, day=1)
        moved = first_next
    return to_ms(moved)


def add_days(ms: int, days: int) -> int:
    return ms + days * MS_PER_DAY


def add_hours(ms: int, hours: int) -> int:
    return ms + hours * 3_600_000


def end_of_financial_year(ms: int) -> int:
    """Start of the next calendar year (Norwegian financial years default to calendar years)."""
    year = to_datetime(ms).year
    return to_ms(datetime(year + 1, 1, 1, tzinfo=UTC))
