"""SQL of the patient's rights: access to the personal data, erasure, and purging what is
past its retention."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg


async def personal_data(conn: asyncpg.Connection, client_id: uuid.UUID) -> dict[str, Any]:
    """Everything booking holds about the client, for their export."""
    courses = await conn.fetch(
        "SELECT * FROM courses WHERE client_id = $1 ORDER BY started_at", client_id
    )
    sessions = await conn.fetch(
        "SELECT session_id, course_id, therapist_id, number, phase, status, starts_at, ends_at,"
        " time_zone, mode, meeting_url, practice_address, booked_by, series_id, phq9_total,"
        " changed_by, late, counts_as_used, booked_at, changed_at"
        " FROM sessions WHERE client_id = $1 ORDER BY starts_at",
        client_id,
    )
    return {"courses": [dict(r) for r in courses], "sessions": [dict(r) for r in sessions]}


async def erase_requests(conn: asyncpg.Connection, client_id: uuid.UUID) -> int:
    """Drop what need not be kept: the answers remembered for retried booking requests."""
    status = await conn.execute("DELETE FROM idempotency_keys WHERE actor_id = $1", client_id)
    return int(status.split()[-1])


async def forget_requests(conn: asyncpg.Connection, before: datetime) -> int:
    """Drop the answers remembered for booking requests made before `before`."""
    status = await conn.execute("DELETE FROM idempotency_keys WHERE created_at < $1", before)
    return int(status.split()[-1])


async def purge_expired(conn: asyncpg.Connection, before: datetime) -> int:
    """Delete the courses and sessions of clients whose last entry here is older than
    `before` (the last session, booking change or course closing); returns how many courses."""
    expired = (
        "SELECT c.client_id FROM courses c LEFT JOIN sessions s ON s.course_id = c.course_id"
        " GROUP BY c.client_id HAVING max(greatest(c.started_at, c.closed_at, s.ends_at,"
        " s.changed_at)) < $1"
    )
    await conn.execute(f"DELETE FROM sessions WHERE client_id IN ({expired})", before)
    status = await conn.execute(f"DELETE FROM courses WHERE client_id IN ({expired})", before)
    # Matches without a course (never approved, rejected, or their course purged above).
    await conn.execute(
        "DELETE FROM matches m WHERE m.received_at < $1"
        " AND NOT EXISTS (SELECT 1 FROM courses c WHERE c.match_id = m.match_id)",
        before,
    )
    return int(status.split()[-1])
