"""Matching's read-model handlers on FastStream's in-memory broker (the database is real)."""

from __future__ import annotations

import random
import string
import uuid

from chassis import db
from chassis.testing.events import a_profile
from chassis.testing.handlers import handlers_of
from contracts import Envelope
from contracts.events import ReviewPublished, TherapistProfileWithdrawn
from matching import store
from matching.app import DEFINITION
from matching.domain.matcher import IntakeNeeds
from matching.handlers import consumers


async def test_profiles_ratings_and_withdrawals_keep_the_read_model(migrated_offline) -> None:
    settings = await migrated_offline(DEFINITION)
    pool = await db.create_pool(settings)
    language = "".join(random.choices(string.ascii_lowercase, k=2))
    therapist = uuid.uuid4()
    profile = a_profile(therapist, languages=[language], version=2)
    needs = IntakeNeeds(
        intake_id=uuid.uuid4(),
        method="IPT",
        age_group="adults",
        problem_areas=["grief"],
        languages=[language],
        preferred_mode="video",
        city=None,
    )

    async def candidates() -> list[tuple[uuid.UUID, float | None, int]]:
        async with pool.acquire() as conn:
            found = await store.likely_candidates(conn, needs)
        # Only this test's therapist: the session's other tests share the read model.
        mine = [c for c in found if c.therapist_id == therapist]
        return [(c.therapist_id, c.rating_average, c.rating_count) for c in mine]

    try:
        async with handlers_of(consumers, settings, pool) as worker:
            await worker.deliver(Envelope.wrap(profile))
            assert await candidates() == [(therapist, None, 0)]
            rating = ReviewPublished(
                review_id=uuid.uuid4(),
                therapist_id=therapist,
                course_id=uuid.uuid4(),
                rating=5,
                rating_average=4.5,
                rating_count=2,
            )
            await worker.deliver(Envelope.wrap(rating))
            assert await candidates() == [(therapist, 4.5, 2)]
            # A review erased (or hidden): catalog announces the profile again with the
            # rating without it. It is the rating, lower or none; a review's event from
            # before, consumed late, brings nothing back. (The rating with the most reviews
            # behind it won, whatever took reviews out.)
            # A revision without a rating may be older than the review (another topic):
            # it takes nothing away that a review brought.
            before = profile.model_copy(update={"version": 3})
            await worker.deliver(Envelope.wrap(before))
            assert await candidates() == [(therapist, 4.5, 2)]
            four = profile.model_copy(update={"version": 4, "rating_average": 4.0})
            await worker.deliver(Envelope.wrap(four.model_copy(update={"rating_count": 3})))
            assert await candidates() == [(therapist, 4.0, 3)]
            erased = profile.model_copy(
                update={"version": 5, "rating_average": 5.0, "rating_count": 1}
            )
            await worker.deliver(Envelope.wrap(erased))
            assert await candidates() == [(therapist, 5.0, 1)]
            late = rating.model_copy(update={"review_id": uuid.uuid4(), "rating_count": 3})
            await worker.deliver(Envelope.wrap(late))
            assert await candidates() == [(therapist, 5.0, 1)]
            none_left = profile.model_copy(update={"version": 6})
            await worker.deliver(Envelope.wrap(none_left))
            assert await candidates() == [(therapist, None, 0)]
            # An older withdrawal than the profile it would withdraw changes nothing.
            old = TherapistProfileWithdrawn(therapist_id=therapist, reason="other", version=1)
            await worker.deliver(Envelope.wrap(old))
            assert await candidates() == [(therapist, None, 0)]
            new = TherapistProfileWithdrawn(therapist_id=therapist, reason="other", version=7)
            await worker.deliver(Envelope.wrap(new))
            assert await candidates() == []
        assert worker.dead_letters == []
    finally:
        await pool.close()
