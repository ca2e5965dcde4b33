"""One intake in progress per client: each takes a therapist's place once matched, so a client
(or a script) submitting again and again took place after place. A new intake replaces one
still waiting for a therapist; a crisis always gets through."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from chassis.testing.events import a_completed_course, a_started_course
from matching import service
from matching.domain.intake import Intake
from matching.domain.lifecycle import IntakeInProgress

SELF_HARM = [1, 1, 1, 1, 1, 1, 1, 1, 2]
SEVERE = [3, 3, 3, 3, 3, 3, 3, 3, 0]


async def statuses(m, client: uuid.UUID) -> dict[uuid.UUID, str]:  # type: ignore[no-untyped-def]
    rows = await m.pool.fetch(
        "SELECT intake_id, status FROM intakes WHERE client_id = $1 ORDER BY submitted_at", client
    )
    return {r["intake_id"]: r["status"] for r in rows}


async def test_a_new_intake_replaces_a_waiting_one_but_not_one_awaiting_a_clinician(
    matching_service,
) -> None:
    async with matching_service(worker=False) as m:
        client = uuid.uuid4()
        first = await m.submitted(client)
        # Worse since (or wider preferences): the newest answers win; the first stays on
        # file, never matched.
        second = await m.submitted(client, phq9=SEVERE)
        assert await statuses(m, client) == {first: "replaced", second: "matching"}
        view = await m.view(first, client, lang="en")
        assert view["status"] == "replaced" and "replaced" in view["status_text"]

        # Thoughts of self-harm: taken, the crisis text at once, whatever else is open.
        crisis = await m.submit(client, phq9=SELF_HARM)
        assert crisis.status_code == 201, crisis.text
        assert crisis.json()["status"] == "awaiting_triage"
        assert "112" in crisis.json()["crisis"]["sv"]
        escalated = uuid.UUID(crisis.json()["intake_id"])

        # While it awaits its triage, a standard intake does not go round the clinician.
        again = await m.submit(client)
        assert again.status_code == 409, again.text
        body = again.json()
        assert body["code"] == "intake_in_progress"
        assert body["intake_id"] == str(escalated)
        assert body["detail"].startswith("Du har redan en ansökan")
        assert body["messages"]["en"].startswith("You already have an intake in progress")
        english = await m.http.post(
            "/intakes", params={"lang": "en"}, json=m.intake(), headers=m.headers(client)
        )
        assert english.json()["detail"] == body["messages"]["en"]
        assert await statuses(m, client) == {
            first: "replaced",
            second: "replaced",
            escalated: "awaiting_triage",
        }


async def test_submissions_sent_at_once_leave_one_in_progress(matching_service) -> None:
    """Two submissions at once: each reads before the other commits, so the check alone
    let both through (a script sending twenty kept several in progress). The database's
    index makes the second wait for the first and refuses it."""
    async with matching_service(worker=False) as m:
        client = uuid.uuid4()
        intake = Intake(**m.intake())
        async with m.pool.acquire() as first, m.pool.acquire() as second:
            held = first.transaction()
            await held.start()  # the first submission, not yet committed
            submitted = await service.submit(first, client, intake)
            racing = asyncio.create_task(service.submit(second, client, intake))
            await asyncio.sleep(0.5)
            assert not racing.done()  # waits on the index for the first to commit
            await held.commit()
            with pytest.raises(IntakeInProgress) as refused:
                await racing
        assert refused.value.intake_id == submitted.intake_id
        assert await statuses(m, client) == {submitted.intake_id: "matching"}


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
        # The first intake's course is over; switching it now would hold a second place.
        switch = await m.http.post(f"/intakes/{first}/switch", headers=m.headers(client))
        assert switch.status_code == 409, switch.text
        assert switch.json()["intake_id"] == later.json()["intake_id"]
        assert len(await statuses(m, client)) == 2
