"""Weekly series keep the local wall-clock time across daylight saving."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking.domain.errors import InvalidAvailability, InvalidInput
from booking.domain.series import weekly_series

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "count", "every", "expected"),
    [
        # Tuesday 17:00 across the March switch: 16:00Z, then 15:00Z.
        (
            utc(2026, 3, 24, 16),
            3,
            1,
            [utc(2026, 3, 24, 16), utc(2026, 3, 31, 15), utc(2026, 4, 7, 15)],
        ),
        # Tuesday 17:00 across the October switch: 15:00Z, then 16:00Z.
        (utc(2026, 10, 20, 15), 2, 1, [utc(2026, 10, 20, 15), utc(2026, 10, 27, 16)]),
        # Every second week across the year end.
        (
            utc(2026, 12, 22, 8),
            3,
            2,
            [utc(2026, 12, 22, 8), utc(2027, 1, 5, 8), utc(2027, 1, 19, 8)],
        ),
        # 02:30 does not exist on 29 March: that week starts when the clock jumps (03:00 CEST).
        (
            utc(2026, 3, 22, 1, 30),
            3,
            1,
            [utc(2026, 3, 22, 1, 30), utc(2026, 3, 29, 1), utc(2026, 4, 5, 0, 30)],
        ),
        # 02:30 happens twice on 25 October: the first (summer time) is meant.
        (
            utc(2026, 10, 18, 0, 30),
            3,
            1,
            [utc(2026, 10, 18, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 11, 1, 1, 30)],
        ),
        (utc(2026, 5, 5, 7), 1, 1, [utc(2026, 5, 5, 7)]),
    ],
)
def test_weekly_series(first: datetime, count: int, every: int, expected: list[datetime]) -> None:
    assert weekly_series(first, count, every, "Europe/Stockholm") == expected


def test_twelve_weekly_sessions_keep_wall_time_and_weekday() -> None:
    series = weekly_series(utc(2026, 3, 10, 16), 12)
    local = [s.astimezone(STOCKHOLM) for s in series]
    assert len(series) == 12
    assert {(t.hour, t.minute, t.weekday()) for t in local} == {(17, 0, 1)}
    assert {s.hour for s in series} == {15, 16}
    gaps = {b - a for a, b in itertools.pairwise(series)}
    assert gaps == {timedelta(days=7), timedelta(days=7, hours=-1)}  # 29 March is in between


def test_other_zone() -> None:
    # US daylight saving starts 8 March 2026: Monday 09:00 New York is 14:00Z, then 13:00Z.
    assert weekly_series(utc(2026, 3, 2, 14), 2, time_zone="America/New_York") == [
        utc(2026, 3, 2, 14),
        utc(2026, 3, 9, 13),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"count": 0}, InvalidInput, "series_length_out_of_range"),
        ({"count": 53}, InvalidInput, "series_length_out_of_range"),
        ({"every_weeks": 0}, InvalidInput, "series_interval_out_of_range"),
        ({"time_zone": "Nowhere/Land"}, InvalidAvailability, "unknown_time_zone"),
        ({"first_start_utc": datetime(2026, 3, 3, 9)}, InvalidInput, "naive_datetime"),
    ],
)
def test_invalid_series(kwargs: dict[str, object], error: type[Exception], code: str) -> None:
    args: dict[str, object] = {"first_start_utc": utc(2026, 3, 3, 9), "count": 3, **kwargs}
    with pytest.raises(error) as caught:
        weekly_series(**args)  # type: ignore[arg-type]
    assert getattr(caught.value, "code", None) == code


@given(
    day=st.integers(0, 364),
    minutes=st.integers(6 * 60, 22 * 60 - 1),
    count=st.integers(1, 20),
    every=st.integers(1, 3),
)
def test_series_always_keeps_local_wall_time(
    day: int, minutes: int, count: int, every: int
) -> None:
    # Aware + timedelta is wall-clock arithmetic in Python, as a person means it.
    first_local = datetime(2026, 1, 1, tzinfo=STOCKHOLM) + timedelta(days=day, minutes=minutes)
    series = weekly_series(first_local.astimezone(UTC), count, every)
    for index, start in enumerate(series):
        seen = start.astimezone(STOCKHOLM)
        assert seen.time() == first_local.time()
        assert (seen.date() - first_local.date()).days == 7 * every * index
