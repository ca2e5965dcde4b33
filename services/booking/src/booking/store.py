"""All SQL of booking, one place per table. Functions take a connection; callers own the
transaction. Nothing takes a therapist-wide lock: a booking claims its time as cells in the
statement that books (`book`), and changes to a course lock that course's row."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from booking.domain.availability import Busy
from chassis import outbox
from contracts import EventPayload

LIVE = ("booked", "attended", "no_show")  # statuses that occupy time (the constraints' WHERE)
# The same, as SQL the planner can match to the exclusion constraints' partial indexes.
_LIVE_SQL = "status IN ('booked', 'attended', 'no_show')"
CELL = timedelta(minutes=5)
NEARBY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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


async def lock_course(conn: asyncpg.Connection, course_id: uuid.UUID) -> asyncpg.Record:
    """The course, locked until the transaction ends: changes of one course (cancel, move,
    end, replan, attendance) queue here, and a booking of it (`book`, which share-locks the
    row) either lands before and is seen, or comes after and sees the change."""
    row = await conn.fetchrow("SELECT * FROM courses WHERE course_id = $1 FOR UPDATE", course_id)
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


async def active_courses_between(
    conn: asyncpg.Connection, client_id: uuid.UUID, therapist_id: uuid.UUID
) -> list[Any]:
    return list(
        await conn.fetch(
            "SELECT * FROM courses WHERE client_id = $1 AND therapist_id = $2 AND status = 'active'"
            " ORDER BY started_at",
            client_id,
            therapist_id,
        )
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
        f"  AND {_LIVE_SQL}) OR (client_id = $2 AND client_span && tstzrange($3, $4)"
        f"  AND {_LIVE_SQL})) AND session_id IS DISTINCT FROM $5 ORDER BY starts_at",
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


# --------------------------------------------------------------------------- booking


def cells_of(starts_at: datetime, ends_at: datetime, buffer_minutes: int) -> list[datetime]:
    """The five-minute cells wholly inside the therapist's time of a session, [start, end +
    buffer): two sessions whose times overlap by at least a cell claim a cell in common, and
    two that do not overlap never do (the exclusion constraint sees the rest)."""
    first = -((_EPOCH - starts_at) // CELL)  # ceil
    last = (ends_at + timedelta(minutes=buffer_minutes) - _EPOCH) // CELL  # floor
    return [_EPOCH + CELL * n for n in range(first, last)]


_SESSION_COLUMNS = (
    ("session_id", "uuid"),
    ("course_id", "uuid"),
    ("client_id", "uuid"),
    ("therapist_id", "uuid"),
    ("number", "integer"),
    ("phase", "text"),
    ("starts_at", "timestamptz"),
    ("ends_at", "timestamptz"),
    ("buffer_minutes", "integer"),
    ("time_zone", "text"),
    ("mode", "text"),
    ("meeting_url", "text"),
    ("practice_address", "text"),
    ("booked_by", "text"),
    ("series_id", "uuid"),
    ("policy_version", "text"),
)


def _unnest(columns: Sequence[tuple[str, str]], first: int) -> tuple[str, str]:
    """(`unnest($first::t[], ...) AS alias(columns)` arguments, column names)."""
    arrays = ", ".join(f"${first + n}::{kind}[]" for n, (_, kind) in enumerate(columns))
    return arrays, ", ".join(name for name, _ in columns)


_SESSION_ARRAYS, _SESSION_NAMES = _unnest(_SESSION_COLUMNS, 11)
# The events go in as chassis.outbox writes them (six arrays from this parameter on).
_EVENTS_FROM = 11 + len(_SESSION_COLUMNS)
_BOOK = f"""
WITH free AS MATERIALIZED (
    -- A cell claimed by a committed booking refuses at once: nothing locked or written.
    SELECT NOT EXISTS (SELECT FROM claimed_cells
                       WHERE therapist_id = $4 AND cell = ANY($5::timestamptz[])) AS free
), course AS MATERIALIZED (
    SELECT c.course_id FROM free, courses c
    WHERE free.free AND c.course_id = $1 AND c.status = 'active' AND c.planned_sessions = $2
      AND c.session_minutes = $3
      AND EXISTS (SELECT 1 FROM therapists t WHERE t.therapist_id = c.therapist_id
                  AND t.published)
    FOR SHARE OF c
), claimed AS (
    INSERT INTO claimed_cells (therapist_id, cell, session_id)
    SELECT $4, claim.cell, claim.session_id
    FROM course, unnest($5::timestamptz[], $6::uuid[]) AS claim(cell, session_id)
    ORDER BY claim.cell
    ON CONFLICT DO NOTHING
    RETURNING 1
), verdict AS MATERIALIZED (
    SELECT free.free, EXISTS (SELECT 1 FROM course) AS open,
           (SELECT count(*) FROM claimed) = cardinality($5::timestamptz[]) AS won
    FROM free
), booked AS (
    INSERT INTO sessions ({_SESSION_NAMES}, client_span, therapist_span)
    SELECT {_SESSION_NAMES}, tstzrange(starts_at, ends_at),
           tstzrange(starts_at, ends_at + make_interval(mins => buffer_minutes))
    FROM verdict, unnest({_SESSION_ARRAYS}) AS s({_SESSION_NAMES})
    WHERE verdict.open AND verdict.won
    RETURNING 1
), answered AS (
    INSERT INTO idempotency_keys (actor_id, key, request_hash, response)
    SELECT $7, $8, $9, $10 FROM verdict WHERE verdict.open AND verdict.won
    RETURNING 1
), published AS (
    {outbox.events_insert(_EVENTS_FROM)}
    WHERE EXISTS (SELECT FROM verdict WHERE verdict.open AND verdict.won)
), requested AS (
    INSERT INTO summary_requests (therapist_id)
    SELECT $4 FROM verdict WHERE verdict.open AND verdict.won
    RETURNING 1
)
SELECT CASE WHEN NOT free THEN false
            WHEN NOT open THEN refuse_booking('changed')
            WHEN NOT won THEN refuse_booking('taken')
            ELSE true END
