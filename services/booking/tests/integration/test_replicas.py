"""Faults with replicas: two apis and two workers at once never double-book, and a worker
that dies while summaries are pending leaves them for another, so matching still receives
the current summary (read from the topic, as matching reads it)."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from booking import service, store
from booking.app import DEFINITION
from chassis import db
from chassis.app import build
from chassis.auth import Principal


async def overlaps(pool: asyncpg.Pool, therapist_id: uuid.UUID) -> tuple[int, int]:
    """(live sessions overlapping, live sessions inside another's buffer): SQL, not the app."""
    live = "status IN ('booked', 'attended', 'no_show')"
    pairs = (
        "FROM sessions a JOIN sessions b ON a.therapist_id = b.therapist_id"
        f" AND a.session_id < b.session_id AND a.{live} AND b.{live} WHERE a.therapist_id = $1"
    )
    overlapping = await pool.fetchval(
        f"SELECT count(*) {pairs} AND tstzrange(a.starts_at, a.ends_at)"
        " && tstzrange(b.starts_at, b.ends_at)",
        therapist_id,
    )
    too_close = await pool.fetchval(
        f"SELECT count(*) {pairs} AND tstzrange(a.starts_at,"
        " a.ends_at + make_interval(mins => a.buffer_minutes))"
        " && tstzrange(b.starts_at, b.ends_at + make_interval(mins => b.buffer_minutes))",
        therapist_id,
    )
    return overlapping, too_close


def summary_is_current(summaries: list, booked: list[datetime], after: datetime) -> bool:  # type: ignore[type-arg]
    """A summary computed after `after` that offers none of the booked times."""
    return any(
        s.computed_at >= after and not {f.starts_at for f in s.free_slots} & set(booked)
        for s in summaries
    )


async def test_two_apis_and_two_workers_never_double_book(
    settings, pool, serve, auth, kit, kafka_bootstrap
) -> None:
    now = datetime.now(UTC)
    # Hours round the clock: the eight earliest quarter hours are consecutive at any time of
    # day (with evening hours they could straddle the night and hold a third session).
    therapist = await kit.open_therapist(pool, now, kit.hours("00:00-00:00"))
    clients = [uuid.uuid4() for _ in range(12)]
    courses = [await kit.open_course(pool, client, therapist, now) for client in clients]
    fast = settings.model_copy(
        update={"summary_window_s": 0.3, "summary_poll_s": 0.1, "db_pool_max": 12}
    )
    async with (
        serve(build(DEFINITION, fast, "api")) as first,
        serve(build(DEFINITION, fast, "api")) as second,
        serve(build(DEFINITION, fast, "worker")),
        serve(build(DEFINITION, fast, "worker")),
        kit.probe_for(settings, kafka_bootstrap) as probe,
    ):
        listed = await first.get(
            f"/therapists/{therapist}/slots?limit=8", headers=auth("client", clients[0])
        )
        times = [slot["starts_at"] for slot in listed.json()["slots"]]
        started = datetime.now(UTC)

        async def tries(n: int, client: uuid.UUID, course: uuid.UUID) -> list[int]:
            http = (first, second)[n % 2]  # half the clients on each replica
            wanted = random.Random(n).sample(times, len(times))
            answers = []
            for k, at in enumerate(wanted):
                answer = await http.post(
                    f"/courses/{course}/sessions",
                    json={"starts_at": at, "idempotency_key": f"replica-{n}-{k}"},
                    headers=auth("client", client),
                )
                answers.append(answer.status_code)
            return answers

        statuses = await asyncio.gather(
            *(
                tries(n, c, course)
                for n, (c, course) in enumerate(zip(clients, courses, strict=True))
            )
        )
        booked = await pool.fetch(
            "SELECT starts_at FROM sessions WHERE therapist_id = $1 AND status = 'booked'",
            therapist,
        )
        booked_at = [row["starts_at"] for row in booked]
        # Matching receives a summary of the current calendar from one of the workers.
        await probe.wait_for(
            lambda p: summary_is_current(
                kit.mine(p, "TherapistAvailabilityPublished", therapist_id=therapist),
                booked_at,
                started,
            )
        )
    every = [status for answers in statuses for status in answers]
    assert set(every) <= {201, 409}, every
    assert every.count(201) == len(booked)
    assert await overlaps(pool, therapist) == (0, 0)
    # The eight earliest quarter hours hold two 45-minute sessions with their buffers.
    assert len(booked) == 2


async def test_a_worker_dying_mid_publish_leaves_the_summary_for_another(
    settings, pool, serve, kit, kafka_bootstrap
) -> None:
    now = datetime.now(UTC)
    therapist, client = await kit.open_therapist(pool, now), uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    at = (now + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    await service.book_session(pool, Principal(client, "client"), course, at, "dying-1", now)
    # A worker takes the pending requests and dies before its transaction commits.
    dying = await asyncpg.connect(
        db.service_dsn(settings), server_settings={"search_path": settings.db_schema}
    )
    transaction = dying.transaction()
    await transaction.start()
    assert therapist in await store.take_due_summaries(dying, 0, 10_000)
    await pool.execute("SELECT pg_terminate_backend($1)", dying.get_server_pid())
    dying.terminate()
    # Its requests are there again...
    await kit.eventually(
        lambda: pool.fetchval(
            "SELECT count(*) FROM summary_requests WHERE therapist_id = $1", therapist
        )
    )
    fast = settings.model_copy(update={"summary_window_s": 0.2, "summary_poll_s": 0.1})
    started = datetime.now(UTC)
    async with (
        kit.probe_for(settings, kafka_bootstrap) as probe,
        serve(build(DEFINITION, fast, "worker")),
    ):
        # ...and another worker publishes the current summary: the booked time is not free.
        await probe.wait_for(
            lambda p: summary_is_current(
                kit.mine(p, "TherapistAvailabilityPublished", therapist_id=therapist),
                [at],
                started - timedelta(seconds=1),
            )
        )
    summary = kit.mine(probe, "TherapistAvailabilityPublished", therapist_id=therapist)[-1]
    assert summary.free_slots and at not in {slot.starts_at for slot in summary.free_slots}
    assert at + timedelta(hours=2) in {slot.starts_at for slot in summary.free_slots}
