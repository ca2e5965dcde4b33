"""SQL of booking a time: a session claims its time as five-minute cells in the statement
that books it (first claim wins, `book`), without any therapist-wide lock; and the one
round-trip view a booking decides on (`booking_view`)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from booking.domain.availability import Busy
from booking.store.common import LIVE_SQL, epoch_us_sql, with_moments
from chassis import observability, outbox
from contracts import EventPayload

CELL = timedelta(minutes=5)
NEARBY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cells_of(starts_at: datetime, ends_at: datetime, buffer_minutes: int) -> list[datetime]:
    """The five-minute cells wholly inside the therapist's time of a session, [start, end +
    buffer), ascending: two sessions whose times overlap by at least a cell claim a cell in
    common, and two that do not overlap never do (the exclusion constraint sees the rest)."""
    return list(_cells(starts_at, ends_at, buffer_minutes))


@functools.lru_cache(maxsize=4096)  # bookings try the same times over and over
def _cells(starts_at: datetime, ends_at: datetime, buffer_minutes: int) -> tuple[datetime, ...]:
    first = -((_EPOCH - starts_at) // CELL)  # ceil
    last = (ends_at + timedelta(minutes=buffer_minutes) - _EPOCH) // CELL  # floor
    return tuple(_EPOCH + CELL * n for n in range(first, last))


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
    -- Locks the course and gives it a new revision (its sessions change: cached views of it
    -- are stale now, see book_one).
    UPDATE courses c SET revision = nextval('revisions') FROM free
    WHERE free.free AND c.course_id = $1 AND c.status = 'active' AND c.planned_sessions = $2
      AND c.session_minutes = $3
      AND EXISTS (SELECT 1 FROM therapists t WHERE t.therapist_id = c.therapist_id
                  AND t.published)
    RETURNING c.course_id
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
    None), with `therapist_revision` and `availability_revision` (NULL without hours); the
    course's `sessions` (`view_sessions`); the answer already given to (actor, key) as
    `earlier_hash` and `earlier_response` (NULL when none); and `nearby`: both
    calendars' busy times within NEARBY of `starts_at` (`nearby_of`)."""
    return await conn.fetchrow(
        "SELECT c.*, t.time_zone, t.published, t.practice_address,"
        " t.revision AS therapist_revision, a.revision AS availability_revision,"
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
        f"   AND s.{LIVE_SQL})"
        "  OR (s.client_id = c.client_id AND s.client_span && p.near"
        f"   AND s.{LIVE_SQL})) ORDER BY s.starts_at) AS nearby"
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


# --------------------------------------------------------------------------- one session

# The columns of a session booked by `book_one` besides those it checks by (course, client,
# therapist, start, end): its parameters from $14 on; the window of busy times read with a
# refusal, the calendar revision kept and the events follow them.
_ONE_COLUMNS = (
    "session_id",
    "number",
    "phase",
    "buffer_minutes",
    "time_zone",
    "mode",
    "meeting_url",
    "practice_address",
    "booked_by",
    "policy_version",
)
_ONE_NEAR = 14 + len(_ONE_COLUMNS)
# The SQL function book_one (migration 20261204060000): the window and the calendar revision,
# then the event's outbox columns (chassis.outbox.event_row) follow the session's.
# The busy times it answers come back as microseconds since the epoch (`moments`).
_BUSY_ARRAYS = ("nearby_starts", "nearby_ends", "client_starts", "client_ends")
_BOOK_ONE = (
    "SELECT b.verdict, b.revision, b.earlier_hash, b.earlier_response, b.calendar_revision, "
    + ", ".join(
        f"CASE WHEN b.{name} IS NOT NULL THEN array(SELECT {epoch_us_sql('t.at')}"
        f" FROM unnest(b.{name}) WITH ORDINALITY AS t(at, n) ORDER BY t.n) END AS {name}"
        for name in _BUSY_ARRAYS
    )
    + f" FROM book_one({', '.join(f'${n}' for n in range(1, _ONE_NEAR + 9))}) AS b"
)


async def book_one(
    conn: asyncpg.Connection,
    *,
    decided_on: tuple[uuid.UUID, int, uuid.UUID, int, int],
    session: dict[str, Any],
    answer: tuple[uuid.UUID, str, str, str],
    event: EventPayload,
    near: tuple[datetime, datetime],
    calendar: int | None = None,
) -> dict[str, Any]:
    """Book one session in ONE statement, without a transaction of the caller's, if what it
    was decided on still holds: `decided_on` is (course id, course revision, therapist id,
    therapist revision, availability revision). Claims its cells (ascending, first claim
    wins), inserts the session, the idempotency answer (actor, key, request hash,
    response as JSON text), its event and a summary request, and gives the course a new revision.

    The row's `verdict`: 'booked' (`revision`: the course's new revision); 'earlier' (the
    key was used before: `earlier_hash`, `earlier_response`, nothing written); 'stale' (a
    revision moved: nothing written); 'taken' or 'client_busy' (a committed booking holds
    the time: nothing written; also when another booking claimed the time meanwhile), with
    the busy times in the window `near` (since, until): `client_starts` and `client_ends`
    the client's, `nearby_starts` and `nearby_ends` the therapist's, NULL when
    `calendar_revision` (their calendar's revision now, NULL before its first change) is
    `calendar` (the revision of the therapist's busy times the caller kept).
    Raises ExclusionViolationError when the exclusion constraints refuse the session (time
    that does not fill whole cells), UniqueViolationError for a key or a place in the plan
    taken meanwhile; nothing is written then."""
    course_id, revision, therapist_id, therapist_revision, availability_revision = decided_on
    actor_id, key, request_hash, response = answer
    starts_at, ends_at = session["starts_at"], session["ends_at"]
    row = await conn.fetchrow(
        _BOOK_ONE,
        course_id,
        revision,
        therapist_id,
        therapist_revision,
        availability_revision,
        _cells(starts_at, ends_at, session["buffer_minutes"]),
        session["client_id"],
        actor_id,
        key,
        request_hash,
        response,  # JSON text: read as JSON only when it is stored
        starts_at,
        ends_at,
        *(session[name] for name in _ONE_COLUMNS),
        *near,
        calendar,
        *outbox.event_row(outbox.envelope_for(event), observability.trace_headers()),
    )
    assert row is not None
    return busy_as_moments(row)


def busy_as_moments(row: asyncpg.Record) -> dict[str, Any]:
    """A `book_one` (or `_BUSY`, `_CHECK_MANY`) row, its busy times made datetimes."""
    return with_moments(row, _BUSY_ARRAYS)


# The pieces the questions below are written of (SQL text from SQL expressions).
def _refused(alias: str) -> str:
    """SQL: the verdict of `alias` is a refusal (the busy times are read for it)."""
    return f"{alias}.verdict IN ('taken', 'client_busy')"


def _moved(revision: str, kept: str) -> str:
    """SQL: a calendar's `revision` is not the one `kept` (or it has none yet)."""
    return f"({revision} IS NULL OR {revision} IS DISTINCT FROM {kept})"


def _verdict(
    earlier: str,
    decided_on: tuple[str, str, str, str, str],
    taken: str,
    client: str,
    span: tuple[str, str],
) -> str:
    """SQL of the verdict `book_one` reaches before it writes, from SQL expressions: the hash
    of an earlier answer to the key, the five of `decided_on`, whether a claimed cell holds
    the time, the client and the session's [start, end)."""
    course, revision, therapist, therapist_revision, availability_revision = decided_on
    # The course's revision as a scalar subquery: asked for many bookings at once, each is
    # looked up by its key (an EXISTS may be hashed over the whole table instead).
    return f"""CASE WHEN {earlier} IS NOT NULL THEN 'earlier'
                WHEN NOT ((SELECT c.revision = {revision} FROM courses c
                           WHERE c.course_id = {course}) IS TRUE
                          AND EXISTS (SELECT FROM therapists t WHERE t.therapist_id = {therapist}
                                      AND t.revision = {therapist_revision})
                          AND EXISTS (SELECT FROM availability a WHERE a.therapist_id = {therapist}
                                      AND a.revision = {availability_revision})) THEN 'stale'
                WHEN {taken} THEN 'taken'
                WHEN EXISTS (SELECT FROM sessions s WHERE s.client_id = {client}
                             AND s.client_span && tstzrange({span[0]}, {span[1]})
                             AND s.{LIVE_SQL})
                     THEN 'client_busy'
                ELSE 'free' END"""


def _busy_of(alias: str, owner: str, span: str, window: str, wanted: str) -> str:
    """A read of one calendar's live busy times in `window` (two parameters), when `wanted`."""
    return f"""LEFT JOIN LATERAL (
    SELECT coalesce(array_agg({epoch_us_sql("s.starts_at")}), '{{}}') AS starts,
           coalesce(array_agg({epoch_us_sql("s.ends_at")}), '{{}}') AS ends
    FROM sessions s
    WHERE {wanted} AND s.{owner} AND s.{span} && tstzrange({window}) AND s.{LIVE_SQL}
) {alias} ON {wanted}"""


# What book_one decides before it writes, as one plain statement (no function call: one
# executor start instead of one per statement of the function, and 12 parameters instead of
# 40). Parameters: the five of `decided_on`, the first and the last cell, client, actor, key,
# start, end. One snapshot answers the verdict and both calendars' revisions.
# It stays this small on purpose: every table and index a statement touches is locked for
# it, and past sixteen a backend's locks leave its own fast-path slots for the lock table
# all backends share. With the busy-time reads of a refusal in it, the statement cost about
# twice as much Postgres time with 32 clients at once (about the same with one); those reads
# are a second statement (`_BUSY`), sent only for a refusal whose calendars moved.
# The client's calendar revision is the newest of their courses' revisions: every change of
# a course's sessions gives the course a new revision from one sequence (what the kept
# course contexts rely on too), so any change of the client's sessions moves the newest, and
# nothing is written for it.
_DECIDED_ON = ("$1", "$2", "$3", "$4", "$5")
_CHECK = f"""
SELECT verdict, earlier_hash, earlier_response,
       CASE WHEN {_refused("asked")} THEN
           (SELECT cal.revision FROM calendar_revisions cal WHERE cal.therapist_id = $3)
       END AS calendar_revision,
       CASE WHEN {_refused("asked")} THEN
           (SELECT max(o.revision) FROM courses o WHERE o.client_id = $8)
       END AS client_revision
FROM (
    SELECT k.request_hash AS earlier_hash, k.response AS earlier_response,
           {_verdict("k.request_hash", _DECIDED_ON, "cells.taken", "$8", ("$11", "$12"))}
           AS verdict
    FROM (SELECT EXISTS (SELECT FROM claimed_cells WHERE therapist_id = $3
                         AND cell BETWEEN $6 AND $7) AS taken) AS cells
    LEFT JOIN idempotency_keys k ON k.actor_id = $9 AND k.key = $10
    OFFSET 0  -- (kept a subquery: the verdict is worked out once, not once per use)
) AS asked
OFFSET 0  -- (the revisions are read once: not once per use by `_CHECK_READING`)
"""


# A refusal's busy times in a window: the therapist's ($1) when $5, the client's ($2) when $6.
_BUSY = f"""
SELECT t.starts AS nearby_starts, t.ends AS nearby_ends,
       cl.starts AS client_starts, cl.ends AS client_ends
FROM (SELECT) AS one
{_busy_of("t", "therapist_id = $1", "therapist_span", "$3, $4", "$5::boolean")}
{_busy_of("cl", "client_id = $2", "client_span", "$3, $4", "$6::boolean")}
"""

# `_CHECK` and, for a refusal, the therapist's busy times in the window ($13, $14) and the
# client's unless their revision is the one kept ($15), in one round trip: for a question
# sent with no therapist's busy times kept, whose refusal reads them whatever the revision
# (two round trips would cost more than the larger statement).
_CLIENT_READ = f"{_refused('c')} AND {_moved('c.client_revision', '$15::bigint')}"
_CHECK_READING = f"""
SELECT c.*, t.starts AS nearby_starts, t.ends AS nearby_ends,
       cl.starts AS client_starts, cl.ends AS client_ends
FROM ({_CHECK}) AS c
{_busy_of("t", "therapist_id = $3", "therapist_span", "$13, $14", _refused("c"))}
{_busy_of("cl", "client_id = $8", "client_span", "$13, $14", _CLIENT_READ)}
"""


# Both calendars' busy times in a window ($3, $4), with the therapist's calendar revision:
# the therapist's ($1) only when the revision is not the one kept ($5), the client's ($2).
_CALENDARS_IN = f"""
SELECT c.revision AS calendar_revision, t.starts AS nearby_starts, t.ends AS nearby_ends,
       cl.starts AS client_starts, cl.ends AS client_ends
FROM (SELECT (SELECT cal.revision FROM calendar_revisions cal WHERE cal.therapist_id = $1)
      AS revision OFFSET 0) AS c  -- (summed once: not once per use of c.revision)
{_busy_of("t", "therapist_id = $1", "therapist_span", "$3, $4", _moved("c.revision", "$5::bigint"))}
{_busy_of("cl", "client_id = $2", "client_span", "$3, $4", "true")}
"""


async def calendars_in(
    conn: asyncpg.Connection,
    therapist_id: uuid.UUID,
    client_id: uuid.UUID,
    window: tuple[datetime, datetime],
    calendar: int | None = None,
) -> dict[str, Any]:
    """The therapist's and the client's live busy times in `window` (since, until), one round
    trip, as `book_one` answers a refusal: `calendar_revision`, `nearby_starts` and
    `nearby_ends` (the therapist's; NULL when the revision is `calendar`, the one of the busy
    times the caller kept), `client_starts` and `client_ends`; each pair in the same order,
    not sorted."""
    row = await conn.fetchrow(_CALENDARS_IN, therapist_id, client_id, *window, calendar)
    assert row is not None
    return busy_as_moments(row)


async def check_time(
    conn: asyncpg.Connection,
    *,
    decided_on: tuple[uuid.UUID, int, uuid.UUID, int, int],
    client_id: uuid.UUID,
    span: tuple[datetime, datetime, int],
    key: tuple[uuid.UUID, str],
    near: tuple[datetime, datetime],
    calendar: int | None = None,
    client_calendar: int | None = None,
) -> dict[str, Any]:
    """What `book_one` would answer for a session at `span` (start, end, buffer minutes),
    without booking it: its verdict is 'free' where `book_one` would book (the same row,
    with `client_revision`; the client's busy times are NULL when it is `client_calendar`,
    the revision of the client's busy times the caller kept). For a time believed taken: the
    question is smaller than the booking. One round trip, two for a refusal whose calendars
    moved since the revisions kept (the busy times are read after the revisions: a change
    committing between the two only makes the revision kept older than the busy times)."""
    starts_at, ends_at, buffer_minutes = span
    actor_id, idempotency_key = key
    cells = _cells(starts_at, ends_at, buffer_minutes)
    asked = (
        *decided_on,
        cells[0] if cells else None,
        cells[-1] if cells else None,
        client_id,
        actor_id,
        idempotency_key,
        starts_at,
        ends_at,
    )
    if calendar is None:
        reading = await conn.fetchrow(_CHECK_READING, *asked, *near, client_calendar)
        assert reading is not None
        return {**busy_as_moments(reading), "revision": None}
    row = await conn.fetchrow(_CHECK, *asked)
    assert row is not None
    found = {**row, "revision": None, "nearby_starts": None, "nearby_ends": None}
    found.update(client_starts=None, client_ends=None)
    if row["verdict"] not in ("taken", "client_busy"):
        return found
    therapist_moved = row["calendar_revision"] is None or row["calendar_revision"] != calendar
    client_moved = row["client_revision"] is None or row["client_revision"] != client_calendar
    if therapist_moved or client_moved:
        busy = await conn.fetchrow(
            _BUSY, decided_on[2], client_id, *near, therapist_moved, client_moved
        )
        assert busy is not None
        found.update(busy_as_moments(busy))
    return found


# `check_time` for many bookings of one therapist at once (those that waited for one booking
# in flight and now ask whether their times are free): one statement, the therapist's
# calendar revision and busy times in the window ($14, $15) read once (only when not at the
# revision kept, $16), each booking's own answer, decision revisions, cells and client
# calendar as `_CHECK` reads them. Parameters: arrays of course id, course revision,
# therapist revision, availability revision, first cell, last cell, client, actor, key,
# start, end, client calendar revision kept ($1..$12); therapist ($13).
_EACH_VERDICT = _verdict(
    "k.request_hash",
    ("q.course_id", "q.revision", "$13", "q.therapist_revision", "q.availability_revision"),
    "EXISTS (SELECT FROM claimed_cells WHERE therapist_id = $13"
    " AND cell BETWEEN q.first_cell AND q.last_cell)",
    "q.client_id",
    ("q.starts_at", "q.ends_at"),
)
_THERAPIST_MOVED = _moved("c.revision", "$16::bigint")
_EACH_CLIENT_READ = f"{_refused('r')} AND {_moved('r.client_revision', 'r.client_kept')}"
_CHECK_MANY = f"""
WITH verdict AS MATERIALIZED (
    SELECT q.n, q.client_id, q.client_kept,
           k.request_hash AS earlier_hash, k.response AS earlier_response,
           {_EACH_VERDICT} AS verdict
    FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[],
                $6::timestamptz[], $7::uuid[], $8::uuid[], $9::text[], $10::timestamptz[],
                $11::timestamptz[], $12::bigint[])
         WITH ORDINALITY AS q(course_id, revision, therapist_revision, availability_revision,
                              first_cell, last_cell, client_id, actor_id, key, starts_at,
                              ends_at, client_kept, n)
    -- (each booking's answer looked up by its key: a join may hash the whole table)
    LEFT JOIN LATERAL (SELECT k.request_hash, k.response FROM idempotency_keys k
                       WHERE k.actor_id = q.actor_id AND k.key = q.key OFFSET 0) AS k ON true
), calendar AS MATERIALIZED (
    SELECT (SELECT cal.revision FROM calendar_revisions cal WHERE cal.therapist_id = $13)
           AS revision
), therapist AS MATERIALIZED (
    SELECT t.starts, t.ends FROM calendar c
    {_busy_of("t", "therapist_id = $13", "therapist_span", "$14, $15", _THERAPIST_MOVED)}
), refused AS MATERIALIZED (
    SELECT v.*, CASE WHEN {_refused("v")} THEN
               (SELECT max(o.revision) FROM courses o WHERE o.client_id = v.client_id)
           END AS client_revision
    FROM verdict v
)
SELECT r.verdict, NULL::bigint AS revision, r.earlier_hash, r.earlier_response,
       CASE WHEN {_refused("r")} THEN c.revision END AS calendar_revision,
       CASE WHEN {_refused("r")} THEN t.starts END AS nearby_starts,
       CASE WHEN {_refused("r")} THEN t.ends END AS nearby_ends,
       r.client_revision, cl.starts AS client_starts, cl.ends AS client_ends
FROM refused r CROSS JOIN calendar c CROSS JOIN therapist t
{_busy_of("cl", "client_id = r.client_id", "client_span", "$14, $15", _EACH_CLIENT_READ)}
ORDER BY r.n
"""


async def check_times(
    conn: asyncpg.Connection,
    *,
    therapist_id: uuid.UUID,
    asked: Sequence[dict[str, Any]],
    near: tuple[datetime, datetime],
    calendar: int | None = None,
) -> list[dict[str, Any]]:
    """`check_time` for many bookings of one therapist in one round trip, each in `asked` a
    dict of `check_time`'s arguments (`decided_on`, `client_id`, `span`, `key`,
    `client_calendar`), all read in the window `near` with the therapist's busy times kept
    at `calendar`: their rows, in order, as `check_time` answers them."""
    spans = [a["span"] for a in asked]
    cells = [_cells(start, end, buffer) for start, end, buffer in spans]
    rows = await conn.fetch(
        _CHECK_MANY,
        [a["decided_on"][0] for a in asked],
        [a["decided_on"][1] for a in asked],
        [a["decided_on"][3] for a in asked],
        [a["decided_on"][4] for a in asked],
        [c[0] if c else None for c in cells],
        [c[-1] if c else None for c in cells],
        [a["client_id"] for a in asked],
        [a["key"][0] for a in asked],
        [a["key"][1] for a in asked],
        [start for start, _, _ in spans],
        [end for _, end, _ in spans],
        [a["client_calendar"] for a in asked],
        therapist_id,
        *near,
        calendar,
    )
    return [busy_as_moments(row) for row in rows]
