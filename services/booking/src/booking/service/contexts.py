"""What a booking of one course decides on, kept in memory by each replica between bookings.

A booking needs the course (its plan and sessions), the therapist's hours and whether they
take bookings. Reading them every time is most of a booking's cost, and they change rarely:
so each replica keeps what it last read, with the revisions the rows had then. The statement
that books (`store.book_one`) checks those revisions and answers 'stale' when any moved (a
change on this or another replica); the booking then reads again and decides again. A
refusal decided from memory alone (outside the hours, course full, ...) is never given: the
booking reads again and decides on what the database holds.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import operator
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from booking.domain.availability import AvailabilityRules, Blocked, Busy
from booking.domain.course import Course
from booking.service.availability import Calendar, calendar_read, merged, rules_of
from booking.service.common import course_of
from chassis.errors import Conflict


@dataclass(frozen=True, slots=True)
class BookingContext:
    """A course as a booking decides on it. `row`: the course's and its therapist's columns a
    booking uses (`course_id`, `client_id`, `therapist_id`, `mode`, `session_minutes`,
    `practice_address`); `rules`: the therapist's rules, or None with `closed` saying why
    they take no bookings; `decided_on`: (course id, course revision, therapist id,
    therapist revision, availability revision)."""

    row: dict[str, Any]
    course: Course
    rules: AvailabilityRules | None
    closed: tuple[str, str] | None
    decided_on: tuple[uuid.UUID, int, uuid.UUID, int, int]


_ROW = ("course_id", "client_id", "therapist_id", "mode", "session_minutes", "practice_address")
# Bounded: a replica books for many courses; when full, it starts again from nothing.
_KEPT = 10_000
_CONTEXTS: dict[uuid.UUID, BookingContext] = {}


def cached(course_id: uuid.UUID) -> BookingContext | None:
    return _CONTEXTS.get(course_id)


def remember(view: Any, sessions: list[dict[str, Any]]) -> BookingContext:
    """The context of a `store.booking_view` (and its course's sessions), kept."""
    rules: AvailabilityRules | None = None
    closed: tuple[str, str] | None = None
    try:
        rules = rules_of(view)
    except Conflict as exc:
        closed = (exc.code, exc.message)
    context = BookingContext(
        row={name: view[name] for name in _ROW},
        course=course_of(view, sessions),
        rules=rules,
        closed=closed,
        decided_on=(
            view["course_id"],
            view["revision"],
            view["therapist_id"],
            view["therapist_revision"],
            view["availability_revision"] or 0,
        ),
    )
    _keep(context)
    return context


def booked(context: BookingContext, course: Course, revision: int) -> None:
    """After this replica booked a session of the course: the course as it is now."""
    ordered = tuple(sorted(course.sessions, key=lambda s: (s.starts_at, s.number)))
    course_id, _, therapist_id, therapist_revision, availability_revision = context.decided_on
    decided_on = (course_id, revision, therapist_id, therapist_revision, availability_revision)
    _keep(replace(context, course=replace(course, sessions=ordered), decided_on=decided_on))


def forget(course_id: uuid.UUID) -> None:
    _CONTEXTS.pop(course_id, None)


def _keep(context: BookingContext) -> None:
    if len(_CONTEXTS) >= _KEPT:
        _CONTEXTS.clear()
    _CONTEXTS[context.row["course_id"]] = context


# --------------------------------------------------------------------------- busy times


# Most attempts under contention are for times just taken. The busy times near a time that
# the last refusal came back with tell this replica which times are taken (as of then): for
# those it only asks whether the time is free (`store.check_time`) instead of sending the
# whole booking, and books only if the answer is 'free'. A wrong belief costs a round trip,
# never a wrong answer: the database decides either way.
@dataclass(frozen=True, slots=True)
class _Seen:
    low: datetime
    high: datetime
    starts: list[datetime]  # ascending (a therapist's busy times never overlap)
    ends: list[datetime]  # of the same busy times
    source: list[Busy] | None  # what they were made of (not made again from the same list)


# Per therapist, the windows of time seen, newest last; a newer window replaces the ones it
# overlaps. Bounded per therapist and in therapists.
_WINDOWS_KEPT = 64
_SEEN: dict[uuid.UUID, list[_Seen]] = {}


def seen_busy(therapist_id: uuid.UUID, window: tuple[datetime, datetime], busy: list[Busy]) -> None:
    """The therapist's busy times in `window` (since, until), as the database just answered."""
    low, high = window
    windows = _SEEN.get(therapist_id)
    if windows is None:
        if len(_SEEN) >= _KEPT:
            _SEEN.clear()
        windows = _SEEN[therapist_id] = []
    elif windows and windows[-1].source is busy and (windows[-1].low, windows[-1].high) == window:
        return  # the same calendar seen again (kept unchanged: `busy_read`)
    windows[:] = [w for w in windows if w.high <= low or high <= w.low][-(_WINDOWS_KEPT - 1) :]
    ordered = sorted(busy, key=_first)
    windows.append(_Seen(low, high, [s for s, _ in ordered], [e for _, e in ordered], busy))


_first = operator.itemgetter(0)


def _window(therapist_id: uuid.UUID, starts_at: datetime, ends_at: datetime) -> int | None:
    for index, seen in enumerate(_SEEN.get(therapist_id, ())):
        if seen.low <= starts_at and ends_at <= seen.high:
            return index
    return None


def seen_booked(therapist_id: uuid.UUID, starts_at: datetime, ends_at: datetime) -> None:
    """A session this replica just booked."""
    index = _window(therapist_id, starts_at, ends_at)
    if index is not None:
        windows = _SEEN[therapist_id]
        seen = windows[index]
        at = bisect.bisect(seen.starts, starts_at)
        starts, ends = [*seen.starts], [*seen.ends]
        starts.insert(at, starts_at)
        ends.insert(at, ends_at)
        windows[index] = _Seen(seen.low, seen.high, starts, ends, None)


def seems_taken(
    therapist_id: uuid.UUID, starts_at: datetime, ends_at: datetime, buffer: timedelta
) -> bool:
    """Whether the busy times last seen around this time make it taken: the last of them
    to start before the time ends (with the buffer) does not end before it starts."""
    index = _window(therapist_id, starts_at, ends_at)
    if index is None:
        return False
    seen = _SEEN[therapist_id][index]
    before = bisect.bisect_left(seen.starts, ends_at + buffer)
    return before > 0 and starts_at < seen.ends[before - 1] + buffer


# The busy times the last refusal for a therapist and a client came back with, as read and
# merged: a calendar read again unchanged (a full one, refused over and over) is not merged
# again. Keyed by exactly what was read (the therapist's kept calendar, the client's busy
# times), so it never answers for another calendar. With the client's calendar revision then
# (None: not kept) and the window their busy times were read in: the question whether a time
# is free (`store.check_time`) sends that revision, and the client's busy times come back
# only when it moved.
@dataclass(frozen=True, slots=True)
class Read:
    calendar: Calendar
    starts: list[datetime]
    ends: list[datetime]
    blocked: Blocked
    client_revision: int | None
    low: datetime
    high: datetime


_READ: dict[tuple[uuid.UUID, uuid.UUID], Read] = {}


def client_kept(
    therapist_id: uuid.UUID, client_id: uuid.UUID, low: datetime, high: datetime
) -> Read | None:
    """The client's busy times last read with this therapist's, kept with their calendar's
    revision for a window holding [low, high), if any."""
    read = _READ.get((therapist_id, client_id))
    if read is None or read.client_revision is None or low < read.low or read.high < high:
        return None
    return read


def busy_read(
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    kept: tuple[Calendar | None, Read | None],
    window: tuple[datetime, datetime],
    outcome: Any,
    buffer: timedelta,
) -> tuple[list[Busy], Blocked]:
    """(the therapist's busy times, both calendars' merged with `buffer`) of a refusal's
    `outcome` (`store.book_one` or `store.check_time`) read in `window`; the therapist's are
    those of the calendar `kept` when it answered them unchanged, the client's those of the
    read `kept` when it answered them unchanged."""
    known, client_known = kept
    calendar = calendar_read(
        therapist_id,
        known,
        outcome["calendar_revision"],
        window,
        outcome["nearby_starts"],
        outcome["nearby_ends"],
    )
    if outcome["client_starts"] is None:  # unchanged since `client_known` was read
        assert client_known is not None
        starts, ends = client_known.starts, client_known.ends
        client_revision, low, high = (
            client_known.client_revision,
            client_known.low,
            client_known.high,
        )
    else:
        starts, ends = outcome["client_starts"], outcome["client_ends"]
        client_revision = outcome.get("client_revision")  # (book_one does not answer it)
        low, high = window
    read = _READ.get((therapist_id, client_id))
    if (
        read is not None
        and read.calendar is calendar
        and read.blocked.buffer == buffer
        and (read.starts is starts or read.starts == starts)
        and (read.ends is ends or read.ends == ends)
    ):
        blocked = read.blocked
        if (read.client_revision, read.low, read.high) == (client_revision, low, high):
            return calendar.busy, blocked
    else:
        blocked = merged(therapist_id, calendar, buffer).adding(zip(starts, ends, strict=True))
    if len(_READ) >= _KEPT:
        _READ.clear()
    _READ[(therapist_id, client_id)] = Read(
        calendar, starts, ends, blocked, client_revision, low, high
    )
    return calendar.busy, blocked


# Per therapist, how far around a refused time its last refusal had to read the busy times
# to hold the alternatives (0: near it, 1: a week, 2: the whole calendar): the next booking
# reads that far with its statement, so a refusal costs one round trip.
_REACHED: dict[uuid.UUID, int] = {}


def refusal_reach(therapist_id: uuid.UUID) -> int:
    return _REACHED.get(therapist_id, 0)


def reached(therapist_id: uuid.UUID, reach: int) -> None:
    if reach == 0:
        _REACHED.pop(therapist_id, None)
        return
    if len(_REACHED) >= _KEPT:
        _REACHED.clear()
    _REACHED[therapist_id] = reach


def unseen(therapist_id: uuid.UUID, starts_at: datetime, ends_at: datetime) -> None:
    """The busy times seen around this time were wrong (it was believed taken, and is free)."""
    index = _window(therapist_id, starts_at, ends_at)
    if index is not None:
        del _SEEN[therapist_id][index]


# --------------------------------------------------------------------------- in flight


@dataclass(slots=True)
class Asking:
    """The bookings that waited for one that booked, asking together whether their times are
    free (`store.check_times`): in the `window` of busy times the first chose, with the
    therapist's busy times `known` then; `answers` their rows in order (None when the one
    asking for all failed: each asks alone)."""

    window: tuple[datetime, datetime]
    known: Calendar | None
    questions: list[dict[str, Any]]
    answers: asyncio.Future[list[dict[str, Any]] | None]
    sent: bool = False
    after: Asking | None = None  # the question in flight this one waits for (`asking_next`)


@dataclass(slots=True)
class Flight:
    """A booking of the therapist's time [low, high) being sent; `booked` once it booked;
    `asking`: the bookings that waited for it, once one of them asks."""

    low: datetime
    high: datetime
    done: asyncio.Future[Flight]
    booked: bool = False
    asking: Asking | None = None


# The bookings this replica is sending right now, per therapist. Under contention many
# clients are offered the same few free times and ask for them at once. A booking whose time
# overlaps one in flight here waits for it first; when that one booked, all that waited for
# it ask together, in one statement (`Asking`, `store.check_times`), whether their times are
# free, and book only those that are: they are refused by that small question instead of
# each sending a whole booking that would block on the first's claim in the database and
# fail there. Nothing is decided here: only this replica's bookings wait (about one round
# trip), and those of other replicas meet in the database as before.
_IN_FLIGHT: dict[uuid.UUID, list[Flight]] = {}


async def after_overlapping(
    therapist_id: uuid.UUID,
    starts_at: datetime,
    until: datetime,
    before_waiting: Callable[[], Awaitable[None]],
) -> tuple[bool, Flight | None]:
    """Returns once no booking of this replica for the therapist's time [starts_at, until)
    (the session and its buffer) is in flight: whether it waited for one, and the last it
    waited for that booked (None if none did). `before_waiting` is awaited before the first
    wait (the waiter gives back its connection there: the booking in flight may need it)."""
    waited, booked = False, None
    while True:
        waiting = next(
            (
                flight.done
                for flight in _IN_FLIGHT.get(therapist_id, ())
                if flight.low < until and starts_at < flight.high
            ),
            None,
        )
        if waiting is None:
            return waited, booked
        if not waited:
            await before_waiting()
        flight = await asyncio.shield(waiting)  # (a cancelled waiter must not cancel it)
        waited = True
        if flight.booked:
            booked = flight


def asking_after(
    flight: Flight, window: tuple[datetime, datetime], known: Calendar | None
) -> Asking | None:
    """The question asked together by the bookings that waited for `flight`, made with this
    `window` and the therapist's busy times `known` in it if none asked yet; None once it has
    been sent (ask alone then)."""
    if flight.asking is None:
        flight.asking = Asking(window, known, [], asyncio.get_running_loop().create_future())
    return None if flight.asking.sent else flight.asking


# The questions asked by bookings that did not wait for one (believed taken from the busy
# times seen), per therapist and window: one statement in flight at a time, and those that
# come while it is answered are asked together next (as a database groups commits).
_ASKING: dict[tuple[uuid.UUID, tuple[datetime, datetime]], Asking] = {}


def asking_next(
    therapist_id: uuid.UUID, window: tuple[datetime, datetime], known: Calendar | None
) -> Asking:
    """The question to join for the therapist's `window`: the one gathering, or a new one
    (made with the busy times `known`), asked after the one in flight if any."""
    latest = _ASKING.get((therapist_id, window))
    if latest is not None and not latest.sent:
        return latest
    ahead = latest if latest is not None and not latest.answers.done() else None
    asking = Asking(window, known, [], asyncio.get_running_loop().create_future(), after=ahead)
    if len(_ASKING) >= _KEPT:
        _ASKING.clear()
    _ASKING[(therapist_id, window)] = asking
    return asking


def answered(therapist_id: uuid.UUID, asking: Asking, answers: list[dict[str, Any]] | None) -> None:
    """The question asked together has its answers (None: failed, each asks alone)."""
    asking.answers.set_result(answers)
    key = (therapist_id, asking.window)
    if _ASKING.get(key) is asking:
        del _ASKING[key]


@contextlib.contextmanager
def in_flight(therapist_id: uuid.UUID, starts_at: datetime, until: datetime) -> Iterator[Flight]:
    """A booking of the therapist's time [starts_at, until) being sent, for as long as the
    block runs (`after_overlapping` waits for it); the block sets `booked` when it booked."""
    flight = Flight(starts_at, until, asyncio.get_running_loop().create_future())
    _IN_FLIGHT.setdefault(therapist_id, []).append(flight)
    try:
        yield flight
    finally:
        flights = _IN_FLIGHT[therapist_id]
        flights.remove(flight)
        if not flights:
            del _IN_FLIGHT[therapist_id]
        flight.done.set_result(flight)
