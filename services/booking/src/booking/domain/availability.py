"""A therapist's availability and the free slots it leaves (docs/domain.md, Booking).

Rules are written in the therapist's local wall time; slots come out as UTC instants.
Per local day, each working interval becomes one real-time interval (see `clock` for the
daylight-saving cases) and slots step through it in real time, so:
- 09:00-17:00 stays 09:00-17:00 local on the days the clocks change;
- wall times inside the spring-forward gap are never offered (they never happen);
- inside the repeated autumn hour both occurrences are real time and both are offered
  (02:15 summer time and 02:15 winter time are different instants).
Hours may not cross midnight: write them as two intervals on the two weekdays (touching
intervals join, so a session may run across the seam). An end of 00:00 means midnight at the
end of the day.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from booking.domain.clock import DEFAULT_TIME_ZONE, as_utc, load_zone, local_date, wall_to_utc
from booking.domain.errors import InvalidAvailability, InvalidInput, SlotUnavailable

MIDNIGHT = time(0)
MINUTES_PER_DAY = 24 * 60
MAX_BUFFER_MINUTES = 120
DEFAULT_BUFFER_MINUTES = 15  # a short break between two sessions
DEFAULT_MIN_NOTICE = timedelta(hours=12)
DEFAULT_HORIZON = timedelta(weeks=8)
DEFAULT_STEP_MINUTES = 15  # slots start on the quarter hour
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

Busy = tuple[datetime, datetime]


@dataclass(frozen=True, order=True)
class Hours:
    """One working interval in local wall time, [start, end); end 00:00 = end of the day."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if value.tzinfo is not None:
                raise InvalidAvailability(
                    "hours_with_zone", f"Working hours {name} is a local wall time, without zone."
                )
            if value.second or value.microsecond:
                raise InvalidAvailability(
                    "hours_not_whole_minutes", "Working hours are given in whole minutes."
                )
        if self.end_minute <= self.start_minute:
            raise InvalidAvailability(
                "hours_end_not_after_start",
                f"Working hours must end after they start ({self}); hours across midnight are"
                " two intervals, one on each day.",
            )

    @classmethod
    def parse(cls, text: str) -> Hours:
        """'09:00-17:00' -> Hours(09:00, 17:00)."""
        try:
            start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
        except ValueError as exc:
            raise InvalidAvailability(
                "hours_unreadable", f"{text!r} is not working hours like '09:00-17:00'."
            ) from exc
        return cls(start, end)

    @property
    def start_minute(self) -> int:
        return self.start.hour * 60 + self.start.minute

    @property
    def end_minute(self) -> int:
        return MINUTES_PER_DAY if self.end == MIDNIGHT else self.end.hour * 60 + self.end.minute

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _sorted_without_overlap(hours: Iterable[Hours], where: str) -> tuple[Hours, ...]:
    ordered = tuple(sorted(hours))
    for earlier, later in itertools.pairwise(ordered):
        if later.start_minute < earlier.end_minute:  # touching (12:00-12:00) is fine
            raise InvalidAvailability(
                "hours_overlap", f"Working hours {earlier} and {later} on {where} overlap."
            )
    return ordered


