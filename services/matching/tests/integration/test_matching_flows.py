"""Matching end to end: HTTP in, events out, against the real Postgres and broker.

The catalog and booking are simulated by publishing their events on their topics.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from prometheus_client import REGISTRY

from chassis.testing.events import a_started_course
from contracts import Envelope
from contracts.events import (
    CourseEnded,
    FreeSlot,
    ReviewPublished,
    TherapistAvailabilityPublished,
    TherapistProfileWithdrawn,
)
from matching.domain.screening import CRISIS_MESSAGE

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SEVERE = [3, 3, 3, 3, 3, 3, 3, 3, 0]  # 24: severe, no self-harm thoughts
SELF_HARM = [1, 1, 1, 1, 1, 1, 1, 1, 1]  # item 9 > 0: high risk


def next_tuesday_at_14() -> datetime:
    """Inside the intakes' window (Tuesdays 13-17 Stockholm time), at least a day ahead."""
    today = datetime.now(STOCKHOLM).date() + timedelta(days=1)
    days = (1 - today.weekday()) % 7
    return datetime.combine(today + timedelta(days=days), time(14), STOCKHOLM).astimezone(UTC)


def clinician() -> uuid.UUID:
    return uuid.uuid4()


async def test_match_duplicates_direct_choice_switch_and_approval(matching_service) -> None:
    async with matching_service() as m:
        grief = m.therapist(focus_areas=["grief"])
        other = m.therapist(focus_areas=["stress"])
        staff = m.therapist(profession="certified_staff", licensed=False, focus_areas=["grief"])
        stranger = m.therapist(languages=[m.another_language()], focus_areas=["grief"])
        slot = next_tuesday_at_14()
        availability = TherapistAvailabilityPublished(
            therapist_id=grief.therapist_id,
            computed_at=datetime.now(UTC),
            active_courses=0,
            free_slots=[FreeSlot(starts_at=slot, minutes=50)],
        )
        await m.publish(grief, other, staff, stranger, availability)
        await m.in_read_model(grief, other, staff, stranger)
        await m.eventually(
            "SELECT count(*) FROM therapist_availability WHERE therapist_id = $1",
            grief.therapist_id,
            expect=1,
        )

        # A normal match: the best fit, with reasons, and the others as alternatives.
        client = uuid.uuid4()
        intake_id = await m.submitted(client)
        matched = await m.wait_for("TherapistMatched", intake_id)
        assert matched.therapist_id == grief.therapist_id
        assert matched.requires_approval is False
        assert matched.previous_therapist_id is None
        assert {"speaks_language", "works_with_area", "first_free_time"} <= {
            r.code for r in matched.reasons
        }
        assert [a.therapist_id for a in matched.alternatives] == [
            staff.therapist_id,
            other.therapist_id,
        ]
        assert matched.relaxed == []
        view = await m.view(intake_id, client, lang="en")
        assert view["status"] == "matched"
        assert view["match"]["therapist_id"] == str(grief.therapist_id)
        assert "works with grief" in view["explanation"]
        local = slot.astimezone(STOCKHOLM)
        assert f"first free time Tuesday {local:%H:%M} ({local.day} " in " ".join(
            view["explanation"]
        )
        assert (await m.view(intake_id, client))["explanation"][1] == "arbetar med sorg"

        # The same IntakeSubmitted again, redelivered and re-sent: still one match.
        [submitted] = m.events("IntakeSubmitted", intake_id)
        resent = Envelope.wrap(submitted.payload)
        await m.publish(submitted, resent)
        await m.consumed("matcher", resent)
        await m.probe.quiet(0.5)
        assert len(m.events("TherapistMatched", intake_id)) == 1
        rows = await m.pool.fetchval("SELECT count(*) FROM matches WHERE intake_id = $1", intake_id)
        assert rows == 1

        # Direct choice honoured when the rules allow ...
        chooser = uuid.uuid4()
        chose_other = await m.submitted(chooser, direct_therapist_id=str(other.therapist_id))
        chosen = await m.wait_for("TherapistMatched", chose_other)
        assert chosen.therapist_id == other.therapist_id
        assert chosen.reasons[0].code == "chosen_by_client"
        # ... else explained, with the best match instead.
        another = uuid.uuid4()  # (one intake in progress at a time: another client)
        chose_stranger = await m.submitted(another, direct_therapist_id=str(stranger.therapist_id))
        instead = await m.wait_for("TherapistMatched", chose_stranger)
        assert instead.therapist_id == grief.therapist_id
        assert "direct_choice" in instead.relaxed
        refused = await m.view(chose_stranger, another, lang="en")
        assert refused["match"]["choice_refused"] == [
            {"code": "language", "text": "does not speak any of your languages"}
        ]
        assert "the therapist you chose could not be offered" in refused["explanation"]

        # Switching: the current therapist (and every earlier one) is excluded.
        first = await m.http.post(f"/intakes/{intake_id}/switch", headers=m.headers(client))
        assert first.status_code == 200, first.text
        switched = await m.wait_for("TherapistMatched", intake_id, count=2)
        assert switched.previous_therapist_id == grief.therapist_id
        assert switched.therapist_id == staff.therapist_id
        assert first.json()["match"]["therapist_id"] == str(staff.therapist_id)
        second = await m.http.post(f"/intakes/{intake_id}/switch", headers=m.headers(client))
        assert second.json()["match"]["therapist_id"] == str(other.therapist_id)
        nobody = await m.http.post(f"/intakes/{intake_id}/switch", headers=m.headers(client))
        assert nobody.status_code == 409
        assert nobody.json()["code"] == "nobody_to_switch_to"
        assert nobody.json()["detail"].endswith("du behåller din terapeut.")
        assert (await m.view(intake_id, client))["match"]["therapist_id"] == str(other.therapist_id)
        await m.wait_for("TherapistMatched", intake_id, count=3)
        assert len(m.events("TherapistMatched", intake_id)) == 3

        # Severe: only licensed therapists, and a clinician approves before booking opens.
        severe_client = uuid.uuid4()
        severe = await m.submitted(severe_client, phq9=SEVERE)
        proposed = await m.wait_for("TherapistMatched", severe)
        assert proposed.requires_approval is True
        assert proposed.therapist_id == grief.therapist_id  # staff is better placed, unlicensed
        assert (await m.view(severe, severe_client))["status"] == "awaiting_approval"
        on_call = clinician()
        queue = await m.http.get("/clinician/queue", headers=m.headers(on_call, "clinician"))
        [entry] = [e for e in queue.json() if e["intake_id"] == str(severe)]
        assert entry["proposed_match"]["match_id"] == str(proposed.match_id)
        assert entry["severity_band"] == "severe"

        rejected = await m.http.post(
            f"/clinician/matches/{proposed.match_id}/reject",
            headers=m.headers(on_call, "clinician"),
        )
        assert rejected.status_code == 200, rejected.text
        assert (await m.wait_for("MatchRejected", severe)).therapist_id == grief.therapist_id
        next_one = await m.wait_for("TherapistMatched", severe, count=2)
        assert next_one.therapist_id == other.therapist_id
        assert next_one.requires_approval is True
        assert rejected.json()["next_match_id"] == str(next_one.match_id)

        approved = await m.http.post(
            f"/clinician/matches/{next_one.match_id}/approve",
            headers=m.headers(on_call, "clinician"),
        )
        assert approved.status_code == 200, approved.text
        approval = await m.wait_for("MatchApproved", severe)
        assert approval.clinician_id == on_call
        assert approval.therapist_id == other.therapist_id
        final = await m.view(severe, severe_client)
        assert final["status"] == "matched"
        assert final["match"]["approved"] is True
        again = await m.http.post(
            f"/clinician/matches/{next_one.match_id}/approve",
            headers=m.headers(on_call, "clinician"),
        )
        assert again.status_code == 409


