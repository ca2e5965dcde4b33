"""Erasure in booking (real Postgres, real broker): what need not be kept goes at once
(the replies stored for retried booking requests) and the clinical record stays (courses,
sessions, matches); the answer names both. A match waiting for a clinician's approval
stays too, so the approval, arriving after the erasure, still opens the client's course."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from booking import service
from booking.app import DEFINITION
from chassis.app import build
from chassis.auth import Principal
from chassis.testing.events import an_approval
from chassis.testing.kafka import TopicProbe, publish
from contracts import REGISTRY
from contracts.events import BookingRightsRequestHandled, RightsRequested

STOCKHOLM_TEN_UTC = 9  # 10:00 in Stockholm in winter


async def test_erasure_keeps_the_clinical_record_and_a_waiting_match_still_opens(
    settings, pool, serve, kit, kafka_bootstrap, topic_prefix
) -> None:
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    other_therapist = await kit.open_therapist(pool, now)
    client = uuid.uuid4()
    me = Principal(client, "client")

    async def count(sql: str, *args: Any) -> int:
        return int(await pool.fetchval(sql, *args))

    async def matches() -> set[uuid.UUID]:
        rows = await pool.fetch(
            "SELECT match_id FROM matches WHERE details->>'client_id' = $1", str(client)
        )
        return {r["match_id"] for r in rows}

    answers = [settings.topic(REGISTRY.topic(BookingRightsRequestHandled))]
    async with (
        serve(build(DEFINITION, settings, "worker")),
        TopicProbe(kafka_bootstrap, answers) as probe,
    ):
        # A course (with a booked session, asked with an idempotency key) and a match that
        # waits for a clinician's approval.
        opened = kit.match(client, therapist)
        waiting = kit.match(client, other_therapist, requires_approval=True)
        await publish(kafka_bootstrap, topic_prefix, opened, waiting)

        async def course_and_waiting_match() -> bool:
            courses = await count("SELECT count(*) FROM courses WHERE client_id = $1", client)
            return courses == 1 and waiting.match_id in await matches()

        await kit.eventually(course_and_waiting_match)
        course_id = await pool.fetchval(
            "SELECT course_id FROM courses WHERE client_id = $1", client
        )
        day = (now + timedelta(days=3)).date()
        starts = datetime(day.year, day.month, day.day, STOCKHOLM_TEN_UTC, tzinfo=UTC)
        await service.book_session(pool, me, course_id, starts, f"erase-{client}", now)
        assert await count("SELECT count(*) FROM idempotency_keys WHERE actor_id = $1", client) == 1

        erasure = RightsRequested(request_id=uuid.uuid4(), subject_id=client, kind="erasure")
        await publish(kafka_bootstrap, topic_prefix, erasure)

        def answered(p: TopicProbe) -> list[Any]:
            return [
                e.payload
                for e in p.envelopes("BookingRightsRequestHandled")
                if e.payload.request_id == erasure.request_id
            ]

        await probe.wait_for(lambda p: len(answered(p)) == 1)
        answer = answered(probe)[0]
        assert answer.erased == ["booking_request_replies"]
        assert {"courses", "sessions", "attendance", "phq9_totals", "matches"} <= set(answer.kept)
        # Erased at once: the stored reply.
        assert await count("SELECT count(*) FROM idempotency_keys WHERE actor_id = $1", client) == 0
        # Kept: the course, the booked session and both matches.
        assert {opened.match_id, waiting.match_id} <= await matches()
        assert await count("SELECT count(*) FROM sessions WHERE client_id = $1", client) == 1
        assert (
            await count(
                "SELECT count(*) FROM audit_log WHERE subject_id = $1 AND action = 'erasure'",
                client,
            )
            == 1
        )

        # The clinician approves the waiting match after the erasure: its course opens.
        await publish(
            kafka_bootstrap,
            topic_prefix,
            an_approval(waiting),
        )

        async def approved_course() -> bool:
            n = await count("SELECT count(*) FROM courses WHERE match_id = $1", waiting.match_id)
            return n == 1

        await kit.eventually(approved_course)
