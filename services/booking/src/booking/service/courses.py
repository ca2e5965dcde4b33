"""Treatment courses: opened from matches, replanned, ended early, completed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from booking import store
from booking.domain import course as rules_of_course
from booking.domain.course import Course
from booking.domain.policy import (
    ChangeVerdict,
    judge_ending,
    policy_in_force,
)
from booking.service.common import course_for, course_of, reread_course
from booking.service.records import CourseRecord
from chassis import audit, outbox
from chassis.auth import Principal
from contracts.events import (
    CourseCompleted,
    CourseEnded,
    CourseStarted,
    EndReason,
    MatchApproved,
    SessionCancelled,
    TherapistMatched,
)
from contracts.vocabulary import Actor


async def list_courses(pool: asyncpg.Pool, who: Principal) -> list[CourseRecord]:
    async with pool.acquire() as conn:
        rows = await store.courses_of(conn, who.subject, who.role)
    return [CourseRecord.of(row) for row in rows]


async def read_course(pool: asyncpg.Pool, who: Principal, course_id: uuid.UUID) -> CourseRecord:
    async with pool.acquire() as conn, conn.transaction():
        row = await course_for(conn, who, course_id)
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
    return CourseRecord.of(row, sessions)


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
    """The course of a match, once however often the match arrives. An intake has one
    course in force: the course of a later match (a switch of therapist) ends the intake's
    courses of earlier ones, and a match a later one superseded opens none (its approval
    arrived late). Returns the new course id, if any."""
    own, others = await store.intakes_other_courses(conn, matched.intake_id, matched.match_id)
    if any(place > own for _, place, _ in others):
        return None  # superseded: a later match of the intake has (or had) its course
    involved = {matched.therapist_id}
    if matched.previous_therapist_id:
        involved.add(matched.previous_therapist_id)
    for therapist_id in sorted(involved):
        await store.ensure_therapist(conn, therapist_id)
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
    for earlier, _, active in others:
        if not active:
            continue
        old = await store.lock_course(conn, earlier)
        if old["status"] == "active":  # not ended meanwhile
            await _end(conn, old, "switched_therapist", "system", now)
            involved.add(old["therapist_id"])
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
) -> CourseRecord:
    """The therapist adjusts the number of sessions or their length within the method."""
    async with pool.acquire() as conn, conn.transaction():
        await course_for(conn, who, course_id)
        row = await store.lock_course(conn, course_id)
        course = course_of(row, await store.sessions_of_course(conn, course_id))
        changed = rules_of_course.replan(course, planned_sessions, session_minutes)
        await store.update_plan(conn, course_id, changed.planned_sessions, changed.session_minutes)
        await store.set_phases(conn, {s.session_id: s.phase for s in changed.sessions})
        if changed.status == "completed":
            await complete(conn, row, changed, now)
            await store.request_summary(conn, row["therapist_id"])
        row = await reread_course(conn, course_id)
    return CourseRecord.of(row)


async def end_course(
    pool: asyncpg.Pool, who: Principal, course_id: uuid.UUID, reason: EndReason, now: datetime
) -> CourseRecord:
    async with pool.acquire() as conn, conn.transaction():
        await course_for(conn, who, course_id)
        row = await store.lock_course(conn, course_id)
        await _end(conn, row, reason, who.role, now)
        await store.request_summary(conn, row["therapist_id"])
        row = await reread_course(conn, course_id)
    return CourseRecord.of(row)


async def record_cancellation(
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


async def _end(
    conn: asyncpg.Connection, row: Any, reason: EndReason, by: Actor, now: datetime
) -> None:
    """End a course early: its booked sessions are cancelled, never against the client. The
    caller holds the course's lock (`store.lock_course`)."""
    sessions = await store.sessions_of_course(conn, row["course_id"])
    course = course_of(row, sessions)
    ended = rules_of_course.end_early(course, reason, by)
    for before, session in zip(sessions, ended.sessions, strict=True):
        if before["status"] == session.status:
            continue
        verdict = judge_ending(policy_in_force(before["policy_version"]), before["starts_at"], now)
        await record_cancellation(conn, before, "cancelled", by, verdict, now)
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


async def complete(conn: asyncpg.Connection, row: Any, course: Course, now: datetime) -> None:
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