async def test_waitlist_crisis_triage_and_the_read_model(matching_service) -> None:
    async with matching_service(waiting_watch_s=0.2) as m:
        # Nobody in the read model speaks this test's language yet: both wait, in order.
        early, late = uuid.uuid4(), uuid.uuid4()
        first = await m.submitted(early)
        waiting = await m.wait_for("IntakeWaitlisted", first)
        assert waiting.reasons
        second = await m.submitted(late)
        await m.wait_for("IntakeWaitlisted", second)
        view = await m.view(first, early, lang="en")
        assert view["status"] == "waitlisted"
        assert view["waitlist"]["reasons"][0]["text"]

        # A therapist with room for one is published: the first to wait gets them.
        solo = m.therapist(capacity=1)
        await m.publish(solo)
        match = await m.wait_for("TherapistMatched", first)
        assert match.therapist_id == solo.therapist_id
        await m.probe.quiet(1.0)
        assert m.events("TherapistMatched", second) == []
        assert len(m.events("IntakeWaitlisted", second)) == 1  # a failed retry tells nobody
        status = "SELECT status FROM intakes WHERE intake_id = $1"
        assert await m.pool.fetchval(status, second) == "waitlisted"

        # Booking opens the course, later it ends: the place frees and the next one gets it.
        course_id = uuid.uuid4()
        started = a_started_course(course_id, match.match_id, early, solo.therapist_id)
        [started_envelope] = await m.publish(started)
        await m.consumed("course-starts", started_envelope)
        await m.probe.quiet(0.5)
        assert m.events("TherapistMatched", second) == []
        ended = CourseEnded(
            course_id=course_id,
            client_id=early,
            therapist_id=solo.therapist_id,
            reason="client_withdrew",
            ended_by="client",
            sessions_held=2,
        )
        await m.publish(ended)
        assert (await m.wait_for("TherapistMatched", second)).therapist_id == solo.therapist_id

        # Crisis: the crisis text at once, the clinician alerted, and no match before triage.
        roomy = m.therapist(capacity=10, version=3)
        await m.publish(roomy)
        await m.in_read_model(roomy)
        person = uuid.uuid4()
        r = await m.submit(person, phq9=SELF_HARM)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["crisis"] == CRISIS_MESSAGE
        assert "112" in body["crisis"]["sv"] and "112" in body["crisis"]["en"]
        assert body["status"] == "awaiting_triage"
        crisis = uuid.UUID(body["intake_id"])
        escalated = await m.wait_for("IntakeEscalated", crisis)
        assert escalated.client_id == person
        submitted = await m.wait_for("IntakeSubmitted", crisis)
        assert submitted.risk_level == "high"
        await m.consumed("matcher", m.events("IntakeSubmitted", crisis)[0])
        await m.probe.quiet(1.5)
        assert m.events("TherapistMatched", crisis) == []
        assert await m.pool.fetchval(status, crisis) == "awaiting_triage"
        # The worker exports how long the oldest crisis intake has waited (alerts page on it).
        assert m.worker is not None
        metrics = (await m.worker.get("/metrics")).text
        [waited] = re.findall(
            r"^samtal_intakes_awaiting_triage_oldest_seconds (\S+)$", metrics, re.M
        )
        assert float(waited) >= 1.0

        on_call = clinician()
        queue = await m.http.get("/clinician/queue", headers=m.headers(on_call, "clinician"))
        assert str(crisis) in [e["intake_id"] for e in queue.json()]
        triaged = await m.http.post(
            f"/clinician/intakes/{crisis}/triage",
            json={"decision": "resume_matching"},
            headers=m.headers(on_call, "clinician"),
        )
        assert triaged.status_code == 200, triaged.text
        assert triaged.json()["status"] == "matched"
        assert (await m.wait_for("IntakeTriaged", crisis)).decision == "resume_matching"
        assert (await m.wait_for("TherapistMatched", crisis)).therapist_id == roomy.therapist_id

        # Referred elsewhere: never matched.
        referred_person = uuid.uuid4()
        referred = await m.submitted(referred_person, phq9=SELF_HARM)
        r = await m.http.post(
            f"/clinician/intakes/{referred}/triage",
            json={"decision": "refer_elsewhere"},
            headers=m.headers(on_call, "clinician"),
        )
        assert r.json()["status"] == "referred_elsewhere"
        assert (await m.wait_for("IntakeTriaged", referred)).decision == "refer_elsewhere"
        await m.consumed("matcher", m.events("IntakeSubmitted", referred)[0])
        await m.probe.quiet(0.5)
        assert m.events("TherapistMatched", referred) == []
        assert m.events("IntakeWaitlisted", referred) == []

        # Out of order across the two profile topics: a withdrawal outlives older profiles,
        # even one that arrives after it; the rating backed by more reviews wins.
        gone = m.therapist(capacity=10, version=1)
        [gone_first] = await m.publish(
            TherapistProfileWithdrawn(
                therapist_id=gone.therapist_id, reason="left_platform", version=2
            )
        )
        await m.consumed("therapist-withdrawals", gone_first)
        review = ReviewPublished(
            review_id=uuid.uuid4(),
            therapist_id=roomy.therapist_id,
            course_id=uuid.uuid4(),
            rating=5,
            rating_average=4.9,
            rating_count=12,
        )
        withdrawal = TherapistProfileWithdrawn(
            therapist_id=roomy.therapist_id, reason="withdrawn_by_admin", version=4
        )
        late_gone, _, _ = await m.publish(gone, review, withdrawal)
        await m.consumed("therapist-profiles", late_gone)
        withdrawn = "SELECT withdrawn FROM therapists WHERE therapist_id = $1"
        await m.eventually(withdrawn, roomy.therapist_id, expect=True)
        assert await m.pool.fetchval(withdrawn, gone.therapist_id) is True
        await m.eventually(
            "SELECT rating_count FROM therapist_ratings WHERE therapist_id = $1",
            roomy.therapist_id,
            expect=12,
        )
        # Solo is full, roomy withdrawn, gone never back: a new intake waits.
        newcomer = await m.submitted(uuid.uuid4())
        await m.wait_for("IntakeWaitlisted", newcomer)


