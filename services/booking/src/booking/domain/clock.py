"""Local wall-clock time versus real (UTC) time, in one place.

Times are stored in UTC with the IANA zone; rules (working hours, weekly series) are written
in the therapist's local wall time. Converting one to the other has two awkward cases:
- a wall time that does not exist (the spring-forward gap, 02:00-03:00 on the last Sunday of
  March in Europe/Stockholm) is read as the instant the clock jumps (03:00 local), so an
  interval never reaches into time that is outside it;
- a wall time that happens twice (the repeated 02:00-03:00 hour in October) means its FIRST
  occurrence (summer time), as in RFC 5545 (iCalendar).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from booking.domain.errors import InvalidAvailability, InvalidInput

DEFAULT_TIME_ZONE = "Europe/Stockholm"


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidAvailability(
            "unknown_time_zone", f"{name!r} is not a known IANA time zone name."
        ) from exc


def as_utc(moment: datetime, what: str = "time") -> datetime:
    """A naive datetime is ambiguous by nature; refuse it rather than guess a zone."""
    if moment.tzinfo is UTC:  # most are (read from Postgres, or made here): nothing to convert
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput("naive_datetime", f"The {what} must carry a time zone.")
    return moment.astimezone(UTC)


def wall_to_utc(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The real instant at which the clock in `zone` shows `wall` on `day` (see module doc)."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first  # exists; fold=0 is the first occurrence when the hour repeats
    # In a gap fold=0 lands after the jump and fold=1 before it: search the jump between them.
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    offset_after = first.astimezone(zone).utcoffset()
    low, high = 0, int((first - before).total_seconds() // 60)
    while low + 1 < high:
        mid = (low + high) // 2
        if (before + timedelta(minutes=mid)).astimezone(zone).utcoffset() == offset_after:
            high = mid
        else:
            low = mid
    return before + timedelta(minutes=high)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()
