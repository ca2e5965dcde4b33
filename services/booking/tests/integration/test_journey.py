"""From catalog's and matching's events to courses, bookings, changes and a switch of therapist,
through the real broker: one worker, several checks (a worker takes ~5 s to join its groups)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from booking.app import DEFINITION
from chassis.app import build
from chassis.testing.events import an_approval
from chassis.testing.kafka import publish
from contracts import Envelope
from contracts.events import TherapistProfileWithdrawn

STOCKHOLM = ZoneInfo("Europe/Stockholm")


# The first therapist's hours: the night between them (8 hours) is short enough that the
# second free time past the notice (12 hours) is within 24 hours at any time of day, as the
# late cancellation and the late move below need.
HOURS = "06:00-22:00"


def at_ten(now: datetime, days: int) -> str:
    """10:00 Stockholm time `days` from now, as the client's app would send it."""
    day = (now + timedelta(days=days)).astimezone(STOCKHOLM).date()
    return datetime(day.year, day.month, day.day, 10, tzinfo=STOCKHOLM).isoformat()


async def test_from_matches_to_bookings_and_a_switch(
    settings, pool, serve, auth, kit, kafka_bootstrap, topic_prefix
) -> None:
    now = datetime.now(UTC)
    first, second = uuid.uuid4(), uuid.uuid4()  # therapists
    client, severe_client, stranger = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    as_client, as_first = auth("client", client), auth("therapist", first)

    async def course_of_match(match_id: uuid.UUID) -> list:
        return await pool.fetch("SELECT * FROM courses WHERE match_id = $1", match_id)

    async with (
        serve(build(DEFINITION, settings, "api")) as http,
        serve(build(DEFINITION, settings, "worker")),
        kit.probe_for(settings, kafka_bootstrap) as probe,
    ):
        # The read model: a newer profile arrives before an older one, which must not win.
        await publish(
            kafka_bootstrap,
            topic_prefix,
            kit.profile(first, version=2),
            kit.profile(first, version=1, time_zone="America/New_York"),
            kit.profile(second, version=1),
        )

        # Availability: the therapist's own, in their time zone; nobody else's.
        put = await http.put(
            f"/therapists/{first}/availability", json=kit.hours(HOURS), headers=as_first
        )
        assert put.status_code == 200 and put.json()["weekly"]["monday"] == [HOURS]
        foreign = await http.put(
            f"/therapists/{first}/availability", json=kit.hours(), headers=auth("therapist", second)
        )
        overlapping = await http.put(
            f"/therapists/{second}/availability",
            json=kit.hours("08:00-12:00", weekly={"monday": ["08:00-12:00", "11:00-13:00"]}),
            headers=auth("therapist", second),
        )
        by_client = await http.put(
            f"/therapists/{first}/availability", json=kit.hours(), headers=as_client
        )
        assert (foreign.status_code, by_client.status_code) == (404, 403)
        assert overlapping.status_code == 422 and overlapping.json()["code"] == "hours_overlap"
        await http.put(
            f"/therapists/{second}/availability",
            json=kit.hours(),
            headers=auth("therapist", second),
        )

        # A match delivered twice as one event and once more as another opens one course.
        matched = kit.match(client, first)
        twice = Envelope.wrap(matched)
        await publish(kafka_bootstrap, topic_prefix, twice, twice, matched)
        # A severe match waits for the clinician; here the approval even comes first.
        severe = kit.match(severe_client, first, requires_approval=True, severity_band="severe")
        approval = an_approval(severe)
        pending = kit.match(stranger, first, requires_approval=True)
        await publish(kafka_bootstrap, topic_prefix, approval, pending)
        await publish(kafka_bootstrap, topic_prefix, severe)
        await probe.wait_for(
            lambda p: (
                {c.match_id for c in kit.mine(p, "CourseStarted", therapist_id=first)}
                == {matched.match_id, severe.match_id}
            )
        )
        await kit.eventually(
            lambda: pool.fetchval(
                "SELECT count(*) FROM matches WHERE match_id = $1", pending.match_id
            )
        )
        await probe.quiet(0.5)
        assert len(kit.mine(probe, "CourseStarted", match_id=matched.match_id)) == 1
        assert len(await course_of_match(matched.match_id)) == 1
        assert await course_of_match(pending.match_id) == []  # not approved: no course
        therapist_row = await pool.fetchrow(
            "SELECT * FROM therapists WHERE therapist_id = $1", first
        )
        assert (therapist_row["version"], therapist_row["time_zone"]) == (2, "Europe/Stockholm")

        # Reading courses: own ones only; anybody else gets 404.
        mine = await http.get("/courses", headers=as_client)
        assert [c["match_id"] for c in mine.json()] == [str(matched.match_id)]
        course = mine.json()[0]["course_id"]
        assert mine.json()[0]["planned_sessions"] == 12 and mine.json()[0]["session_minutes"] == 45
        for outsider in (auth("client", stranger), auth("therapist", second)):
            assert (await http.get(f"/courses/{course}", headers=outsider)).status_code == 404
        detail = await http.get(f"/courses/{course}", headers=as_first)
        assert detail.status_code == 200 and detail.json()["start_severity_band"] == "moderate"
        assert (await http.get("/courses", headers=as_first)).status_code == 200
        assert (await http.get("/courses", headers=auth("admin", stranger))).status_code == 403
        assert (await http.get("/courses")).status_code == 401

        # Slots for a client with a course with that therapist; nobody else.
        slots = await http.get(f"/therapists/{first}/slots", headers=as_client)
        assert slots.status_code == 200 and slots.json()["minutes"] == 45
        soonest = slots.json()["slots"][1]["starts_at"]  # a step clear of the notice
        assert datetime.fromisoformat(soonest) >= now + timedelta(hours=12)
        stranger_slots = await http.get(
            f"/therapists/{second}/slots", headers=auth("client", stranger)
        )
        assert stranger_slots.status_code == 404

        async def book(starts_at: str, key: str):
            return await http.post(
                f"/courses/{course}/sessions",
                json={"starts_at": starts_at, "idempotency_key": key},
                headers=as_client,
            )

        soon, later, latest = (
            await book(soonest, "s1"),
            await book(at_ten(now, 3), "s2"),
            await book(at_ten(now, 5), "s3"),
        )
        assert [r.status_code for r in (soon, later, latest)] == [201, 201, 201]
        assert [r.json()["number"] for r in (soon, later, latest)] == [1, 2, 3]
        clash = await book(at_ten(now, 3), "s4")
        assert clash.status_code == 409 and clash.json()["code"] == "taken"
        off_hours = await book(at_ten(now, 3).replace("T10:00", "T23:00"), "s5")
        assert off_hours.status_code == 409 and off_hours.json()["code"] == "outside_hours"

        # Cancelling inside 24 hours counts; moving three days ahead is free.
        cancelled = await http.post(
            f"/sessions/{soon.json()['session_id']}/cancel", headers=as_client
        )
        assert cancelled.status_code == 200
        assert (cancelled.json()["status"], cancelled.json()["counts_as_used"]) == (
            "late_cancelled",
            True,
        )
        moved = await http.post(
            f"/sessions/{later.json()['session_id']}/reschedule",
            json={"starts_at": at_ten(now, 4)},
            headers=as_client,
        )
        assert moved.status_code == 200 and moved.json()["number"] == 2
        assert moved.json()["meeting_url"] == later.json()["meeting_url"]
        # Moving inside 24 hours counts: the missed place stays on record, the session moves on.
        fresh = await http.get(f"/therapists/{first}/slots", headers=as_client)
        soonish = await book(fresh.json()["slots"][1]["starts_at"], "s6")
        assert soonish.json()["number"] == 4
        moved_late = await http.post(
            f"/sessions/{soonish.json()['session_id']}/reschedule",
            json={"starts_at": at_ten(now, 6)},
            headers=as_client,
        )
        assert moved_late.status_code == 200
        assert (moved_late.json()["session_id"], moved_late.json()["number"]) == (
            soonish.json()["session_id"],
            5,
        )
        assert (moved_late.json()["late"], moved_late.json()["counts_as_used"]) == (True, True)
        record = (await http.get(f"/courses/{course}", headers=as_client)).json()["sessions"]
        assert sorted((s["number"], s["status"]) for s in record) == [
            (1, "late_cancelled"),
            (2, "booked"),
            (3, "booked"),
            (4, "late_cancelled"),
            (5, "booked"),
        ]
        not_yours = await http.post(
            f"/sessions/{later.json()['session_id']}/cancel", headers=auth("client", stranger)
        )
        assert not_yours.status_code == 404

        # A switch (a later match of the same intake): the course with the first therapist
        # ends, its bookings freed, uncounted.
        switch = kit.match(client, second, intake_id=matched.intake_id, previous_therapist_id=first)
        await publish(kafka_bootstrap, topic_prefix, switch)
        await probe.wait_for(lambda p: bool(kit.mine(p, "CourseEnded", client_id=client)))
        await probe.wait_for(lambda p: len(kit.mine(p, "SessionCancelled", client_id=client)) == 4)
        await probe.wait_for(lambda p: bool(kit.mine(p, "CourseStarted", match_id=switch.match_id)))

        # A withdrawn therapist takes no new bookings.
        await publish(
            kafka_bootstrap,
            topic_prefix,
            TherapistProfileWithdrawn(therapist_id=second, reason="other", version=2),
        )
        await kit.eventually(
            lambda: pool.fetchval(
                "SELECT NOT published FROM therapists WHERE therapist_id = $1", second
            )
        )
        new_course = (await course_of_match(switch.match_id))[0]["course_id"]
        refused = await http.post(
            f"/courses/{new_course}/sessions",
            json={"starts_at": at_ten(now, 6), "idempotency_key": "after-withdrawal"},
            headers=as_client,
        )
        assert refused.status_code == 409 and refused.json()["code"] == "therapist_unavailable"
        closed = await http.get(f"/therapists/{second}/slots", headers=as_client)
        assert closed.status_code == 200 and closed.json()["slots"] == []
        hours = await http.get(f"/therapists/{first}/availability", headers=as_first)
        assert hours.json()["weekly"]["sunday"] == [HOURS]
        assert hours.json()["time_zone"] == "Europe/Stockholm"
        assert (
            await http.get(f"/therapists/{first}/availability", headers=as_client)
        ).status_code == 403
        # (The first therapist's summaries may not have arrived yet: wait for one.)
        await probe.wait_for(
            lambda p: any(
                s.active_courses == 1
                for s in kit.mine(p, "TherapistAvailabilityPublished", therapist_id=first)[-1:]
            )
        )
        # The withdrawal's summary leaves after commit, within the publisher's window.
        await probe.wait_for(
            lambda p: any(
                not s.free_slots
                for s in kit.mine(p, "TherapistAvailabilityPublished", therapist_id=second)
            )
        )

    booked = kit.mine(probe, "SessionBooked", course_id=uuid.UUID(course))
    assert sorted(b.number for b in booked) == [1, 2, 3, 4]
    assert all(
        b.mode == "video" and b.meeting_url and b.time_zone == "Europe/Stockholm" for b in booked
    )
    moves = kit.mine(probe, "SessionRescheduled", course_id=uuid.UUID(course))
    assert sorted((m.number, m.late, m.counts_as_used) for m in moves) == [
        (2, False, False),
        (5, True, True),
    ]
    cancellations = {c.number: c for c in kit.mine(probe, "SessionCancelled", client_id=client)}
    assert (cancellations[1].cancelled_by, cancellations[1].counts_as_used) == ("client", True)
    assert {(c.cancelled_by, c.counts_as_used) for n, c in cancellations.items() if n > 1} == {
        ("system", False)
    }
    [ended] = kit.mine(probe, "CourseEnded", client_id=client)
    assert (ended.reason, ended.ended_by, ended.therapist_id) == (
        "switched_therapist",
        "system",
        first,
    )
    summaries = kit.mine(probe, "TherapistAvailabilityPublished", therapist_id=first)
    assert summaries[-1].free_slots and len(summaries[-1].free_slots) <= 400
    assert all(s.minutes == 50 for s in summaries[-1].free_slots)
    # Matching keeps the newest summary by computed_at (the order of arrival may differ).
    withdrawn = max(
        kit.mine(probe, "TherapistAvailabilityPublished", therapist_id=second),
        key=lambda summary: summary.computed_at,
    )
    assert withdrawn.free_slots == []
