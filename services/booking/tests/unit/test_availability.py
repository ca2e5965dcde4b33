"""Free slots from a therapist's availability: hours, exceptions, buffer, notice, horizon, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from booking.domain.availability import (
    AvailabilityRules,
    Blocked,
    DateException,
    FreeTime,
    Hours,
    Slot,
    alternatives,
    check_bookable,
    first_free_slots,
    free_slots,
    is_bookable,
)
from booking.domain.errors import InvalidAvailability, InvalidInput, SlotUnavailable

STOCKHOLM = ZoneInfo("Europe/Stockholm")
EVERY_DAY = range(7)


def rules(
    hours: str = "09:00-17:00",
    days: range | tuple[int, ...] = EVERY_DAY,
    **kwargs: object,
) -> AvailabilityRules:
    weekly = {day: [Hours.parse(part) for part in hours.split(",")] for day in days}
    kwargs.setdefault("buffer_minutes", 0)
    return AvailabilityRules(weekly=weekly, **kwargs)  # type: ignore[arg-type]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Stockholm wall time as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM).astimezone(UTC)


def walls(slots: list[Slot], day: date) -> list[str]:
    """Local wall start times (with offset) of the slots on one local day."""
    return [
        s.starts_at.astimezone(STOCKHOLM).strftime("%H:%M%z")
        for s in slots
        if s.starts_at.astimezone(STOCKHOLM).date() == day
    ]


# ----------------------------------------------------------------------------- daylight saving


def test_march_switch_keeps_local_working_hours() -> None:
    slots = free_slots(rules(), 60, [], now=utc(2026, 3, 26, 12), step_minutes=60)
    before, switch = date(2026, 3, 28), date(2026, 3, 29)
    assert walls(slots, before) == [f"{h:02d}:00+0100" for h in range(9, 17)]
    assert walls(slots, switch) == [f"{h:02d}:00+0200" for h in range(9, 17)]
    assert min(s.starts_at for s in slots if s.starts_at.date() == before) == utc(2026, 3, 28, 8)
    assert min(s.starts_at for s in slots if s.starts_at.date() == switch) == utc(2026, 3, 29, 7)


def test_october_switch_keeps_local_working_hours() -> None:
    slots = free_slots(rules(), 60, [], now=utc(2026, 10, 22, 12), step_minutes=60)
    assert walls(slots, date(2026, 10, 24)) == [f"{h:02d}:00+0200" for h in range(9, 17)]
    assert walls(slots, date(2026, 10, 25)) == [f"{h:02d}:00+0100" for h in range(9, 17)]
    on_switch = [s for s in slots if s.starts_at.astimezone(STOCKHOLM).date() == date(2026, 10, 25)]
    assert (on_switch[0].starts_at, on_switch[-1].ends_at) == (
        utc(2026, 10, 25, 8),
        utc(2026, 10, 25, 16),
    )


def test_nonexistent_wall_times_are_skipped_in_march() -> None:
    night = DateException(date(2026, 3, 29), (Hours.parse("01:00-04:00"),))
    slots = free_slots(rules(exceptions=[night]), 30, [], now=utc(2026, 3, 27), step_minutes=30)
    # 01:00-04:00 local is only two real hours that night: 02:00-03:00 never happens.
    assert walls(slots, date(2026, 3, 29)) == [
        "01:00+0100",
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
    ]


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ("02:15-02:45", []),  # wholly inside the gap: no real time at all
        ("02:30-04:00", ["03:00+0200", "03:30+0200"]),  # starts when the clock jumps
        ("01:00-02:30", ["01:00+0100", "01:30+0100"]),  # ends when the clock jumps
    ],
)
def test_gap_boundaries_map_to_the_jump(hours: str, expected: list[str]) -> None:
    night = DateException(date(2026, 3, 29), (Hours.parse(hours),))
    slots = free_slots(rules(exceptions=[night]), 30, [], now=utc(2026, 3, 27), step_minutes=30)
    assert walls(slots, date(2026, 3, 29)) == expected


def test_repeated_october_hour_is_offered_twice_as_real_time() -> None:
    night = DateException(date(2026, 10, 25), (Hours.parse("01:00-04:00"),))
    slots = free_slots(rules(exceptions=[night]), 60, [], now=utc(2026, 10, 23), step_minutes=60)
    assert walls(slots, date(2026, 10, 25)) == [
        "01:00+0200",
        "02:00+0200",
        "02:00+0100",
        "03:00+0100",
    ]
    night_utc = [s.starts_at for s in slots if s.starts_at.astimezone(STOCKHOLM).hour < 9]
    assert night_utc == [
        utc(2026, 10, 24, 23),
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 2),
    ]


def test_ambiguous_boundary_means_first_occurrence() -> None:
    night = DateException(date(2026, 10, 25), (Hours.parse("02:30-04:00"),))
    slots = free_slots(rules(exceptions=[night]), 30, [], now=utc(2026, 10, 23), step_minutes=30)
    day = [s for s in slots if s.starts_at.astimezone(STOCKHOLM).date() == date(2026, 10, 25)]
    # First 02:30 (summer time, 00:30Z) to 04:00 winter time (03:00Z): 2.5 real hours.
    assert day[0].starts_at == utc(2026, 10, 25, 0, 30)
    assert day[-1].ends_at == utc(2026, 10, 25, 3)
    assert len(day) == 5


# ----------------------------------------------------------------------------- midnight, year end


def test_slots_across_local_and_utc_midnight() -> None:
    # Monday 22:00-24:00 and Tuesday 00:00-02:00 local touch and join into one evening.
    weekly = {0: [Hours.parse("22:00-00:00")], 1: [Hours.parse("00:00-02:00")]}
    r = AvailabilityRules(weekly=weekly, buffer_minutes=0)
    slots = free_slots(r, 60, [], now=utc(2026, 1, 10), step_minutes=30)
    first_evening = [s.starts_at for s in slots][:7]
    assert first_evening == [
        utc(2026, 1, 12, 21),
        utc(2026, 1, 12, 21, 30),
        utc(2026, 1, 12, 22),
        utc(2026, 1, 12, 22, 30),  # 23:30-00:30 local runs across the seam
        utc(2026, 1, 12, 23),  # local Tuesday 00:00, still Monday in UTC
        utc(2026, 1, 12, 23, 30),
        utc(2026, 1, 13, 0),
    ]
    assert slots[7].starts_at == utc(2026, 1, 19, 21)
    # Each offered start is bookable, the one across the seam included (the next day's
    # hours are part of the judgement), and a start past the evening is not.
    for start in first_evening:
        check_bookable(r, 60, [], utc(2026, 1, 10), start, step_minutes=30)
    with pytest.raises(SlotUnavailable) as refused:
        check_bookable(r, 60, [], utc(2026, 1, 10), utc(2026, 1, 13, 0, 30), step_minutes=30)
    assert refused.value.code == "outside_hours"


def test_year_end_with_a_holiday_notice_and_horizon() -> None:
    new_year = DateException(date(2027, 1, 1))  # the whole day off
    r = rules("09:00-10:00", exceptions=[new_year], horizon=timedelta(days=3))
    now = utc(2026, 12, 30, 20)  # notice ends 2026-12-31 08:00Z = 09:00 local, exactly
    slots = free_slots(r, 60, [], now=now, step_minutes=60)
    assert [s.starts_at for s in slots] == [utc(2026, 12, 31, 8), utc(2027, 1, 2, 8)]


# --------------------------------------------------------------------- buffer, notice, horizon


MONDAY = date(2026, 2, 2)
MONDAY_NOW = utc(2026, 1, 30, 12)


@pytest.mark.parametrize(
    ("buffer", "expected"),
    [
        (0, ["09:00+0100", "09:15+0100", "10:45+0100", "11:00+0100", "11:15+0100"]),
        (15, ["09:00+0100", "11:00+0100", "11:15+0100"]),
        (30, ["11:15+0100"]),  # 09:00 would end 09:45, only 15 minutes before the busy start
    ],
)
def test_buffer_before_and_after_busy_sessions(buffer: int, expected: list[str]) -> None:
    busy = [(local(2026, 2, 2, 10), local(2026, 2, 2, 10, 45))]
    r = rules("09:00-12:00", days=(0,), buffer_minutes=buffer)
    assert walls(free_slots(r, 45, busy, now=MONDAY_NOW), MONDAY) == expected


def test_overlapping_busy_intervals_merge() -> None:
    busy = [
        (local(2026, 2, 2, 9, 30), local(2026, 2, 2, 10, 30)),
        (local(2026, 2, 2, 10), local(2026, 2, 2, 11)),
    ]
    r = rules("09:00-12:00", days=(0,))
    assert walls(free_slots(r, 60, busy, now=MONDAY_NOW), MONDAY) == ["11:00+0100"]


def test_notice_moves_first_slot_to_the_next_step() -> None:
    now = local(2026, 2, 1, 22, 7)  # + 12 h = Monday 10:07
    slots = free_slots(rules("09:00-12:00", days=(0,)), 60, [], now=now)
    assert walls(slots, MONDAY)[:2] == ["10:15+0100", "10:30+0100"]


def test_default_horizon_is_eight_weeks_and_notice_twelve_hours() -> None:
    r = AvailabilityRules(weekly={d: [Hours(time(0), time(0))] for d in EVERY_DAY})
    now = utc(2026, 1, 5, 10)
    slots = free_slots(r, 60, [], now=now, step_minutes=60)
    assert slots[0].starts_at == now + timedelta(hours=12)
    assert slots[-1].starts_at == now + timedelta(weeks=8)
    assert r.buffer_minutes == 15 and r.time_zone == "Europe/Stockholm"


def test_exception_replaces_the_days_hours() -> None:
    special = DateException(MONDAY, (Hours.parse("13:00-14:00"),))
    r = rules("09:00-12:00", days=(0,), exceptions=[special])
    slots = free_slots(r, 60, [], now=MONDAY_NOW, step_minutes=60)
    assert walls(slots, MONDAY) == ["13:00+0100"]
    assert walls(slots, date(2026, 2, 9)) == ["09:00+0100", "10:00+0100", "11:00+0100"]


def test_slots_are_in_time_order_and_utc() -> None:
    slots = free_slots(rules("09:00-12:00,13:00-17:00"), 45, [], now=MONDAY_NOW)
    assert slots == sorted(slots)
    assert all(s.starts_at.tzinfo is UTC and s.minutes == 45 for s in slots)
    assert "12:00+0100" not in walls(slots, MONDAY) and "11:15+0100" in walls(slots, MONDAY)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda: Hours.parse("17:00-09:00"), "hours_end_not_after_start"),
        (lambda: Hours.parse("22:00-02:00"), "hours_end_not_after_start"),
        (lambda: Hours.parse("09:00-09:00"), "hours_end_not_after_start"),
        (lambda: Hours.parse("nine to five"), "hours_unreadable"),
        (lambda: Hours(time(9, 0, 30), time(10)), "hours_not_whole_minutes"),
        (lambda: rules("09:00-12:00,11:00-13:00"), "hours_overlap"),
        (
            lambda: DateException(MONDAY, (Hours.parse("09:00-11:00"), Hours.parse("10:00-12:00"))),
            "hours_overlap",
        ),
        (lambda: rules(buffer_minutes=-1), "buffer_out_of_range"),
        (lambda: rules(buffer_minutes=121), "buffer_out_of_range"),
        (lambda: rules(time_zone="Mars/Olympus_Mons"), "unknown_time_zone"),
        (lambda: rules(time_zone="../etc/passwd"), "unknown_time_zone"),
        (lambda: rules(time_zone=""), "unknown_time_zone"),
        (lambda: rules(days=(7,)), "unknown_weekday"),
        (
            lambda: rules(exceptions=[DateException(MONDAY), DateException(MONDAY)]),
            "duplicate_exception",
        ),
        (lambda: rules(min_notice=timedelta(hours=-1)), "negative_notice"),
        (lambda: rules(horizon=timedelta(hours=12)), "horizon_within_notice"),
    ],
)
def test_invalid_rules_are_refused_with_a_code(build: object, code: str) -> None:
    with pytest.raises(InvalidAvailability) as caught:
        build()  # type: ignore[operator]
    assert caught.value.code == code
    assert caught.value.message


def test_valid_edges_are_accepted() -> None:
    r = rules("09:00-12:00,12:00-13:00", buffer_minutes=120, time_zone="America/New_York")
    assert r.buffer_minutes == 120
    assert [str(h) for h in r.hours_on(MONDAY)] == ["09:00-12:00", "12:00-13:00"]


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        free_slots(rules(), 60, [], now=datetime(2026, 1, 1))
    assert caught.value.code == "naive_datetime"


def test_other_zone_rules_use_that_zone() -> None:
    r = rules("09:00-10:00", days=(0,), time_zone="America/New_York")
    slots = free_slots(r, 60, [], now=MONDAY_NOW)
    assert slots[0].starts_at == utc(2026, 2, 2, 14)


# --------------------------------------------------------------------- bookable, alternatives


BUSY = [(local(2026, 2, 2, 10), local(2026, 2, 2, 11))]
R = rules("09:00-12:00", days=(0,), buffer_minutes=15)


@pytest.mark.parametrize(
    ("starts_at", "code"),
    [
        (local(2026, 2, 2, 11, 15), None),
        (local(2026, 1, 30, 23), "too_soon"),
        (local(2026, 4, 6, 9), "beyond_horizon"),
        (local(2026, 2, 2, 8, 30), "outside_hours"),
        (local(2026, 2, 2, 11, 45), "outside_hours"),  # would end 12:15
        (local(2026, 2, 3, 9), "outside_hours"),  # a Tuesday
        (local(2026, 2, 2, 11, 20), "off_grid"),
        (local(2026, 2, 2, 9, 30), "taken"),  # ends 10:15, inside the buffer
        (local(2026, 2, 2, 10, 30), "taken"),
    ],
)
def test_check_bookable(starts_at: datetime, code: str | None) -> None:
    assert is_bookable(R, 30, BUSY, MONDAY_NOW, starts_at) is (code is None)
    if code is None:
        check_bookable(R, 30, BUSY, MONDAY_NOW, starts_at)
    else:
        with pytest.raises(SlotUnavailable) as caught:
            check_bookable(R, 30, BUSY, MONDAY_NOW, starts_at)
        assert caught.value.code == code


def test_alternatives_are_the_nearest_free_slots_in_time_order() -> None:
    found = alternatives(R, 30, BUSY, MONDAY_NOW, requested=local(2026, 2, 2, 10), count=3)
    # Free that Monday: 09:00, 09:15, 11:15, 11:30; nearest to 10:00 are 09:15, 09:00, 11:15.
    assert [s.starts_at for s in found] == [
        local(2026, 2, 2, 9),
        local(2026, 2, 2, 9, 15),
        local(2026, 2, 2, 11, 15),
    ]


def test_alternatives_move_to_another_day_when_the_day_is_full() -> None:
    found = alternatives(R, 60, BUSY, MONDAY_NOW, requested=local(2026, 2, 2, 10), count=2)
    assert [s.starts_at for s in found] == [local(2026, 2, 9, 9), local(2026, 2, 9, 9, 15)]


def test_alternatives_take_both_sides() -> None:
    r = rules("09:00-17:00", days=(0,))
    busy = [(local(2026, 2, 2, 12), local(2026, 2, 2, 13))]
    found = alternatives(r, 60, busy, MONDAY_NOW, requested=local(2026, 2, 2, 12), count=2)
    assert [s.starts_at for s in found] == [local(2026, 2, 2, 11), local(2026, 2, 2, 13)]


@settings(max_examples=60, deadline=None)
@given(
    busy_starts=st.lists(st.integers(0, 4 * 24 * 4), max_size=6),
    busy_len=st.integers(1, 8),
    buffer=st.integers(0, 30),
    now_offset=st.integers(0, 24 * 4),
)
def test_free_slots_agree_with_is_bookable(
    busy_starts: list[int], busy_len: int, buffer: int, now_offset: int
) -> None:
    base = utc(2026, 3, 26)  # spans the March switch
    quarter = timedelta(minutes=15)
    busy = [(base + n * quarter, base + (n + busy_len) * quarter) for n in busy_starts]
    r = rules("08:00-12:00,13:00-18:00", buffer_minutes=buffer, horizon=timedelta(days=4))
    now = base + now_offset * quarter
    slots = free_slots(r, 45, busy, now)
    starts = {s.starts_at for s in slots}
    for k in range(5 * 24 * 4):
        candidate = base + k * quarter
        assert is_bookable(r, 45, busy, now, candidate) is (candidate in starts)
    for slot in slots:
        for start, end in busy:
            assert slot.ends_at + timedelta(minutes=buffer) <= start or (
                slot.starts_at >= end + timedelta(minutes=buffer)
            )


def test_first_free_slots_are_the_start_of_free_slots() -> None:
    r = rules("09:00-12:00,13:00-17:00", buffer_minutes=15)
    busy = [(local(2026, 2, 2, 10), local(2026, 2, 2, 11))]
    every = free_slots(r, 50, busy, MONDAY_NOW)
    assert first_free_slots(r, 50, busy, MONDAY_NOW, limit=400) == every[:400]
    assert first_free_slots(r, 50, busy, MONDAY_NOW, limit=0) == []
    later = local(2026, 2, 3, 12, 5)
    assert (
        first_free_slots(r, 50, busy, MONDAY_NOW, limit=5, since=later)
        == [s for s in every if s.starts_at >= later][:5]
    )
    assert len(every) > 400


@settings(max_examples=40, deadline=None)
@given(
    busy_starts=st.lists(st.integers(0, 4 * 24 * 4), max_size=8),
    requested_offset=st.integers(-24 * 4, 6 * 24 * 4),
    count=st.integers(0, 5),
)
def test_alternatives_are_the_nearest_of_all_free_slots(
    busy_starts: list[int], requested_offset: int, count: int
) -> None:
    base, quarter = utc(2026, 3, 26), timedelta(minutes=15)
    busy = [(base + n * quarter, base + (n + 4) * quarter) for n in busy_starts]
    r = rules("08:00-12:00,13:00-18:00", buffer_minutes=15, horizon=timedelta(days=4))
    requested = base + requested_offset * quarter
    every = free_slots(r, 45, busy, base)
    nearest = sorted(every, key=lambda s: (abs(s.starts_at - requested), s.starts_at))[:count]
    assert alternatives(r, 45, busy, base, requested, count) == sorted(nearest)


@settings(max_examples=40, deadline=None)
@given(
    busy_starts=st.lists(st.integers(0, 6 * 24 * 4), max_size=40),
    requested_offset=st.integers(-24 * 4, 8 * 24 * 4),
    count=st.integers(0, 5),
    now_offset=st.integers(0, 24 * 4),
)
def test_a_kept_merge_offers_the_same_nearest_slots(
    busy_starts: list[int], requested_offset: int, count: int, now_offset: int
) -> None:
    # A merge used again (a calendar refused over and over) lists the days between the first
    # and the last once, and answers from that list: the same as walking the days.
    base, quarter = utc(2026, 3, 26), timedelta(minutes=15)
    busy = [(base + n * quarter, base + (n + 4) * quarter) for n in busy_starts]
    r = rules("08:00-12:00,13:00-18:00", buffer_minutes=15, horizon=timedelta(days=6))
    now = base + now_offset * quarter
    requested = base + requested_offset * quarter
    every = free_slots(r, 45, busy, now)
    nearest = sorted(every, key=lambda s: (abs(s.starts_at - requested), s.starts_at))[:count]
    blocked = Blocked(busy, timedelta(minutes=15))
    for _ in range(3):  # walked, then listed, then from the list
        assert FreeTime(r, 45, blocked, now).nearest(requested, count) == sorted(nearest)


@settings(max_examples=60, deadline=None)
@given(
    full_days=st.integers(0, 5),
    full_quarters=st.integers(0, 24 * 4),
    busy_starts=st.lists(st.integers(0, 8 * 24 * 4), max_size=12),
    requested_offset=st.integers(-24 * 4, 9 * 24 * 4),
    count=st.integers(1, 5),
)
def test_alternatives_after_days_booked_full_are_still_the_nearest(
    full_days: int, full_quarters: int, busy_starts: list[int], requested_offset: int, count: int
) -> None:
    # Under contention the calendar fills from its start: the nearest free slots to a time
    # at the edge lie after it, and the days before it are not walked (the same answer).
    base, quarter = utc(2026, 3, 26), timedelta(minutes=15)
    full = timedelta(days=full_days) + full_quarters * quarter  # (up to a part of a day)
    busy = [(base, base + full)] if full_days else []
    busy += [(base + n * quarter, base + (n + 3) * quarter) for n in busy_starts]
    r = rules("08:00-12:00,13:00-18:00", buffer_minutes=15, horizon=timedelta(days=8))
    requested = base + requested_offset * quarter
    every = free_slots(r, 45, busy, base)
    nearest = sorted(every, key=lambda s: (abs(s.starts_at - requested), s.starts_at))[:count]
    assert alternatives(r, 45, busy, base, requested, count) == sorted(nearest)
    blocked = Blocked(busy, timedelta(minutes=15))
    for _ in range(3):  # walked, then listed, then from the list
        assert FreeTime(r, 45, blocked, base).nearest(requested, count) == sorted(nearest)
    # The earliest free slots pass the days booked full at once (one merge, or two).
    layered = Blocked(busy[: bool(full_days)], timedelta(minutes=15)).adding(
        busy[bool(full_days) :]
    )
    for merge in (blocked, layered):
        assert FreeTime(r, 45, merge, base).first(count) == every[:count]
        assert FreeTime(r, 45, merge, base).first(1000) == every


@settings(max_examples=80, deadline=None)
@given(
    kept=st.lists(st.integers(0, 5 * 24 * 4), max_size=30),
    more=st.lists(st.integers(0, 5 * 24 * 4), max_size=8),
    requested_offset=st.integers(-24 * 4, 6 * 24 * 4),
    now_offset=st.integers(0, 24 * 4),
)
def test_busy_times_added_to_a_kept_merge_leave_the_same_free_slots_as_one_merge(
    kept: list[int], more: list[int], requested_offset: int, now_offset: int
) -> None:
    # A therapist's merge is kept and each client's busy times go on top of it (`adding`):
    # the free slots, the nearest and the overlaps are those of both merged at once.
    base, quarter = utc(2026, 3, 26), timedelta(minutes=15)

    def busy(starts: list[int]) -> list[tuple[datetime, datetime]]:
        return [(base + n * quarter, base + (n + 3) * quarter) for n in starts]

    r = rules("08:00-12:00,13:00-18:00", buffer_minutes=15, horizon=timedelta(days=5))
    now, requested = base + now_offset * quarter, base + requested_offset * quarter
    buffer = timedelta(minutes=15)
    therapist = Blocked(busy(kept), buffer)
    together = Blocked(busy(kept) + busy(more), buffer)
    for _ in range(2):  # a fresh merge, then one whose day lists are kept
        added = therapist.adding(busy(more))
        assert FreeTime(r, 45, added, now).first(1000) == FreeTime(r, 45, together, now).first(1000)
        for count in (1, 3, 12):
            assert FreeTime(r, 45, added, now).nearest(requested, count) == FreeTime(
                r, 45, together, now
            ).nearest(requested, count)
    for n in range(0, 5 * 24 * 4, 3):
        at = base + n * quarter
        assert added.overlaps(at, at + 3 * quarter) == together.overlaps(at, at + 3 * quarter)