@dataclass(frozen=True)
class DateException:
    """A date with other hours than usual; no hours at all means the whole day off."""

    day: date
    hours: tuple[Hours, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hours", _sorted_without_overlap(self.hours, self.day.isoformat()))

    @property
    def day_off(self) -> bool:
        return not self.hours


@dataclass(frozen=True)
class AvailabilityRules:
    """Weekly hours per weekday (0 = Monday) in `time_zone`, exceptions, buffer, notice, horizon."""

    weekly: Mapping[int, Sequence[Hours]] = field(hash=False)
    exceptions: Sequence[DateException] = field(default=(), hash=False)
    time_zone: str = DEFAULT_TIME_ZONE
    buffer_minutes: int = DEFAULT_BUFFER_MINUTES
    min_notice: timedelta = DEFAULT_MIN_NOTICE
    horizon: timedelta = DEFAULT_HORIZON
    # The exceptions by date, for `hours_on`.
    _by_day: dict[date, tuple[Hours, ...]] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )
    # Day tables already looked up for these rules (a fast path in front of `_day_table`).
    _tables: dict[tuple[date, int, int], _DayTable] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )
    # What `check_bookable` found of starts against the hours (they depend on nothing else).
    _hours_checked: dict[tuple[datetime, int, int], tuple[str, str] | None] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        weekly: dict[int, tuple[Hours, ...]] = {}
        for weekday, hours in self.weekly.items():
            if weekday not in range(7):
                raise InvalidAvailability(
                    "unknown_weekday", f"Weekday {weekday} is not 0 (Monday) to 6 (Sunday)."
                )
            weekly[weekday] = _sorted_without_overlap(hours, WEEKDAYS[weekday])
        exceptions: dict[date, DateException] = {}
        for exception in self.exceptions:
            if exception.day in exceptions:
                raise InvalidAvailability(
                    "duplicate_exception", f"{exception.day} has more than one exception."
                )
            exceptions[exception.day] = exception
        if not 0 <= self.buffer_minutes <= MAX_BUFFER_MINUTES:
            raise InvalidAvailability(
                "buffer_out_of_range",
                f"The buffer between sessions is 0-{MAX_BUFFER_MINUTES} minutes,"
                f" not {self.buffer_minutes}.",
            )
        if self.min_notice < timedelta(0):
            raise InvalidAvailability("negative_notice", "The minimum notice cannot be negative.")
        if self.horizon <= self.min_notice:
            raise InvalidAvailability(
                "horizon_within_notice", "The booking horizon must reach beyond the notice."
            )
        load_zone(self.time_zone)
        object.__setattr__(self, "weekly", weekly)
        object.__setattr__(self, "exceptions", tuple(sorted(exceptions.values(), key=_day)))
        object.__setattr__(self, "_by_day", {day: e.hours for day, e in exceptions.items()})

    @property
    def zone(self) -> ZoneInfo:
        return load_zone(self.time_zone)

    def hours_on(self, day: date) -> tuple[Hours, ...]:
        """An exception replaces the weekday's hours for its date."""
        found = self._by_day.get(day)
        if found is not None:
            return found
        return tuple(self.weekly.get(day.weekday(), ()))


def _day(exception: DateException) -> date:
    return exception.day


@dataclass(frozen=True, order=True, slots=True)
class Slot:
    """A free start time and its end, both UTC."""

    starts_at: datetime
    ends_at: datetime

    @property
    def minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)