async def test_a_waitlisted_intake_that_cannot_be_decided_does_not_hold_back_the_line(
    matching_service,
) -> None:
    """First come, first served, but one intake whose decision fails (here: a stored row
    with a hole, a time window without its times) is passed over, still waitlisted, instead
    of failing every retry pass before anyone behind it is reached."""
    async with matching_service() as m:
        early, late = uuid.uuid4(), uuid.uuid4()
        unreadable = await m.submitted(early)
        await m.wait_for("IntakeWaitlisted", unreadable)
        behind = await m.submitted(late)
        await m.wait_for("IntakeWaitlisted", behind)
        await m.pool.execute(
            """UPDATE intakes SET time_windows = '[{"weekday": 0}]' WHERE intake_id = $1""",
            unreadable,
        )
        passed_over = REGISTRY.get_sample_value("samtal_waitlist_intakes_passed_over_total") or 0

        try:
            await m.publish(m.therapist(capacity=1))
            assert (await m.wait_for("TherapistMatched", behind)).client_id == late
            status = "SELECT status FROM intakes WHERE intake_id = $1"
            assert await m.pool.fetchval(status, unreadable) == "waitlisted"
            assert m.events("TherapistMatched", unreadable) == []
            counted = REGISTRY.get_sample_value("samtal_waitlist_intakes_passed_over_total") or 0
            assert counted > passed_over
        finally:  # (readable again: the waitlist passes of later tests need not pass it over)
            await m.pool.execute(
                "UPDATE intakes SET time_windows = '[]' WHERE intake_id = $1",
                unreadable,
            )


