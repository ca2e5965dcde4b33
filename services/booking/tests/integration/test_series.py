"""A series keeps its local time across daylight saving and books all or nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from booking import service
from booking.app import DEFINITION
from chassis.app import build
from chassis.auth import Principal
from chassis.errors import Conflict

STOCKHOLM = ZoneInfo("Europe/Stockholm")
BEFORE_SPRING = datetime(2026, 3, 10, 12, tzinfo=UTC)  # the clocks go forward on 29 March


async def sessions_of(pool, course_id: uuid.UUID) -> list:
    return await pool.fetch(
        "SELECT * FROM sessions WHERE course_id = $1 ORDER BY starts_at", course_id
    )


async def test_a_weekly_series_keeps_local_time_across_the_spring_switch(pool, kit) -> None:
    therapist, client = await kit.open_therapist(pool, BEFORE_SPRING), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, BEFORE_SPRING)
    tuesday_five_pm = datetime(2026, 3, 17, 17, tzinfo=STOCKHOLM)
    answer = await service.book_series(
        pool,
        Principal(client, "client"),
        course,
        tuesday_five_pm,
        count=4,
        every_weeks=1,
        idempotency_key="dst-series-1",
        now=BEFORE_SPRING,
    )
    starts = [s.starts_at for s in answer.sessions]
    assert [s.hour for s in starts] == [16, 16, 15, 15]  # UTC moves with the clocks
    assert {(s.astimezone(STOCKHOLM).hour, s.astimezone(STOCKHOLM).weekday()) for s in starts} == {
        (17, 1)
    }
    assert [s.number for s in answer.sessions] == [1, 2, 3, 4]
    assert {s.series_id for s in answer.sessions} == {answer.series_id}
    stored = await sessions_of(pool, course)
    assert [row["starts_at"] for row in stored] == starts
    again = await service.book_series(
        pool,
        Principal(client, "client"),
        course,
        tuesday_five_pm,
        count=4,
        every_weeks=1,
        idempotency_key="dst-series-1",
        now=BEFORE_SPRING,
    )
    assert again == answer and len(await sessions_of(pool, course)) == 4
    assert all(row["ends_at"] - row["starts_at"] == timedelta(minutes=45) for row in stored)


async def test_a_series_that_collides_anywhere_books_nothing(
    settings, pool, serve, auth, kit
) -> None:
    now = datetime.now(UTC)
    therapist, client, rival = await kit.open_therapist(pool, now), uuid.uuid4(), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    rival_course = await kit.open_course(pool, rival, therapist, now)
    first = (
        (now + timedelta(days=2))
        .astimezone(STOCKHOLM)
        .replace(hour=10, minute=0, second=0, microsecond=0)
    )
    fourth = datetime.combine(
        first.date() + timedelta(weeks=3), first.time().replace(tzinfo=None), STOCKHOLM
    )
    async with serve(build(DEFINITION, settings, "api")) as http:
        taken = await http.post(
            f"/courses/{rival_course}/sessions",
            json={
                "starts_at": (fourth + timedelta(minutes=30)).isoformat(),
                "idempotency_key": "rival-1",
            },
            headers=auth("client", rival),
        )
        assert taken.status_code == 201, taken.text
        series = await http.post(
            f"/courses/{course}/series",
            json={
                "first_starts_at": first.isoformat(),
                "count": 6,
                "every_weeks": 1,
                "idempotency_key": "series-1",
            },
            headers=auth("client", client),
        )
        too_long = await http.post(
            f"/courses/{course}/series",
            json={"first_starts_at": first.isoformat(), "count": 13, "idempotency_key": "series-2"},
            headers=auth("therapist", therapist),
        )
        elsewhere = await http.post(
            f"/courses/{course}/series",
            json={"first_starts_at": first.isoformat(), "count": 2, "idempotency_key": "series-3"},
            headers=auth("client", rival),
        )
    assert series.status_code == 409
    body = series.json()
    assert body["code"] == "series_unavailable"
    assert [c["starts_at"] for c in body["conflicts"]] == [fourth.astimezone(UTC).isoformat()]
    assert body["conflicts"][0]["code"] == "taken" and body["conflicts"][0]["alternatives"]
    assert await sessions_of(pool, course) == []
    # Twelve planned sessions (IPT's default) cannot take a series of thirteen.
    assert too_long.status_code == 409 and too_long.json()["code"] == "course_full"
    assert elsewhere.status_code == 404
    assert await sessions_of(pool, course) == []


async def test_the_series_refusal_is_a_conflict_with_every_bad_week(pool, kit) -> None:
    therapist, client = await kit.open_therapist(pool, BEFORE_SPRING), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, BEFORE_SPRING)
    late_evening = datetime(2026, 3, 17, 19, 30, tzinfo=STOCKHOLM)  # ends 20:15, after hours
    with pytest.raises(Conflict) as caught:
        await service.book_series(
            pool,
            Principal(client, "client"),
            course,
            late_evening,
            count=3,
            every_weeks=2,
            idempotency_key="late-evening",
            now=BEFORE_SPRING,
        )
    assert [c["code"] for c in caught.value.extra["conflicts"]] == ["outside_hours"] * 3
    assert await sessions_of(pool, course) == []
