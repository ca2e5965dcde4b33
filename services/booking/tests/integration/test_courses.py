"""Attendance, PHQ-9 and completion with its outcome; the plan and ending a course early."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from booking import service
from booking.app import DEFINITION
from chassis import audit
from chassis.app import build
from chassis.auth import Principal
from chassis.outbox import OutboxRelay
from chassis.testing.events import an_approval

LONG_AGO = datetime(2026, 1, 5, 8, tzinfo=UTC)  # sessions then are over now: attendance is due


async def past_series(pool, kit, therapist, hour: int) -> tuple[uuid.UUID, uuid.UUID, list[str]]:
    """A client whose twelve weekly sessions were booked (back then) and have all been held."""
    client = uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, LONG_AGO)
    booked = await service.book_series(
        pool,
        Principal(client, "client"),
        course,
        datetime(2026, 1, 12, hour, tzinfo=UTC),
        count=12,
        every_weeks=1,
        idempotency_key=f"past-{client}",
        now=LONG_AGO,
    )
    return client, course, [s.session_id for s in booked.sessions]


async def test_a_completed_course_reports_its_outcome(
    settings, pool, serve, auth, kit, kafka_bootstrap
) -> None:
    therapist = await kit.open_therapist(pool, LONG_AGO, kit.hours(horizon_days=120))
    remitted = await past_series(pool, kit, therapist, hour=9)
    responded = await past_series(pool, kit, therapist, hour=12)
    relay = OutboxRelay(settings, pool)
    by_therapist = auth("therapist", therapist)
    async with (
        serve(build(DEFINITION, settings, "api")) as http,
        kit.probe_for(settings, kafka_bootstrap) as probe,
    ):
        relay.start()

        async def attend(session_id: str, phq9: int | None = None, who=by_therapist):
            body = {"attendance": "attended", "phq9_total": phq9}
            return await http.post(f"/sessions/{session_id}/attendance", json=body, headers=who)

        for (client, course, sessions), (start, final) in (
            (remitted, (16, 4)),
            (responded, (20, 10)),
        ):
            missing = await attend(sessions[0])
            assert missing.status_code == 422 and missing.json()["code"] == "phq9_required"
            assert (await attend(sessions[0], who=auth("client", client))).status_code == 403
            assert (await attend(sessions[0], start)).status_code == 200
            for session in sessions[1:-1]:
                assert (await attend(session)).status_code == 200
            last = await attend(sessions[-1], final)
            assert last.status_code == 200 and last.json()["phq9_total"] == final
            read = await http.get(f"/courses/{course}", headers=auth("client", client))
            assert read.json()["status"] == "completed"
            assert [s["phq9_total"] for s in read.json()["sessions"]] == [start] + [None] * 10 + [
                final
            ]

        await probe.wait_for(
            lambda p: len(kit.mine(p, "CourseCompleted", therapist_id=therapist)) == 2
        )
        # The summary leaves after commit, from the worker's publisher (here called directly).
        assert await service.publish_due_summaries(pool, datetime.now(UTC), window_s=0) >= 1
        await probe.wait_for(
            lambda p: bool(kit.mine(p, "TherapistAvailabilityPublished", therapist_id=therapist))
        )
        await relay.stop()

    outcomes = {c.course_id: c for c in kit.mine(probe, "CourseCompleted", therapist_id=therapist)}
    assert outcomes[remitted[1]].outcome == "remission"
    assert (
        outcomes[remitted[1]].start_severity_band,
        outcomes[remitted[1]].final_severity_band,
    ) == (
        "moderately_severe",
        "minimal",
    )
    assert outcomes[responded[1]].outcome == "response"
    assert outcomes[responded[1]].sessions_held == 12
    attended = kit.mine(probe, "SessionAttended", course_id=remitted[1])
    assert sorted(a.number for a in attended) == list(range(1, 13))
    assert [a.phq9_recorded for a in sorted(attended, key=lambda a: a.number)] == (
        [True] + [False] * 10 + [True]
    )
    summaries = kit.mine(probe, "TherapistAvailabilityPublished", therapist_id=therapist)
    assert summaries[-1].active_courses == 0
    async with pool.acquire() as conn:
        trail = await audit.for_subject(conn, remitted[0])
    assert [(t["actor_role"], t["action"], t["resource"]) for t in trail] == [
        ("therapist", "record", "phq9"),
        ("therapist", "record", "phq9"),
        ("client", "read", "course"),
    ]


async def test_the_therapist_adjusts_the_plan_and_a_client_ends_early(
    settings, pool, serve, auth, kit
) -> None:
    now = datetime.now(UTC)
    therapist, client = await kit.open_therapist(pool, now), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    first = (now + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    as_client, as_therapist = auth("client", client), auth("therapist", therapist)
    async with serve(build(DEFINITION, settings, "api")) as http:
        series = await http.post(
            f"/courses/{course}/series",
            json={"first_starts_at": first.isoformat(), "count": 3, "idempotency_key": "three"},
            headers=as_client,
        )
        assert series.status_code == 201
        longer = await http.patch(
            f"/courses/{course}", json={"planned_sessions": 16}, headers=as_therapist
        )
        beyond = await http.patch(
            f"/courses/{course}", json={"planned_sessions": 17}, headers=as_therapist
        )
        by_client = await http.patch(
            f"/courses/{course}", json={"planned_sessions": 14}, headers=as_client
        )
        wrong_reason = await http.post(
            f"/courses/{course}/end", json={"reason": "no_shows"}, headers=as_client
        )
        ended = await http.post(
            f"/courses/{course}/end", json={"reason": "client_withdrew"}, headers=as_client
        )
        again = await http.post(
            f"/courses/{course}/end", json={"reason": "client_withdrew"}, headers=as_client
        )
        detail = await http.get(f"/courses/{course}", headers=as_therapist)
    assert longer.status_code == 200 and longer.json()["planned_sessions"] == 16
    assert beyond.status_code == 422 and beyond.json()["code"] == "planned_sessions_out_of_range"
    assert by_client.status_code == 403
    assert (
        wrong_reason.status_code == 422 and wrong_reason.json()["code"] == "end_reason_not_allowed"
    )
    assert ended.status_code == 200 and ended.json()["status"] == "ended_early"
    assert again.status_code == 409 and again.json()["code"] == "course_closed"
    sessions = detail.json()["sessions"]
    assert [(s["status"], s["late"], s["counts_as_used"]) for s in sessions] == [
        ("cancelled", False, False)
    ] * 3
    ended_events = await pool.fetch(
        "SELECT value FROM outbox WHERE event_type = 'CourseEnded' AND key = $1", str(course)
    )
    assert len(ended_events) == 1


async def test_a_switch_whose_proposal_was_rejected_still_ends_the_first_course(pool, kit) -> None:
    """A severe client switches; the clinician rejects the proposal, and the match that
    follows names no previous therapist (matching proposes afresh). Its course ended the
    first one only through that name: the client kept two courses, the first one's
    sessions booked (and reminded). An approval of the rejected proposal, arriving late,
    opens nothing: the intake has moved on."""
    now = datetime.now(UTC)
    first, second, third = [await kit.open_therapist(pool, now) for _ in range(3)]
    client = uuid.uuid4()
    severe = {"requires_approval": True, "severity_band": "severe"}
    m1 = kit.match(client, first, **severe)
    m2 = kit.match(client, second, intake_id=m1.intake_id, previous_therapist_id=first, **severe)
    m3 = kit.match(client, third, intake_id=m1.intake_id, **severe)

    async def deliver(handler, event) -> None:  # type: ignore[no-untyped-def]
        async with pool.acquire() as conn, conn.transaction():
            await handler(conn, event, now)

    await deliver(service.on_match, m1)
    await deliver(service.on_approval, an_approval(m1))
    [c1] = await courses_of(pool, client)
    booked = await service.book_session(
        pool,
        Principal(client, "client"),
        c1["course_id"],
        (await service.free_slots_for(pool, Principal(client, "client"), first, now))
        .slots[0]
        .starts_at,
        "first-course-session",
        now,
    )
    await deliver(service.on_match, m2)  # proposed: waits for the clinician, who rejects it
    await deliver(service.on_match, m3)
    await deliver(service.on_approval, an_approval(m3))
    await deliver(service.on_approval, an_approval(m2))  # late, and superseded

    courses = {c["match_id"]: c for c in await courses_of(pool, client)}
    assert set(courses) == {m1.match_id, m3.match_id}
    assert courses[m1.match_id]["status"] == "ended_early"
    assert courses[m1.match_id]["end_reason"] == "switched_therapist"
    assert courses[m3.match_id]["status"] == "active"
    status = await pool.fetchval(
        "SELECT status FROM sessions WHERE session_id = $1", booked.session_id
    )
    assert status == "cancelled"


async def courses_of(pool, client: uuid.UUID) -> list:  # type: ignore[no-untyped-def]
    return list(
        await pool.fetch("SELECT * FROM courses WHERE client_id = $1 ORDER BY started_at", client)
    )


async def test_a_late_approval_opens_nothing_after_the_later_course_ended(pool, kit) -> None:
    """The intake moved on to a later match whose course has ended meanwhile: the earlier
    match's approval, arriving late, still opens no course (only the active ones were
    compared)."""
    now = datetime.now(UTC)
    first, second = [await kit.open_therapist(pool, now) for _ in range(2)]
    client = uuid.uuid4()
    m1 = kit.match(client, first, requires_approval=True, severity_band="severe")
    m2 = kit.match(client, second, intake_id=m1.intake_id)
    async with pool.acquire() as conn, conn.transaction():
        await service.on_match(conn, m1, now)  # waits for a clinician
        await service.on_match(conn, m2, now)  # a later match: its course opens
    [c2] = await courses_of(pool, client)
    await service.end_course(
        pool, Principal(client, "client"), c2["course_id"], "client_withdrew", now
    )
    async with pool.acquire() as conn, conn.transaction():
        await service.on_approval(conn, an_approval(m1), now)
    assert [c["match_id"] for c in await courses_of(pool, client)] == [m2.match_id]