async def test_a_therapist_whose_profile_has_a_hole_is_not_offered_and_stops_nothing(
    matching_service,
) -> None:
    """A row of the read model with a hole (here: an operator's edit left no time zone) is
    left out wherever candidates are read, and named by the waiting watch; before, the
    worker's index failed on it at every build, and no intake was matched at all."""
    async with matching_service(waiting_watch_s=0.2) as m:
        whole, holed = m.therapist(capacity=5), m.therapist(capacity=5)
        await m.publish(whole, holed)
        await m.in_read_model(whole, holed)
        await m.pool.execute(
            "UPDATE therapists SET time_zone = NULL WHERE therapist_id = $1", holed.therapist_id
        )
        # Every worker's index reads it again, as after any change of a therapist.
        await m.pool.execute(
            "SELECT pg_notify(current_schema() || '_therapists', $1)", str(holed.therapist_id)
        )
        try:
            for _ in range(3):
                intake = await m.submitted(uuid.uuid4())
                match = await m.wait_for("TherapistMatched", intake)
                assert match.therapist_id == whole.therapist_id
            metrics = ""
            for _ in range(100):  # the watch's next round names it
                assert m.worker is not None
                metrics = (await m.worker.get("/metrics")).text
                if re.search(r"^samtal_matching_therapists_incomplete [1-9]", metrics, re.M):
                    break
                await asyncio.sleep(0.05)
            assert re.search(r"^samtal_matching_therapists_incomplete [1-9]", metrics, re.M)
        finally:
            await m.pool.execute(
                "UPDATE therapists SET withdrawn = true WHERE therapist_id = $1",
                holed.therapist_id,
            )


async def test_a_proposal_to_a_therapist_withdrawn_since_is_not_approved(matching_service) -> None:
    """The therapist proposed for a severe intake is withdrawn (a licence revoked) before a
    clinician approves: approving answers 409 (booking would open a course nobody can book,
    and tell the therapist of a new client); rejecting proposes the next therapist."""
    async with matching_service() as m:
        revoked, next_one = m.therapist(), m.therapist(focus_areas=["stress"])
        await m.publish(revoked, next_one)
        await m.in_read_model(revoked, next_one)
        client = uuid.uuid4()
        severe = await m.submitted(client, phq9=SEVERE)
        proposed = await m.wait_for("TherapistMatched", severe)
        assert proposed.requires_approval and proposed.therapist_id == revoked.therapist_id
        await m.publish(
            TherapistProfileWithdrawn(
                therapist_id=revoked.therapist_id, reason="licence_revoked", version=2
            )
        )
        await m.eventually(
            "SELECT count(*) FROM therapists WHERE therapist_id = $1 AND withdrawn",
            revoked.therapist_id,
            expect=1,
        )
        on_call = m.headers(clinician(), "clinician")
        refused = await m.http.post(
            f"/clinician/matches/{proposed.match_id}/approve", headers=on_call
        )
        assert refused.status_code == 409, refused.text
        assert "withdrawn" in refused.json()["detail"]
        assert (await m.view(severe, client))["status"] == "awaiting_approval"
        rejected = await m.http.post(
            f"/clinician/matches/{proposed.match_id}/reject", headers=on_call
        )
        assert rejected.status_code == 200, rejected.text
        again = await m.wait_for("TherapistMatched", severe, count=2)
        assert again.therapist_id == next_one.therapist_id
        await m.probe.quiet(0.5)
        assert m.events("MatchApproved", severe) == []
