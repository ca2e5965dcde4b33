"""A series of sessions booked at once (for example weekly for 12 weeks), all or nothing.

The series keeps the client's LOCAL wall-clock time: Tuesday 17:00 stays Tuesday 17:00
after the clocks change, so its UTC time shifts by the change. A week whose wall time does
not exist or happens twice follows `clock.wall_to_utc`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from booking.domain.clock import DEFAULT_TIME_ZONE, as_utc, load_zone, wall_to_utc
from booking.domain.errors import InvalidInput

MAX_SERIES_LENGTH = 52  # a year of weekly sessions; longer than any method's range


def weekly_series(
    first_start_utc: datetime,
    count: int,
    every_weeks: int = 1,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> list[datetime]:
    """`count` UTC start times, `every_weeks` apart in local time, the first one as given."""
    if not 1 <= count <= MAX_SERIES_LENGTH:
        raise InvalidInput(
            "series_length_out_of_range",
            f"A series has 1-{MAX_SERIES_LENGTH} sessions, not {count}.",
        )
    if every_weeks < 1:
        raise InvalidInput(
            "series_interval_out_of_range", "A series repeats every 1 or more weeks."
        )
    zone = load_zone(time_zone)
    first = as_utc(first_start_utc, "first start")
    local = first.astimezone(zone)
    wall = local.time().replace(tzinfo=None, fold=0)
    return [first] + [
        wall_to_utc(local.date() + timedelta(weeks=every_weeks * week), wall, zone)
        for week in range(1, count)
    ]
