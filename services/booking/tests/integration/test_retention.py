"""Retention in booking: a course is kept ten years after its client's last entry (the
last session, change or closing), then purged by the retention round."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from booking import service as booking_service
from booking.app import DEFINITION as BOOKING
from chassis import db, retention

ELEVEN_YEARS = timedelta(days=11 * 366)


async def test_booking_keeps_a_course_ten_years_after_its_last_session(migrated) -> None:
    settings = await migrated(BOOKING)
    pool: asyncpg.Pool = await db.create_pool(settings)
    now = datetime.now(UTC)
    old_client, active_client, therapist = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO therapists (therapist_id) VALUES ($1)", therapist)
            for client, started in (
                (old_client, now - ELEVEN_YEARS),
                # Started long ago, but a session two years ago is its last entry.
                (active_client, now - ELEVEN_YEARS),
            ):
                course = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO courses (course_id, match_id, intake_id, client_id, therapist_id,"
                    " method, planned_sessions, session_minutes, problem_areas, mode,"
                    " start_severity_band, started_at) VALUES ($1, $2, $3, $4, $5, 'IPT', 12, 50,"
                    " '{grief}', 'video', 'mild', $6)",
                    course,
                    uuid.uuid4(),
                    uuid.uuid4(),
                    client,
                    therapist,
                    started,
                )
                if client == active_client:
                    starts = now - timedelta(days=730)
                    await conn.execute(
                        "INSERT INTO sessions (session_id, course_id, client_id, therapist_id,"
                        " number, phase, status, starts_at, ends_at, client_span, therapist_span,"
                        " buffer_minutes, time_zone, mode, booked_by, policy_version, phq9_total)"
                        " VALUES ($1, $2, $3, $4, 1, 'initial', 'attended', $5, $6,"
                        " tstzrange($5, $6), tstzrange($5, $6), 0, 'Europe/Stockholm', 'video',"
                        " 'client', 'v1', 12)",
                        uuid.uuid4(),
                        course,
                        client,
                        therapist,
                        starts,
                        starts + timedelta(minutes=50),
                    )
        done = await retention.run_round(pool, settings.db_schema, booking_service.purge_expired)
        assert done is not None and done["courses"] >= 1
        async with pool.acquire() as conn:
            assert (
                await conn.fetchval("SELECT count(*) FROM courses WHERE client_id = $1", old_client)
                == 0
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM sessions WHERE client_id = $1", active_client
                )
                == 1
            )
    finally:
        await pool.close()


async def test_a_match_that_never_opened_a_course_goes_ten_years_after_it_came(migrated) -> None:
    settings = await migrated(BOOKING)
    pool: asyncpg.Pool = await db.create_pool(settings)
    now = datetime.now(UTC)
    old, recent = uuid.uuid4(), uuid.uuid4()
    try:
        async with pool.acquire() as conn:
            for match_id, received in ((old, now - ELEVEN_YEARS), (recent, now)):
                await conn.execute(
                    "INSERT INTO matches (match_id, details, requires_approval, received_at)"
                    " VALUES ($1, $2, true, $3)",
                    match_id,
                    {"client_id": str(uuid.uuid4())},
                    received,
                )
        await retention.run_round(pool, settings.db_schema, booking_service.purge_expired)
        left = await pool.fetch(
            "SELECT match_id FROM matches WHERE match_id = ANY($1::uuid[])", [old, recent]
        )
        assert [r["match_id"] for r in left] == [recent]
    finally:
        await pool.close()


async def test_the_answers_kept_for_retried_requests_go_after_thirty_days(migrated) -> None:
    settings = await migrated(BOOKING)
    pool: asyncpg.Pool = await db.create_pool(settings)
    now, actor = datetime.now(UTC), uuid.uuid4()
    try:
        async with pool.acquire() as conn:
            for key, made in (("old", now - timedelta(days=31)), ("recent", now)):
                await conn.execute(
                    "INSERT INTO idempotency_keys (actor_id, key, request_hash, response,"
                    " created_at) VALUES ($1, $2, 'h', '{}', $3)",
                    actor,
                    key,
                    made,
                )
        done = await retention.run_round(pool, settings.db_schema, booking_service.purge_expired)
        assert done is not None and done["idempotency_keys"] == 1
        left = await pool.fetch("SELECT key FROM idempotency_keys WHERE actor_id = $1", actor)
        assert [r["key"] for r in left] == ["recent"]
    finally:
        await pool.close()
