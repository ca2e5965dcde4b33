"""Retention in matching: the chassis' round (inbox, audit log) and matching's purge of
clinical records ten years after a client's last entry; one worker at a time does a round."""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime, timedelta

from chassis import db, retention
from matching import service as matching_service
from matching.app import DEFINITION as MATCHING

ELEVEN_YEARS = timedelta(days=11 * 366)


async def test_a_round_purges_what_is_past_retention_and_keeps_the_rest(migrated) -> None:
    settings = await migrated(MATCHING)
    pool = await db.create_pool(settings)
    now = datetime.now(UTC)
    old_client, recent_client = uuid.uuid4(), uuid.uuid4()
    course_of: dict[uuid.UUID, uuid.UUID] = {}
    try:
        async with pool.acquire() as conn:
            for client, at in ((old_client, now - ELEVEN_YEARS), (recent_client, now)):
                await conn.execute(
                    "INSERT INTO intakes (intake_id, client_id, submitted_at, age, languages,"
                    " preferred_mode, problem_areas, phq9, consent_to_treatment,"
                    " consent_to_health_data, phq9_total, severity_band, risk_level,"
                    " requires_approval, method, age_group, status, status_since)"
                    " VALUES ($1, $2, $3, 34, '{sv}', 'video', '{grief}', '{1,1,1,1,1,1,1,1,0}',"
                    " true, true, 8, 'mild', 'standard', false, 'IPT', 'adults',"
                    " 'referred_elsewhere', $3)",
                    uuid.uuid4(),
                    client,
                    at,
                )
                await conn.execute(
                    "INSERT INTO audit_log (actor_id, actor_role, subject_id, action, resource, at)"
                    " VALUES ('x', 'clinician', $1, 'read', 'intake', $2)",
                    client,
                    at,
                )
                # A clinician's claim and emergency access (they reference the intake).
                await conn.execute(
                    "INSERT INTO intake_claims (intake_id, clinician_id, claimed_at)"
                    " SELECT intake_id, gen_random_uuid(), $2 FROM intakes WHERE client_id = $1",
                    client,
                    at,
                )
                await conn.execute(
                    "INSERT INTO emergency_access (intake_id, clinician_id, reason, granted_at,"
                    " expires_at) SELECT intake_id, gen_random_uuid(), 'r', $2, $2"
                    " FROM intakes WHERE client_id = $1",
                    client,
                    at,
                )
                # Its match, and the course booking opened for it.
                match_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO matches (match_id, intake_id, client_id, therapist_id, score,"
                    " mode, reasons, relaxed, choice_refused, alternatives, requires_approval,"
                    " status, created_at) SELECT $1, intake_id, client_id, gen_random_uuid(),"
                    " 50, 'video', '[]', '{}', '{}', '[]', false, 'active', $3"
                    " FROM intakes WHERE client_id = $2",
                    match_id,
                    client,
                    at,
                )
                course_of[client] = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO courses (course_id, therapist_id, match_id, started_at, ended_at)"
                    " VALUES ($1, gen_random_uuid(), $2, $3, $3)",
                    course_of[client],
                    match_id,
                    at,
                )
            # Courses whose start (and match) matching never saw: by their end.
            old_orphan, recent_orphan = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO courses (course_id, therapist_id, ended_at)"
                " VALUES ($1, gen_random_uuid(), $2), ($3, gen_random_uuid(), now())",
                old_orphan,
                now - ELEVEN_YEARS,
                recent_orphan,
            )
            old_event, new_event = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO inbox (consumer, event_id, event_type, processed_at)"
                " VALUES ('t', $1, 'X', $2), ('t', $3, 'X', now())",
                old_event,
                now - timedelta(days=31),
                new_event,
            )

        # While another worker holds the round, this one does nothing.
        async with pool.acquire() as holder, holder.transaction():
            lock = zlib.crc32(f"samtal-retention-{settings.db_schema}".encode())
            await holder.execute("SELECT pg_advisory_xact_lock($1)", lock)
            assert await retention.run_round(pool, settings.db_schema, None) is None

        done = await retention.run_round(pool, settings.db_schema, matching_service.purge_expired)
        assert done is not None and done["intakes"] >= 1 and done["inbox"] >= 1
        async with pool.acquire() as conn:

            async def count(sql: str, *args: object) -> int:
                value: int = await conn.fetchval(sql, *args)
                return value

            assert await count("SELECT count(*) FROM intakes WHERE client_id = $1", old_client) == 0
            assert (
                await count("SELECT count(*) FROM intakes WHERE client_id = $1", recent_client) == 1
            )
            assert (
                await count("SELECT count(*) FROM audit_log WHERE subject_id = $1", old_client) == 0
            )
            assert (
                await count("SELECT count(*) FROM audit_log WHERE subject_id = $1", recent_client)
                == 1
            )
            for table in ("intake_claims", "emergency_access", "matches"):
                held = f"SELECT count(*) FROM {table} t JOIN intakes i USING (intake_id)"
                assert await count(f"{held} WHERE i.client_id = $1", recent_client) == 1
            course = "SELECT count(*) FROM courses WHERE course_id = $1"
            assert await count(course, course_of[old_client]) == 0  # with its intake's match
            assert await count(course, course_of[recent_client]) == 1
            assert await count(course, old_orphan) == 0
            assert await count(course, recent_orphan) == 1
            assert await count("SELECT count(*) FROM inbox WHERE event_id = $1", old_event) == 0
            assert await count("SELECT count(*) FROM inbox WHERE event_id = $1", new_event) == 1
    finally:
        await pool.close()
