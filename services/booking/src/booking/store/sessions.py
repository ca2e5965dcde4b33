"""SQL of session rows: read, insert, move, cancel, attendance, phases. Callers that change
a course's sessions hold that course's row lock (`courses.lock_course`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from booking.domain.availability import Busy
from booking.store.common import LIVE_SQL


async def sessions_of_course(conn: asyncpg.Connection, course_id: uuid.UUID) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT * FROM sessions WHERE course_id = $1 ORDER BY starts_at, number", course_id
        )
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
        " FROM sessions WHERE ((therapist_id = $1 AND therapist_span && tstzrange($3, $4)"
        f"  AND {LIVE_SQL}) OR (client_id = $2 AND client_span && tstzrange($3, $4)"
        f"  AND {LIVE_SQL})) AND session_id IS DISTINCT FROM $5 ORDER BY starts_at",
        therapist_id,
        client_id,
        since,
        until,
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
