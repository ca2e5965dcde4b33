"""SQL of courses and of the matches that open them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

# --------------------------------------------------------------------------- matches


async def record_match(
    conn: asyncpg.Connection, match_id: uuid.UUID, details: dict[str, Any], requires_approval: bool
) -> asyncpg.Record:
    """Keep what matching proposed, in the order its matches arrive (the first arrival's
    place kept); returns the row (with `approved_at` if approval came first)."""
    row = await conn.fetchrow(
        "INSERT INTO matches (match_id, details, requires_approval, matched_order)"
        " VALUES ($1, $2, $3, nextval('match_order'))"
        " ON CONFLICT (match_id) DO UPDATE SET details = EXCLUDED.details,"
        "  requires_approval = EXCLUDED.requires_approval,"
        "  matched_order = coalesce(matches.matched_order, EXCLUDED.matched_order)"
        " RETURNING *",
        match_id,
        details,
        requires_approval,
    )
    assert row is not None
    return row


async def record_approval(conn: asyncpg.Connection, match_id: uuid.UUID) -> asyncpg.Record:
    """Note the clinician's approval; returns the row (with `details` if the match is known)."""
    row = await conn.fetchrow(
        "INSERT INTO matches (match_id, approved_at) VALUES ($1, now())"
        " ON CONFLICT (match_id) DO UPDATE SET approved_at = coalesce(matches.approved_at, now())"
        " RETURNING *",
        match_id,
    )
    assert row is not None
    return row


# --------------------------------------------------------------------------- courses


async def insert_course(
    conn: asyncpg.Connection,
    *,
    course_id: uuid.UUID,
    match_id: uuid.UUID,
    intake_id: uuid.UUID,
    client_id: uuid.UUID,
    therapist_id: uuid.UUID,
    method: str,
    planned_sessions: int,
    session_minutes: int,
    problem_areas: Sequence[str],
    mode: str,
    start_severity_band: str,
) -> asyncpg.Record | None:
    """The new course, or None when this match already has one."""
    return await conn.fetchrow(
        "INSERT INTO courses (course_id, match_id, intake_id, client_id, therapist_id, method,"
        " planned_sessions, session_minutes, problem_areas, mode, start_severity_band)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (match_id) DO NOTHING RETURNING *",
        course_id,
        match_id,
        intake_id,
        client_id,
        therapist_id,
        method,
        planned_sessions,
        session_minutes,
        list(problem_areas),
        mode,
        start_severity_band,
    )


async def get_course(conn: asyncpg.Connection, course_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM courses WHERE course_id = $1", course_id)


async def lock_course(conn: asyncpg.Connection, course_id: uuid.UUID) -> asyncpg.Record:
    """The course, locked until the transaction ends, with a new revision: changes of one
    course (cancel, move, end, replan, attendance) queue here, and a booking of it (`book`,
    `book_one`, which lock the row the same way) either lands before and is seen, or comes
    after and sees the change. The new revision tells every replica's cached view of the
    course (`booking.service.contexts`) that it is stale."""
    row = await conn.fetchrow(
        "UPDATE courses SET revision = nextval('revisions') WHERE course_id = $1 RETURNING *",
        course_id,
    )
    assert row is not None, "a course is never deleted"
    return row


async def courses_of(conn: asyncpg.Connection, person_id: uuid.UUID, role: str) -> list[Any]:
    column = "client_id" if role == "client" else "therapist_id"
    return list(
        await conn.fetch(
            f"SELECT * FROM courses WHERE {column} = $1 ORDER BY started_at DESC, course_id",
            person_id,
        )
    )


async def intakes_other_courses(
    conn: asyncpg.Connection, intake_id: uuid.UUID, match_id: uuid.UUID
) -> tuple[int, list[Any]]:
    """(this match's place in the intake's order, the intake's courses of other matches:
    (course id, its match's place, whether it is active)); -1 for a place not known (kept
    before the order)."""
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(matched_order, -1) FROM matches WHERE match_id = $2) AS own,"
        " coalesce(array_agg(c.course_id), '{}') AS courses,"
        " coalesce(array_agg(coalesce(m.matched_order, -1)), '{}') AS places,"
        " coalesce(array_agg(c.status = 'active'), '{}') AS active"
        " FROM courses c LEFT JOIN matches m ON m.match_id = c.match_id"
        " WHERE c.intake_id = $1 AND c.match_id <> $2",
        intake_id,
        match_id,
    )
    assert row is not None
    own = -1 if row["own"] is None else row["own"]
    return own, list(zip(row["courses"], row["places"], row["active"], strict=True))


async def has_course_between(
    conn: asyncpg.Connection, client_id: uuid.UUID, therapist_id: uuid.UUID
) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM courses WHERE client_id = $1 AND therapist_id = $2)",
            client_id,
            therapist_id,
        )
    )


async def latest_course_minutes(
    conn: asyncpg.Connection, client_id: uuid.UUID, therapist_id: uuid.UUID
) -> int | None:
    minutes: int | None = await conn.fetchval(
        "SELECT session_minutes FROM courses WHERE client_id = $1 AND therapist_id = $2"
        " ORDER BY status = 'active' DESC, started_at DESC LIMIT 1",
        client_id,
        therapist_id,
    )
    return minutes


async def count_active_courses(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM courses WHERE therapist_id = $1 AND status = 'active'", therapist_id
    )
    return count


async def update_plan(
    conn: asyncpg.Connection, course_id: uuid.UUID, planned_sessions: int, session_minutes: int
) -> None:
    await conn.execute(
        "UPDATE courses SET planned_sessions = $2, session_minutes = $3 WHERE course_id = $1",
        course_id,
        planned_sessions,
        session_minutes,
    )


async def close_course(
    conn: asyncpg.Connection,
    course_id: uuid.UUID,
    *,
    status: str,
    at: datetime,
    end_reason: str | None = None,
    ended_by: str | None = None,
    outcome: str | None = None,
    final_severity_band: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE courses SET status = $2, closed_at = $3, end_reason = $4, ended_by = $5,"
        " outcome = $6, final_severity_band = $7 WHERE course_id = $1",
        course_id,
        status,
        at,
        end_reason,
        ended_by,
        outcome,
        final_severity_band,
    )
