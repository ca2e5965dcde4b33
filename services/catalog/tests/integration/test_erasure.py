"""Erasure in the catalog (real Postgres, real broker): the client's reviews and review
rights go at once, the therapist's rating is recounted without them, the answer names what
was erased; a CourseCompleted from before the erasure, still in flight when it came, brings
no review right back, while a course completed after it gives one as usual."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from catalog.app import DEFINITION
from chassis import db
from chassis.app import build
from chassis.testing.events import a_completed_course
from chassis.testing.kafka import TopicProbe, publish
from contracts import Envelope
from contracts.events import (
    CatalogRightsRequestHandled,
    RightsRequested,
    TherapistProfilePublished,
)

completed = a_completed_course


async def test_erasure_takes_reviews_and_an_event_in_flight_brings_nothing_back(
    migrated, serve, auth, profile, kafka_bootstrap, create_topics, topic_prefix, eventually
) -> None:
    settings = await migrated(DEFINITION)
    topics = await create_topics(settings, CatalogRightsRequestHandled, TherapistProfilePublished)
    admin = auth("admin")
    therapist, client, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first, in_flight, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    others_course = uuid.uuid4()
    pool = await db.create_pool(settings)

    async def count(sql: str, *args: object) -> int:
        return int(await pool.fetchval(sql, *args))

    async def rating() -> tuple[int, float]:
        row = await pool.fetchrow(
            "SELECT rating_count, rating_average FROM therapists WHERE therapist_id = $1",
            therapist,
        )
        return row["rating_count"], float(row["rating_average"])

    async def handled(event: Envelope[object], consumer: str) -> bool:
        n = await count(
            "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2",
            consumer,
            event.event_id,
        )
        return n == 1

    try:
        async with (
            serve(build(DEFINITION, settings, "api")) as http,
            serve(build(DEFINITION, settings, "worker")),
            TopicProbe(kafka_bootstrap, topics) as probe,
        ):
            body = {**profile(), "therapist_id": str(therapist)}
            assert (await http.post("/therapists", json=body, headers=admin)).status_code == 201
            assert (await http.post(f"/therapists/{therapist}/publish", headers=admin)).is_success
            await publish(
                kafka_bootstrap,
                topic_prefix,
                completed(first, client, therapist),
                completed(others_course, other, therapist),
            )

            async def both_may_review() -> bool:
                n = await count(
                    "SELECT count(*) FROM review_rights WHERE course_id = ANY($1::uuid[])",
                    [first, others_course],
                )
                return n == 2

            await eventually(both_may_review)
            url = f"/therapists/{therapist}/reviews"
            for who, course, stars in ((client, first, 1), (other, others_course, 5)):
                r = await http.post(
                    url,
                    json={"course_id": str(course), "rating": stars, "text": "Tack."},
                    headers=auth("client", who),
                )
                assert r.status_code == 201, r.text
            assert await rating() == (2, 3)

            # The course completed before the erasure; its event is still on its way.
            on_its_way = Envelope.wrap(
                completed(in_flight, client, therapist),
                occurred_at=datetime.now(UTC) - timedelta(seconds=5),
            )
            erasure = RightsRequested(request_id=uuid.uuid4(), subject_id=client, kind="erasure")
            await publish(kafka_bootstrap, topic_prefix, erasure)
            await probe.wait_for(
                lambda p: any(
                    e.payload.request_id == erasure.request_id
                    for e in p.envelopes("CatalogRightsRequestHandled")
                )
            )
            answer = next(
                e.payload
                for e in probe.envelopes("CatalogRightsRequestHandled")
                if e.payload.request_id == erasure.request_id
            )
            assert set(answer.erased) == {"reviews", "review_text", "review_rights"}
            assert answer.kept == ["audit_log"]
            for table in ("reviews", "review_rights"):
                assert (
                    await count(f"SELECT count(*) FROM {table} WHERE client_id = $1", client) == 0
                )
            # The other client's review stays; the rating no longer counts the erased one.
            assert await count("SELECT count(*) FROM reviews WHERE client_id = $1", other) == 1
            assert await rating() == (1, 5)

            # In flight from before the erasure: no review right comes back. Completed after
            # it: the client may review that course as anyone may.
            after = Envelope.wrap(completed(later, client, therapist))
            await publish(kafka_bootstrap, topic_prefix, on_its_way, after)
            await eventually(lambda: handled(on_its_way, "review-rights"))
            await eventually(lambda: handled(after, "review-rights"))
            rights = await pool.fetch(
                "SELECT course_id FROM review_rights WHERE client_id = $1", client
            )
            assert [r["course_id"] for r in rights] == [later]
            refused = await http.post(
                url,
                json={"course_id": str(in_flight), "rating": 3, "text": "Igen."},
                headers=auth("client", client),
            )
            assert refused.status_code == 404 and refused.json()["code"] == "no_review_right"

            # The erasure is audited (by the system, on the client's asking).
            assert (
                await count(
                    "SELECT count(*) FROM audit_log WHERE subject_id = $1 AND action = 'erasure'"
                    " AND resource_id = $2",
                    client,
                    str(erasure.request_id),
                )
                == 1
            )
    finally:
        await pool.close()
