"""Booking sessions and weekly series: one statement claims the time (first claim wins)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from booking import store
from booking.domain import course as rules_of_course
from booking.domain import errors
from booking.domain.availability import (
    AvailabilityRules,
    Blocked,
    Busy,
    FreeTime,
    Slot,
    check_bookable,
)
from booking.domain.course import Course, CourseSession
from booking.domain.policy import (
    CURRENT_POLICY,
)
from booking.domain.series import weekly_series
from booking.service import contexts
from booking.service.availability import (
    Calendar,
    calendar_kept,
    calendar_read,
    calendars,
    merged,
    rules_of,
)
from booking.service.common import (
    ALTERNATIVES_OFFERED,
    MEETING_BASE_URL,
    course_of,
    is_party,
    not_found,
    taken,
)
from booking.service.records import (
    SeriesRecord,
    SessionRecord,
    kept,
    kept_json,
    series_kept,
    session_kept,
)
from chassis import db
from chassis.auth import Principal
from chassis.errors import Conflict
from contracts.events import (
    SessionBooked,
)
from contracts.vocabulary import Actor

# --------------------------------------------------------------------------- booking


def _fingerprint(**request: Any) -> str:
    canonical = json.dumps(request, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _session_fingerprint(course_id: uuid.UUID, starts_at: datetime) -> str:
    """`_fingerprint(op="session", course=course_id, starts_at=starts_at.isoformat())`: the
    same canonical text, written directly (it is computed for every booking)."""
    canonical = (
        f'{{"course": "{course_id}", "op": "session", "starts_at": "{starts_at.isoformat()}"}}'
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _earlier(found: Any, request_hash: str) -> dict[str, Any] | None:
    """The answer already given to this key (found: (request hash, response) or None); 409
    if the key was used for another request."""
    if found is None:
        return None
    if found[0] != request_hash:
        raise Conflict(
            "This idempotency key was already used for a different request; use a new key.",
            code="idempotency_key_reused",
        )
    answer: dict[str, Any] = found[1]
    return answer


def _answer_of(view: Any) -> tuple[str, dict[str, Any]] | None:
    if view["earlier_hash"] is None:
        return None
    return view["earlier_hash"], view["earlier_response"]


async def _earlier_answer(
    conn: asyncpg.Connection, who: Principal, key: str, request_hash: str
) -> dict[str, Any] | None:
    found = await store.find_answer(conn, who.subject, key)
    return _earlier(found and (found["request_hash"], found["response"]), request_hash)


def _check_free(
    rules: AvailabilityRules,
    minutes: int,
    therapist_busy: list[Busy],
    client_busy: list[Busy],
    now: datetime,
    starts_at: datetime,
) -> None:
    """SlotUnavailable (code says why) unless the slot is free for both people."""
    check_bookable(rules, minutes, therapist_busy, now, starts_at)
    ends_at = starts_at + timedelta(minutes=minutes)
    if any(start < ends_at and starts_at < end for start, end in client_busy):
        raise _client_busy()


def _client_busy() -> errors.SlotUnavailable:
    return errors.SlotUnavailable(
        "client_busy", "The client already has another session at that time."
    )


def taken_refusal() -> errors.SlotUnavailable:
    """A fresh refusal each time (a shared exception object would carry tracebacks along)."""
    return errors.SlotUnavailable("taken", "That time is taken or too close to another session.")


def _refusal(
    exc: errors.SlotUnavailable,
    rules: AvailabilityRules,
    minutes: int,
    busy: list[Busy],
    now: datetime,
    starts_at: datetime,
) -> Conflict:
    """The 409 for a slot that is not free, offering the nearest free ones instead."""
    offered = FreeTime(rules, minutes, busy, now).nearest(starts_at, ALTERNATIVES_OFFERED)
    return taken(exc.code, exc.message, offered)


def _covered(
    rules: AvailabilityRules,
    minutes: int,
    busy: Sequence[Busy] | Blocked,
    now: datetime,
    starts_at: datetime,
    window: tuple[datetime, datetime],
) -> list[Slot] | None:
    """The alternatives to offer from the busy times in `window` (since, until), when they
    all lie well inside it, or it covers every bookable time (else None: look further)."""
    free = FreeTime(rules, minutes, busy, now)
    offered = free.nearest(starts_at, ALTERNATIVES_OFFERED)
    margin = timedelta(minutes=minutes + rules.buffer_minutes)
    low, high = window[0] + margin, window[1] - margin
    if low <= free.earliest and free.latest <= high:  # the whole calendar: nothing further
        return offered
    if len(offered) == ALTERNATIVES_OFFERED and all(
        low <= slot.starts_at <= high for slot in offered
    ):
        return offered
    return None


# How far around the refused time a refusal reads both calendars: the busy times near it
# (store.NEARBY, read with the booking), then a week either side, then every bookable time.
REFUSAL_REACH = timedelta(days=7)


def _around(starts_at: datetime, reach: timedelta) -> tuple[datetime, datetime]:
    return starts_at - reach, starts_at + reach


def _whole_window(rules: AvailabilityRules, now: datetime) -> tuple[datetime, datetime]:
    """A window that covers every time bookable now with days to spare, in whole UTC days:
    the same for every refusal of the day (its busy times are kept between refusals)."""
    midnight = _utc_midnight(now)
    return midnight - _TWO_DAYS, midnight + rules.horizon + _FOUR_DAYS


def _utc_midnight(moment: datetime) -> datetime:
    """The start of the UTC day of `moment`."""
    if moment.tzinfo is UTC:  # as the service's clock gives it (cheaper than the arithmetic)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment - (moment - _EPOCH) % _DAY


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_TWO_DAYS, _FOUR_DAYS = 2 * _DAY, 4 * _DAY


def refusal_window(
    rules: AvailabilityRules, therapist_id: uuid.UUID, now: datetime, starts_at: datetime
) -> tuple[datetime, datetime]:
    """Where around `starts_at` to read the busy times with a booking that may be refused:
    as far as the last refusal of this therapist needed (a calendar nearly full needs it
    whole), so that one round trip holds the alternatives."""
    needed = contexts.refusal_reach(therapist_id)
    if needed == 0:  # NEARBY either side of the UTC day of the time: the same window for all
        # the times of a day, so the busy times kept for one serve the next (when unchanged)
        day = _utc_midnight(starts_at)
        return day - store.NEARBY, day + _DAY + store.NEARBY
    if needed == 1:
        return _around(starts_at, REFUSAL_REACH)
    return _whole_window(rules, now)


def _reach_needed(
    rules: AvailabilityRules, minutes: int, starts_at: datetime, offered: Sequence[Slot]
) -> int:
    """Which reach (0: near, 1: a week, 2: whole) would have held these alternatives."""
    if len(offered) < ALTERNATIVES_OFFERED:
        return 2
    margin = timedelta(minutes=minutes + rules.buffer_minutes)
    furthest = max(abs(slot.starts_at - starts_at) for slot in offered) + margin
    if furthest <= store.NEARBY:
        return 0
    return 1 if furthest <= REFUSAL_REACH else 2


async def refuse(
    conn: asyncpg.Connection | db.OnDemand,
    exc: errors.SlotUnavailable,
    rules: AvailabilityRules,
    row: Any,
    now: datetime,
    starts_at: datetime,
    nearby: Sequence[Busy] | Blocked | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> Conflict:
    """The 409 for a refused booking, with alternatives from both calendars as they are now:
    from the busy times `nearby` the request, in `window` (NEARBY either side if not given),
    read with the booking, when the alternatives lie well inside it, else from both
    calendars a week either side, else from both calendars whole. Remembers how far it had
    to look (`refusal_window`)."""
    minutes = row["session_minutes"]
    offered = None
    read = window or _around(starts_at, store.NEARBY)
    if nearby is not None:
        offered = _covered(rules, minutes, nearby, now, starts_at, read)
    for reach in (REFUSAL_REACH, None):  # (most refusals need neither: made only if needed)
        if offered is not None:
            break
        wider = _whole_window(rules, now) if reach is None else _around(starts_at, reach)
        if nearby is not None and read[0] <= wider[0] and wider[1] <= read[1]:
            continue
        blocked = await _calendars_in(conn, rules, row, wider)
        offered = _covered(rules, minutes, blocked, now, starts_at, wider)
    assert offered is not None  # the whole calendar covers every bookable time
    needed = _reach_needed(rules, minutes, starts_at, offered)
    contexts.reached(row["therapist_id"], needed)
    return taken(exc.code, exc.message, offered)


async def _calendars_in(
    conn: asyncpg.Connection | db.OnDemand,
    rules: AvailabilityRules,
    row: Any,
    window: tuple[datetime, datetime],
) -> Blocked:
    """Both calendars' busy times in `window`, merged: the therapist's through the calendar
    this replica keeps (read only when its revision moved; one merge per revision, shared
    with the listings and the other refusals). Inside a caller's transaction (a change's
    refusal) nothing is kept: its reads see its own writes, which may yet roll back."""
    therapist_id, buffer = row["therapist_id"], timedelta(minutes=rules.buffer_minutes)
    in_transaction = isinstance(conn, asyncpg.Connection)
    known = None if in_transaction else calendar_kept(therapist_id, *window)
    found = await store.calendars_in(
        conn if in_transaction else await conn(),
        therapist_id,
        row["client_id"],
        window,
        None if known is None else known.revision,
    )
    client = zip(found["client_starts"], found["client_ends"], strict=True)
    if in_transaction:
        therapist = zip(found["nearby_starts"], found["nearby_ends"], strict=True)
        return Blocked([*therapist, *client], buffer)
    calendar = calendar_read(
        therapist_id,
        known,
        found["calendar_revision"],
        window,
        found["nearby_starts"],
        found["nearby_ends"],
    )
    return merged(therapist_id, calendar, buffer).adding(client)


def check_slot(
    rules: AvailabilityRules,
    minutes: int,
    therapist_busy: list[Busy],
    client_busy: list[Busy],
    now: datetime,
    starts_at: datetime,
) -> None:
    """409 with the nearest free alternatives unless the slot is free for both people."""
    try:
        _check_free(rules, minutes, therapist_busy, client_busy, now, starts_at)
    except errors.SlotUnavailable as exc:
        busy = therapist_busy + client_busy
        raise _refusal(exc, rules, minutes, busy, now, starts_at) from exc


def _place(mode: str, therapist: Any) -> tuple[str | None, str | None]:
    """(meeting link, practice address) of a new session."""
    if mode == "video":
        return f"{MEETING_BASE_URL}/{secrets.token_urlsafe(16)}", None
    if not therapist["practice_address"]:
        raise Conflict(
            "The therapist has no practice address for meetings in person yet.",
            code="no_practice_address",
        )
    return None, therapist["practice_address"]


def _new_session(
    row: Any,
    rules: AvailabilityRules,
    session: CourseSession,
    minutes: int,
    by: Actor,
    series_id: uuid.UUID | None,
) -> dict[str, Any]:
    """The stored row of a session about to be booked (`store.book` writes it)."""
    meeting_url, practice_address = _place(row["mode"], row)
    return {
        "session_id": session.session_id,
        "course_id": row["course_id"],
        "client_id": row["client_id"],
        "therapist_id": row["therapist_id"],
        "number": session.number,
        "phase": session.phase,
        "status": "booked",
        "starts_at": session.starts_at,
        "ends_at": session.starts_at + timedelta(minutes=minutes),
        "buffer_minutes": rules.buffer_minutes,
        "time_zone": rules.time_zone,
        "mode": row["mode"],
        "meeting_url": meeting_url,
        "practice_address": practice_address,
        "booked_by": by,
        "series_id": series_id,
        "policy_version": CURRENT_POLICY.version,
        "late": None,
        "counts_as_used": None,
    }


def _booked_event(booked: dict[str, Any]) -> SessionBooked:
    return SessionBooked(
        session_id=booked["session_id"],
        course_id=booked["course_id"],
        client_id=booked["client_id"],
        therapist_id=booked["therapist_id"],
        number=booked["number"],
        phase=booked["phase"],
        starts_at=booked["starts_at"],
        ends_at=booked["ends_at"],
        time_zone=booked["time_zone"],
        mode=booked["mode"],
        meeting_url=booked["meeting_url"],
        practice_address=booked["practice_address"],
        booked_by=booked["booked_by"],
        series_id=booked["series_id"],
    )


# A booking that loses a place in the plan to a concurrent booking of the same course, or
# sees its course change under it, reads again and decides again (a few times at most).
BOOKING_ROUNDS = 4


def _series_taken() -> Conflict:
    return Conflict(
        "Some of those times were just taken, so none was booked.", code="series_unavailable"
    )


def _course_changed() -> Conflict:
    return Conflict("The course changed while booking; please try again.", code="course_changed")


async def _booking_view(
    conn: asyncpg.Connection,
    who: Principal,
    course_id: uuid.UUID,
    key: str,
    starts_at: datetime,
) -> Any:
    view = await store.booking_view(conn, course_id, who.subject, key, starts_at)
    if view is None or not is_party(who, view):
        raise not_found()
    return view


async def book_session(
    pool: asyncpg.Pool,
    who: Principal,
    course_id: uuid.UUID,
    starts_at: datetime,
    idempotency_key: str,
    now: datetime,
) -> SessionRecord:
    """Book one session of a course at `starts_at` (the client or the therapist books).

    ONE round trip when this replica knows the course (`contexts`): the rules are checked in
    memory and one statement (`store.book_one`) checks that what they were checked on still
    holds, claims the time and books, or refuses with the busy times near it (the
    alternatives are computed here). Otherwise, or when the statement finds the course or
    the therapist changed, one read first (`store.booking_view`: everything the decision
    needs, an earlier answer to the key, both calendars near the time)."""
    # Most attempts under contention are refused by a question another attempt sends for
    # them: the connection is taken only when this one sends a statement.
    async with db.OnDemand(pool) as conn:
        context = contexts.cached(course_id)
        for _ in range(BOOKING_ROUNDS):
            nearby: tuple[list[Busy], list[Busy]] | None = None
            if context is None:
                view = await _booking_view(await conn(), who, course_id, idempotency_key, starts_at)
                earlier = _earlier(_answer_of(view), _session_fingerprint(course_id, starts_at))
                if earlier is not None:  # a retry of a booking already made
                    return session_kept(earlier)
                context = contexts.remember(view, store.view_sessions(view))
                nearby = store.nearby_of(view)
            elif not is_party(who, context.row):  # the parties of a course never change
                raise not_found()
            row = context.row
            try:
                _check_time(context, now, starts_at, nearby)
            except Conflict as exc:
                if nearby is None:  # decided from memory: refuse only on what is stored
                    context = None
                    continue
                if isinstance(exc, errors.SlotUnavailable):
                    assert context.rules is not None
                    busy = [*nearby[0], *nearby[1]]
                    read = _around(starts_at, store.NEARBY)
                    contexts.seen_busy(row["therapist_id"], read, nearby[0])
                    raise await refuse(conn, exc, context.rules, row, now, starts_at, busy) from exc
                raise
            rules = context.rules
            assert rules is not None
            ends_at = starts_at + timedelta(minutes=row["session_minutes"])
            buffer = timedelta(minutes=rules.buffer_minutes)
            window = refusal_window(rules, row["therapist_id"], now, starts_at)
            waited, booked_by = await contexts.after_overlapping(
                row["therapist_id"], starts_at, ends_at + buffer, before_waiting=conn.release
            )
            known = calendar_kept(row["therapist_id"], *window)
            # Believed taken (or just booked by this replica): ask, and book only if the
            # answer is 'free'; with the others that waited for the same booking, else with
            # those asking about this window meanwhile.
            asking = waited or (
                nearby is None
                and contexts.seems_taken(row["therapist_id"], starts_at, ends_at, buffer)
            )
            together = (
                None if booked_by is None else contexts.asking_after(booked_by, window, known)
            )
            if asking and together is None:
                together = contexts.asking_next(row["therapist_id"], window, known)
            if together is not None:
                window, known = together.window, together.known
            calendar = None if known is None else known.revision
            if asking:
                assert together is not None
                client_known = contexts.client_kept(row["therapist_id"], row["client_id"], *window)
                question = {
                    "decided_on": context.decided_on,
                    "client_id": row["client_id"],
                    "span": (starts_at, ends_at, rules.buffer_minutes),
                    "key": (who.subject, idempotency_key),
                    "client_calendar": None
                    if client_known is None
                    else client_known.client_revision,
                }
                checked = await _asked_together(conn, together, row["therapist_id"], question)
                if checked is None:
                    checked = await store.check_time(
                        await conn(), near=window, calendar=calendar, **question
                    )
                if checked["verdict"] != "free":
                    settled = await _settled(
                        conn, checked, context, now, (starts_at, window), (known, client_known)
                    )
                    if settled is None:  # stale: read again
                        context = None
                        continue
                    return settled
                contexts.unseen(row["therapist_id"], starts_at, ends_at)
            try:
                course, booked = _plan(context, who, starts_at)
            except Conflict:
                if nearby is None:  # decided from memory: refuse only on what is stored
                    context = None
                    continue
                raise
            answer = SessionRecord.of(booked)
            request_hash = _session_fingerprint(course_id, starts_at)
            try:
                with contexts.in_flight(row["therapist_id"], starts_at, ends_at + buffer) as flight:
                    outcome = await store.book_one(
                        await conn(),
                        decided_on=context.decided_on,
                        session=booked,
                        answer=(who.subject, idempotency_key, request_hash, kept_json(answer)),
                        event=_booked_event(booked),
                        near=window,
                        calendar=calendar,
                    )
                    flight.booked = outcome["verdict"] == "booked"
            except asyncpg.ExclusionViolationError as exc:
                refused = (
                    _client_busy() if exc.constraint_name == "client_free" else taken_refusal()
                )
                raise await refuse(conn, refused, rules, row, now, starts_at) from exc
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "idempotency_keys_pkey":
                    contexts.forget(course_id)  # the place in the plan was taken: read again
                    context = None
                    continue
                earlier = await _earlier_answer(await conn(), who, idempotency_key, request_hash)
                if earlier is None:  # pragma: no cover - the key's row exists by now
                    raise _course_changed() from exc
                return session_kept(earlier)  # the same request, booked by a twin meanwhile
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                contexts.forget(course_id)
                context = None
                continue
            if outcome["verdict"] == "booked":
                contexts.booked(context, course, outcome["revision"])
                contexts.seen_booked(row["therapist_id"], starts_at, ends_at)
                return answer
            settled = await _settled(
                conn, outcome, context, now, (starts_at, window), (known, None)
            )
            if settled is None:
                context = None
                continue
            return settled
    raise _course_changed()


async def _asked_together(
    conn: db.OnDemand,
    together: contexts.Asking,
    therapist_id: uuid.UUID,
    question: dict[str, Any],
) -> dict[str, Any] | None:
    """This booking's answer to the question asked together (`store.check_times`, or
    `store.check_time` when it is asked alone): the first to ask waits for the question asked
    before it, if any (else lets the others that woke with it add theirs), then asks for all
    that joined meanwhile on its connection. None when that failed (ask alone)."""
    index = len(together.questions)
    together.questions.append(question)
    if index > 0:
        await conn.release()  # (the one asking for all may be waiting for a connection)
        answers = await asyncio.shield(together.answers)
        return None if answers is None else answers[index]
    answers = None
    try:
        if together.after is None:
            await asyncio.sleep(0)  # the others woken with it run up to here and add theirs
        else:  # one question at a time per window: the others gather meanwhile
            await conn.release()
            await asyncio.shield(together.after.answers)
            together.after = None  # (answered: not kept alive by those asked after it)
        together.sent = True
        known = together.known
        calendar = None if known is None else known.revision
        if len(together.questions) == 1:
            answers = [
                await store.check_time(
                    await conn(), near=together.window, calendar=calendar, **question
                )
            ]
        else:
            answers = await store.check_times(
                await conn(),
                therapist_id=therapist_id,
                asked=together.questions,
                near=together.window,
                calendar=calendar,
            )
    finally:
        contexts.answered(therapist_id, together, answers)
    return answers[0]


async def _settled(
    conn: db.OnDemand,
    outcome: Any,
    context: contexts.BookingContext,
    now: datetime,
    asked: tuple[datetime, tuple[datetime, datetime]],
    known: tuple[Calendar | None, contexts.Read | None],
) -> SessionRecord | None:
    """What a `store.book_one` (or `check_time`) verdict other than 'booked' and 'free'
    answers for `asked` (the start, and the window the busy times were read in, the
    therapist's and the client's busy times `known` before, used when it answered them
    unchanged): the earlier answer to the
    key, or the refusal (raised); None when the context was stale (it is forgotten: read
    again)."""
    verdict = outcome["verdict"]
    if verdict == "earlier":  # the request's fingerprint is made only here (most are refused)
        request_hash = _session_fingerprint(context.row["course_id"], asked[0])
        earlier = _earlier((outcome["earlier_hash"], outcome["earlier_response"]), request_hash)
        assert earlier is not None
        return session_kept(earlier)
    if verdict == "stale":
        contexts.forget(context.row["course_id"])
        return None
    rules = context.rules
    assert rules is not None
    refused = taken_refusal() if verdict == "taken" else _client_busy()
    starts_at, window = asked
    row = context.row
    therapist_busy, blocked = contexts.busy_read(
        row["therapist_id"],
        row["client_id"],
        known,
        window,
        outcome,
        timedelta(minutes=rules.buffer_minutes),
    )
    contexts.seen_busy(row["therapist_id"], window, therapist_busy)
    raise await refuse(conn, refused, rules, row, now, starts_at, blocked, window)


def _check_time(
    context: contexts.BookingContext,
    now: datetime,
    starts_at: datetime,
    nearby: tuple[list[Busy], list[Busy]] | None,
) -> None:
    """The refusal (a chassis Conflict) unless the course has room and the therapist takes
    bookings at `starts_at`. With `nearby` (both calendars near the start, as just read) a
    time they show busy is refused here too."""
    if context.closed is not None:
        code, message = context.closed
        raise Conflict(message, code=code)
    rules_of_course.check_room(context.course)
    rules = context.rules
    assert rules is not None
    minutes = context.row["session_minutes"]
    if nearby is None:
        check_bookable(rules, minutes, (), now, starts_at)
    else:
        _check_free(rules, minutes, nearby[0], nearby[1], now, starts_at)


def _plan(
    context: contexts.BookingContext, who: Principal, starts_at: datetime
) -> tuple[Course, dict[str, Any]]:
    """(the course with the session, the session's row), or the course's refusal."""
    rules = context.rules
    assert rules is not None
    minutes = context.row["session_minutes"]
    course, session = rules_of_course.book_session(context.course, uuid.uuid4(), starts_at)
    return course, _new_session(context.row, rules, session, minutes, who.role, None)


async def book_series(
    pool: asyncpg.Pool,
    who: Principal,
    course_id: uuid.UUID,
    first_starts_at: datetime,
    count: int,
    every_weeks: int,
    idempotency_key: str,
    now: datetime,
) -> SeriesRecord:
    """Book `count` sessions `every_weeks` apart at the same local time: all or nothing, in
    one statement that claims every session's time."""
    request_hash = _fingerprint(
        op="series",
        course=course_id,
        first=first_starts_at.isoformat(),
        count=count,
        every=every_weeks,
    )
    async with pool.acquire() as conn:
        for _ in range(BOOKING_ROUNDS):
            view = await _booking_view(conn, who, course_id, idempotency_key, first_starts_at)
            earlier = _earlier(_answer_of(view), request_hash)
            if earlier is not None:
                return series_kept(earlier)
            rules = rules_of(view)
            course = course_of(view, store.view_sessions(view))
            starts = weekly_series(first_starts_at, count, every_weeks, rules.time_zone)
            planned: list[CourseSession] = []
            for start in starts:
                course, session = rules_of_course.book_session(course, uuid.uuid4(), start)
                planned.append(session)
            minutes = course.session_minutes
            therapist_busy, client_busy = await calendars(
                conn, rules, now, view["therapist_id"], view["client_id"]
            )
            conflicts = []
            for session in planned:
                try:
                    check_slot(rules, minutes, therapist_busy, client_busy, now, session.starts_at)
                except Conflict as exc:
                    conflicts.append(
                        {
                            "starts_at": session.starts_at.isoformat(),
                            "code": exc.code,
                            "detail": exc.message,
                            "alternatives": exc.extra["alternatives"],
                        }
                    )
                # Later sessions of the series must keep clear of the earlier ones too.
                ends_at = session.starts_at + timedelta(minutes=minutes)
                therapist_busy.append((session.starts_at, ends_at))
            if conflicts:
                raise Conflict(
                    f"{len(conflicts)} of the {count} times cannot be booked, so none was.",
                    code="series_unavailable",
                    conflicts=conflicts,
                )
            series_id = uuid.uuid4()
            booked = [
                _new_session(view, rules, session, minutes, who.role, series_id)
                for session in planned
            ]
            answer = SeriesRecord(series_id, [SessionRecord.of(b) for b in booked])
            try:
                if await store.book(
                    conn,
                    course=view,
                    sessions=booked,
                    answer=(who.subject, idempotency_key, request_hash, kept(answer)),
                    events=[_booked_event(b) for b in booked],
                ):
                    return answer
            except asyncpg.ExclusionViolationError as exc:
                raise _series_taken() from exc
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "idempotency_keys_pkey":
                    continue
                earlier = await _earlier_answer(conn, who, idempotency_key, request_hash)
                if earlier is None:  # pragma: no cover
                    raise _course_changed() from exc
                return series_kept(earlier)
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                continue
            raise _series_taken()
    raise _course_changed()
