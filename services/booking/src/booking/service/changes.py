"""Changes to booked sessions: cancel, reschedule, attendance and PHQ-9."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from booking import store
from booking.domain import course as rules_of_course
from booking.domain.course import Course
from booking.domain.policy import (
    judge_change,
    policy_in_force,
)
from booking.service.availability import calendars, rules_of
from booking.service.common import (
    Attendance,
    course_of,
    is_party,
    not_found,
    reread_course,
    reread_session,
)
from booking.service.courses import complete, record_cancellation
from booking.service.records import SessionRecord
from booking.service.sessions import check_slot, refuse, taken_refusal
from chassis import audit, outbox
from chassis.auth import Principal
from contracts.events import (
    SessionAttended,
    SessionRescheduled,
)


async def _session_for(conn: asyncpg.Connection, who: Principal, session_id: uuid.UUID) -> Any:
    row = await store.get_session(conn, session_id)
    if row is None or not is_party(who, row):
        raise not_found("session")
    return row


async def _locked_course(
    conn: asyncpg.Connection, who: Principal, session_id: uuid.UUID
) -> tuple[Any, Any, Any, Course]:
    """(therapist, course row, session row, domain course) read under the course's lock."""
    before = await _session_for(conn, who, session_id)
    row = await store.lock_course(conn, before["course_id"])
    before = await reread_session(conn, session_id)
    therapist = await store.get_therapist(conn, before["therapist_id"])
    course = course_of(row, await store.sessions_of_course(conn, row["course_id"]))
    return therapist, row, before, course


async def cancel(
    pool: asyncpg.Pool, who: Principal, session_id: uuid.UUID, now: datetime
) -> SessionRecord:
    """Cancel under the policy the session was booked with; late by the client counts."""
    async with pool.acquire() as conn, conn.transaction():
        _, row, before, course = await _locked_course(conn, who, session_id)
        verdict = judge_change(
            policy_in_force(before["policy_version"]), before["starts_at"], now, who.role
        )
        course = rules_of_course.cancel_session(course, session_id, verdict)
        status = course.session(session_id).status
        await record_cancellation(conn, before, status, who.role, verdict, now)
        if course.status == "completed":  # the one booked session left was the last obstacle
            await complete(conn, row, course, now)
        await store.request_summary(conn, row["therapist_id"])
        return SessionRecord.of(await reread_session(conn, session_id))


async def reschedule(
    pool: asyncpg.Pool, who: Principal, session_id: uuid.UUID, starts_at: datetime, now: datetime
) -> SessionRecord:
    """Move a session to a free slot; a late move by the client counts as a used session."""
    async with pool.acquire() as conn:
        course_id = (await _session_for(conn, who, session_id))["course_id"]
    try:
        async with pool.acquire() as conn, conn.transaction():
            therapist, row, before, course = await _locked_course(conn, who, session_id)
            rules = rules_of(therapist)
            minutes = int((before["ends_at"] - before["starts_at"]).total_seconds() // 60)
            verdict = judge_change(
                policy_in_force(before["policy_version"]), before["starts_at"], now, who.role
            )
            left_behind_id = uuid.uuid4()
            course, moved = rules_of_course.reschedule_session(
                course, session_id, starts_at, verdict, left_behind_id
            )
            busy = await calendars(
                conn, rules, now, row["therapist_id"], row["client_id"], session_id
            )
            check_slot(rules, minutes, *busy, now, moved.starts_at)
            # The move claims its new time like a booking (the old time is given back first).
            await store.release(conn, [session_id])
            new_ends_at = moved.starts_at + timedelta(minutes=minutes)
            cells = store.cells_of(moved.starts_at, new_ends_at, rules.buffer_minutes)
            if not await store.claim(conn, row["therapist_id"], session_id, cells):
                raise await refuse(conn, taken_refusal(), rules, row, now, starts_at)
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
            return SessionRecord.of(after)
    except (asyncpg.ExclusionViolationError, asyncpg.DeadlockDetectedError) as exc:
        async with pool.acquire() as conn:
            row = await reread_course(conn, course_id)
            view = await store.get_therapist(conn, row["therapist_id"])
            refused = await refuse(conn, taken_refusal(), rules_of(view), row, now, starts_at)
        raise refused from exc


async def record_attendance(
    pool: asyncpg.Pool,
    who: Principal,
    session_id: uuid.UUID,
    attendance: Attendance,
    phq9_total: int | None,
    now: datetime,
) -> SessionRecord:
    """The therapist records a held session (with a PHQ-9 where due) or a no-show."""
    async with pool.acquire() as conn, conn.transaction():
        _, row, _, course = await _locked_course(conn, who, session_id)
        course = rules_of_course.record_attendance(course, session_id, attendance, now, phq9_total)
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
            await complete(conn, row, course, now)
            await store.request_summary(conn, row["therapist_id"])
        return SessionRecord.of(after)
