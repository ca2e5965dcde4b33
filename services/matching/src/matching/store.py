"""All SQL of the matching service (asyncpg), one place per table.

Every function runs on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import asyncpg

from chassis import audit, outbox
from contracts import Envelope, EventPayload
from contracts.events import (
    MatchAlternative,
    MatchReason,
    TherapistAvailabilityPublished,
    TherapistProfilePublished,
    TherapistProfileWithdrawn,
)
from contracts.methods import LICENSED_PROFESSIONS
from matching.domain.intake import Intake, WeeklyWindow
from matching.domain.lifecycle import (
    AWAITING_CLINICIAN,
    CURRENT_MATCH,
    EXCLUDING_MATCH,
    IN_PROGRESS,
    REPLACEABLE,
    IntakeStatus,
    MatchStatus,
)
from matching.domain.matcher import IntakeNeeds, Match, TherapistCandidate
from matching.domain.screening import Screening

# The ids of $1 (a uuid[]) where the hot paths look rows up by several keys (claims, the
# index's re-reads, a batch's intakes). Behind a subquery the planner sees the list's
# length in no plan, so Postgres settles on the statement's cached generic plan; with
# `= ANY($1)` each call was planned anew (a one-id plan always looks cheaper than the
# generic one, costed for ten), 0.2-0.5 ms of the server per call, twice per decision.
_ANY_OF_IDS = "ANY(ARRAY(SELECT unnest($1::uuid[])))"

# --------------------------------------------------------------------------- claims and wake-ups


async def lock_therapist(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> bool:
    """Hold the therapist's row until commit, waiting for a decision that holds it; False:
    not offered. Decisions on different therapists never wait."""
    locked = await conn.fetchval(
        "SELECT true FROM therapists t WHERE t.therapist_id = $1 AND NOT t.withdrawn"
        f" AND {_WHOLE_PROFILE} FOR UPDATE",
        therapist_id,
    )
    return bool(locked)


async def claim_unless_held(
    conn: asyncpg.Connection, therapist_id: uuid.UUID
) -> TherapistCandidate | None:
    """The therapist's row locked until commit and the therapist as it is now, in one round
    trip; None when another decision holds the row (or the therapist is not offered): then
    `lock_therapist` waits for it. Never waits itself."""
    row = await conn.fetchrow(
        _CANDIDATES + " AND t.therapist_id = $1 FOR UPDATE OF t SKIP LOCKED", therapist_id
    )
    return None if row is None else _candidate(row)


async def claim_all_unless_held(
    conn: asyncpg.Connection, therapist_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, TherapistCandidate]:
    """`claim_unless_held` for several therapists in one round trip: those returned are
    locked until commit; those left out are held by another decision (or not offered)."""
    rows = await conn.fetch(
        _CANDIDATES + f" AND t.therapist_id = {_ANY_OF_IDS}"
        " ORDER BY t.therapist_id FOR UPDATE OF t SKIP LOCKED",
        list(therapist_ids),
    )
    return {row["therapist_id"]: _candidate(row) for row in rows}


def therapists_channel(schema: str) -> str:
    return f"{schema}_therapists"


async def therapist_changed(conn: asyncpg.Connection, therapist_id: uuid.UUID) -> None:
    """Tell every worker's candidate index to read the therapist again (on commit only).
    The payload is the therapist's id; a recorded match adds its own id after a space
    (`record_matches`), so the worker that decided it knows the change for its own."""
    await conn.execute("SELECT pg_notify(current_schema() || '_therapists', $1)", str(therapist_id))


def waitlist_channel(schema: str) -> str:
    return f"{schema}_waitlist"


async def wake_waitlist(conn: asyncpg.Connection) -> None:
    """Ask the waitlist retrier for a pass; delivered only if this transaction commits."""
    schema = await conn.fetchval("SELECT current_schema()")
    await conn.execute("SELECT pg_notify($1, '')", waitlist_channel(schema))


# --------------------------------------------------------------------------- intakes


_INSERT_INTAKE = """
INSERT INTO intakes (
    intake_id, client_id, age, languages, preferred_mode, city, problem_areas, phq9,
    free_text, time_windows, direct_therapist_id, consent_to_treatment,
    consent_to_health_data, phq9_total, severity_band, risk_level, requires_approval,
    method, age_group, status, one_at_a_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
        $18, $19, $20, $21)
