"""A profile stored before today's rules were written (here: a licence number from before the
format rule, written with SQL as a row of that time would be) is still shown, found,
reviewed, recounted when its reviews are erased, and withdrawn; it must meet today's rules
only when it is edited or published again, and the refusal names the field to fix."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from catalog import service
from catalog.app import DEFINITION
from chassis import db
from chassis.app import build
from chassis.testing.events import a_completed_course
from contracts.events import RightsRequested

OLD_LICENCE = "L-7"  # three characters, one not a letter or digit: refused since


async def test_a_profile_stored_under_older_rules_is_read_and_erased_from_and_fixed_to_edit(
    migrated, serve, auth, profile
) -> None:
    settings = await migrated(DEFINITION)
    admin = auth("admin")
    client, course = uuid.uuid4(), uuid.uuid4()
    pool = await db.create_pool(settings)
    try:
        async with serve(build(DEFINITION, settings, "api")) as http:
            town = f"Ort {uuid.uuid4().hex[:8]}"  # its own: other tests' profiles share the schema
            created = await http.post(
                "/therapists", json=profile(name="Ada Berg", city=town), headers=admin
            )
            therapist = created.json()["therapist_id"]
            r = await http.post(f"/therapists/{therapist}/publish", headers=admin)
            assert r.status_code == 200, r.text
            await pool.execute(
                "UPDATE therapists SET licence_number = $2 WHERE therapist_id = $1",
                uuid.UUID(therapist),
                OLD_LICENCE,
            )
            async with pool.acquire() as conn, conn.transaction():
                completed = a_completed_course(course, client, uuid.UUID(therapist))
                await service.grant_review_right(conn, completed, datetime.now(UTC))

            # Shown as stored, to anyone and to admins; found by search.
            shown = await http.get(f"/therapists/{therapist}")
            assert shown.status_code == 200, shown.text
            assert shown.json()["licence_number"] == OLD_LICENCE
            own = await http.get(f"/therapists/{therapist}/profile", headers=admin)
            assert own.status_code == 200, own.text
            assert own.json()["licence_number"] == OLD_LICENCE
            found = await http.get("/therapists", params={"method": "IPT", "city": town})
            assert found.status_code == 200, found.text
            assert therapist in [hit["therapist_id"] for hit in found.json()["items"]]

            # Reviewed (the rating is recounted and announced), then the review erased.
            review = {"course_id": str(course), "rating": 4, "text": "Tack."}
            r = await http.post(
                f"/therapists/{therapist}/reviews", json=review, headers=auth("client", client)
            )
            assert r.status_code == 201, r.text
            async with pool.acquire() as conn, conn.transaction():
                requested = RightsRequested(
                    request_id=uuid.uuid4(), subject_id=client, kind="erasure"
                )
                await service.handle_rights_request(conn, requested)
            rating = await pool.fetchrow(
                "SELECT rating_count, licence_number FROM therapists WHERE therapist_id = $1",
                uuid.UUID(therapist),
            )
            assert tuple(rating) == (0, OLD_LICENCE)

            # Edited or published again only under today's rules: the refusal names the field.
            r = await http.patch(f"/therapists/{therapist}", json={"capacity": 20}, headers=admin)
            assert r.status_code == 422 and r.json()["code"] == "profile_invalid", r.text
            assert [e["field"] for e in r.json()["errors"]] == ["licence_number"]
            r = await http.post(
                f"/therapists/{therapist}/withdraw", json={"reason": "other"}, headers=admin
            )
            assert r.status_code == 200, r.text
            r = await http.post(f"/therapists/{therapist}/publish", headers=admin)
            assert r.status_code == 422 and r.json()["code"] == "profile_invalid", r.text
            assert [e["field"] for e in r.json()["errors"]] == ["licence_number"]
            r = await http.patch(
                f"/therapists/{therapist}", json={"licence_number": "402117"}, headers=admin
            )
            assert r.status_code == 200, r.text
            r = await http.post(f"/therapists/{therapist}/publish", headers=admin)
            assert r.status_code == 200 and r.json()["status"] == "published", r.text
    finally:
        await pool.close()


async def test_a_profile_in_any_known_time_zone_is_published(migrated, serve, auth, profile):
    """`GMT0` is a time zone the profile form accepts; the event announcing it refused it
    (500 on publish) until the event's rule took every known name."""
    settings = await migrated(DEFINITION)
    admin = auth("admin")
    async with serve(build(DEFINITION, settings, "api")) as http:
        created = await http.post("/therapists", json=profile(time_zone="GMT0"), headers=admin)
        assert created.status_code == 201, created.text
        therapist = created.json()["therapist_id"]
        r = await http.post(f"/therapists/{therapist}/publish", headers=admin)
        assert r.status_code == 200 and r.json()["time_zone"] == "GMT0", r.text
