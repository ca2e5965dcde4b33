"""SQL of a therapist's hours: the therapist's row (from catalog's profile events), the
weekly availability, what listing free slots reads, and the free-slot summaries for matching
(requests filed in a change's transaction, taken and published by the worker)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from booking.domain.availability import Busy
from booking.store.common import LIVE_SQL, epoch_us_sql, with_moments

# --------------------------------------------------------------------------- therapists

_THERAPIST = (
    "SELECT t.*, (SELECT to_jsonb(a) FROM availability a"
    "  WHERE a.therapist_id = t.therapist_id) AS availability"
    " FROM therapists t WHERE t.therapist_id = $1"
)


async def ensure_therapist(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> None:
    """A row for the therapist (a course or an availability can come before the catalog's
    profile)."""
    await conn.execute(
        "INSERT INTO therapists (therapist_id) VALUES ($1) ON CONFLICT DO NOTHING", therapist_id
    )


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


async def slot_view(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID | None,
    now: datetime,
    kept: tuple[int | None, datetime, datetime] | None = None,
) -> dict[str, Any]:
    """For listing free slots, in one round trip: the therapist's row with `availability`
    (columns NULL when unknown), whether the client has a course with them (`has_course`), the
    length of the client's latest course with them (`course_minutes`), and both calendars'
    live busy times that can matter to a booking made `now`, read in whole UTC days (two
    before `now`'s to four after the horizon: `low`, `high`): `therapist_starts` and
    `therapist_ends`, and `client_starts` and `client_ends` (the client's, with any
    therapist; empty without hours), each pair in the same order, not sorted (`FreeTime`
    sorts them). With the therapist's calendar revision (`calendar_revision`); when that and
    the window are those `kept` (revision, low, high), the therapist's busy times are not
    read (`calendar_unchanged`: the caller has them)."""
    revision, low, high = kept if kept is not None else (None, None, None)
    row = await conn.fetchrow(
        "SELECT t.time_zone, t.published, to_jsonb(a) AS availability,"
        " EXISTS (SELECT 1 FROM courses c WHERE c.client_id = $2 AND c.therapist_id = $1)"
        "  AS has_course,"
        " (SELECT c.session_minutes FROM courses c WHERE c.client_id = $2 AND c.therapist_id = $1"
        "  ORDER BY c.status = 'active' DESC, c.started_at DESC LIMIT 1) AS course_minutes,"
        " cal.revision AS calendar_revision, lower(w.span) AS low, upper(w.span) AS high,"
        " coalesce(w.unchanged, false) AS calendar_unchanged,"
        " tb.therapist_starts, tb.therapist_ends, cb.client_starts, cb.client_ends"
        " FROM (SELECT 1) AS one LEFT JOIN therapists t ON t.therapist_id = $1"
        " LEFT JOIN availability a ON a.therapist_id = $1"
        " LEFT JOIN LATERAL (SELECT revision FROM calendar_revisions"
        "  WHERE therapist_id = $1) cal ON true"
        " LEFT JOIN LATERAL (SELECT d.span, (cal.revision = $4 AND lower(d.span) = $5"
        "   AND upper(d.span) = $6) AS unchanged"
        "  FROM (SELECT tstzrange(date_trunc('day', $3::timestamptz, 'UTC') - interval '2 days',"
        "   date_trunc('day', $3::timestamptz, 'UTC') + make_interval(days => a.horizon_days + 4))"
        "   AS span) d) w ON true"
        # (apart, so that a calendar unchanged is not read at all)
        " LEFT JOIN LATERAL (SELECT"
        f"  coalesce(array_agg({epoch_us_sql('s.starts_at')}), '{{}}') AS therapist_starts,"
        f"  coalesce(array_agg({epoch_us_sql('s.ends_at')}), '{{}}') AS therapist_ends"
        "  FROM sessions s WHERE a.therapist_id IS NOT NULL AND w.unchanged IS NOT TRUE"
        f"  AND s.therapist_id = $1 AND s.therapist_span && w.span AND s.{LIVE_SQL}) tb ON true"
        " LEFT JOIN LATERAL (SELECT"
        f"  coalesce(array_agg({epoch_us_sql('s.starts_at')}), '{{}}') AS client_starts,"
        f"  coalesce(array_agg({epoch_us_sql('s.ends_at')}), '{{}}') AS client_ends"
        "  FROM sessions s WHERE a.therapist_id IS NOT NULL"
        f"  AND s.client_id = $2 AND s.client_span && w.span AND s.{LIVE_SQL}) cb ON true",
        therapist_id,
        client_id,
        now,
        revision,
        low,
        high,
    )
    assert row is not None
    # (the busy times are sent as microseconds since the epoch)
    return with_moments(row, ("therapist_starts", "therapist_ends", "client_starts", "client_ends"))


# --------------------------------------------------------------------------- summaries


async def request_summary(conn: asyncpg.Connection, *therapist_ids: uuid.UUID) -> None:
    """Ask for the therapists' free-slot summaries to be published again (after commit, by
    the worker's publisher: nothing is computed here)."""
    await conn.execute(
        "INSERT INTO summary_requests (therapist_id) SELECT unnest($1::uuid[])",
        list(therapist_ids),
    )


# Advisory lock class of "publishing this therapist's summary" (the second key is the hash
# of the therapist id): one replica at a time per therapist, the others skip it.
_SUMMARY_LOCK = 0x5AB1


async def take_due_summaries(
    conn: asyncpg.Connection, window_s: float, batch: int
) -> list[uuid.UUID]:
    """In the caller's transaction: up to `batch` therapists whose oldest summary request is
    `window_s` old, that no other replica is publishing; their requests are deleted (visible
    ones only: a request that commits later stays for the next pass). Rolled back (a worker
    that dies), the requests are there again."""
    rows = await conn.fetch(
        "WITH due AS MATERIALIZED ("
        "  SELECT therapist_id FROM summary_requests GROUP BY therapist_id"
        "  HAVING min(requested_at) <= now() - make_interval(secs => $1)"
        "  ORDER BY min(requested_at) LIMIT $2 * 4"
        "), mine AS MATERIALIZED ("
        "  SELECT therapist_id FROM due"
        "  WHERE pg_try_advisory_xact_lock($3, hashtext(therapist_id::text)) LIMIT $2"
        ") DELETE FROM summary_requests r USING mine WHERE r.therapist_id = mine.therapist_id"
        " RETURNING r.therapist_id",
        window_s,
        batch,
        _SUMMARY_LOCK,
    )
    return sorted({row["therapist_id"] for row in rows})


async def summary_therapists(
    conn: asyncpg.Connection, therapist_ids: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    """Each therapist's row with `availability` (a dict or None) and `active_courses`."""
    return list(
        await conn.fetch(
            "SELECT t.*, (SELECT to_jsonb(a) FROM availability a"
            "  WHERE a.therapist_id = t.therapist_id) AS availability,"
            " (SELECT count(*) FROM courses c WHERE c.therapist_id = t.therapist_id"
            "  AND c.status = 'active') AS active_courses"
            " FROM therapists t WHERE t.therapist_id = ANY($1::uuid[])",
            list(therapist_ids),
        )
    )


async def busy_of_many(
    conn: asyncpg.Connection, therapist_ids: Sequence[uuid.UUID], since: datetime, until: datetime
) -> dict[uuid.UUID, list[Busy]]:
    """(start, end) of the therapists' live sessions touching [since, until), in one query."""
    rows = await conn.fetch(
        "SELECT therapist_id, starts_at, ends_at FROM sessions"
        " WHERE therapist_id = ANY($1::uuid[]) AND therapist_span && tstzrange($2, $3)"
        f" AND {LIVE_SQL} ORDER BY therapist_id, starts_at",
        list(therapist_ids),
        since,
        until,
    )
    busy: dict[uuid.UUID, list[Busy]] = {therapist_id: [] for therapist_id in therapist_ids}
    for row in rows:
        busy[row["therapist_id"]].append((row["starts_at"], row["ends_at"]))
    return busy


async def queue_refresh(conn: asyncpg.Connection, every_s: float) -> int:
    """If the periodic refresh is due (and this replica is the one to move the schedule on),
    request every bookable therapist's summary; the number requested, or 0."""
    status = await conn.execute(
        "WITH turn AS ("
        "  INSERT INTO summary_schedule AS s (next_at)"
        "  VALUES (now() + make_interval(secs => $1))"
        "  ON CONFLICT (only_row) DO UPDATE SET next_at = EXCLUDED.next_at"
        "  WHERE s.next_at <= now() RETURNING 1"
        ") INSERT INTO summary_requests (therapist_id, requested_at)"
        " SELECT t.therapist_id, '-infinity' FROM turn, therapists t"
        " JOIN availability a USING (therapist_id) WHERE t.published",
        every_s,
    )
    return int(status.split()[-1])
