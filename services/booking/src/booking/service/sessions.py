"""Booking sessions and weekly series: one statement claims the time (first claim wins)."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from booking import store
from booking.domain import course as rules_of_course
from booking.domain import errors
from booking.domain.availability import (
    AvailabilityRules,
    Busy,
    FreeTime,
    Slot,
    check_bookable,
)
from booking.domain.course import CourseSession
from booking.domain.policy import (
    CURRENT_POLICY,
)
from booking.domain.series import weekly_series
from booking.service.availability import calendars, rules_of
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
    series_kept,
    session_kept,
)
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
    busy: Sequence[Busy],
    now: datetime,
    starts_at: datetime,
    reach: timedelta,
) -> list[Slot] | None:
    """The alternatives to offer from the busy times within `reach` of `starts_at`, when
    they all lie well inside what those busy times cover (else None: look further)."""
    offered = FreeTime(rules, minutes, busy, now).nearest(starts_at, ALTERNATIVES_OFFERED)
    margin = timedelta(minutes=minutes + rules.buffer_minutes)
    low, high = starts_at - reach + margin, starts_at + reach - margin
    if len(offered) == ALTERNATIVES_OFFERED and all(
        low <= slot.starts_at <= high for slot in offered
    ):
        return offered
    return None


# How far around the refused time a refusal reads both calendars when the busy times read
# with the booking do not hold three alternatives (a full day): before reading them whole.
REFUSAL_REACH = timedelta(days=7)


async def refuse(
    conn: asyncpg.Connection,
    exc: errors.SlotUnavailable,
    rules: AvailabilityRules,
    row: Any,
    now: datetime,
    starts_at: datetime,
    nearby: Sequence[Busy] | None = None,
) -> Conflict:
    """The 409 for a refused booking, with alternatives from both calendars as they are now:
    from the busy times `nearby` the request (`store.booking_view`) when the alternatives lie
    well inside what they cover, else from both calendars a week either side, else from
    both calendars whole."""
    minutes = row["session_minutes"]
    if nearby is not None:
        offered = _covered(rules, minutes, nearby, now, starts_at, store.NEARBY)
        if offered is not None:
            return taken(exc.code, exc.message, offered)
    therapist_busy, client_busy = await store.busy_of(
        conn,
        since=starts_at - REFUSAL_REACH,
        until=starts_at + REFUSAL_REACH,
        therapist_id=row["therapist_id"],
        client_id=row["client_id"],
    )
    busy = therapist_busy + client_busy
    offered = _covered(rules, minutes, busy, now, starts_at, REFUSAL_REACH)
    if offered is not None:
        return taken(exc.code, exc.message, offered)
    therapist_busy, client_busy = await calendars(
        conn, rules, now, row["therapist_id"], row["client_id"]
    )
    busy = therapist_busy + client_busy
    return _refusal(exc, rules, row["session_minutes"], busy, now, starts_at)


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

    One round trip reads everything the decision needs (course, sessions, rules, an earlier
    answer to the key, whether either calendar is taken there); the rules are checked in
    memory; one statement books (`store.book`). Only a refusal reads the calendars, for
    the alternatives it offers."""
    request_hash = _fingerprint(op="session", course=course_id, starts_at=starts_at.isoformat())
    async with pool.acquire() as conn:
        for _ in range(BOOKING_ROUNDS):
            view = await _booking_view(conn, who, course_id, idempotency_key, starts_at)
            earlier = _earlier(_answer_of(view), request_hash)
            if earlier is not None:  # a retry of a booking already made
                return session_kept(earlier)
            rules = rules_of(view)
            minutes = view["session_minutes"]
            therapist_near, client_near = store.nearby_of(view)
            try:
                _check_free(rules, minutes, therapist_near, client_near, now, starts_at)
            except errors.SlotUnavailable as exc:
                nearby = therapist_near + client_near
                raise await refuse(conn, exc, rules, view, now, starts_at, nearby) from exc
            course = course_of(view, store.view_sessions(view))
            course, session = rules_of_course.book_session(course, uuid.uuid4(), starts_at)
            booked = _new_session(view, rules, session, minutes, who.role, None)
            answer = SessionRecord.of(booked)
            # Refused below, the time was taken since the read: busy now, whoever took it.
            nearby = [*therapist_near, *client_near, (booked["starts_at"], booked["ends_at"])]
            try:
                if await store.book(
                    conn,
                    course=view,
                    sessions=[booked],
                    answer=(who.subject, idempotency_key, request_hash, kept(answer)),
                    events=[_booked_event(booked)],
                ):
                    return answer
            except asyncpg.ExclusionViolationError as exc:
                refused = (
                    _client_busy() if exc.constraint_name == "client_free" else taken_refusal()
                )
                raise await refuse(conn, refused, rules, view, now, starts_at, nearby) from exc
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "idempotency_keys_pkey":
                    continue  # a concurrent booking of this course took the place in the plan
                earlier = await _earlier_answer(conn, who, idempotency_key, request_hash)
                if earlier is None:  # pragma: no cover - the key's row exists by now
                    raise _course_changed() from exc
                return session_kept(earlier)  # the same request, booked by a twin meanwhile
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                continue  # the course changed under the booking: decide again
            raise await refuse(conn, taken_refusal(), rules, view, now, starts_at, nearby)
    raise _course_changed()


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