"""

# The intake, its audit entry and their events: one statement, atomic on its own.
_SUBMISSION = (
    f"WITH intake AS ({_INSERT_INTAKE}), entry AS ({audit.entry_insert(22)}),"
    f" written AS ({outbox.events_insert(32)}) SELECT WHERE false"
)


async def insert_intake(
    conn: asyncpg.Connection,
    *,
    intake_id: uuid.UUID,
    client_id: uuid.UUID,
    intake: Intake,
    screening: Screening,
    status: IntakeStatus,
    events: Sequence[EventPayload] = (),
    audit_entry: tuple[tuple[Any, ...], EventPayload] | None = None,
) -> None:
    """The intake, and the events announcing it in the same statement (one round trip);
    with `audit_entry` (chassis.audit.entry) the audit entry and its event too, so a
    submission commits on its own in that one round trip. A standard-risk intake is held to
    one in progress per client (UniqueViolationError `intakes_one_at_a_time` when another
    is: `intake_in_progress` tells which)."""
    values = (
        intake_id,
        client_id,
        intake.age,
        list(intake.languages),
        intake.preferred_mode,
        intake.city,
        list(intake.problem_areas),
        list(intake.phq9),
        intake.free_text,
        [w.model_dump(mode="json") for w in intake.time_windows],
        intake.direct_therapist_id,
        intake.consent_to_treatment,
        intake.consent_to_health_data,
        screening.total,
        screening.band,
        screening.risk_level,
        screening.requires_approval,
        screening.method,
        screening.age_group,
        status,
        not screening.escalate,
    )
    if audit_entry is None:
        await outbox.write(conn, _INSERT_INTAKE, *values, events=events)
        return
    entry, recorded = audit_entry
    envelopes = [outbox.envelope_for(e) for e in (*events, recorded)]
    await conn.execute(_SUBMISSION, *values, *entry, *outbox.event_columns(envelopes))


async def replace_waiting(conn: asyncpg.Connection, client_id: uuid.UUID) -> list[uuid.UUID]:
    """The client's intakes still waiting for a therapist (`lifecycle.REPLACEABLE`) marked
    replaced (a new intake of theirs takes their place); their ids. Waits for a decision
    holding one: decided meanwhile, it is not waiting any longer."""
    rows = await conn.fetch(
        "UPDATE intakes SET status = 'replaced', status_since = now()"
        " WHERE client_id = $1 AND status = ANY($2::text[]) RETURNING intake_id",
        client_id,
        list(REPLACEABLE),
    )
    return [r["intake_id"] for r in rows]


async def intake_in_progress(
    conn: asyncpg.Connection, client_id: uuid.UUID, *, other_than: uuid.UUID | None = None
) -> uuid.UUID | None:
    """The client's earliest intake in progress (`lifecycle.IN_PROGRESS`, or matched with no
    course of its match ended yet), if any, `other_than` left out."""
    found: uuid.UUID | None = await conn.fetchval(
        """
        SELECT i.intake_id FROM intakes i
        WHERE i.client_id = $1 AND i.intake_id IS DISTINCT FROM $3
          AND (i.status = ANY($2::text[])
               OR (i.status = 'matched' AND NOT EXISTS (
                   SELECT FROM matches m JOIN courses c ON c.match_id = m.match_id
                   WHERE m.intake_id = i.intake_id AND m.status = 'active'
                     AND c.ended_at IS NOT NULL)))
        ORDER BY i.submitted_at LIMIT 1
        """,
        client_id,
        list(IN_PROGRESS),
        other_than,
    )
    return found


async def get_intake(
    conn: asyncpg.Connection, intake_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT * FROM intakes WHERE intake_id = $1{lock}", intake_id)


async def intake_to_match(conn: asyncpg.Connection, intake_id: uuid.UUID) -> asyncpg.Record | None:
    """The intake, locked until commit, with the therapists it is never matched with again
    (`excluded`: rejected, or switched away from) — one round trip."""
    return await conn.fetchrow(
        """
        SELECT i.*, array(SELECT DISTINCT m.therapist_id FROM matches m
                          WHERE m.intake_id = i.intake_id AND m.status = ANY($2::text[]))
                    AS excluded
        FROM intakes i WHERE i.intake_id = $1 FOR UPDATE OF i
        """,
        intake_id,
        list(EXCLUDING_MATCH),
    )


async def intakes_to_match(
    conn: asyncpg.Connection, intake_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, asyncpg.Record]:
    """`intake_to_match` for several intakes in one round trip (locked in id order)."""
    rows = await conn.fetch(
        f"""
        SELECT i.*, array(SELECT DISTINCT m.therapist_id FROM matches m
                          WHERE m.intake_id = i.intake_id AND m.status = ANY($2::text[]))
                    AS excluded
        FROM intakes i WHERE i.intake_id = {_ANY_OF_IDS}
        ORDER BY i.intake_id FOR UPDATE OF i
        """,
        list(intake_ids),
        list(EXCLUDING_MATCH),
    )
    return {row["intake_id"]: row for row in rows}


def intake_of(row: asyncpg.Record) -> Intake:
    """The intake as stored, rebuilt from its row without the rules of submitting one: an
    erasure empties the city of an in-person intake, and a rule tightened since must not
    make an intake stored before it unreadable (its client's view, the waitlist's pass)."""
    return Intake.model_construct(
        age=row["age"],
        languages=row["languages"],
        preferred_mode=row["preferred_mode"],
        city=row["city"],
        problem_areas=row["problem_areas"],
        phq9=row["phq9"],
        free_text=row["free_text"],
        time_windows=[
            WeeklyWindow.model_construct(
                weekday=w["weekday"],
                start=time.fromisoformat(w["start"]),
                end=time.fromisoformat(w["end"]),
            )
            for w in row["time_windows"]
        ],
        direct_therapist_id=row["direct_therapist_id"],
        consent_to_treatment=row["consent_to_treatment"],
        consent_to_health_data=row["consent_to_health_data"],
    )


def screening_of(row: asyncpg.Record) -> Screening:
    return Screening(
        total=row["phq9_total"],
        band=row["severity_band"],
        risk_level=row["risk_level"],
        requires_approval=row["requires_approval"],
        method=row["method"],
        age_group=row["age_group"],
    )


def needs_of(row: asyncpg.Record, excluded: Iterable[uuid.UUID] | None = None) -> IntakeNeeds:
    """What deciding a stored intake needs (`intake_of`, `screening_of`), the therapists it
    is never matched with again `excluded` (else the row's own `excluded`)."""
    return IntakeNeeds.from_intake(
        row["intake_id"],
        intake_of(row),
        screening_of(row),
        row["excluded"] if excluded is None else excluded,
    )


async def intakes_of_client(conn: asyncpg.Connection, client_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
        SELECT i.intake_id, i.submitted_at, i.status, i.severity_band, i.risk_level, i.method,
               m.match_id, m.therapist_id
        FROM intakes i
        LEFT JOIN matches m ON m.intake_id = i.intake_id AND m.status = ANY($2::text[])
        WHERE i.client_id = $1
        ORDER BY i.submitted_at, i.intake_id
        """,
            client_id,
            list(CURRENT_MATCH),
        )
    )


_SET_STATUS = "UPDATE intakes SET status = $2, status_since = now() WHERE intake_id = $1"
_SET_WAITLISTED = """
UPDATE intakes SET status = 'waitlisted', waitlist_reasons = $2, status_since = $3,
       waitlisted_at = $3
WHERE intake_id = $1
"""


async def set_status(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    status: IntakeStatus,
    *,
    events: Sequence[EventPayload] = (),
) -> None:
    """The new status, and the events announcing it in the same statement (one round trip)."""
    await outbox.write(conn, _SET_STATUS, intake_id, status, events=events)


async def set_waitlisted(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    reasons: Sequence[str],
    *,
    now: datetime,
    events: Sequence[EventPayload] = (),
) -> None:
    await outbox.write(conn, _SET_WAITLISTED, intake_id, list(reasons), now, events=events)


async def record_triage(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    *,
    clinician_id: uuid.UUID,
    decision: str,
    status: IntakeStatus,
) -> None:
    await conn.execute(
        """
        UPDATE intakes SET status = $2, status_since = now(), triaged_by = $3,
               triage_decision = $4, triaged_at = now()
        WHERE intake_id = $1
        """,
        intake_id,
        status,
        clinician_id,
        decision,
    )


async def waitlisted(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """The waitlist, first come first: each intake's place and what deciding it needs
    (`needs_of`), its free text left out (nothing decides on it)."""
    return list(
        await conn.fetch(
            """
            SELECT i.intake_id, i.waitlisted_at, i.age, i.languages, i.preferred_mode, i.city,
                   i.problem_areas, i.phq9, NULL::text AS free_text, i.time_windows,
                   i.direct_therapist_id, i.consent_to_treatment, i.consent_to_health_data,
                   i.phq9_total, i.severity_band, i.risk_level, i.requires_approval,
                   i.method, i.age_group,
                   array(SELECT DISTINCT m.therapist_id FROM matches m
                         WHERE m.intake_id = i.intake_id AND m.status = ANY($1::text[]))
                   AS excluded
            FROM intakes i WHERE i.status = 'waitlisted'
            ORDER BY i.waitlisted_at, i.intake_id
            """,
            list(EXCLUDING_MATCH),
        )
    )


async def waiting_figures(conn: asyncpg.Connection) -> asyncpg.Record:
    """Seconds the oldest high-risk intake has waited for triage (0 when none), and how
    many intakes wait on the waitlist."""
    return await conn.fetchrow(
        """
        SELECT coalesce(extract(epoch FROM now() - min(status_since)
                                FILTER (WHERE status = 'awaiting_triage')), 0)::float8
                   AS triage_oldest_s,
               count(*) FILTER (WHERE status = 'waitlisted') AS waitlisted
        FROM intakes WHERE status IN ('awaiting_triage', 'waitlisted')
        """
    )


async def clinician_queue(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Intakes waiting for a clinician, those awaiting triage (a crisis) first, then the
    longest-waiting first; no answers or free text."""
    return list(
        await conn.fetch(
            """
        SELECT i.intake_id, i.client_id, i.status, i.status_since, i.submitted_at,
               i.risk_level, i.severity_band, i.phq9_total, i.phq9[9] AS self_harm_answer,
               i.age_group, i.method, i.requires_approval, i.free_text IS NOT NULL AS has_free_text,
               m.match_id, m.therapist_id, m.score, m.mode,
               c.clinician_id AS claimed_by, c.claimed_at
        FROM intakes i
        LEFT JOIN matches m ON m.intake_id = i.intake_id AND m.status = 'proposed'
        LEFT JOIN intake_claims c ON c.intake_id = i.intake_id
        WHERE i.status = ANY($1::text[])
        ORDER BY i.status <> 'awaiting_triage', i.status_since, i.intake_id
        LIMIT $2
        """,
            list(AWAITING_CLINICIAN),
            limit,
        )
    )


# --------------------------------------------------------------------------- matches


_MATCH_COLUMNS = """
    match_id, intake_id, client_id, therapist_id, score, mode, reasons, relaxed,
    choice_refused, alternatives, requires_approval, previous_therapist_id, status"""


def _match_values(
    match_id: uuid.UUID,
    intake_id: uuid.UUID,
    client_id: uuid.UUID,
    result: Match,
    requires_approval: bool,
    status: MatchStatus,
    previous_therapist_id: uuid.UUID | None,
) -> tuple[Any, ...]:
    return (
        match_id,
        intake_id,
        client_id,
        result.therapist_id,
        result.score,
        result.mode,
        [r.model_dump(mode="json") for r in result.reasons],
        list(result.relaxed),
        list(result.choice_refused),
        [a.model_dump(mode="json") for a in result.alternatives],
        requires_approval,
        previous_therapist_id,
        status,
    )


@dataclass(frozen=True)
class NewMatch:
    """What `record_match` writes: the match, the intake's new status, and its events."""

    match_id: uuid.UUID
    intake_id: uuid.UUID
    client_id: uuid.UUID
    result: Match
    requires_approval: bool
    status: MatchStatus
    previous_therapist_id: uuid.UUID | None
    intake_status: IntakeStatus
    events: Sequence[EventPayload | Envelope[Any]]


def _record_match_statement() -> str:
    insert_events = outbox.events_insert(16)
    return f"""
        WITH matched AS (
            INSERT INTO matches ({_MATCH_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)),
        changed AS (
            UPDATE intakes SET status = $14, status_since = now() WHERE intake_id = $2),
        announced AS ({insert_events}),
        told AS (SELECT pg_notify(current_schema() || '_therapists', $15))
        SELECT count(*) FROM told
        """


def _record_match_args(match: NewMatch) -> tuple[Any, ...]:
    return (
        *_match_values(
            match.match_id,
            match.intake_id,
            match.client_id,
            match.result,
            match.requires_approval,
            match.status,
            match.previous_therapist_id,
        ),
        match.intake_status,
        f"{match.result.therapist_id} {match.match_id}",
        *outbox.event_columns(
            [e if isinstance(e, Envelope) else outbox.envelope_for(e) for e in match.events]
        ),
    )


async def record_match(
    conn: asyncpg.Connection,
    *,
    match_id: uuid.UUID,
    intake_id: uuid.UUID,
    client_id: uuid.UUID,
    result: Match,
    requires_approval: bool,
    status: MatchStatus,
    previous_therapist_id: uuid.UUID | None,
    intake_status: IntakeStatus,
    events: Sequence[EventPayload],
) -> None:
    """The match, the intake's new status, the events announcing them and the wake-up of
    every worker's index for the therapist (on commit, naming the match) — in one
    statement, one round trip."""
    await record_matches(
        conn,
        [
            NewMatch(
                match_id,
                intake_id,
                client_id,
                result,
                requires_approval,
                status,
                previous_therapist_id,
                intake_status,
                events,
            )
        ],
    )


async def record_matches(conn: asyncpg.Connection, matches: Sequence[NewMatch]) -> None:
    """`record_match` for several matches, pipelined: one round trip for all."""
    if len(matches) == 1:
        await conn.execute(_record_match_statement(), *_record_match_args(matches[0]))
    elif matches:
        await conn.executemany(_record_match_statement(), [_record_match_args(m) for m in matches])


def _claim_and_record_statement() -> str:
    # The match's values cast where they stand (no VALUES list gives them their columns).
    values = (
        "$1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::float8, $6::text, $7::jsonb, $8::text[],"
        " $9::text[], $10::jsonb, $11::boolean, $12::uuid, $13::text"
    )
    claimed = "WHERE EXISTS (SELECT FROM claimed)"
    return f"""
        WITH claimed AS ({_CANDIDATES} AND t.therapist_id = $4 FOR UPDATE OF t SKIP LOCKED),
        matched AS (
            INSERT INTO matches ({_MATCH_COLUMNS}) SELECT {values} {claimed}),
        changed AS (
            UPDATE intakes SET status = $14, status_since = now()
            WHERE intake_id = $2 AND EXISTS (SELECT FROM claimed)),
        announced AS ({outbox.events_insert(16)} {claimed}),
        told AS (SELECT pg_notify(current_schema() || '_therapists', $15) {claimed})
        SELECT c.*, $1::uuid AS recorded_match, (SELECT count(*) FROM told) AS told
        FROM claimed c
        """


async def claim_and_record(
    conn: asyncpg.Connection, matches: Sequence[NewMatch]
) -> dict[uuid.UUID, TherapistCandidate]:
    """`claim_unless_held` of each match's therapist and `record_match` of the match when
    the claim took the row, pipelined: one round trip for all. Returns, by match, the
    therapist as claimed (as it was before that match: each statement sees the ones before
    it); a match left out was not recorded (its therapist is held by another decision, or
    not offered). A match recorded on a therapist that turns out changed since the decision
    saw it is `undo_matches`' to take back."""
    args = [_record_match_args(m) for m in matches]
    if len(args) == 1:
        rows = await conn.fetch(_claim_and_record_statement(), *args[0])
    else:
        rows = await conn.fetchmany(_claim_and_record_statement(), args)
    return {row["recorded_match"]: _candidate(row) for row in rows}


async def undo_matches(
    conn: asyncpg.Connection, matches: Sequence[NewMatch], intakes: Sequence[asyncpg.Record]
) -> None:
    """Take back matches this transaction recorded (`claim_and_record`): the matches, their
    events, and their intakes' status as these rows had it (read at the transaction's
    start, under their lock). The therapists' notifications stay: read again, they are
    what the transaction leaves."""
    await conn.execute(
        """
        WITH gone AS (DELETE FROM matches WHERE match_id = ANY($1::uuid[])),
        unsaid AS (DELETE FROM outbox WHERE event_id = ANY($2::uuid[]))
        UPDATE intakes i SET status = b.status, status_since = b.since
        FROM unnest($3::uuid[], $4::text[], $5::timestamptz[]) AS b(intake_id, status, since)
        WHERE i.intake_id = b.intake_id
        """,
        [m.match_id for m in matches],
        [e.event_id for m in matches for e in m.events if isinstance(e, Envelope)],
        [i["intake_id"] for i in intakes],
        [i["status"] for i in intakes],
        [i["status_since"] for i in intakes],
    )


def match_of(row: asyncpg.Record) -> Match:
    """A stored match as the matcher's result, for explaining it."""
    return Match(
        therapist_id=row["therapist_id"],
        score=row["score"],
        mode=row["mode"],
        reasons=[MatchReason.model_validate(r) for r in row["reasons"]],
        relaxed=list(row["relaxed"]),
        alternatives=[MatchAlternative.model_validate(a) for a in row["alternatives"]],
        choice_refused=list(row["choice_refused"]),
    )


async def current_match(conn: asyncpg.Connection, intake_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM matches WHERE intake_id = $1 AND status = ANY($2::text[])",
        intake_id,
        list(CURRENT_MATCH),
    )


async def get_match(
    conn: asyncpg.Connection, match_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT * FROM matches WHERE match_id = $1{lock}", match_id)


async def set_match_status(
    conn: asyncpg.Connection,
    match_id: uuid.UUID,
    status: MatchStatus,
    *,
    decided_by: uuid.UUID | None = None,
) -> None:
    await conn.execute(
        "UPDATE matches SET status = $2, decided_by = $3, decided_at = now() WHERE match_id = $1",
        match_id,
        status,
        decided_by,
    )


async def excluded_therapists(conn: asyncpg.Connection, intake_id: uuid.UUID) -> set[uuid.UUID]:
    """Therapists this intake is never matched with again: rejected, or switched away from."""
    rows = await conn.fetch(
        "SELECT DISTINCT therapist_id FROM matches WHERE intake_id = $1 AND status = ANY($2)",
        intake_id,
        list(EXCLUDING_MATCH),
    )
    return {row["therapist_id"] for row in rows}


# --------------------------------------------------------------------------- therapist read model


async def apply_profile(conn: asyncpg.Connection, profile: TherapistProfilePublished) -> bool:
    """Store a profile unless a revision at least as new is there. True when it was applied."""
    applied = await conn.fetchval(
        """
        INSERT INTO therapists AS t (
            therapist_id, version, withdrawn, profession, licensed, methods, focus_areas,
            languages, modes, city, age_groups, capacity, accepting_new_clients, time_zone)
        VALUES ($1, $2, false, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT (therapist_id) DO UPDATE SET
            version = excluded.version, withdrawn = false, profession = excluded.profession,
            licensed = excluded.licensed, methods = excluded.methods,
            focus_areas = excluded.focus_areas, languages = excluded.languages,
            modes = excluded.modes, city = excluded.city, age_groups = excluded.age_groups,
            capacity = excluded.capacity, accepting_new_clients = excluded.accepting_new_clients,
            time_zone = excluded.time_zone, updated_at = now()
        WHERE t.version < excluded.version
        RETURNING true
        """,
        profile.therapist_id,
        profile.version,
        profile.profession,
        profile.licensed,
        list(profile.methods),
        list(profile.focus_areas),
        list(profile.languages),
        list(profile.modes),
        profile.city,
        list(profile.age_groups),
        profile.capacity,
        profile.accepting_new_clients,
        profile.time_zone,
    )
    if applied:
        await _rating_of_revision(conn, profile)
    return bool(applied)


async def _rating_of_revision(conn: asyncpg.Connection, profile: TherapistProfilePublished) -> None:
    """The rating a newer profile revision carries is the rating, lower included (reviews
    erased or hidden). A revision without one changes nothing a review brought (it may be
    older than the review: the two travel on different topics), unless a revision had
    carried one before: then every review was taken out."""
    if profile.rating_average is not None and profile.rating_count > 0:
        await conn.execute(
            """
            INSERT INTO therapist_ratings AS r (therapist_id, rating_average, rating_count,
                                               profile_version)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (therapist_id) DO UPDATE SET
                rating_average = excluded.rating_average, rating_count = excluded.rating_count,
                profile_version = excluded.profile_version
            WHERE r.profile_version IS NULL OR r.profile_version < excluded.profile_version
            """,
            profile.therapist_id,
            profile.rating_average,
            profile.rating_count,
            profile.version,
        )
    else:
        await conn.execute(
            "UPDATE therapist_ratings SET rating_average = NULL, rating_count = 0,"
            " profile_version = $2 WHERE therapist_id = $1 AND profile_version < $2",
            profile.therapist_id,
            profile.version,
        )


async def apply_withdrawal(conn: asyncpg.Connection, withdrawal: TherapistProfileWithdrawn) -> bool:
    """Withdraw unless a newer revision is there; at the same version the withdrawal wins."""
    applied = await conn.fetchval(
        """
        INSERT INTO therapists AS t (therapist_id, version, withdrawn) VALUES ($1, $2, true)
        ON CONFLICT (therapist_id) DO UPDATE SET
            version = excluded.version, withdrawn = true, updated_at = now()
        WHERE t.version < excluded.version OR (t.version = excluded.version AND NOT t.withdrawn)
        RETURNING true
        """,
        withdrawal.therapist_id,
        withdrawal.version,
    )
    return bool(applied)


async def apply_rating(
    conn: asyncpg.Connection, therapist_id: uuid.UUID, average: float, count: int
) -> bool:
    """A review's rating (ReviewPublished: no version) while no profile revision has spoken
    of ratings, when it has more reviews behind it than the one kept. True: applied."""
    applied = await conn.fetchval(
        """
        INSERT INTO therapist_ratings AS r (therapist_id, rating_average, rating_count)
        VALUES ($1, $2, $3)
        ON CONFLICT (therapist_id) DO UPDATE SET
            rating_average = excluded.rating_average, rating_count = excluded.rating_count
        WHERE r.profile_version IS NULL AND r.rating_count < excluded.rating_count
        RETURNING true
        """,
        therapist_id,
        average,
        count,
    )
    return bool(applied)


async def apply_availability(
    conn: asyncpg.Connection, summary: TherapistAvailabilityPublished
) -> bool:
    """Keep booking's newest summary (by computed_at). True when it was applied."""
    applied = await conn.fetchval(
        """
        INSERT INTO therapist_availability AS a (therapist_id, computed_at, active_courses,
                                                 free_slots)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (therapist_id) DO UPDATE SET
            computed_at = excluded.computed_at, active_courses = excluded.active_courses,
            free_slots = excluded.free_slots
        WHERE a.computed_at < excluded.computed_at
        RETURNING true
        """,
        summary.therapist_id,
        summary.computed_at,
        summary.active_courses,
        sorted(slot.starts_at for slot in summary.free_slots),
    )
    return bool(applied)


async def course_started(
    conn: asyncpg.Connection,
    *,
    course_id: uuid.UUID,
    therapist_id: uuid.UUID,
    match_id: uuid.UUID | None,
    at: datetime,
) -> None:
    await conn.execute(
        """
        INSERT INTO courses AS c (course_id, therapist_id, match_id, started_at)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (course_id) DO UPDATE SET match_id = excluded.match_id,
                                              started_at = excluded.started_at
        """,
        course_id,
        therapist_id,
        match_id,
        at,
    )


async def course_finished(
    conn: asyncpg.Connection, *, course_id: uuid.UUID, therapist_id: uuid.UUID, at: datetime
) -> None:
    """Completed or ended early; may arrive before its start (another topic)."""
    await conn.execute(
        """
        INSERT INTO courses AS c (course_id, therapist_id, ended_at) VALUES ($1, $2, $3)
        ON CONFLICT (course_id) DO UPDATE SET ended_at = excluded.ended_at
        """,
        course_id,
        therapist_id,
        at,
    )


# A therapist's load, from what booking told us and what matching itself has just promised:
# - booking's last count of active courses, at `computed_at`;
# - plus courses started after that count, minus courses that ended after it
#   (and had started before it, or whose start we never saw);
# - without any count: the courses we saw start and not end;
# - plus current matches booking has not opened a course for yet (matching's own promises,
#   so two intakes in a row cannot both take a therapist's last place).
# A therapist is offered only with a whole profile: a row with a hole (a withdrawal's row made
# offered again by hand, a column added before it is filled, a row from a newer version) is
# left out where it is read, instead of failing every decision and every build of the
# worker's index that reads it (`incomplete_therapists` names them).
_WHOLE_PROFILE = (
    "t.profession IS NOT NULL AND t.licensed IS NOT NULL AND t.methods IS NOT NULL"
    " AND t.focus_areas IS NOT NULL AND t.languages IS NOT NULL AND t.modes IS NOT NULL"
    " AND t.age_groups IS NOT NULL AND t.capacity IS NOT NULL"
    " AND t.accepting_new_clients IS NOT NULL AND t.time_zone IS NOT NULL"
)
_CANDIDATES = (
    """
SELECT t.therapist_id, t.profession, t.licensed, t.methods, t.focus_areas, t.languages,
       t.modes, t.city, t.age_groups, t.capacity, t.accepting_new_clients, t.time_zone,
       r.rating_average, coalesce(r.rating_count, 0) AS rating_count,
       coalesce(a.free_slots, '{}') AS free_slots,
       greatest(0,
           coalesce(a.active_courses, 0)
           + (SELECT count(*) FROM courses c
              WHERE c.therapist_id = t.therapist_id AND c.started_at IS NOT NULL
                AND c.ended_at IS NULL
                AND (a.computed_at IS NULL OR c.started_at > a.computed_at))
           - (SELECT count(*) FROM courses c
              WHERE c.therapist_id = t.therapist_id AND a.computed_at IS NOT NULL
                AND c.ended_at > a.computed_at
                AND (c.started_at IS NULL OR c.started_at <= a.computed_at))
       )
       + (SELECT count(*) FROM matches m
          WHERE m.therapist_id = t.therapist_id AND m.status IN ('proposed', 'active')
            AND NOT EXISTS (SELECT 1 FROM courses c WHERE c.match_id = m.match_id))
       AS active_courses
FROM therapists t
LEFT JOIN therapist_ratings r ON r.therapist_id = t.therapist_id
LEFT JOIN therapist_availability a ON a.therapist_id = t.therapist_id
WHERE NOT t.withdrawn AND """
    + _WHOLE_PROFILE
    + "\n"
)


async def incomplete_therapists(conn: asyncpg.Connection) -> list[uuid.UUID]:
    """Therapists offered (not withdrawn) whose profile has a hole: never offered as
    candidates until it is whole."""
    rows = await conn.fetch(
        f"SELECT t.therapist_id FROM therapists t WHERE NOT t.withdrawn AND NOT ({_WHOLE_PROFILE})"
        " ORDER BY t.therapist_id"
    )
    return [row["therapist_id"] for row in rows]


def _candidate(row: asyncpg.Record) -> TherapistCandidate:
    return TherapistCandidate(
        therapist_id=row["therapist_id"],
        profession=row["profession"],
        licensed=row["licensed"],
        methods=tuple(row["methods"]),
        focus_areas=tuple(row["focus_areas"]),
        languages=tuple(row["languages"]),
        modes=tuple(row["modes"]),
        city=row["city"],
        age_groups=tuple(row["age_groups"]),
        capacity=row["capacity"],
        active_courses=row["active_courses"],
        accepting_new_clients=row["accepting_new_clients"],
        rating_average=row["rating_average"],
        rating_count=row["rating_count"],
        free_slots=tuple(row["free_slots"]),
        time_zone=row["time_zone"],
    )


async def likely_candidates(
    conn: asyncpg.Connection, needs: IntakeNeeds
) -> list[TherapistCandidate]:
    """Therapists passing the cheap hard filters (plus the one the client chose, if any).

    Only a narrowing for speed: the matcher applies every rule again.
    """
    rows = await conn.fetch(
        _CANDIDATES
        + """
        AND ((t.accepting_new_clients AND $1 = ANY(t.methods) AND $2 = ANY(t.age_groups)
              AND t.languages && $3::text[]
              AND (NOT $4 OR (t.licensed AND t.profession = ANY($5::text[])))
              AND ($7 <> 'video' OR 'video' = ANY(t.modes))
              AND ($7 <> 'in_person' OR ('in_person' = ANY(t.modes) AND t.city IS NOT NULL)))
             OR t.therapist_id = $6)
        """,
        needs.method,
        needs.age_group,
        list(needs.languages),
        needs.requires_licensed,
        sorted(LICENSED_PROFESSIONS),
        needs.direct_therapist_id,
        needs.preferred_mode,
    )
    return [_candidate(row) for row in rows]


async def all_candidates(conn: asyncpg.Connection) -> list[TherapistCandidate]:
    """Every offered therapist: to tell a waitlisted client what stopped the nearest ones."""
    return [_candidate(row) for row in await conn.fetch(_CANDIDATES)]


async def candidates_of(
    conn: asyncpg.Connection, therapist_ids: Sequence[uuid.UUID]
) -> list[TherapistCandidate]:
    """These therapists as they are now (withdrawn or unknown ones are left out)."""
    rows = await conn.fetch(_CANDIDATES + f" AND t.therapist_id = {_ANY_OF_IDS}", therapist_ids)
    return [_candidate(row) for row in rows]


async def candidates_after(
    conn: asyncpg.Connection, after: uuid.UUID | None, limit: int
) -> list[TherapistCandidate]:
    """Every offered therapist a page at a time, by id: the worker builds its index from
    these without holding the whole read model (rows and objects) in memory at once."""
    rows = await conn.fetch(
        _CANDIDATES + " AND ($1::uuid IS NULL OR t.therapist_id > $1)"
        " ORDER BY t.therapist_id LIMIT $2",
        after,
        limit,
    )
    return [_candidate(row) for row in rows]


# --------------------------------------------------------------------------- clinician access


async def get_claim(conn: asyncpg.Connection, intake_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT clinician_id, claimed_at FROM intake_claims WHERE intake_id = $1", intake_id
    )


async def set_claim(
    conn: asyncpg.Connection, intake_id: uuid.UUID, clinician_id: uuid.UUID
) -> asyncpg.Record:
    """Claim (or take over) the intake; a clinician claiming again keeps their first time."""
    row = await conn.fetchrow(
        "INSERT INTO intake_claims (intake_id, clinician_id) VALUES ($1, $2)"
        " ON CONFLICT (intake_id) DO UPDATE SET clinician_id = EXCLUDED.clinician_id,"
        "  claimed_at = CASE WHEN intake_claims.clinician_id = EXCLUDED.clinician_id"
        "  THEN intake_claims.claimed_at ELSE now() END"
        " RETURNING clinician_id, claimed_at",
        intake_id,
        clinician_id,
    )
    assert row is not None
    return row


async def release_claim(
    conn: asyncpg.Connection, intake_id: uuid.UUID, clinician_id: uuid.UUID
) -> bool:
    status: str = await conn.execute(
        "DELETE FROM intake_claims WHERE intake_id = $1 AND clinician_id = $2",
        intake_id,
        clinician_id,
    )
    return status != "DELETE 0"


async def grant_emergency_access(
    conn: asyncpg.Connection,
    intake_id: uuid.UUID,
    clinician_id: uuid.UUID,
    reason: str,
    expires_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO emergency_access (intake_id, clinician_id, reason, expires_at)"
        " VALUES ($1, $2, $3, $4)",
        intake_id,
        clinician_id,
        reason,
        expires_at,
    )


async def emergency_access_until(
    conn: asyncpg.Connection, intake_id: uuid.UUID, clinician_id: uuid.UUID
) -> datetime | None:
    until: datetime | None = await conn.fetchval(
        "SELECT max(expires_at) FROM emergency_access WHERE intake_id = $1 AND clinician_id = $2",
        intake_id,
        clinician_id,
    )
    return until


# --------------------------------------------------------------------------- patient rights


async def personal_data(conn: asyncpg.Connection, client_id: uuid.UUID) -> dict[str, Any]:
    """Everything matching holds about the client, for their export."""
    intakes = await conn.fetch(
        "SELECT * FROM intakes WHERE client_id = $1 ORDER BY submitted_at", client_id
    )
    matches = await conn.fetch(
        "SELECT match_id, intake_id, therapist_id, score, mode, reasons, relaxed, status,"
        " requires_approval, previous_therapist_id, created_at, decided_by, decided_at"
        " FROM matches WHERE client_id = $1 ORDER BY created_at",
        client_id,
    )
    emergency = await conn.fetch(
        "SELECT e.intake_id, e.clinician_id, e.reason, e.granted_at, e.expires_at"
        " FROM emergency_access e JOIN intakes i USING (intake_id)"
        " WHERE i.client_id = $1 ORDER BY e.granted_at",
        client_id,
    )
    return {
        "intakes": [dict(r) for r in intakes],
        "matches": [dict(r) for r in matches],
        "emergency_access": [dict(r) for r in emergency],
    }


async def erase_free_text(conn: asyncpg.Connection, client_id: uuid.UUID) -> int:
    """Empty what the law does not require to keep: free text, city, preferred times, and
    how the client wants to meet ('either': with no city, by video). An intake still
    waiting is decided on what is left, as with no preferences given: meeting in person
    with no city to meet in could never be matched."""
    status = await conn.execute(
        "UPDATE intakes SET free_text = NULL, city = NULL, time_windows = '[]'::jsonb,"
        " preferred_mode = 'either', erased_at = now() WHERE client_id = $1",
        client_id,
    )
    return int(status.split()[-1])


async def purge_expired(conn: asyncpg.Connection, before: datetime) -> int:
    """Delete the intakes (and their matches, the courses booking opened for those, claims,
    emergency access) of clients whose last entry here is older than `before`, and courses
    never seen to start (no match known) that ended before it; returns how many intakes.
    (A course's row stays as long as its intake: the one-in-progress rule reads its end.)
    One statement: which clients expired is worked out once for all five tables (it reads
    every intake)."""
    status = await conn.execute(
        """
        WITH expired AS MATERIALIZED (
            SELECT intake_id FROM intakes WHERE client_id IN (
                SELECT client_id FROM intakes GROUP BY client_id
                HAVING max(greatest(submitted_at, status_since,
                                    coalesce(triaged_at, submitted_at))) < $1)),
        gone_matches AS (
            DELETE FROM matches WHERE intake_id IN (SELECT intake_id FROM expired)
            RETURNING match_id),
        gone_courses AS (
            DELETE FROM courses WHERE match_id IN (SELECT match_id FROM gone_matches)
               OR (match_id IS NULL AND ended_at < $1)),
        gone_claims AS (
            DELETE FROM intake_claims WHERE intake_id IN (SELECT intake_id FROM expired)),
        gone_access AS (
            DELETE FROM emergency_access WHERE intake_id IN (SELECT intake_id FROM expired))
        DELETE FROM intakes WHERE intake_id IN (SELECT intake_id FROM expired)
        """,
        before,
    )
    return int(status.split()[-1])