FROM verdict
"""


async def book(
    conn: asyncpg.Connection,
    *,
    course: asyncpg.Record | dict[str, Any],
    sessions: Sequence[dict[str, Any]],
    answer: tuple[uuid.UUID, str, str, dict[str, Any]],
    events: Sequence[EventPayload],
) -> bool:
    """Book sessions of one course in ONE statement, without a transaction of the caller's:
    claim their cells (ascending, first claim wins), insert the sessions, the idempotency
    answer (actor, key, request hash, response), the events and a summary request. False,
    with nothing locked or written, when a committed booking holds one of the cells already.
    Raises ExclusionViolationError when the time was taken meanwhile (cells, or the exclusion
    constraints), SerializationError when the course closed or changed its plan (or the
    therapist stopped taking bookings) since it was read, UniqueViolationError for a key or a
    place in the plan taken meanwhile; nothing is written then."""
    claims = sorted(
        (cell, s["session_id"])
        for s in sessions
        for cell in cells_of(s["starts_at"], s["ends_at"], s["buffer_minutes"])
    )
    actor_id, key, request_hash, response = answer
    booked: bool = await conn.fetchval(
        _BOOK,
        course["course_id"],
        course["planned_sessions"],
        course["session_minutes"],
        course["therapist_id"],
        [cell for cell, _ in claims],
        [session_id for _, session_id in claims],
        actor_id,
        key,
        request_hash,
        response,
        *([s[name] for s in sessions] for name, _ in _SESSION_COLUMNS),
        *outbox.event_columns([outbox.envelope_for(event) for event in events]),
    )
    return booked


async def claim(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, session_id: uuid.UUID, cells: list[datetime]
) -> bool:
    """Claim a session's cells in the caller's transaction; False if any was taken (the caller
    rolls back what was claimed)."""
    claimed = await conn.fetchval(
        "WITH claimed AS (INSERT INTO claimed_cells (therapist_id, cell, session_id)"
        " SELECT $1, cell, $2 FROM unnest($3::timestamptz[]) AS cell ORDER BY cell"
        " ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM claimed",
        therapist_id,
        session_id,
        sorted(cells),
    )
    return bool(claimed == len(cells))


async def release(conn: asyncpg.Connection, session_ids: Sequence[uuid.UUID]) -> None:
    """Give the time of sessions that no longer occupy it back."""
    await conn.execute(
        "DELETE FROM claimed_cells WHERE session_id = ANY($1::uuid[])", list(session_ids)
    )


async def forget_past_cells(conn: asyncpg.Connection, before: datetime) -> int:
    """Cells of time long past: no booking can reach them any more."""
    status = await conn.execute("DELETE FROM claimed_cells WHERE cell < $1", before)
    return int(status.split()[-1])


async def booking_view(
    conn: asyncpg.Connection,
    course_id: uuid.UUID,
    actor_id: uuid.UUID,
    key: str,
    starts_at: datetime,
) -> asyncpg.Record | None:
    """Everything a booking decides on, in one round trip: the course's columns; its
    therapist's `time_zone`, `published`, `practice_address` and `availability` (a dict or
    None); the course's `sessions` (`view_sessions`); the answer already given to (actor,
    key) as `earlier_hash` and `earlier_response` (NULL when none); and `nearby`: both
    calendars' busy times within NEARBY of `starts_at` (`nearby_of`)."""
    return await conn.fetchrow(
        "SELECT c.*, t.time_zone, t.published, t.practice_address,"
        " to_jsonb(a) AS availability,"
        " array(SELECT row(s.session_id, s.number, s.phase, s.starts_at, s.status, s.phq9_total)"
        "  FROM sessions s WHERE s.course_id = c.course_id ORDER BY s.starts_at, s.number)"
        "  AS sessions,"
        " k.request_hash AS earlier_hash, k.response AS earlier_response,"
        # Both calendars within NEARBY of the requested start, to check it and to offer the
        # alternatives of a refusal without another round trip. (No branches on the
        # parameters: one generic plan serves every booking, without planning each one.)
        " array(SELECT row(s.starts_at, s.ends_at, s.therapist_id = c.therapist_id,"
        "  s.client_id = c.client_id) FROM sessions s"
        "  WHERE ((s.therapist_id = c.therapist_id AND s.therapist_span && p.near"
        f"   AND s.{_LIVE_SQL})"
        "  OR (s.client_id = c.client_id AND s.client_span && p.near"
        f"   AND s.{_LIVE_SQL})) ORDER BY s.starts_at) AS nearby"
        " FROM (SELECT tstzrange($4::timestamptz - $5::interval, $4::timestamptz + $5::interval)"
        "  AS near) p,"
        " courses c JOIN therapists t USING (therapist_id)"
        " LEFT JOIN availability a USING (therapist_id)"
        " LEFT JOIN idempotency_keys k ON k.actor_id = $2 AND k.key = $3"
        " WHERE c.course_id = $1",
        course_id,
        actor_id,
        key,
        starts_at,
        NEARBY,
    )