class Blocked:
    """Busy intervals widened by the buffer on both sides, merged, for fast overlap tests;
    on top of a `base` merge when made by `adding`."""

    def __init__(
        self, busy: Iterable[Busy], buffer: timedelta, base: Blocked | None = None
    ) -> None:
        self.buffer = buffer
        self._base = base
        # A refusal may bring a whole calendar (hundreds of busy times): sorted by start
        # alone (a tuple compares twice), converted only when not UTC already, widened
        # once per merged span.
        spans = list(busy)
        for start, end in spans:
            if start.tzinfo is not UTC or end.tzinfo is not UTC:
                spans = [(_utc(s, "busy start"), _utc(e, "busy end")) for s, e in spans]
                break
        spans.sort(key=_first)
        starts: list[datetime] = []
        ends: list[datetime] = []
        both_sides = buffer + buffer
        last: datetime | None = None  # the end of the span being merged, not widened
        for start, end in spans:
            if end <= start:
                raise InvalidInput(
                    "busy_end_not_after_start", "A busy interval must end after it starts."
                )
            if last is not None and start <= last + both_sides:
                if end > last:
                    last = end
                continue
            if last is not None:
                ends.append(last + buffer)
            starts.append(start - buffer)
            last = end
        if last is not None:
            ends.append(last + buffer)
        self._starts = starts
        self._ends = ends
        # The free slots of whole day tables, by the table's id (with the table, so the id
        # is never another table's): a merge kept between refusals (a calendar refused over
        # and over) lists each day once.
        self._whole_days: dict[int, tuple[_DayTable, list[Slot]]] = {}
        # FreeTime's free slots of the whole days between its first and its last day, by
        # (rules' id, minutes, step, first day, last day): None after the first time asked
        # (a merge used once never lists them all), then listed once.
        self._between: dict[tuple[Any, ...], tuple[AvailabilityRules, list[Slot] | None]] = {}
        # `free_of` part of a table (the first and the last day of a FreeTime), by (the
        # table's id, low, high): the same until the clock passes a slot's start.
        self._parts: dict[tuple[int, int, int], tuple[_DayTable, list[Slot]]] = {}

    def adding(self, busy: Iterable[Busy]) -> Blocked:
        """These busy times and `busy`, as one. A slot is free of both when it is free of
        these and of `busy`: so a therapist's merge, kept, lists the free slots of a day
        once, and each client's refusal only takes out those its own few busy times block,
        instead of merging and listing the whole calendar again."""
        return Blocked(busy, self.buffer, base=self)

    def free_of_day(self, table: _DayTable) -> list[Slot]:
        """`free_of` the whole table, listed once per table (the caller must not change it)."""
        found = self._whole_days.get(id(table))
        if found is None or found[0] is not table:
            found = self._whole_days[id(table)] = (table, self.free_of(table, 0, len(table.slots)))
        return found[1]

    def free_of_part(self, table: _DayTable, low: int, high: int) -> list[Slot]:
        """`free_of`, listed once per part of a table (the caller must not change it)."""
        key = (id(table), low, high)
        found = self._parts.get(key)
        if found is None or found[0] is not table:
            if len(self._parts) >= _PARTS_KEPT:
                self._parts.clear()
            found = self._parts[key] = (table, self.free_of(table, low, high))
        return found[1]

    def free_of(self, table: _DayTable, low: int, high: int) -> list[Slot]:
        """table.slots[low:high] that overlap no span: whole runs between the spans are
        copied, so the cost is per busy span, not per slot."""
        slots, starts = table.slots, table.starts
        if low >= high:
            return []
        if self._base is not None:
            whole = (low, high) == (0, len(slots))
            of_base = (
                self._base.free_of_day(table)
                if whole
                else self._base.free_of_part(table, low, high)
            )
            if not of_base or not self._overlaps_own(of_base[0].starts_at, of_base[-1].ends_at):
                return of_base  # (the base's list: the callers do not change it)
            return [s for s in of_base if not self._overlaps_own(s.starts_at, s.ends_at)]
        length = slots[low].ends_at - slots[low].starts_at
        index = bisect.bisect_right(self._ends, starts[low])  # first span ending after it
        last_end, count = slots[high - 1].ends_at, len(self._starts)
        free: list[Slot] = []
        kept = low
        while index < count and self._starts[index] < last_end:
            # Slots ending after the span starts and starting before it ends overlap it.
            first = bisect.bisect_right(starts, self._starts[index] - length, kept, high)
            free.extend(slots[kept:first])
            kept = max(kept, bisect.bisect_left(starts, self._ends[index], kept, high))
            index += 1
        free.extend(slots[kept:high])
        return free

    def covers(self, first: Slot, last: Slot) -> bool:
        """Whether one busy span overlaps both slots, and so every slot between them (a
        calendar filled from its start is mostly days booked full)."""
        for merge in (self, self._base):
            if merge is None:
                break
            index = bisect.bisect_right(merge._ends, first.starts_at)  # first span ending after
            if (
                index < len(merge._starts)
                and merge._starts[index] < first.ends_at
                and last.starts_at < merge._ends[index]
            ):
                return True
        return False

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self._overlaps_own(start, end) or (
            self._base is not None and self._base.overlaps(start, end)
        )

    def _overlaps_own(self, start: datetime, end: datetime) -> bool:
        index = bisect.bisect_right(self._ends, start)  # first span ending after `start`
        return index < len(self._starts) and self._starts[index] < end


_first = operator.itemgetter(0)
_PARTS_KEPT = 64


def _utc(moment: datetime, what: str) -> datetime:
    return moment if moment.tzinfo is UTC else as_utc(moment, what)


def _check_lengths(session_minutes: int, step_minutes: int) -> None:
    if session_minutes <= 0:
        raise InvalidInput("session_minutes_not_positive", "A session lasts at least one minute.")
    if step_minutes <= 0:
        raise InvalidInput("step_not_positive", "The slot step is at least one minute.")


def _working_intervals(
    rules: AvailabilityRules, first: date, last: date
) -> Iterator[tuple[datetime, datetime]]:
    """Real-time working intervals of the local days first..last, in order."""
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return _joined(rules.zone, ((day, rules.hours_on(day)) for day in days))


def _joined(
    zone: ZoneInfo, days: Iterable[tuple[date, Sequence[Hours]]]
) -> Iterator[tuple[datetime, datetime]]:
    """Real-time intervals of the given local days' hours, in order. Intervals that touch
    (12:00-13:00 after 09:00-12:00, or Tuesday 00:00-02:00 after Monday 22:00-00:00) join
    into one, so a session may run across the seam."""
    pending: tuple[datetime, datetime] | None = None
    for day, hours_of_day in days:
        for hours in hours_of_day:
            start = wall_to_utc(day, hours.start, zone)
            end_day = day + timedelta(days=1) if hours.end == MIDNIGHT else day
            end = wall_to_utc(end_day, hours.end, zone)
            if end <= start:  # wholly inside a spring-forward gap: no real time at all
                continue
            if pending is not None and start <= pending[1]:
                pending = (pending[0], max(pending[1], end))
                continue
            if pending is not None:
                yield pending
            pending = (start, end)
    if pending is not None:
        yield pending


