"""A therapist's load in the read model: booking's summary, course events, matching's promises."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts.events import TherapistAvailabilityPublished, TherapistProfileWithdrawn
from matching import store
from matching.domain.intake import Intake
from matching.domain.matcher import IntakeNeeds, Match
from matching.domain.screening import screen_intake


async def test_load_follows_booking_and_counts_matches_not_yet_opened(matching_service) -> None:
    async with matching_service(worker=False) as m:
        therapist = m.therapist(capacity=10)
        needs = IntakeNeeds(
            intake_id=uuid.uuid4(),
            method="IPT",
            age_group="adults",
            problem_areas=["grief"],
            languages=[m.language],
            preferred_mode="video",
            city=None,
        )
        t0 = datetime.now(UTC).replace(microsecond=0)
        courses = [uuid.uuid4() for _ in range(5)]
        tid = therapist.therapist_id

        async with m.pool.acquire() as conn:

            async def load() -> int:
                [candidate] = await store.likely_candidates(conn, needs)
                return candidate.active_courses

            async def started(n: int, minutes: int, match_id: uuid.UUID | None = None) -> None:
                at = t0 + timedelta(minutes=minutes)
                await store.course_started(
                    conn, course_id=courses[n], therapist_id=tid, match_id=match_id, at=at
                )

            async def finished(n: int, minutes: int) -> None:
                at = t0 + timedelta(minutes=minutes)
                await store.course_finished(conn, course_id=courses[n], therapist_id=tid, at=at)

            async def summary(active: int, minutes: int) -> bool:
                return await store.apply_availability(
                    conn,
                    TherapistAvailabilityPublished(
                        therapist_id=tid,
                        computed_at=t0 + timedelta(minutes=minutes),
                        active_courses=active,
                    ),
                )

            assert await store.apply_profile(conn, therapist)
            assert await load() == 0
            # No summary from booking yet: the courses seen starting and not ending.
            await started(0, -120)
            await started(1, -60)
            assert await load() == 2
            await finished(0, -30)
            assert await load() == 1
            # Booking's count at t0 replaces ours; events after it adjust it.
            assert await summary(active=5, minutes=0)
            assert await load() == 5
            await started(2, 1)
            assert await load() == 6
            await finished(1, 2)  # started before the count, ended after: -1
            assert await load() == 5
            await finished(3, 3)  # its start never seen: counted by booking, so -1
            assert await load() == 4
            await finished(2, 4)  # started after the count, now ended: its +1 goes
            assert await load() == 3
            # An older summary arriving late changes nothing.
            assert not await summary(active=0, minutes=-10)
            assert await load() == 3

            # A match booking has not opened a course for yet holds a place ...
            intake = Intake.model_validate(m.intake())
            intake_id = uuid.uuid4()
            await store.insert_intake(
                conn,
                intake_id=intake_id,
                client_id=uuid.uuid4(),
                intake=intake,
                screening=screen_intake(intake),
                status="matched",
            )
            match_id = uuid.uuid4()
            await store.record_match(
                conn,
                match_id=match_id,
                intake_id=intake_id,
                client_id=uuid.uuid4(),
                result=Match(
                    therapist_id=tid,
                    score=50.0,
                    mode="video",
                    reasons=[],
                    relaxed=[],
                    alternatives=[],
                ),
                requires_approval=False,
                status="active",
                previous_therapist_id=None,
                intake_status="matched",
                events=[],
            )
            assert await load() == 4
            # ... until the course opens: then the course is what counts, once.
            await started(4, 5, match_id=match_id)
            assert await load() == 4
            # Withdrawn: no longer a candidate at all.
            assert await store.apply_withdrawal(
                conn, TherapistProfileWithdrawn(therapist_id=tid, reason="other", version=2)
            )
            assert await store.likely_candidates(conn, needs) == []
            # A republication at an older version does not bring it back; a newer one does.
            assert not await store.apply_profile(conn, therapist)
            assert await store.apply_profile(conn, therapist.model_copy(update={"version": 3}))
            assert await load() == 4


async def test_lookups_by_several_ids_keep_a_cached_plan(matching_service) -> None:
    """The claims, the index's re-reads and a batch's intakes (the matcher's hot path) run
    on the statement's cached generic plan after the first few calls, not planned anew on
    every call as `= ANY($1)` of one id was."""
    async with matching_service(worker=False) as m:
        therapist = m.therapist()
        async with m.pool.acquire() as conn:
            assert await store.apply_profile(conn, therapist)
            for _ in range(8):
                async with conn.transaction():
                    assert await store.claim_all_unless_held(conn, [therapist.therapist_id])
                    assert await store.candidates_of(conn, [therapist.therapist_id])
                    assert await store.intakes_to_match(conn, [uuid.uuid4()]) == {}
            plans = await conn.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%unnest($1::uuid[])%'"
                " AND statement NOT LIKE '%pg_prepared_statements%'"
            )
        assert len(plans) == 3
        for plan in plans:
            assert plan["generic_plans"] >= 3, plan["statement"]