def nearby_of(view: asyncpg.Record) -> tuple[list[Busy], list[Busy]]:
    """The therapist's and the client's busy times near the start of a `booking_view`."""
    therapist = [(start, end) for start, end, theirs, _ in view["nearby"] if theirs]
    client = [(start, end) for start, end, _, clients in view["nearby"] if clients]
    return therapist, client


def view_sessions(view: asyncpg.Record) -> list[dict[str, Any]]:
    """The course's sessions of a `booking_view`, as rows."""
    names = ("session_id", "number", "phase", "starts_at", "status", "phq9_total")
    return [dict(zip(names, session, strict=True)) for session in view["sessions"]]


async def slot_view(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, client_id: uuid.UUID | None
) -> asyncpg.Record:
    """For listing free slots, in one round trip: the therapist's row with `availability`
    (columns NULL when unknown), whether the client has a course with them (`has_course`), and
    the length of the client's latest course with them (`course_minutes`)."""
    row = await conn.fetchrow(
        "SELECT t.time_zone, t.published,"
        " (SELECT to_jsonb(a) FROM availability a WHERE a.therapist_id = $1) AS availability,"
        " EXISTS (SELECT 1 FROM courses c WHERE c.client_id = $2 AND c.therapist_id = $1)"
        "  AS has_course,"
        " (SELECT c.session_minutes FROM courses c WHERE c.client_id = $2 AND c.therapist_id = $1"
        "  ORDER BY c.status = 'active' DESC, c.started_at DESC LIMIT 1) AS course_minutes"
        " FROM (SELECT 1) AS one LEFT JOIN therapists t ON t.therapist_id = $1",
        therapist_id,
        client_id,
    )
    assert row is not None
    return row


# --------------------------------------------------------------------------- outbox


async def add_events(conn: asyncpg.Connection, events: Sequence[EventPayload]) -> None:
    """Many events in the caller's transaction, in one statement (as chassis.outbox adds
    them, with the correlation of the current request or event)."""
    await outbox.add_envelope(conn, *(outbox.envelope_for(event) for event in events))


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
        f" AND {_LIVE_SQL} ORDER BY therapist_id, starts_at",
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


# --------------------------------------------------------------------------- patient rights


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
