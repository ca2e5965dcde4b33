"""One intake in progress per client: each takes a therapist's place once matched, so a client
(or a script) submitting again and again took place after place. A crisis always gets
through."""

from __future__ import annotations

import asyncio
import uuid

from chassis.testing.events import a_completed_course, a_started_course

SELF_HARM = [1, 1, 1, 1, 1, 1, 1, 1, 2]


async def stored(m, client: uuid.UUID) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    rows = await m.pool.fetch(
        "SELECT intake_id FROM intakes WHERE client_id = $1 ORDER BY submitted_at", client
    )
    return [r["intake_id"] for r in rows]


async def test_a_second_intake_is_refused_naming_the_first_but_a_crisis_gets_through(
    matching_service,
) -> None:
    async with matching_service(worker=False) as m:
        client = uuid.uuid4()
        first = await m.submitted(client)

        again = await m.submit(client)
        assert again.status_code == 409, again.text
        body = again.json()
        assert body["code"] == "intake_in_progress"
        assert body["intake_id"] == str(first)
        assert body["detail"].startswith("Du har redan en ansökan")
        assert body["messages"]["en"].startswith("You already have an intake in progress")
        english = await m.http.post(
            "/intakes", params={"lang": "en"}, json=m.intake(), headers=m.headers(client)
        )
        assert english.json()["detail"] == body["messages"]["en"]
        assert await stored(m, client) == [first]

        # Thoughts of self-harm: taken, the crisis text at once, whatever else is open.
        crisis = await m.submit(client, phq9=SELF_HARM)
        assert crisis.status_code == 201, crisis.text
        assert crisis.json()["status"] == "awaiting_triage"
        assert "112" in crisis.json()["crisis"]["sv"]
        assert len(await stored(m, client)) == 2

        # While a crisis intake awaits its triage, a standard one does not go round it.
        other = uuid.uuid4()
        escalated = uuid.UUID((await m.submit(other, phq9=SELF_HARM)).json()["intake_id"])
        refused = await m.submit(other)
        assert refused.status_code == 409
        assert refused.json()["intake_id"] == str(escalated)
        assert await stored(m, other) == [escalated]


async def test_submissions_sent_at_once_store_one(matching_service) -> None:
    """A script sending twenty at once: the check alone would let several through (each
    reads before any commits); the database's index lets one."""
    async with matching_service(worker=False) as m:
        client = uuid.uuid4()
        answers = await asyncio.gather(*(m.submit(client) for _ in range(20)))
        codes = sorted(a.status_code for a in answers)
        assert codes == [201] + [409] * 19, [a.text for a in answers if a.status_code != 409]
        [kept] = await stored(m, client)
        assert all(a.json()["intake_id"] == str(kept) for a in answers)


async def test_a_matched_intake_is_in_progress_until_its_course_ends(matching_service) -> None:
    async with matching_service() as m:
        therapist = m.therapist(capacity=3)
        await m.publish(therapist)
        await m.in_read_model(therapist)
        client = uuid.uuid4()
        first = await m.submitted(client)
        match = await m.wait_for("TherapistMatched", first)
        assert (await m.submit(client)).status_code == 409  # matched, no course yet

        course_id = uuid.uuid4()
        [started] = await m.publish(
            a_started_course(course_id, match.match_id, client, therapist.therapist_id)
        )
        await m.consumed("course-starts", started)
        refused = await m.submit(client)
        assert refused.status_code == 409  # in a course
        assert refused.json()["intake_id"] == str(first)

        [completed] = await m.publish(a_completed_course(course_id, client, therapist.therapist_id))
        await m.consumed("course-completions", completed)
        later = await m.submit(client)
        assert later.status_code == 201, later.text
        assert len(await stored(m, client)) == 2
