"""Booking's use cases: load, apply a domain rule, store, emit, in one transaction each.

No therapist-wide lock: the database decides who gets a time. A booking reads what it
decides on in one round trip, checks the rules, and books in one statement that claims the
session's time as cells (first claim wins, `store.book`); the exclusion constraints stay as
the safety net, and a collision either catches answers 409 like any taken slot. Changes of a
course (cancel, move, end, replan, attendance) lock that course's row. Events go through the
outbox with the change. The free-slot summary for matching leaves the change's transaction:
the change only files a request, and the worker's publisher (`publish_due_summaries`) sends
one summary per therapist per `summary_window_s` after commit.

The HTTP routes and event handlers only translate to and from these functions. `now` is a
parameter so rules about time (notice, the 24-hour policy, attendance) are testable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import asyncpg
import structlog

from booking import store
from booking.domain import course as rules_of_course
from booking.domain import errors
from booking.domain.availability import (
    WEEKDAYS,
    AvailabilityRules,
    Busy,
    DateException,
    FreeTime,
    Hours,
    Slot,
    check_bookable,
)
from booking.domain.clock import DEFAULT_TIME_ZONE
from booking.domain.course import Course, CourseSession
from booking.domain.policy import (
    CURRENT_POLICY,
    ChangeVerdict,
    judge_change,
    judge_ending,
    policy_in_force,
)
from booking.domain.series import weekly_series
from chassis import audit, outbox, retention, rights
from chassis.app import Runtime
from chassis.auth import Principal
from chassis.errors import Conflict, DomainError, NotFound
from contracts.events import (
    CourseCompleted,
    CourseEnded,
    CourseStarted,
    EndReason,
    FreeSlot,
    MatchApproved,
    RightsRequested,
    SessionAttended,
    SessionBooked,
    SessionCancelled,
    SessionRescheduled,
    TherapistAvailabilityPublished,
    TherapistMatched,
    TherapistProfilePublished,
    TherapistProfileWithdrawn,
)
from contracts.vocabulary import Actor

log = structlog.get_logger("booking.service")

# What matching is told: the next free times of a default-length session (the 50 min).
SUMMARY_SESSION_MINUTES = 50
SUMMARY_MAX_SLOTS = 400
# Where video meetings are held; a real provider would hand out these links.
MEETING_BASE_URL = "https://meet.samtal.example"
ALTERNATIVES_OFFERED = 3

Attendance = Literal["attended", "no_show"]


# --------------------------------------------------------------------------- errors


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Domain rule violations become answers a frontend can show: 422 or 409."""
    try:
        yield
    except errors.InvalidInput as exc:
        raise DomainError(exc.message, code=exc.code, status=422) from exc
    except errors.Conflict as exc:
        raise Conflict(exc.message, code=exc.code) from exc


def _slot_json(slot: Slot) -> dict[str, str]:
    return {"starts_at": slot.starts_at.isoformat(), "ends_at": slot.ends_at.isoformat()}


def _taken(code: str, message: str, offered: Sequence[Slot]) -> Conflict:
    return Conflict(message, code=code, alternatives=[_slot_json(s) for s in offered])


def _not_found(what: str = "course") -> NotFound:
    return NotFound(f"No such {what}.")


# --------------------------------------------------------------------------- catalog read model


async def apply_profile(
    conn: asyncpg.Connection, profile: TherapistProfilePublished, now: datetime
) -> bool:
    applied = await store.apply_profile(
        conn,
        profile.therapist_id,
        time_zone=profile.time_zone,
        modes=profile.modes,
        city=profile.city,
        practice_address=profile.practice_address,
        version=profile.version,
    )
    if applied:  # the time zone may have moved every slot
        await store.request_summary(conn, profile.therapist_id)
    return applied


async def apply_withdrawal(
    conn: asyncpg.Connection, withdrawn: TherapistProfileWithdrawn, now: datetime
) -> bool:
    applied = await store.apply_withdrawal(conn, withdrawn.therapist_id, withdrawn.version)
    if applied:
        await store.request_summary(conn, withdrawn.therapist_id)
    return applied


# --------------------------------------------------------------------------- availability


def rules_from(row: asyncpg.Record | dict[str, Any], time_zone: str) -> AvailabilityRules:
    """Stored (or submitted) availability as domain rules; raises InvalidAvailability."""
    weekly = {
        WEEKDAYS.index(day): [Hours.parse(text) for text in hours]
        for day, hours in row["weekly"].items()
    }
    exceptions = [
        DateException(date.fromisoformat(e["date"]), tuple(Hours.parse(h) for h in e["hours"]))
        for e in row["exceptions"]
    ]
    return AvailabilityRules(
        weekly=weekly,
        exceptions=exceptions,
        time_zone=time_zone,
        buffer_minutes=row["buffer_minutes"],
        min_notice=timedelta(hours=row["min_notice_hours"]),
        horizon=timedelta(days=row["horizon_days"]),
    )


