"""Erasure in booking (real Postgres, real broker): what need not be kept goes at once
(stored replies to booking requests, match proposals that never opened a course) and the
clinical record stays (courses, sessions); the answer names both. A proposal from before
the erasure, still in flight when it came, is not kept, unless a clinician's approval of
it has already arrived: then its course opens as it would have."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from booking import service
from booking.app import DEFINITION
from chassis.app import build
from chassis.auth import Principal
from chassis.testing.kafka import TopicProbe, publish
from contracts import REGISTRY, Envelope
from contracts.events import BookingRightsRequestHandled, MatchApproved, RightsRequested

STOCKHOLM_TEN_UTC = 9  # 10:00 in Stockholm in winter


async def test_erasure_keeps_the_clinical_record_and_in_flight_proposals_stay_erased(
    settings, pool, serve, kit, kafka_bootstrap, topic_prefix
) -> None:
    now = datetime.now(UTC)
    therapist = await kit.open_therapist(pool, now)
    other_therapist = await kit.open_therapist(pool, now)
    client = uuid.uuid4()
    me = Principal(client, "client")

    async def count(sql: str, *args: Any) -> int:
        return int(await pool.fetchval(sql, *args))

    async def proposals() -> set[uuid.UUID]:
        rows = await pool.fetch(
            "SELECT match_id FROM matches WHERE details->>'client_id' = $1", str(client)
        )
        return {r["match_id"] for r in rows}

    async def handled(envelope: Envelope[Any]) -> bool:
        n = await count(
            "SELECT count(*) FROM inbox WHERE consumer = 'course-opener' AND event_id = $1",
            envelope.event_id,
        )
        return n == 1

    answers = [settings.topic(REGISTRY.topic(BookingRightsRequestHandled))]
    async with (
        serve(build(DEFINITION, settings, "worker")),
        TopicProbe(kafka_bootstrap, answers) as probe,
    ):
        # A course (with a booked session, asked with an idempotency key) and a proposal
        # that waits for a clinician's approval.
        opened = kit.match(client, therapist)
        waiting = kit.match(client, other_therapist, requires_approval=True)
        await publish(kafka_bootstrap, topic_prefix, opened, waiting)

        async def course_and_proposal() -> bool:
            courses = await count("SELECT count(*) FROM courses WHERE client_id = $1", client)
            return courses == 1 and waiting.match_id in await proposals()

        await kit.eventually(course_and_proposal)
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
        assert set(answer.erased) == {"booking_request_replies", "unopened_match_proposals"}
        assert {"courses", "sessions", "attendance", "phq9_totals"} <= set(answer.kept)
        # Erased at once: the stored reply and the waiting proposal.
        assert await count("SELECT count(*) FROM idempotency_keys WHERE actor_id = $1", client) == 0
        assert waiting.match_id not in await proposals()
        # Kept: the course, its match and the booked session (the clinical record).
        assert opened.match_id in await proposals()
        assert await count("SELECT count(*) FROM sessions WHERE client_id = $1", client) == 1

        # Still in flight from before the erasure: a proposal awaiting approval is not kept...
        before = datetime.now(UTC) - timedelta(seconds=30)
        late = Envelope.wrap(
            kit.match(client, other_therapist, requires_approval=True), occurred_at=before
        )
        # ...but one a clinician has already approved opens its course (clinical, kept).
        approved = kit.match(client, other_therapist, requires_approval=True)
        await publish(
            kafka_bootstrap,
            topic_prefix,
            MatchApproved(
                match_id=approved.match_id,
                intake_id=approved.intake_id,
                client_id=client,
                therapist_id=other_therapist,
                clinician_id=uuid.uuid4(),
            ),
        )

        async def approval_arrived() -> bool:
            n = await count(
                "SELECT count(*) FROM matches WHERE match_id = $1 AND approved_at IS NOT NULL",
                approved.match_id,
            )
            return n == 1

        await kit.eventually(approval_arrived)
        approved_late = Envelope.wrap(approved, occurred_at=before)
        # A proposal made after the erasure is the client's new data, kept as any.
        fresh = Envelope.wrap(kit.match(client, other_therapist, requires_approval=True))
        await publish(kafka_bootstrap, topic_prefix, late, approved_late, fresh)
        for envelope in (late, approved_late, fresh):
            await kit.eventually(lambda e=envelope: handled(e))
        kept = await proposals()
        assert late.payload.match_id not in kept
        assert {approved.match_id, fresh.payload.match_id} <= kept
        opened_late = await count(
            "SELECT count(*) FROM courses WHERE match_id = $1", approved.match_id
        )
        assert opened_late == 1
