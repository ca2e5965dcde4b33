"""Profiles: who may change what, clear refusals, and the compacted profile topics.

One worker (the outbox relay) for the whole story; a consumer that starts late rebuilds
the catalog's published set from the topics alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from catalog import store
from catalog.app import DEFINITION
from catalog.domain.profile import to_published_event
from chassis import db
from chassis.app import build
from chassis.testing.kafka import TopicProbe
from contracts.events import TherapistProfilePublished, TherapistProfileWithdrawn

PROFILE_EVENTS = (TherapistProfilePublished, TherapistProfileWithdrawn)


def read_model(probe: TopicProbe, ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """therapist id -> the payload with the highest version, over both profile topics."""
    latest: dict[uuid.UUID, Any] = {}
    for envelope in probe.envelopes():
        payload = envelope.payload
        if not isinstance(payload, PROFILE_EVENTS) or payload.therapist_id not in ids:
            continue
        known = latest.get(payload.therapist_id)
        if known is None or payload.version > known.version:
            latest[payload.therapist_id] = payload
    return latest


def versions(probe: TopicProbe, ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[str, int]]:
    return {k: (type(v).__name__, v.version) for k, v in read_model(probe, ids).items()}


async def test_profiles_are_managed_by_admins_edited_by_their_owner_and_announced(
    migrated, serve, auth, profile, kafka_bootstrap, create_topics
) -> None:
    settings = await migrated(DEFINITION)
    topics = await create_topics(settings, *PROFILE_EVENTS)
    admin = auth("admin")
    maria_id, other_id = uuid.uuid4(), uuid.uuid4()
    maria = auth("therapist", maria_id)

    async with (
        serve(build(DEFINITION, settings, "api")) as http,
        serve(build(DEFINITION, settings, "worker")),
        TopicProbe(kafka_bootstrap, topics) as probe,
    ):
        # Only admins create.
        assert (await http.post("/therapists", json=profile())).status_code == 401
        for role in ("client", "therapist", "clinician"):
            r = await http.post("/therapists", json=profile(), headers=auth(role))
            assert r.status_code == 403, role

        # Bad input names the field and the rule.
        for changes, words in (
            ({"licence_number": None}, "Licence number is required"),
            (
                {"profession": "certified_staff", "licence_number": None},
                "may offer IPT only with a certified training in it",
            ),
            ({"modes": ["in_person"], "city": " "}, "City is required when in-person"),
            ({"languages": ["sv", "xx"]}, "not a known ISO 639-1 language code"),
            ({"methods": ["IPT-A"]}, "IPT-A is for adolescents"),
            ({"capacity": 0}, "Capacity must be a whole number"),
        ):
            r = await http.post("/therapists", json=profile(**changes), headers=admin)
            assert r.status_code == 422, changes
            assert r.json()["code"] == "invalid_request"
            assert words in r.json()["detail"], r.json()

        created = await http.post(
            "/therapists",
            json={**profile(name="Maria Lind"), "therapist_id": str(maria_id)},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "draft" and created.json()["version"] == 0
        again = await http.post(
            "/therapists", json={**profile(), "therapist_id": str(maria_id)}, headers=admin
        )
        assert again.status_code == 409 and again.json()["code"] == "therapist_exists"

        r = await http.post(
            f"/therapists/{maria_id}/withdraw", json={"reason": "other"}, headers=admin
        )
        assert r.status_code == 409 and r.json()["code"] == "not_published"
        no_bio = (await http.post("/therapists", json=profile(bio=""), headers=admin)).json()
        r = await http.post(f"/therapists/{no_bio['therapist_id']}/publish", headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "profile_incomplete"
        assert "write a short bio" in r.json()["detail"]
        assert (
            await http.post(f"/therapists/{uuid.uuid4()}/publish", headers=admin)
        ).status_code == 404

        # Publish, then every edit of the published profile is announced with a higher version.
        journey = {"x-correlation-id": "journey-catalog-1"}
        r = await http.post(f"/therapists/{maria_id}/publish", headers={**admin, **journey})
        assert r.status_code == 200 and r.json()["version"] == 1
        r = await http.patch(
            f"/therapists/{maria_id}",
            json={"capacity": 20, "accepting_new_clients": False},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        assert (r.json()["capacity"], r.json()["version"]) == (20, 2)
        r = await http.patch(f"/therapists/{maria_id}", json={"capacity": 0}, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "profile_invalid"
        assert r.json()["errors"][0]["field"] == "capacity"
        r = await http.patch(f"/therapists/{maria_id}", json={"bio": ""}, headers=admin)
        assert r.status_code == 422 and r.json()["code"] == "profile_incomplete"

        # The therapist edits their own bio, languages and modes, and nothing else.
        r = await http.patch(
            "/therapists/me", json={"bio": "Ny bio.", "languages": ["SV", "fa"]}, headers=maria
        )
        assert r.status_code == 200, r.text
        assert (r.json()["bio"], r.json()["languages"], r.json()["version"]) == (
            "Ny bio.",
            ["sv", "fa"],
            3,
        )
        r = await http.patch("/therapists/me", json={"capacity": 99}, headers=maria)
        assert r.status_code == 422 and "can be changed only by an admin" in r.json()["detail"]
        r = await http.patch("/therapists/me", json={"languages": []}, headers=maria)
        assert r.status_code == 422 and "list at least one language" in r.json()["detail"]
        r = await http.patch(
            "/therapists/me", json={"modes": ["in_person"], "practice_address": None}, headers=maria
        )
        assert r.status_code == 422 and r.json()["code"] == "profile_invalid"
        assert "Practice address is required" in r.json()["detail"]
        mine = await http.get("/therapists/me", headers=maria)
        assert mine.status_code == 200 and mine.json()["bio"] == "Ny bio."
        # Only /me exists for therapists: the admin routes refuse them, for any profile.
        for target in (maria_id, other_id):
            r = await http.patch(f"/therapists/{target}", json={"bio": "x"}, headers=maria)
            assert r.status_code == 403
            r = await http.put(f"/therapists/{target}", json=profile(), headers=maria)
            assert r.status_code == 403
        r = await http.patch("/therapists/me", json={"bio": "x"}, headers=auth("therapist"))
        assert r.status_code == 404  # a therapist without a profile
        assert (await http.patch("/therapists/me", json={"bio": "x"})).status_code == 401
        r = await http.patch("/therapists/me", json={"bio": "x"}, headers=admin)
        assert r.status_code == 403

        r = await http.put(
            f"/therapists/{maria_id}", json=profile(name="Maria Lind"), headers=admin
        )
        assert r.status_code == 200 and r.json()["version"] == 4
        assert r.json()["accepting_new_clients"] is True

        # Two more: one stays, one leaves (withdrawn) and the withdrawal carries the reason.
        for person in (other_id,):
            await http.post(
                "/therapists", json={**profile(), "therapist_id": str(person)}, headers=admin
            )
            await http.post(f"/therapists/{person}/publish", headers=admin)
        leaving = (await http.post("/therapists", json=profile(), headers=admin)).json()
        leaving_id = uuid.UUID(leaving["therapist_id"])
        await http.post(f"/therapists/{leaving_id}/publish", headers=admin)
        r = await http.post(
            f"/therapists/{leaving_id}/withdraw", json={"reason": "on holiday"}, headers=admin
        )
        assert r.status_code == 422 and r.json()["detail"].startswith("reason:")
        r = await http.post(
            f"/therapists/{leaving_id}/withdraw", json={"reason": "left_platform"}, headers=admin
        )
        assert r.status_code == 200 and r.json()["status"] == "withdrawn"
        assert (await http.get(f"/therapists/{leaving_id}")).status_code == 404
        stored = await http.get(f"/therapists/{leaving_id}/profile", headers=admin)
        assert stored.json()["withdrawn_reason"] == "left_platform"

        ids = {maria_id, other_id, leaving_id, uuid.UUID(no_bio["therapist_id"])}
        final = {
            maria_id: ("TherapistProfilePublished", 4),
            other_id: ("TherapistProfilePublished", 1),
            leaving_id: ("TherapistProfileWithdrawn", 2),
        }
        await probe.wait_for(lambda p: versions(p, ids) == final)

    events = [e for e in probe.envelopes() if e.payload.therapist_id in ids]
    assert len(events) == 7  # maria 4, other 1, leaving 2; the draft never announced
    first = next(e for e in events if e.payload.version == 1 and e.key == str(maria_id))
    assert first.correlation_id == "journey-catalog-1"
    assert all(e.key == str(e.payload.therapist_id) for e in events)
    for e in events:  # nothing a person wrote, no name, no licence number
        raw = e.to_bytes().decode()
        assert "Maria Lind" not in raw and "Ny bio" not in raw and "402117" not in raw
    withdrawn = read_model(probe, ids)[leaving_id]
    assert withdrawn.reason == "left_platform"

    # A consumer that starts late rebuilds the published set from the topics alone.
    async with TopicProbe(kafka_bootstrap, topics) as late:
        await late.wait_for(lambda p: versions(p, ids) == final)
    rebuilt = {
        k: v for k, v in read_model(late, ids).items() if isinstance(v, TherapistProfilePublished)
    }
    pool = await db.create_pool(settings)
    try:
        async with pool.acquire() as conn:
            published = [
                t
                for t in [await store.get_therapist(conn, i) for i in ids]
                if t is not None and t.status == "published"
            ]
    finally:
        await pool.close()
    assert rebuilt == {
        t.therapist_id: to_published_event(
            t.profile, t.therapist_id, t.version, t.rating_average, t.rating_count
        )
        for t in published
    }
    assert set(rebuilt) == {maria_id, other_id}
    assert rebuilt[maria_id].languages == ["sv", "en"] and rebuilt[maria_id].capacity == 12
