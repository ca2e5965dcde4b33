"""Public reference data, browse/search and the profile detail, over HTTP without login."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from catalog import store
from catalog.app import DEFINITION
from catalog.domain.reviews import ReviewRight
from chassis import db
from chassis.app import build


async def test_methods_and_areas_are_served_without_login(migrated, serve) -> None:
    settings = await migrated(DEFINITION)
    async with serve(build(DEFINITION, settings, "api")) as http:
        methods = await http.get("/methods")
        areas = await http.get("/areas")
    assert methods.status_code == 200 and areas.status_code == 200
    by_code = {m["code"]: m for m in methods.json()["methods"]}
    assert set(by_code) == {"IPT", "IPT-A", "KBT"}
    assert by_code["IPT"]["sessions"] == {"min": 12, "max": 16, "default": 12}
    assert by_code["KBT"]["sessions"]["min"] == 8 and by_code["KBT"]["sessions"]["max"] == 20
    assert by_code["IPT"]["session_minutes"] == {"min": 45, "max": 60}
    assert by_code["IPT-A"]["age_group"] == "adolescents"
    assert by_code["IPT-A"]["guardian_informed"] is True
    assert by_code["IPT"]["phases"][0] == {"phase": "initial", "sessions": 3}
    assert by_code["IPT"]["eligible_professions"] == ["psychologist", "psychotherapist"]
    kinds = {a["code"]: a["kind"] for a in areas.json()["areas"]}
    assert kinds["grief"] == "problem_area" and kinds["anxiety"] == "focus_area"
    assert len(kinds) == 8


async def test_search_filters_sorts_pages_and_shows_published_profiles_only(
    migrated, serve, auth, profile
) -> None:
    settings = await migrated(DEFINITION)
    # A town of this test's own keeps other tests' therapists out of the results.
    town = f"Testby {uuid.uuid4().hex[:8]}"
    admin = auth("admin")
    people = {
        "anna": profile(name="Anna Ek", city=town, focus_areas=["grief"]),
        "bo": profile(
            name="Bo Ahmadi",
            profession="psychotherapist",
            methods=["IPT", "IPT-A"],
            age_groups=["adults", "adolescents"],
            languages=["ar", "sv"],
            modes=["video"],
            city=town,
            practice_address=None,
            focus_areas=["interpersonal_dispute"],
        ),
        "cecilia": profile(
            name="cecilia Lund",
            profession="certified_staff",
            licence_number=None,
            certifications=["KBT"],
            methods=["KBT"],
            modes=["in_person"],
            city=town,
            focus_areas=["anxiety"],
            accepting_new_clients=False,
        ),
        "david": profile(name="David Berg", city=town, focus_areas=["depression"]),
        "eva": profile(name="Eva Holm", city=town, focus_areas=["stress"]),
        "draft": profile(name="Dora Utkast", city=town),
        "gone": profile(name="Greta Borta", city=town),
    }
    ids: dict[str, uuid.UUID] = {}
    pool = await db.create_pool(settings)
    try:
        async with serve(build(DEFINITION, settings, "api")) as http:
            for key, data in people.items():
                created = await http.post("/therapists", json=data, headers=admin)
                assert created.status_code == 201, created.text
                ids[key] = uuid.UUID(created.json()["therapist_id"])
                if key != "draft":
                    r = await http.post(f"/therapists/{ids[key]}/publish", headers=admin)
                    assert r.status_code == 200, r.text
            r = await http.post(
                f"/therapists/{ids['gone']}/withdraw",
                json={"reason": "left_platform"},
                headers=admin,
            )
            assert r.status_code == 200 and r.json()["status"] == "withdrawn"

            # Ratings from verified reviews: the review rights as the consumer records them.
            for key, stars in (("anna", 3), ("bo", 5), ("bo", 4)):
                client, course = uuid.uuid4(), uuid.uuid4()
                async with pool.acquire() as conn:
                    await store.record_review_right(
                        conn, ReviewRight(course, client, ids[key]), datetime.now(UTC)
                    )
                r = await http.post(
                    f"/therapists/{ids[key]}/reviews",
                    json={"course_id": str(course), "rating": stars, "text": f"{stars} stjärnor"},
                    headers=auth("client", client),
                )
                assert r.status_code == 201, r.text

            async def names(**params) -> tuple[int, list[str]]:
                r = await http.get("/therapists", params={"city": town, **params})
                assert r.status_code == 200, r.text
                body = r.json()
                return body["total"], [item["name"] for item in body["items"]]

            # Best rated first (Bo 4.5, Anna 3), then unrated by name, case-insensitively.
            assert await names() == (
                5,
                ["Bo Ahmadi", "Anna Ek", "cecilia Lund", "David Berg", "Eva Holm"],
            )
            assert await names(sort="name") == (
                5,
                ["Anna Ek", "Bo Ahmadi", "cecilia Lund", "David Berg", "Eva Holm"],
            )
            assert await names(sort="name", page=2, page_size=2) == (
                5,
                ["cecilia Lund", "David Berg"],
            )
            assert await names(page=4, page_size=2) == (5, [])
            assert await names(method="IPT-A") == (1, ["Bo Ahmadi"])
            assert await names(method="KBT") == (1, ["cecilia Lund"])
            assert await names(area="grief") == (1, ["Anna Ek"])
            assert await names(problem="interpersonal_dispute") == (1, ["Bo Ahmadi"])
            assert await names(language="AR") == (1, ["Bo Ahmadi"])
            assert (await names(mode="in_person"))[0] == 4
            assert await names(mode="video", age_group="adolescents") == (1, ["Bo Ahmadi"])
            assert await names(accepting="false") == (1, ["cecilia Lund"])
            assert (await names(accepting="true", sort="name"))[1][:2] == ["Anna Ek", "Bo Ahmadi"]
            assert await names(city=town.upper(), method="IPT", language="en", sort="name") == (
                3,
                ["Anna Ek", "David Berg", "Eva Holm"],
            )

            listing = (
                await http.get("/therapists", params={"city": town, "sort": "rating"})
            ).json()
            bo = listing["items"][0]
            assert bo["rating_average"] == 4.5 and bo["rating_count"] == 2
            assert bo["therapist_id"] == str(ids["bo"])
            assert "licence_number" not in bo and "capacity" not in bo

            for params, words in (
                ({"method": "EMDR"}, "Method must be one of: IPT, IPT-A, KBT"),
                ({"page_size": "500"}, "Page size must be a whole number from 1 to 50"),
                ({"area": "sleep"}, "Focus area must be one of"),
                ({"price": "low"}, "Unknown search parameter price"),
            ):
                r = await http.get("/therapists", params=params)
                assert r.status_code == 422, params
                assert r.json()["code"] == "invalid_request"
                assert words in r.json()["detail"]

            detail = await http.get(f"/therapists/{ids['bo']}")
            assert detail.status_code == 200
            shown = detail.json()
            assert shown["licence_number"] == "402117" and shown["licensed"] is True
            assert shown["profession"] == "psychotherapist"
            assert shown["bio"] == people["bo"]["bio"]
            assert shown["reviews"]["average"] == 4.5 and shown["reviews"]["count"] == 2
            assert shown["reviews"]["histogram"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}
            latest = shown["reviews"]["latest"]
            assert sorted(r["text"] for r in latest) == ["4 stjärnor", "5 stjärnor"]
            assert set(latest[0]) == {"review_id", "rating", "text", "date"}  # no reviewer
            assert "capacity" not in shown

            cecilia = (await http.get(f"/therapists/{ids['cecilia']}")).json()
            assert cecilia["licence_number"] is None and cecilia["certifications"] == ["KBT"]
            assert cecilia["reviews"]["average"] is None and cecilia["reviews"]["count"] == 0

            for hidden in (ids["draft"], ids["gone"], uuid.uuid4()):
                r = await http.get(f"/therapists/{hidden}")
                assert r.status_code == 404 and r.json()["code"] == "therapist_not_found"
            assert (await http.get("/therapists/not-an-id")).status_code == 422
    finally:
        await pool.close()
