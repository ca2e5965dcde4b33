"""All SQL of booking, one place per table. Functions take a connection; callers own the
transaction (and the therapist lock, `lock_therapist`, before anything that books)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from booking.domain.availability import Busy

LIVE = ("booked", "attended", "no_show")  # statuses that occupy time (the constraints' WHERE)

# --------------------------------------------------------------------------- therapists

_THERAPIST = (
    "SELECT t.*, (SELECT to_jsonb(a) FROM availability a"
    "  WHERE a.therapist_id = t.therapist_id) AS availability"
    " FROM therapists t WHERE t.therapist_id = $1"
)


async def lock_therapist(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, *, create: bool = False
) -> asyncpg.Record:
    """The therapist's row with its `availability` (a dict, or None), locked until the
    transaction ends: bookings of one therapist queue here instead of racing into the
    exclusion constraint (docs/adr/0008-booking-overlap-in-the-database.md). `create` makes
    the row if need be (a course or an availability can come before the catalog's profile)."""
    if create:
        await conn.execute(
            "INSERT INTO therapists (therapist_id) VALUES ($1) ON CONFLICT DO NOTHING",
            therapist_id,
        )
    row = await conn.fetchrow(_THERAPIST + " FOR UPDATE OF t", therapist_id)
    assert row is not None, "a course's therapist always has a row (courses reference it)"
    return row


async def get_therapist(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> asyncpg.Record | None:
    """The therapist's row with its `availability` (a dict, or None), without a lock."""
    return await conn.fetchrow(_THERAPIST, therapist_id)


async def apply_profile(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    *,
    time_zone: str,
    modes: Sequence[str],
    city: str | None,
    practice_address: str | None,
    version: int,
) -> bool:
    """Store a published profile unless a newer version is already known. True if applied."""
    applied = await conn.fetchval(
        "INSERT INTO therapists AS t"
        " (therapist_id, time_zone, modes, city, practice_address, published, version)"
        " VALUES ($1, $2, $3, $4, $5, true, $6)"
        " ON CONFLICT (therapist_id) DO UPDATE SET time_zone = EXCLUDED.time_zone,"
        "  modes = EXCLUDED.modes, city = EXCLUDED.city,"
        "  practice_address = EXCLUDED.practice_address, published = true,"
        "  version = EXCLUDED.version, updated_at = now()"
        " WHERE t.version < EXCLUDED.version"
        " RETURNING true",
        therapist_id,
        time_zone,
        list(modes),
        city,
        practice_address,
        version,
    )
    return bool(applied)


async def apply_withdrawal(conn: asyncpg.Connection, therapist_id: uuid.UUID, version: int) -> bool:
    """Close the therapist for booking unless a newer profile is already known."""
    applied = await conn.fetchval(
        "INSERT INTO therapists AS t (therapist_id, published, version) VALUES ($1, false, $2)"
        " ON CONFLICT (therapist_id) DO UPDATE SET published = false,"
        "  version = EXCLUDED.version, updated_at = now()"
        " WHERE t.version < EXCLUDED.version"
        " RETURNING true",
        therapist_id,
        version,
    )
    return bool(applied)


# --------------------------------------------------------------------------- availability


async def put_availability(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    *,
    weekly: dict[str, list[str]],
    exceptions: list[dict[str, Any]],
    buffer_minutes: int,
    min_notice_hours: int,
    horizon_days: int,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO availability AS a"
        " (therapist_id, weekly, exceptions, buffer_minutes, min_notice_hours, horizon_days)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (therapist_id) DO UPDATE SET weekly = EXCLUDED.weekly,"
        "  exceptions = EXCLUDED.exceptions, buffer_minutes = EXCLUDED.buffer_minutes,"
        "  min_notice_hours = EXCLUDED.min_notice_hours, horizon_days = EXCLUDED.horizon_days,"
        "  updated_at = now()"
        " RETURNING *",
        therapist_id,
        weekly,
        exceptions,
        buffer_minutes,
        min_notice_hours,
        horizon_days,
    )
    assert row is not None
    return row


# --------------------------------------------------------------------------- matches


async def record_match(
    conn: asyncpg.Connection, match_id: uuid.UUID, details: dict[str, Any], requires_approval: bool
) -> asyncpg.Record:
    """Keep what matching proposed; returns the row (with `approved_at` if approval came first)."""
    row = await conn.fetchrow(
        "INSERT INTO matches (match_id, details, requires_approval) VALUES ($1, $2, $3)"
        " ON CONFLICT (match_id) DO UPDATE SET details = EXCLUDED.details,"
        "  requires_approval = EXCLUDED.requires_approval"
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


async def courses_of(conn: asyncpg.Connection, person_id: uuid.UUID, role: str) -> list[Any]:
    column = "client_id" if role == "client" else "therapist_id"
    return await conn.fetch(
        f"SELECT * FROM courses WHERE {column} = $1 ORDER BY started_at DESC, course_id",
        person_id,
    )


async def active_courses_between(
    conn: asyncpg.Connection, client_id: uuid.UUID, therapist_id: uuid.UUID
) -> list[Any]:
    return await conn.fetch(
        "SELECT * FROM courses WHERE client_id = $1 AND therapist_id = $2 AND status = 'active'"
        " ORDER BY started_at",
        client_id,
        therapist_id,
    )


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


# --------------------------------------------------------------------------- sessions


async def sessions_of_course(conn: asyncpg.Connection, course_id: uuid.UUID) -> list[Any]:
    return await conn.fetch(
        "SELECT * FROM sessions WHERE course_id = $1 ORDER BY starts_at, number", course_id
    )


async def get_session(conn: asyncpg.Connection, session_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id)


async def busy_of(
    conn: asyncpg.Connection,
    *,
    since: datetime,
    until: datetime,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID | None = None,
    except_session: uuid.UUID | None = None,
) -> tuple[list[Busy], list[Busy]]:
    """(start, end) of the live sessions touching [since, until): the therapist's, and the
    client's (if given), in one query."""
    rows = await conn.fetch(
        "SELECT therapist_id = $1 AS therapists, client_id = $2 AS clients, starts_at, ends_at"
        " FROM sessions WHERE ((therapist_id = $1 AND therapist_span && tstzrange($3, $4))"
        "  OR (client_id = $2 AND client_span && tstzrange($3, $4)))"
        " AND status = ANY($5::text[]) AND session_id IS DISTINCT FROM $6 ORDER BY starts_at",
        therapist_id,
        client_id,
        since,
        until,
        list(LIVE),
        except_session,
    )
    therapists = [(r["starts_at"], r["ends_at"]) for r in rows if r["therapists"]]
    clients = [(r["starts_at"], r["ends_at"]) for r in rows if r["clients"]]
    return therapists, clients


async def insert_session(
    conn: asyncpg.Connection,
    *,
    session_id: uuid.UUID,
    course_id: uuid.UUID,
    client_id: uuid.UUID,
    therapist_id: uuid.UUID,
    number: int,
    phase: str,
    starts_at: datetime,
    ends_at: datetime,
    buffer_minutes: int,
    time_zone: str,
    mode: str,
    meeting_url: str | None,
    practice_address: str | None,
    booked_by: str,
    series_id: uuid.UUID | None,
    policy_version: str,
    status: str = "booked",
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO sessions (session_id, course_id, client_id, therapist_id, number, phase,"
        " status, starts_at, ends_at, client_span, therapist_span, buffer_minutes, time_zone,"
        " mode, meeting_url, practice_address, booked_by, series_id, policy_version)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, tstzrange($8, $9), tstzrange($8, $10),"
        " $11, $12, $13, $14, $15, $16, $17, $18) RETURNING *",
        session_id,
        course_id,
        client_id,
        therapist_id,
        number,
        phase,
        status,
        starts_at,
        ends_at,
        ends_at + timedelta(minutes=buffer_minutes),
        buffer_minutes,
        time_zone,
        mode,
        meeting_url,
        practice_address,
        booked_by,
        series_id,
        policy_version,
    )
    assert row is not None
    return row


async def move_session(
    conn: asyncpg.Connection,
    session_id: uuid.UUID,
    *,
    starts_at: datetime,
    ends_at: datetime,
    buffer_minutes: int,
    number: int,
    phase: str,
    changed_by: str,
    late: bool,
    counts_as_used: bool,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE sessions SET starts_at = $2, ends_at = $3, client_span = tstzrange($2, $3),"
        " therapist_span = tstzrange($2, $4), buffer_minutes = $5, number = $6, phase = $7,"
        " changed_by = $8, late = $9, counts_as_used = $10, changed_at = $11"
        " WHERE session_id = $1 RETURNING *",
        session_id,
        starts_at,
        ends_at,
        ends_at + timedelta(minutes=buffer_minutes),
        buffer_minutes,
        number,
        phase,
        changed_by,
        late,
        counts_as_used,
        at,
    )
    assert row is not None
    return row


async def cancel_session(
    conn: asyncpg.Connection,
    session_id: uuid.UUID,
    *,
    status: str,
    changed_by: str,
    late: bool,
    counts_as_used: bool,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE sessions SET status = $2, changed_by = $3, late = $4, counts_as_used = $5,"
        " changed_at = $6 WHERE session_id = $1 RETURNING *",
        session_id,
        status,
        changed_by,
        late,
        counts_as_used,
        at,
    )
    assert row is not None
    return row


async def record_attendance(
    conn: asyncpg.Connection,
    session_id: uuid.UUID,
    *,
    status: str,
    phq9_total: int | None,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "UPDATE sessions SET status = $2, phq9_total = $3, changed_by = 'therapist',"
        " changed_at = $4 WHERE session_id = $1 RETURNING *",
        session_id,
        status,
        phq9_total,
        at,
    )
    assert row is not None
    return row


async def set_phases(conn: asyncpg.Connection, phases: dict[uuid.UUID, str]) -> None:
    await conn.executemany(
        "UPDATE sessions SET phase = $2 WHERE session_id = $1", list(phases.items())
    )


# --------------------------------------------------------------------------- idempotency


async def find_answer(
    conn: asyncpg.Connection, actor_id: uuid.UUID, key: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT request_hash, response FROM idempotency_keys WHERE actor_id = $1 AND key = $2",
        actor_id,
        key,
    )


async def save_answer(
    conn: asyncpg.Connection,
    actor_id: uuid.UUID,
    key: str,
    request_hash: str,
    response: dict[str, Any],
) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (actor_id, key, request_hash, response)"
        " VALUES ($1, $2, $3, $4)",
        actor_id,
        key,
        request_hash,
        response,
    )


# --------------------------------------------------------------------------- demo clock


async def clock_offset_s(conn: asyncpg.Connection) -> float:
    offset = await conn.fetchval("SELECT offset_s FROM demo_clock")
    return float(offset or 0.0)


async def advance_clock(conn: asyncpg.Connection, seconds: float) -> float:
    return float(
        await conn.fetchval(
            "INSERT INTO demo_clock (offset_s) VALUES ($1) ON CONFLICT (only_row)"
            " DO UPDATE SET offset_s = demo_clock.offset_s + excluded.offset_s"
            " RETURNING offset_s",
            seconds,
        )
    )


async def bookable_therapists(conn: asyncpg.Connection) -> list[uuid.UUID]:
    """Published therapists with working hours: the ones whose summaries age with time."""
    rows = await conn.fetch(
        "SELECT t.therapist_id FROM therapists t JOIN availability a USING (therapist_id)"
        " WHERE t.published ORDER BY t.therapist_id"
    )
    return [row["therapist_id"] for row in rows]
