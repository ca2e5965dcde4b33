"""The intake API on its own (no worker): validation, roles, ownership, audit, privacy."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

SELF_HARM = [1, 1, 1, 1, 1, 1, 1, 1, 2]
FREE_TEXT = "Jag har haft tankar på att inte vilja leva."


async def stored(m, client: uuid.UUID) -> int:
    return await m.pool.fetchval("SELECT count(*) FROM intakes WHERE client_id = $1", client)


async def test_what_is_refused_and_nothing_stored(matching_service) -> None:
    async with matching_service(worker=False) as m:
        client = uuid.uuid4()

        r = await m.http.post("/intakes", json=m.intake())
        assert r.status_code == 401
        r = await m.http.post("/intakes", json=m.intake(), headers=m.headers(client, "therapist"))
        assert r.status_code == 403

        r = await m.submit(client, consent_to_health_data=False)
        assert r.status_code == 422
        assert "consent to processing of health data is required" in r.json()["detail"]
        r = await m.submit(client, consent_to_treatment=False)
        assert r.status_code == 422
        assert r.json()["detail"].startswith("consent_to_treatment")

        r = await m.submit(client, age=11)
        assert r.status_code == 422
        assert r.json()["code"] == "under_minimum_age"
        assert "från 12 år" in r.json()["detail"]
        assert "aged 12 and over" in r.json()["messages"]["en"]
        r = await m.http.post(
            "/intakes", params={"lang": "en"}, json=m.intake(age=9), headers=m.headers(client)
        )
        assert r.json()["detail"].startswith("Samtal can help people aged 12")

        r = await m.submit(client, phq9=[1, 1, 1])
        assert r.status_code == 422
        assert r.json()["detail"].startswith("phq9")
        r = await m.submit(client, preferred_mode="in_person")
        assert r.status_code == 422
        assert "a city is required when meeting in person" in r.json()["detail"]

        assert await stored(m, client) == 0
        assert (
            await m.pool.fetchval("SELECT count(*) FROM audit_log WHERE subject_id = $1", client)
            == 0
        )


async def test_own_data_audit_and_the_clinician_view(matching_service) -> None:
    async with matching_service(worker=False) as m:
        client, stranger, on_call = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

        r = await m.submit(client, phq9=SELF_HARM, free_text=FREE_TEXT)
        assert r.status_code == 201, r.text
        body = r.json()
        intake_id = body["intake_id"]
        assert body["status"] == "awaiting_triage"
        assert body["screening"]["risk_level"] == "high"
        assert set(body["crisis"]) == {"sv", "en"}

        # Every answer and the free text are stored; events carry none of them.
        row = await m.pool.fetchrow("SELECT * FROM intakes WHERE intake_id = $1", intake_id)
        assert row["phq9"] == SELF_HARM
        assert row["free_text"] == FREE_TEXT
        events = await m.pool.fetch(
            "SELECT event_type, value FROM outbox WHERE key = $1 ORDER BY id", intake_id
        )
        assert [e["event_type"] for e in events] == ["IntakeSubmitted", "IntakeEscalated"]
        for event in events:
            assert FREE_TEXT.encode() not in event["value"]
            assert b"phq9" not in event["value"]

        # Own data only: somebody else's intake does not exist for you.
        mine = await m.http.get("/intakes", headers=m.headers(client))
        assert [i["intake_id"] for i in mine.json()] == [intake_id]
        assert (await m.http.get("/intakes", headers=m.headers(stranger))).json() == []
        other = await m.http.get(f"/intakes/{intake_id}", headers=m.headers(stranger))
        assert other.status_code == 404
        assert FREE_TEXT not in other.text
        view = await m.view(uuid.UUID(intake_id), client)
        assert view["answers"]["free_text"] == FREE_TEXT
        assert view["crisis"]["sv"].startswith("Om du har tankar")
        assert view["status_text"].startswith("En behandlare går igenom")
        switch = await m.http.post(f"/intakes/{intake_id}/switch", headers=m.headers(client))
        assert switch.status_code == 409
        switch = await m.http.post(f"/intakes/{intake_id}/switch", headers=m.headers(stranger))
        assert switch.status_code == 404

        # The clinician's queue: longest waiting first, enough to triage, no answers or text.
        later = (await m.submit(uuid.uuid4(), phq9=SELF_HARM)).json()["intake_id"]
        assert (await m.http.get("/clinician/queue", headers=m.headers(client))).status_code == 403
        queue = await m.http.get(
            "/clinician/queue", params={"limit": 500}, headers=m.headers(on_call, "clinician")
        )
        order = [e["intake_id"] for e in queue.json()]
        assert order.index(intake_id) < order.index(later)
        [entry] = [e for e in queue.json() if e["intake_id"] == intake_id]
        assert entry["self_harm_answer"] == 2
        assert entry["has_free_text"] is True
        assert "answers" not in entry and FREE_TEXT not in queue.text
        detail = await m.http.get(
            f"/clinician/intakes/{intake_id}", headers=m.headers(on_call, "clinician")
        )
        assert detail.json()["answers"]["free_text"] == FREE_TEXT

        # A standard intake is not a clinician's to read.
        plain = (await m.submit(uuid.uuid4())).json()["intake_id"]
        r = await m.http.get(f"/clinician/intakes/{plain}", headers=m.headers(on_call, "clinician"))
        assert r.status_code == 404

        # Triage once; a second decision is a conflict. Unknown ids are 404s.
        decided = await m.http.post(
            f"/clinician/intakes/{intake_id}/triage",
            json={"decision": "refer_elsewhere"},
            headers=m.headers(on_call, "clinician"),
        )
        assert decided.json()["status"] == "referred_elsewhere"
        again = await m.http.post(
            f"/clinician/intakes/{intake_id}/triage",
            json={"decision": "resume_matching"},
            headers=m.headers(on_call, "clinician"),
        )
        assert again.status_code == 409
        bad = await m.http.post(
            f"/clinician/intakes/{intake_id}/triage",
            json={"decision": "match_anyway"},
            headers=m.headers(on_call, "clinician"),
        )
        assert bad.status_code == 422
        unknown = await m.http.post(
            f"/clinician/matches/{uuid.uuid4()}/approve", headers=m.headers(on_call, "clinician")
        )
        assert unknown.status_code == 404

        # Who read my data: me, and the clinician (queue, detail, triage).
        audit = await m.http.get("/me/audit", headers=m.headers(client))
        entries = [(e["actor_role"], e["action"], e["resource"]) for e in audit.json()]
        assert ("client", "create", "intake") in entries
        assert ("client", "read", "intake") in entries
        assert ("client", "read", "intake_list") in entries
        assert ("clinician", "read", "intake_summary") in entries
        assert ("clinician", "read", "intake") in entries
        assert ("clinician", "triage", "intake") in entries
        readers = {e["actor_id"] for e in audit.json()}
        assert readers == {str(client), str(on_call)}
        assert (await m.http.get("/me/audit", headers=m.headers(stranger))).json() == []
        # Bounded: the newest entries only (the whole log pages through notifications).
        newest = await m.http.get("/me/audit", params={"limit": 2}, headers=m.headers(client))
        assert newest.json() == audit.json()[-2:]
        too_many = await m.http.get("/me/audit", params={"limit": 501}, headers=m.headers(client))
        assert too_many.status_code == 422 and "limit" in too_many.json()["detail"]


async def test_a_submission_writes_intake_audit_entry_and_events_together(matching_service) -> None:
    """One statement: the intake, its audit entry, IntakeSubmitted (and IntakeEscalated for a
    high-risk answer) and the access event with the entry's time."""
    async with matching_service(worker=False) as m:
        client = uuid.uuid4()
        r = await m.submit(client, phq9=SELF_HARM, free_text=FREE_TEXT)
        assert r.status_code == 201, r.text
        intake_id = r.json()["intake_id"]
        assert await stored(m, client) == 1
        entry = await m.pool.fetchrow(
            "SELECT actor_id, actor_role, action, resource, resource_id, at FROM audit_log"
            " WHERE subject_id = $1",
            client,
        )
        assert (entry["actor_id"], entry["actor_role"], entry["action"], entry["resource"]) == (
            str(client),
            "client",
            "create",
            "intake",
        )
        assert entry["resource_id"] == intake_id
        rows = await m.pool.fetch(
            "SELECT event_type, key, value FROM outbox WHERE key = ANY($1::text[]) ORDER BY id",
            [intake_id, str(client)],
        )
        assert [row["event_type"] for row in rows] == [
            "IntakeSubmitted",
            "IntakeEscalated",
            "MatchingAccessRecorded",
        ]
        access = json.loads(rows[-1]["value"])["payload"]
        assert access["resource_id"] == intake_id
        assert datetime.fromisoformat(access["at"]) == entry["at"]