def availability_json(therapist_id: uuid.UUID, time_zone: str, row: Any) -> dict[str, Any]:
    return {
        "therapist_id": str(therapist_id),
        "time_zone": time_zone,
        "weekly": row["weekly"],
        "exceptions": row["exceptions"],
        "buffer_minutes": row["buffer_minutes"],
        "min_notice_hours": row["min_notice_hours"],
        "horizon_days": row["horizon_days"],
    }


def _own_calendar(who: Principal, therapist_id: uuid.UUID) -> None:
    if who.role == "therapist" and who.subject != therapist_id:
        raise _not_found("therapist")


async def set_availability(
    pool: asyncpg.Pool,
    who: Principal,
    therapist_id: uuid.UUID,
    document: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A therapist sets their own hours (an admin anybody's); the summary follows."""
    _own_calendar(who, therapist_id)
    async with pool.acquire() as conn, conn.transaction():
        await store.ensure_therapist(conn, therapist_id)
        therapist = await store.get_therapist(conn, therapist_id)
        assert therapist is not None
        with _translated():
            rules_from(document, therapist["time_zone"])  # validate before storing
        row = await store.put_availability(conn, therapist_id, **document)
        await store.request_summary(conn, therapist_id)
    return availability_json(therapist_id, therapist["time_zone"], row)


DEFAULT_AVAILABILITY: dict[str, Any] = {
    "weekly": {},
    "exceptions": [],
    "buffer_minutes": 15,
    "min_notice_hours": 12,
    "horizon_days": 56,
}


async def get_availability(
    pool: asyncpg.Pool, who: Principal, therapist_id: uuid.UUID
) -> dict[str, Any]:
    _own_calendar(who, therapist_id)
    async with pool.acquire() as conn:
        therapist = await store.get_therapist(conn, therapist_id)
    if therapist is None:
        return availability_json(therapist_id, DEFAULT_TIME_ZONE, DEFAULT_AVAILABILITY)
    found = therapist["availability"] or DEFAULT_AVAILABILITY
    return availability_json(therapist_id, therapist["time_zone"], found)


def _open_rules(therapist: Any) -> AvailabilityRules | None:
    """The therapist's rules if they take bookings (published, with hours set), else None."""
    if therapist is None or not therapist["published"] or therapist["availability"] is None:
        return None
    return _stored_rules(therapist)


def _rules_of(therapist: Any) -> AvailabilityRules:
    """The rules a booking must follow (the therapist's columns of `store.booking_view`); 409
    when the therapist takes no bookings."""
    if not therapist["published"]:
        raise Conflict(
            "This therapist is not taking bookings at the moment.", code="therapist_unavailable"
        )
    if therapist["availability"] is None:
        raise Conflict(
            "This therapist has not opened any times for booking yet.", code="no_availability"
        )
    return _stored_rules(therapist)


# Parsed rules by (therapist, version of their hours, time zone): a booking reads the stored
# hours every time, parsing them again each time is wasted work. Bounded; cleared when full.
_RULES: dict[tuple[Any, ...], AvailabilityRules] = {}
_RULES_KEPT = 10_000


def _stored_rules(therapist: Any) -> AvailabilityRules:
    stored = therapist["availability"]
    key = (stored["therapist_id"], stored["updated_at"], therapist["time_zone"])
    found = _RULES.get(key)
    if found is None:
        with _translated():
            found = rules_from(stored, therapist["time_zone"])
        if len(_RULES) >= _RULES_KEPT:
            _RULES.clear()
        _RULES[key] = found
    return found


async def _calendars(
    conn: asyncpg.Connection,
    rules: AvailabilityRules,
    now: datetime,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID | None = None,
    except_session: uuid.UUID | None = None,
) -> tuple[list[Busy], list[Busy]]:
    """The therapist's and the client's busy times that can matter to a booking made now."""
    return await store.busy_of(
        conn,
        since=now - timedelta(days=1),
        until=now + rules.horizon + timedelta(days=1),
        therapist_id=therapist_id,
        client_id=client_id,
        except_session=except_session,
    )


async def free_slots_for(
    pool: asyncpg.Pool,
    who: Principal,
    therapist_id: uuid.UUID,
    now: datetime,
    minutes: int | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> dict[str, Any]:
    """Free slots of a therapist, for the therapist and for clients with a course with them:
    the precomputed day tables (domain `FreeTime`) minus the busy times, two round trips."""
    client = who.subject if who.role == "client" else None
    if client is None:
        _own_calendar(who, therapist_id)
    async with pool.acquire() as conn:
        view = await store.slot_view(conn, therapist_id, client)
        if client is not None:
            if not view["has_course"]:
                raise _not_found("therapist")
            minutes = minutes or view["course_minutes"]
        minutes = minutes or SUMMARY_SESSION_MINUTES
        rules = _open_rules(view if view["time_zone"] is not None else None)
        slots: list[Slot] = []
        if rules is not None:
            # A client cannot be in two sessions at once either.
            therapist_busy, client_busy = await _calendars(conn, rules, now, therapist_id, client)
            with _translated():
                free = FreeTime(rules, minutes, therapist_busy + client_busy, now)
                slots = free.first(limit, since)
    return {
        "therapist_id": str(therapist_id),
        "time_zone": view["time_zone"] or DEFAULT_TIME_ZONE,
        "minutes": minutes,
        "slots": [_slot_json(s) for s in slots],
    }


async def publish_summaries(
    conn: asyncpg.Connection, therapist_ids: Sequence[uuid.UUID], now: datetime
) -> None:
    """Summaries of many therapists into the outbox, in the caller's transaction: reads and
    writes are batched (three round trips for the lot)."""
    therapists, rules = await store.summary_therapists(conn, therapist_ids), []
    for therapist in therapists:
        try:
            rules.append(_open_rules(therapist))
        except Exception:  # stored rules were valid when stored: one bad row never stops the
            # batch (its requests would come back forever); it is published without slots
            log.exception("unreadable availability", therapist=str(therapist["therapist_id"]))
            rules.append(None)
    horizon = max((r.horizon for r in rules if r is not None), default=timedelta(0))
    busy = await store.busy_of_many(
        conn, therapist_ids, now - timedelta(days=1), now + horizon + timedelta(days=1)
    )
    summaries = []
    for therapist, found in zip(therapists, rules, strict=True):
        slots: list[Slot] = []
        if found is not None:
            free = FreeTime(found, SUMMARY_SESSION_MINUTES, busy[therapist["therapist_id"]], now)
            slots = free.first(SUMMARY_MAX_SLOTS)
        summaries.append(
            TherapistAvailabilityPublished(
                therapist_id=therapist["therapist_id"],
                computed_at=now,
                active_courses=therapist["active_courses"],
                free_slots=[FreeSlot(starts_at=s.starts_at, minutes=s.minutes) for s in slots],
            )
        )
    await store.add_events(conn, summaries)


async def publish_due_summaries(
    pool: asyncpg.Pool, now: datetime, window_s: float, batch: int = 200
) -> int:
    """Publish the summary of every therapist whose oldest request is `window_s` old: one
    summary for all their requests, computed from the committed state after the requests
    were taken. Replicas share the work (each therapist goes to one of them, advisory locks
    skip the others); a replica that dies mid-batch leaves the requests for the next pass.
    Returns how many therapists were published."""
    published = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            therapists = await store.take_due_summaries(conn, window_s, batch)
            if therapists:
                await publish_summaries(conn, therapists, now)
        published += len(therapists)
        if len(therapists) < batch:
            return published


async def refresh_summaries(pool: asyncpg.Pool, now: datetime, every_s: float) -> int:
    """As time passes a summary's first slots start and new days enter the horizon with no
    change to trigger it: once every `every_s` (by whichever replica moves the schedule on)
    every bookable therapist's summary is requested, and the publishers of all replicas share
    the work. Cells of time long past are forgotten in the same turn."""
    async with pool.acquire() as conn, conn.transaction():
        requested = await store.queue_refresh(conn, every_s)
        if requested:
            await store.forget_past_cells(conn, now - timedelta(days=2))
    return requested


async def summary_publisher(runtime: Runtime) -> None:
    """Worker task: every `summary_poll_s`, queue the periodic refresh if it is due and
    publish the summaries that are due (see `publish_due_summaries` for the delay bound)."""
    settings: Any = runtime.settings
    pool: asyncpg.Pool = runtime.pool
    while True:
        try:
            now = await _worker_now(pool, settings)
            await refresh_summaries(pool, now, settings.summary_refresh_s)
            count = await publish_due_summaries(pool, now, settings.summary_window_s)
            if count:
                log.debug("free-slot summaries published", therapists=count)
        except Exception as exc:  # the next round tries again; the requests are kept
            log.warning("publishing free-slot summaries failed", error=str(exc))
        await asyncio.sleep(settings.summary_poll_s)


async def _worker_now(pool: asyncpg.Pool, settings: Any) -> datetime:
    """Booking's "now" in the worker (the demo clock, where it is on, as the api has it)."""
    real = datetime.now(UTC)
    if not settings.demo_clock:
        return real
    async with pool.acquire() as conn:
        return real + timedelta(seconds=await store.clock_offset_s(conn))


# --------------------------------------------------------------------------- courses


def course_of(row: Any, sessions: Sequence[Any]) -> Course:
    """Stored course and sessions as the domain's course."""
    return Course(
        method=row["method"],
        planned_sessions=row["planned_sessions"],
        session_minutes=row["session_minutes"],
        status=row["status"],
        end_reason=row["end_reason"],
        sessions=tuple(
            CourseSession(
                session_id=s["session_id"],
                number=s["number"],
                phase=s["phase"],
                starts_at=s["starts_at"],
                status=s["status"],
                phq9_total=s["phq9_total"],
            )
            for s in sessions
        ),
    )


def session_json(row: Any, with_phq9: bool = False) -> dict[str, Any]:
    found = {
        "session_id": str(row["session_id"]),
        "course_id": str(row["course_id"]),
        "client_id": str(row["client_id"]),
        "therapist_id": str(row["therapist_id"]),
        "number": row["number"],
        "phase": row["phase"],
        "status": row["status"],
        "starts_at": row["starts_at"].isoformat(),
        "ends_at": row["ends_at"].isoformat(),
        "time_zone": row["time_zone"],
        "mode": row["mode"],
        "meeting_url": row["meeting_url"],
        "practice_address": row["practice_address"],
        "booked_by": row["booked_by"],
        "series_id": str(row["series_id"]) if row["series_id"] else None,
        "policy_version": row["policy_version"],
        "late": row["late"],
        "counts_as_used": row["counts_as_used"],
    }
    if with_phq9:
        found["phq9_total"] = row["phq9_total"]
    return found


def course_json(row: Any, sessions: Sequence[Any] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "course_id": str(row["course_id"]),
        "match_id": str(row["match_id"]),
        "client_id": str(row["client_id"]),
        "therapist_id": str(row["therapist_id"]),
        "method": row["method"],
        "planned_sessions": row["planned_sessions"],
        "session_minutes": row["session_minutes"],
        "problem_areas": list(row["problem_areas"]),
        "mode": row["mode"],
        "status": row["status"],
        "end_reason": row["end_reason"],
        "started_at": row["started_at"].isoformat(),
        "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
    }
    if sessions is not None:  # the detail view: health data, read under audit
        found["start_severity_band"] = row["start_severity_band"]
        found["final_severity_band"] = row["final_severity_band"]
        found["outcome"] = row["outcome"]
        found["sessions"] = [session_json(s, with_phq9=True) for s in sessions]
    return found


def _is_party(who: Principal, row: Any) -> bool:
    if who.role == "client":
        return bool(row["client_id"] == who.subject)
    if who.role == "therapist":
        return bool(row["therapist_id"] == who.subject)
    return False


async def _course_for(conn: asyncpg.Connection, who: Principal, course_id: uuid.UUID) -> Any:
    """The course if `who` is its client or therapist; otherwise 404, as if it did not exist."""
    row = await store.get_course(conn, course_id)
    if row is None or not _is_party(who, row):
        raise _not_found()
    return row


async def _reread_course(conn: asyncpg.Connection, course_id: uuid.UUID) -> Any:
    """A course known to exist, read again (under the lock, or after a change)."""
    row = await store.get_course(conn, course_id)
    assert row is not None
    return row


async def _reread_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> Any:
    row = await store.get_session(conn, session_id)
    assert row is not None
    return row


async def list_courses(pool: asyncpg.Pool, who: Principal) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await store.courses_of(conn, who.subject, who.role)
    return [course_json(row) for row in rows]


async def read_course(pool: asyncpg.Pool, who: Principal, course_id: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        row = await _course_for(conn, who, course_id)
        sessions = await store.sessions_of_course(conn, course_id)
        await audit.record(
            conn,
            actor_id=who.id,
            actor_role=who.role,
            subject_id=row["client_id"],
            action="read",
            resource="course",
            resource_id=str(course_id),
        )
    return course_json(row, sessions)


async def on_match(conn: asyncpg.Connection, matched: TherapistMatched, now: datetime) -> None:
    """Open the course now, or keep the match until a clinician approves it."""
    row = await store.record_match(
        conn, matched.match_id, matched.model_dump(mode="json"), matched.requires_approval
    )
    if not matched.requires_approval or row["approved_at"] is not None:
        await open_course(conn, matched, now)


async def on_approval(conn: asyncpg.Connection, approved: MatchApproved, now: datetime) -> None:
    """An approved match opens its course (once the match itself has arrived)."""
    row = await store.record_approval(conn, approved.match_id)
    if row["details"] is not None:
        await open_course(conn, TherapistMatched.model_validate(row["details"]), now)


async def open_course(
    conn: asyncpg.Connection, matched: TherapistMatched, now: datetime
) -> uuid.UUID | None:
    """The course of a match, once however often the match arrives; a switch of therapist
    ends the client's course with the previous one. Returns the new course id, if any."""
    involved = {matched.therapist_id}
    if matched.previous_therapist_id:
        involved.add(matched.previous_therapist_id)
    for therapist_id in sorted(involved):
        await store.ensure_therapist(conn, therapist_id)
    with _translated():
        plan = rules_of_course.new_course(matched.method)
    row = await store.insert_course(
        conn,
        course_id=uuid.uuid4(),
        match_id=matched.match_id,
        intake_id=matched.intake_id,
        client_id=matched.client_id,
        therapist_id=matched.therapist_id,
        method=matched.method,
        planned_sessions=plan.planned_sessions,
        session_minutes=plan.session_minutes,
        problem_areas=matched.problem_areas,
        mode=matched.mode,
        start_severity_band=matched.severity_band,
    )
    if row is None:
        return None  # this match already has its course
    await outbox.add(
        conn,
        CourseStarted(
            course_id=row["course_id"],
            match_id=matched.match_id,
            client_id=matched.client_id,
            therapist_id=matched.therapist_id,
            method=matched.method,
            planned_sessions=row["planned_sessions"],
            session_minutes=row["session_minutes"],
        ),
    )
    previous = matched.previous_therapist_id
    if previous and previous != matched.therapist_id:
        for old in await store.active_courses_between(conn, matched.client_id, previous):
            old = await store.lock_course(conn, old["course_id"])
            if old["status"] == "active":  # not ended meanwhile
                await _end(conn, old, "switched_therapist", "system", now)
    await store.request_summary(conn, *sorted(involved))
    course_id: uuid.UUID = row["course_id"]
    return course_id


async def change_plan(
    pool: asyncpg.Pool,
    who: Principal,
    course_id: uuid.UUID,
    planned_sessions: int | None,
    session_minutes: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The therapist adjusts the number of sessions or their length within the method."""
    async with pool.acquire() as conn, conn.transaction():
        await _course_for(conn, who, course_id)
        row = await store.lock_course(conn, course_id)
        course = course_of(row, await store.sessions_of_course(conn, course_id))
        with _translated():
            changed = rules_of_course.replan(course, planned_sessions, session_minutes)
        await store.update_plan(conn, course_id, changed.planned_sessions, changed.session_minutes)
        await store.set_phases(conn, {s.session_id: s.phase for s in changed.sessions})
        if changed.status == "completed":
            await _complete(conn, row, changed, now)
            await store.request_summary(conn, row["therapist_id"])
        row = await _reread_course(conn, course_id)
    return course_json(row)


async def end_course(
    pool: asyncpg.Pool, who: Principal, course_id: uuid.UUID, reason: EndReason, now: datetime
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        await _course_for(conn, who, course_id)
        row = await store.lock_course(conn, course_id)
        await _end(conn, row, reason, who.role, now)
        await store.request_summary(conn, row["therapist_id"])
        row = await _reread_course(conn, course_id)
    return course_json(row)


async def _end(
    conn: asyncpg.Connection, row: Any, reason: EndReason, by: Actor, now: datetime
) -> None:
    """End a course early: its booked sessions are cancelled, never against the client. The
    caller holds the course's lock (`store.lock_course`)."""
    sessions = await store.sessions_of_course(conn, row["course_id"])
    course = course_of(row, sessions)
    with _translated():
        ended = rules_of_course.end_early(course, reason, by)
    for before, session in zip(sessions, ended.sessions, strict=True):
        if before["status"] == session.status:
            continue
        verdict = judge_ending(policy_in_force(before["policy_version"]), before["starts_at"], now)
        await _cancelled(conn, before, "cancelled", by, verdict, now)
    await store.close_course(
        conn, row["course_id"], status="ended_early", at=now, end_reason=reason, ended_by=by
    )
    await outbox.add(
        conn,
        CourseEnded(
            course_id=row["course_id"],
            client_id=row["client_id"],
            therapist_id=row["therapist_id"],
            reason=reason,
            ended_by=by,
            sessions_held=rules_of_course.sessions_held(ended),
        ),
    )


async def _complete(conn: asyncpg.Connection, row: Any, course: Course, now: datetime) -> None:
    done = rules_of_course.completion(course)
    assert done is not None
    await store.close_course(
        conn,
        row["course_id"],
        status="completed",
        at=now,
        outcome=done.outcome,
        final_severity_band=done.final_band,
    )
    await outbox.add(
        conn,
        CourseCompleted(
            course_id=row["course_id"],
            client_id=row["client_id"],
            therapist_id=row["therapist_id"],
            method=row["method"],
            sessions_held=done.sessions_held,
            start_severity_band=done.start_band,
            final_severity_band=done.final_band,
            outcome=done.outcome,
            completed_at=now,
        ),
    )


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
        raise _CLIENT_BUSY


_CLIENT_BUSY = errors.SlotUnavailable(
    "client_busy", "The client already has another session at that time."
)
_TAKEN = errors.SlotUnavailable("taken", "That time is taken or too close to another session.")


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
    return _taken(exc.code, exc.message, offered)


async def _refused(
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
    well inside what they cover, else from a read of both calendars."""
    minutes = row["session_minutes"]
    if nearby is not None:
        offered = FreeTime(rules, minutes, nearby, now).nearest(starts_at, ALTERNATIVES_OFFERED)
        margin = timedelta(minutes=minutes + rules.buffer_minutes)
        covered = (starts_at - store.NEARBY + margin, starts_at + store.NEARBY - margin)
        if len(offered) == ALTERNATIVES_OFFERED and all(
            covered[0] <= slot.starts_at <= covered[1] for slot in offered
        ):
            return _taken(exc.code, exc.message, offered)
    therapist_busy, client_busy = await _calendars(
        conn, rules, now, row["therapist_id"], row["client_id"]
    )
    busy = therapist_busy + client_busy
    return _refusal(exc, rules, row["session_minutes"], busy, now, starts_at)


def _check_slot(
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


def _course_changed() -> Conflict:
    return Conflict("The course changed while booking; please try again.", code="course_changed")


async def _booking_view(
    conn: asyncpg.Connection,
    who: Principal,
    course_id: uuid.UUID,
    key: str,
    starts_at: datetime | None,
) -> Any:
    view = await store.booking_view(conn, course_id, who.subject, key, starts_at)
    if view is None or not _is_party(who, view):
        raise _not_found()
    return view


async def book_session(
    pool: asyncpg.Pool,
    who: Principal,
    course_id: uuid.UUID,
    starts_at: datetime,
    idempotency_key: str,
    now: datetime,
) -> dict[str, Any]:
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
                return earlier
            rules = _rules_of(view)
            minutes = view["session_minutes"]
            try:
                check_bookable(rules, minutes, [], now, starts_at)
                if view["therapist_busy"]:
                    raise _TAKEN
                if view["client_busy"]:
                    raise _CLIENT_BUSY
            except errors.SlotUnavailable as exc:
                nearby = [(start, end) for start, end in view["nearby"]]
                raise await _refused(conn, exc, rules, view, now, starts_at, nearby) from exc
            course = course_of(view, store.view_sessions(view))
            with _translated():
                course, session = rules_of_course.book_session(course, uuid.uuid4(), starts_at)
            booked = _new_session(view, rules, session, minutes, who.role, None)
            answer = session_json(booked)
            try:
                await store.book(
                    conn,
                    course=view,
                    sessions=[booked],
                    answer=(who.subject, idempotency_key, request_hash, answer),
                    events=[_booked_event(booked)],
                )
                return answer
            except asyncpg.ExclusionViolationError as exc:
                refused = _CLIENT_BUSY if exc.constraint_name == "client_free" else _TAKEN
                # Taken since the read: that time is busy now, whoever took it.
                nearby = [(start, end) for start, end in view["nearby"]]
                nearby.append((booked["starts_at"], booked["ends_at"]))
                raise await _refused(conn, refused, rules, view, now, starts_at, nearby) from exc
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "idempotency_keys_pkey":
                    continue  # a concurrent booking of this course took the place in the plan
                earlier = await _earlier_answer(conn, who, idempotency_key, request_hash)
                if earlier is None:  # pragma: no cover - the key's row exists by now
                    raise _course_changed() from exc
                return earlier  # the same request, booked by a twin meanwhile
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                continue  # the course changed under the booking: decide again
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
) -> dict[str, Any]:
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
            view = await _booking_view(conn, who, course_id, idempotency_key, None)
            earlier = _earlier(_answer_of(view), request_hash)
            if earlier is not None:
                return earlier
            rules = _rules_of(view)
            course = course_of(view, store.view_sessions(view))
            with _translated():
                starts = weekly_series(first_starts_at, count, every_weeks, rules.time_zone)
                planned: list[CourseSession] = []
                for start in starts:
                    course, session = rules_of_course.book_session(course, uuid.uuid4(), start)
                    planned.append(session)
            minutes = course.session_minutes
            therapist_busy, client_busy = await _calendars(
                conn, rules, now, view["therapist_id"], view["client_id"]
            )
            conflicts = []
            for session in planned:
                try:
                    _check_slot(rules, minutes, therapist_busy, client_busy, now, session.starts_at)
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
            answer = {"series_id": str(series_id), "sessions": [session_json(b) for b in booked]}
            try:
                await store.book(
                    conn,
                    course=view,
                    sessions=booked,
                    answer=(who.subject, idempotency_key, request_hash, answer),
                    events=[_booked_event(b) for b in booked],
                )
                return answer
            except asyncpg.ExclusionViolationError as exc:
                raise Conflict(
                    "Some of those times were just taken, so none was booked.",
                    code="series_unavailable",
                ) from exc
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "idempotency_keys_pkey":
                    continue
                earlier = await _earlier_answer(conn, who, idempotency_key, request_hash)
                if earlier is None:  # pragma: no cover
                    raise _course_changed() from exc
                return earlier
            except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
                continue
    raise _course_changed()


# --------------------------------------------------------------------------- changes


async def _session_for(conn: asyncpg.Connection, who: Principal, session_id: uuid.UUID) -> Any:
    row = await store.get_session(conn, session_id)
    if row is None or not _is_party(who, row):
        raise _not_found("session")
    return row


async def _cancelled(
    conn: asyncpg.Connection,
    before: Any,
    status: str,
    by: Actor,
    verdict: ChangeVerdict,
    now: datetime,
) -> None:
    await store.cancel_session(
        conn,
        before["session_id"],
        status=status,
        changed_by=by,
        late=verdict.late,
        counts_as_used=verdict.counts_as_used,
        at=now,
    )
    await store.release(conn, [before["session_id"]])
    await outbox.add(
        conn,
        SessionCancelled(
            session_id=before["session_id"],
            course_id=before["course_id"],
            client_id=before["client_id"],
            therapist_id=before["therapist_id"],
            starts_at=before["starts_at"],
            ends_at=before["ends_at"],
            number=before["number"],
            cancelled_by=by,
            late=verdict.late,
            counts_as_used=verdict.counts_as_used,
        ),
    )


async def _locked_course(
    conn: asyncpg.Connection, who: Principal, session_id: uuid.UUID
) -> tuple[Any, Any, Any, Course]:
    """(therapist, course row, session row, domain course) read under the course's lock."""
    before = await _session_for(conn, who, session_id)
    row = await store.lock_course(conn, before["course_id"])
    before = await _reread_session(conn, session_id)
    therapist = await store.get_therapist(conn, before["therapist_id"])
    course = course_of(row, await store.sessions_of_course(conn, row["course_id"]))
    return therapist, row, before, course


async def cancel(
    pool: asyncpg.Pool, who: Principal, session_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    """Cancel under the policy the session was booked with; late by the client counts."""
    async with pool.acquire() as conn, conn.transaction():
        _, row, before, course = await _locked_course(conn, who, session_id)
        with _translated():
            verdict = judge_change(
                policy_in_force(before["policy_version"]), before["starts_at"], now, who.role
            )
            course = rules_of_course.cancel_session(course, session_id, verdict)
        status = course.session(session_id).status
        await _cancelled(conn, before, status, who.role, verdict, now)
        if course.status == "completed":  # the one booked session left was the last obstacle
            await _complete(conn, row, course, now)
        await store.request_summary(conn, row["therapist_id"])
        return session_json(await _reread_session(conn, session_id))


async def reschedule(
    pool: asyncpg.Pool, who: Principal, session_id: uuid.UUID, starts_at: datetime, now: datetime
) -> dict[str, Any]:
    """Move a session to a free slot; a late move by the client counts as a used session."""
    async with pool.acquire() as conn:
        course_id = (await _session_for(conn, who, session_id))["course_id"]
    try:
        async with pool.acquire() as conn, conn.transaction():
            therapist, row, before, course = await _locked_course(conn, who, session_id)
            rules = _rules_of(therapist)
            minutes = int((before["ends_at"] - before["starts_at"]).total_seconds() // 60)
            with _translated():
                verdict = judge_change(
                    policy_in_force(before["policy_version"]), before["starts_at"], now, who.role
                )
                left_behind_id = uuid.uuid4()
                course, moved = rules_of_course.reschedule_session(
                    course, session_id, starts_at, verdict, left_behind_id
                )
            busy = await _calendars(
                conn, rules, now, row["therapist_id"], row["client_id"], session_id
            )
            _check_slot(rules, minutes, *busy, now, moved.starts_at)
            # The move claims its new time like a booking (the old time is given back first).
            await store.release(conn, [session_id])
            new_ends_at = moved.starts_at + timedelta(minutes=minutes)
            cells = store.cells_of(moved.starts_at, new_ends_at, rules.buffer_minutes)
            if not await store.claim(conn, row["therapist_id"], session_id, cells):
                raise await _refused(conn, _TAKEN, rules, row, now, starts_at)
            if verdict.counts_as_used:  # the missed place stays on record at the old time
                await store.insert_session(
                    conn,
                    session_id=left_behind_id,
                    course_id=before["course_id"],
                    client_id=before["client_id"],
                    therapist_id=before["therapist_id"],
                    number=before["number"],
                    phase=before["phase"],
                    starts_at=before["starts_at"],
                    ends_at=before["ends_at"],
                    buffer_minutes=before["buffer_minutes"],
                    time_zone=before["time_zone"],
                    mode=before["mode"],
                    meeting_url=before["meeting_url"],
                    practice_address=before["practice_address"],
                    booked_by=before["booked_by"],
                    series_id=before["series_id"],
                    policy_version=before["policy_version"],
                    status="late_cancelled",
                )
                await store.cancel_session(
                    conn,
                    left_behind_id,
                    status="late_cancelled",
                    changed_by=who.role,
                    late=verdict.late,
                    counts_as_used=verdict.counts_as_used,
                    at=now,
                )
            after = await store.move_session(
                conn,
                session_id,
                starts_at=moved.starts_at,
                ends_at=moved.starts_at + timedelta(minutes=minutes),
                buffer_minutes=rules.buffer_minutes,
                number=moved.number,
                phase=moved.phase,
                changed_by=who.role,
                late=verdict.late,
                counts_as_used=verdict.counts_as_used,
                at=now,
            )
            await outbox.add(
                conn,
                SessionRescheduled(
                    session_id=session_id,
                    course_id=after["course_id"],
                    client_id=after["client_id"],
                    therapist_id=after["therapist_id"],
                    previous_starts_at=before["starts_at"],
                    starts_at=after["starts_at"],
                    ends_at=after["ends_at"],
                    time_zone=after["time_zone"],
                    mode=after["mode"],
                    meeting_url=after["meeting_url"],
                    practice_address=after["practice_address"],
                    rescheduled_by=who.role,
                    late=verdict.late,
                    counts_as_used=verdict.counts_as_used,
                    number=after["number"],
                ),
            )
            await store.request_summary(conn, row["therapist_id"])
            return session_json(after)
    except (asyncpg.ExclusionViolationError, asyncpg.DeadlockDetectedError) as exc:
        async with pool.acquire() as conn:
            row = await _reread_course(conn, course_id)
            view = await store.get_therapist(conn, row["therapist_id"])
            refused = await _refused(conn, _TAKEN, _rules_of(view), row, now, starts_at)
        raise refused from exc


async def record_attendance(
    pool: asyncpg.Pool,
    who: Principal,
    session_id: uuid.UUID,
    attendance: Attendance,
    phq9_total: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The therapist records a held session (with a PHQ-9 where due) or a no-show."""
    async with pool.acquire() as conn, conn.transaction():
        _, row, _, course = await _locked_course(conn, who, session_id)
        with _translated():
            course = rules_of_course.record_attendance(
                course, session_id, attendance, now, phq9_total
            )
        after = await store.record_attendance(
            conn, session_id, status=attendance, phq9_total=phq9_total, at=now
        )
        if phq9_total is not None:
            await audit.record(
                conn,
                actor_id=who.id,
                actor_role=who.role,
                subject_id=row["client_id"],
                action="record",
                resource="phq9",
                resource_id=str(session_id),
            )
        await outbox.add(
            conn,
            SessionAttended(
                session_id=session_id,
                course_id=row["course_id"],
                client_id=row["client_id"],
                therapist_id=row["therapist_id"],
                number=after["number"],
                phase=after["phase"],
                attendance=attendance,
                phq9_recorded=phq9_total is not None,
            ),
        )
        if course.status == "completed":
            await _complete(conn, row, course, now)
            await store.request_summary(conn, row["therapist_id"])
        return session_json(after, with_phq9=True)


# --------------------------------------------------------------------------- patient rights

# What an erasure drops here, and the clinical record it keeps for the retention period.
ERASED = ["booking_request_replies", "unopened_match_proposals"]
KEPT = ["courses", "sessions", "attendance", "phq9_totals", "audit_log"]


async def handle_rights_request(conn: asyncpg.Connection, requested: RightsRequested) -> None:
    """Export this service's part, or erase what need not be kept, and answer."""
    if requested.kind == "export":
        data = await store.personal_data(conn, requested.subject_id)
        data["access_log"] = await audit.for_subject(conn, requested.subject_id)
        courses, sessions = len(data["courses"]), len(data["sessions"])
        await rights.store_export(
            conn,
            requested,
            data,
            [f"Bokning: {courses} behandlingar, {sessions} sessioner med närvaro och PHQ-9"],
            [f"Booking: {courses} courses, {sessions} sessions with attendance and PHQ-9"],
        )
    else:
        await store.erase_requests(conn, requested.subject_id)
        await rights.record_erasure(conn, requested, erased=ERASED, kept=KEPT)


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The retention job's part here: clinical records ten years after the last entry."""
    return {
        "courses": await store.purge_expired(conn, now - retention.CLINICAL_RETENTION),
        "export_parts": await rights.purge_export_parts(conn, now),
    }