@dataclass(frozen=True, slots=True)
class _DayTable:
    """Every slot of one length that starts on one local day, free or not, in time order."""

    slots: tuple[Slot, ...]
    starts: tuple[datetime, ...]


# The precomputed part of free time: a day's slots depend only on the zone, the hours of that
# day and its neighbours (an interval may join across midnight) and the lengths, so therapists
# with the same hours share the table and a change of hours is a new key, never a stale entry.
# 8,192 day tables of ~50 slots are some tens of MB at most.
@functools.lru_cache(maxsize=8192)
def _day_table(
    time_zone: str,
    day: date,
    hours: tuple[tuple[Hours, ...], tuple[Hours, ...], tuple[Hours, ...]],
    session_minutes: int,
    step_minutes: int,
) -> _DayTable:
    zone = load_zone(time_zone)
    days = [(day + timedelta(days=n - 1), hours[n]) for n in range(3)]
    opens = wall_to_utc(day, MIDNIGHT, zone)
    closes = wall_to_utc(day + timedelta(days=1), MIDNIGHT, zone)
    length, step = timedelta(minutes=session_minutes), timedelta(minutes=step_minutes)
    slots: list[Slot] = []
    for start, end in _joined(zone, days):
        if end <= opens or start >= closes:
            continue
        candidate = start
        if candidate < opens:  # the first step of the interval on this day
            candidate += step * -((start - opens) // step)
        while candidate + length <= end and candidate < closes:
            slots.append(Slot(candidate, candidate + length))
            candidate += step
    return _DayTable(tuple(slots), tuple(slot.starts_at for slot in slots))


_TABLES_PER_RULES = 1024


class FreeTime:
    """The free slots of one length for a therapist: the day tables (precomputed, shared)
    minus the busy times, between now + notice and a start at now + horizon. Listing a day
    costs a pass over its precomputed slots, and a day without busy time is a plain copy."""

    def __init__(
        self,
        rules: AvailabilityRules,
        session_minutes: int,
        busy: Iterable[Busy] | Blocked,
        now: datetime,
        step_minutes: int = DEFAULT_STEP_MINUTES,
    ) -> None:
        _check_lengths(session_minutes, step_minutes)
        now = as_utc(now, "current time")
        self.rules = rules
        self.minutes, self.step = session_minutes, step_minutes
        self.earliest, self.latest = now + rules.min_notice, now + rules.horizon
        self.first_day = local_date(self.earliest, rules.zone)
        self.last_day = local_date(self.latest, rules.zone)
        buffer = timedelta(minutes=rules.buffer_minutes)
        if not isinstance(busy, Blocked):
            busy = Blocked(busy, buffer)
        elif busy.buffer != buffer:  # merged already, but with another buffer
            raise ValueError("busy times merged with another buffer")
        self._blocked = busy

    def _table(self, day: date) -> _DayTable:
        known = self.rules._tables
        found = known.get((day, self.minutes, self.step))
        if found is None:
            one_day, hours_on = timedelta(days=1), self.rules.hours_on
            hours = (hours_on(day - one_day), hours_on(day), hours_on(day + one_day))
            found = _day_table(self.rules.time_zone, day, hours, self.minutes, self.step)
            if len(known) >= _TABLES_PER_RULES:
                known.clear()
            known[(day, self.minutes, self.step)] = found
        return found

    def on(self, day: date) -> list[Slot]:
        """The free slots that start on a local day (the caller must not change the list)."""
        if not self.first_day <= day <= self.last_day:
            return []
        table = self._table(day)
        if self.first_day < day < self.last_day:
            return self._blocked.free_of_day(table)
        low = bisect.bisect_left(table.starts, self.earliest) if day == self.first_day else 0
        high = (
            bisect.bisect_right(table.starts, self.latest)
            if day == self.last_day
            else len(table.slots)
        )
        return self._blocked.free_of_part(table, low, high)

    def days(self, since: date | None = None) -> Iterator[date]:
        day = max(self.first_day, since) if since else self.first_day
        while day <= self.last_day:
            yield day
            day += timedelta(days=1)

    def first(self, limit: int, since: datetime | None = None) -> list[Slot]:
        """The earliest `limit` free slots (starting at `since` or later, if given)."""
        found: list[Slot] = []
        if limit <= 0:
            return found
        since = as_utc(since, "earliest start") if since is not None else None
        blocked = self._blocked
        for day in self.days(local_date(since, self.rules.zone) if since else None):
            if self.first_day < day < self.last_day:  # a day booked full is passed at once
                table = self._table(day)
                if table.slots and blocked.covers(table.slots[0], table.slots[-1]):
                    continue
            slots = self.on(day)
            if since is not None and slots and slots[0].starts_at < since:
                slots = [slot for slot in slots if slot.starts_at >= since]
            found.extend(slots[: limit - len(found)])
            if len(found) >= limit:
                break
        return found

    def _between(self) -> list[Slot] | None:
        """The free slots of the whole days between the first and the last day, ascending,
        when the same merge was asked for them before (kept with it: a calendar refused
        over and over, all of whose days a refusal may walk); else None."""
        kept = self._blocked._between
        key = (id(self.rules), self.minutes, self.step, self.first_day, self.last_day)
        found = kept.get(key)
        if found is None or found[0] is not self.rules:
            kept[key] = (self.rules, None)
            return None
        if found[1] is not None:
            return found[1]
        between: list[Slot] = []
        day = self.first_day + timedelta(days=1)
        while day < self.last_day:
            between.extend(self._blocked.free_of_day(self._table(day)))
            day += timedelta(days=1)
        kept[key] = (self.rules, between)
        return between

    def nearest(self, requested: datetime, count: int) -> list[Slot]:
        """The `count` free slots closest to `requested` (either side; earlier wins a tie),
        in time order, looking no further from it than needed."""
        requested = as_utc(requested, "requested time")
        if count <= 0:
            return []
        between = self._between()
        if between is not None:
            return self._nearest_of(requested, count, between)
        middle = min(max(local_date(requested, self.rules.zone), self.first_day), self.last_day)
        one_day = timedelta(days=1)
        # Nearest first on either side: before it going back, from it going forward.
        middle_slots = self.on(middle)
        split = bisect.bisect_left(middle_slots, requested, key=_starts_at)
        after = middle_slots[split:]
        day = middle + one_day
        while len(after) < count and day <= self.last_day:
            after.extend(self.on(day))
            day += one_day
        # Going back, a day whose last possible start is further from the time than the
        # `count`-th after it holds none of the nearest, nor does any day before it (a
        # calendar full up to the time is not walked back to its start).
        reach = after[count - 1].starts_at - requested if len(after) >= count else None
        before = middle_slots[split - 1 :: -1] if split else []
        day = middle - one_day
        while len(before) < count and day >= self.first_day:
            if reach is not None:
                table = self._table(day)
                if table.starts and requested - table.starts[-1] > reach:
                    break
            before.extend(reversed(self.on(day)))
            day -= one_day
        return _closest(requested, count, before, after)

    def _nearest_of(self, requested: datetime, count: int, between: list[Slot]) -> list[Slot]:
        """`nearest`, with the whole days between the first and the last listed already."""
        runs = [self.on(self.first_day), between]
        if self.last_day > self.first_day:
            runs.append(self.on(self.last_day))
        before: list[Slot] = []  # the last `count` before `requested`, ascending
        after: list[Slot] = []  # the first `count` from it on
        for run in runs:
            split = bisect.bisect_left(run, requested, key=_starts_at)
            before.extend(run[max(0, split - count) : split])
            if len(after) < count:
                after.extend(run[split : split + count])
        before = before[-count:][::-1]  # nearest first
        return _closest(requested, count, before, after)


def _closest(requested: datetime, count: int, before: list[Slot], after: list[Slot]) -> list[Slot]:
    """The `count` slots closest to `requested` of those before it (nearest first) and those
    from it on (ascending), earlier winning a tie, in time order."""
    chosen: list[Slot] = []
    early, late = 0, 0
    while len(chosen) < count and (early < len(before) or late < len(after)):
        if late >= len(after) or (
            early < len(before)
            and requested - before[early].starts_at <= after[late].starts_at - requested
        ):
            chosen.append(before[early])
            early += 1
        else:
            chosen.append(after[late])
            late += 1
    return sorted(chosen)


def _starts_at(slot: Slot) -> datetime:
    return slot.starts_at


def free_slots(
    rules: AvailabilityRules,
    session_minutes: int,
    busy: Iterable[Busy],
    now: datetime,
    step_minutes: int = DEFAULT_STEP_MINUTES,
) -> list[Slot]:
    """Every free slot from now + notice up to a start at now + horizon, in time order.

    `busy` holds the (start, end) of existing sessions; a slot keeps the buffer clear before
    and after each. Slots start every `step_minutes` counted from the start of each interval.
    """
    free = FreeTime(rules, session_minutes, busy, now, step_minutes)
    found: list[Slot] = []
    for day in free.days():
        found.extend(free.on(day))
    return found


def first_free_slots(
    rules: AvailabilityRules,
    session_minutes: int,
    busy: Iterable[Busy],
    now: datetime,
    limit: int,
    step_minutes: int = DEFAULT_STEP_MINUTES,
    since: datetime | None = None,
) -> list[Slot]:
    """The earliest `limit` free slots (starting at `since` or later, if given), without
    computing the rest of the horizon."""
    return FreeTime(rules, session_minutes, busy, now, step_minutes).first(limit, since)


def check_bookable(
    rules: AvailabilityRules,
    session_minutes: int,
    busy: Iterable[Busy],
    now: datetime,
    starts_at: datetime,
    step_minutes: int = DEFAULT_STEP_MINUTES,
) -> None:
    """Raise SlotUnavailable (code says why) unless `starts_at` is one of `free_slots`."""
    _check_lengths(session_minutes, step_minutes)
    now, starts_at = as_utc(now, "current time"), as_utc(starts_at, "start")
    if starts_at < now + rules.min_notice:
        raise SlotUnavailable(
            "too_soon", f"Sessions are booked at least {_hours(rules.min_notice)} ahead."
        )
    if starts_at > now + rules.horizon:
        raise SlotUnavailable(
            "beyond_horizon", f"Sessions are booked at most {rules.horizon.days} days ahead."
        )
    # Against the hours, a start is judged once per rules (bookings try the same starts).
    key = (starts_at, session_minutes, step_minutes)
    checked = rules._hours_checked
    if key not in checked:
        if len(checked) >= _HOURS_CHECKED_PER_RULES:
            checked.clear()
        checked[key] = _off_hours(rules, session_minutes, starts_at, step_minutes)
    off_hours = checked[key]
    if off_hours is not None:
        raise SlotUnavailable(*off_hours)
    ends_at = starts_at + timedelta(minutes=session_minutes)
    if busy and Blocked(busy, timedelta(minutes=rules.buffer_minutes)).overlaps(starts_at, ends_at):
        raise SlotUnavailable("taken", "That time is taken or too close to another session.")


_HOURS_CHECKED_PER_RULES = 4096


def _off_hours(
    rules: AvailabilityRules, session_minutes: int, starts_at: datetime, step_minutes: int
) -> tuple[str, str] | None:
    """Why `starts_at` is no start within the working hours, (code, message); None if it
    is one."""
    ends_at = starts_at + timedelta(minutes=session_minutes)
    day = local_date(starts_at, rules.zone)
    # Neighbouring days too, as the day tables of `free_slots` join them: an interval may
    # begin the day before, or run on into the next day's hours.
    inside = [
        start
        for start, end in _working_intervals(
            rules, day - timedelta(days=1), day + timedelta(days=1)
        )
        if start <= starts_at and ends_at <= end
    ]
    if not inside:
        return ("outside_hours", "The therapist does not work at that time.")
    if (starts_at - inside[0]) % timedelta(minutes=step_minutes):
        return (
            "off_grid",
            f"Sessions start on the {step_minutes}-minute marks of the working hours.",
        )
    return None


def is_bookable(
    rules: AvailabilityRules,
    session_minutes: int,
    busy: Iterable[Busy],
    now: datetime,
    starts_at: datetime,
    step_minutes: int = DEFAULT_STEP_MINUTES,
) -> bool:
    try:
        check_bookable(rules, session_minutes, busy, now, starts_at, step_minutes)
    except SlotUnavailable:
        return False
    return True


def alternatives(
    rules: AvailabilityRules,
    session_minutes: int,
    busy: Iterable[Busy],
    now: datetime,
    requested: datetime,
    count: int = 3,
    step_minutes: int = DEFAULT_STEP_MINUTES,
) -> list[Slot]:
    """The `count` free slots closest to `requested` (either side; earlier wins a tie), in time
    order: what a 409 answer offers instead."""
    return FreeTime(rules, session_minutes, busy, now, step_minutes).nearest(requested, count)


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} hours"
