"""Verified reviews: rights from CourseCompleted (idempotently), the client rules, the rating
and what matching hears about it."""

from __future__ import annotations

import uuid

from catalog.app import DEFINITION
from chassis import audit, db
from chassis.app import build
from chassis.testing.events import a_completed_course
from chassis.testing.kafka import TopicProbe, publish
from contracts import Envelope
from contracts.events import ReviewPublished, TherapistProfilePublished

DUPLICATE_HANDLED = (
    'samtal_events_handled_total{consumer="review-rights",outcome="duplicate",service="catalog"}'
)


completed = a_completed_course


async def test_a_client_reviews_their_own_completed_course_once(
    migrated, serve, auth, profile, kafka_bootstrap, create_topics, topic_prefix, eventually
) -> None:
    settings = await migrated(DEFINITION)
    topics = await create_topics(settings, ReviewPublished, TherapistProfilePublished)
    admin = auth("admin")
    therapist, elsewhere = uuid.uuid4(), uuid.uuid4()
    alice, bob = uuid.uuid4(), uuid.uuid4()
    alices_course, bobs_course, alices_other_course = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pool = await db.create_pool(settings)

    async def rights() -> int:
        return await pool.fetchval(
            "select count(*) from review_rights where course_id = any($1::uuid[])",
            [alices_course, bobs_course, alices_other_course],
        )

    def review(course: uuid.UUID, rating: int = 4, text: str = "Tack för hjälpen.") -> dict:
        return {"course_id": str(course), "rating": rating, "text": text}

    def mine(probe: TopicProbe, kind: str) -> list:
        return [e.payload for e in probe.envelopes(kind) if e.payload.therapist_id == therapist]

    try:
        async with (
            serve(build(DEFINITION, settings, "api")) as http,
            serve(build(DEFINITION, settings, "worker")) as worker,
            TopicProbe(kafka_bootstrap, topics) as probe,
        ):
            for person in (therapist, elsewhere):
                body = {**profile(), "therapist_id": str(person)}
                assert (await http.post("/therapists", json=body, headers=admin)).status_code == 201
                assert (await http.post(f"/therapists/{person}/publish", headers=admin)).is_success
            url = f"/therapists/{therapist}/reviews"

            # Before the course has completed there is nothing to review.
            early = await http.post(url, json=review(alices_course), headers=auth("client", alice))
            assert early.status_code == 404 and early.json()["code"] == "no_review_right"

            # CourseCompleted delivered twice gives one review right.
            twice = Envelope.wrap(completed(alices_course, alice, therapist))
            await publish(
                kafka_bootstrap,
                topic_prefix,
                twice,
                twice,
                completed(bobs_course, bob, therapist),
                completed(alices_other_course, alice, elsewhere),
            )
            await eventually(lambda: _equals(rights(), 3))
            await eventually(lambda: _contains(worker.get("/metrics"), DUPLICATE_HANDLED))
            assert await rights() == 3
            assert (
                await pool.fetchval(
                    "select count(*) from inbox where consumer = 'review-rights' and event_id = $1",
                    twice.event_id,
                )
                == 1
            )

            # Who may review what.
            assert (await http.post(url, json=review(alices_course))).status_code == 401
            r = await http.post(
                url, json=review(alices_course), headers=auth("therapist", therapist)
            )
            assert r.status_code == 403
            # Somebody else's course answers exactly like an unknown one.
            not_hers = await http.post(url, json=review(bobs_course), headers=auth("client", alice))
            unknown = await http.post(url, json=review(uuid.uuid4()), headers=auth("client", alice))
            assert not_hers.status_code == unknown.status_code == 404
            assert not_hers.json() == unknown.json()
            r = await http.post(
                url, json=review(alices_other_course), headers=auth("client", alice)
            )
            assert r.status_code == 403 and r.json()["code"] == "other_therapist"
            for bad, words in (
                (review(alices_course, rating=6), "Rating must be a whole number of stars"),
                (review(alices_course, text="   "), "Review text must not be empty"),
                (review(alices_course, text="x" * 2001), "at most 2000 characters"),
                ({"rating": 4, "text": "ok"}, "course_id"),
            ):
                r = await http.post(url, json=bad, headers=auth("client", alice))
                assert r.status_code == 422 and words in r.json()["detail"], r.json()
            r = await http.post(
                f"/therapists/{uuid.uuid4()}/reviews",
                json=review(alices_course),
                headers=auth("client", alice),
            )
            assert r.status_code == 404 and r.json()["code"] == "therapist_not_found"

            # Reviews count into the rating; a course is reviewed once.
            r = await http.post(url, json=review(alices_course, 4), headers=auth("client", alice))
            assert r.status_code == 201, r.text
            assert (r.json()["rating_average"], r.json()["rating_count"]) == (4.0, 1)
            again = await http.post(
                url, json=review(alices_course, 5), headers=auth("client", alice)
            )
            assert again.status_code == 409 and again.json()["code"] == "already_reviewed"
            r = await http.post(
                url, json=review(bobs_course, 1, "Passade inte mig."), headers=auth("client", bob)
            )
            assert r.status_code == 201
            bobs_review = r.json()["review_id"]
            assert (r.json()["rating_average"], r.json()["rating_count"]) == (2.5, 2)

            shown = (await http.get(f"/therapists/{therapist}")).json()["reviews"]
            assert (shown["average"], shown["count"]) == (2.5, 2)
            assert shown["histogram"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5": 0}
            assert {r["text"] for r in shown["latest"]} == {
                "Tack för hjälpen.",
                "Passade inte mig.",
            }
            assert str(bob) not in str(shown) and str(alice) not in str(shown)

            # Matching hears each counted review, and the profile again with its new rating.
            await probe.wait_for(
                lambda p: (
                    len(mine(p, "ReviewPublished")) == 2
                    and len(mine(p, "TherapistProfilePublished")) == 3
                )
            )
            told = mine(probe, "ReviewPublished")
            assert [(e.rating, e.rating_average, e.rating_count) for e in told] == [
                (4, 4.0, 1),
                (1, 2.5, 2),
            ]
            profiles = mine(probe, "TherapistProfilePublished")
            assert [(p.version, p.rating_average, p.rating_count) for p in profiles] == [
                (1, None, 0),
                (2, 4.0, 1),
                (3, 2.5, 2),
            ]

            # An admin hides a review: it no longer shows or counts; hiding again changes nothing.
            hide = f"/reviews/{bobs_review}/hide"
            assert (await http.post(hide, headers=auth("client", bob))).status_code == 403
            assert (
                await http.post(f"/reviews/{uuid.uuid4()}/hide", headers=admin)
            ).status_code == 404
            r = await http.post(hide, headers=admin)
            assert r.status_code == 200
            assert (r.json()["rating_average"], r.json()["rating_count"]) == (4.0, 1)
            assert (await http.post(hide, headers=admin)).status_code == 200
            shown = (await http.get(f"/therapists/{therapist}")).json()["reviews"]
            assert (shown["average"], shown["count"]) == (4.0, 1)
            assert [r["text"] for r in shown["latest"]] == ["Tack för hjälpen."]
            await probe.wait_for(lambda p: len(mine(p, "TherapistProfilePublished")) == 4)
            await probe.quiet(0.5)
            latest = mine(probe, "TherapistProfilePublished")
            assert [(p.version, p.rating_average, p.rating_count) for p in latest][3:] == [
                (4, 4.0, 1)
            ]
            assert len(mine(probe, "ReviewPublished")) == 2

        # Writing and hiding a review are in the audit log of the client it concerns.
        async with pool.acquire() as conn:
            bobs_trail = await audit.for_subject(conn, bob)
        assert [(a["actor_role"], a["action"], a["resource"]) for a in bobs_trail] == [
            ("client", "create", "review"),
            ("admin", "hide", "review"),
        ]
        assert all(a["resource_id"] == bobs_review for a in bobs_trail)
        for envelope in probe.envelopes("ReviewPublished"):
            raw = envelope.to_bytes().decode()
            assert "Tack" not in raw and str(alice) not in raw and str(bob) not in raw
    finally:
        await pool.close()


async def _equals(value, expected) -> bool:
    return await value == expected


async def _contains(response, text: str) -> bool:
    return text in (await response).text
