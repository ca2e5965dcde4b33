"""Free-slot summaries leave after commit: one per therapist per window, shared among
replicas, refreshed as time passes, and never lost when a worker dies mid-publish."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from booking import service
from chassis.auth import Principal
from chassis.outbox import OutboxRelay
from contracts import decode


async def summaries_in_outbox(pool: asyncpg.Pool, therapist_id: uuid.UUID) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE event_type = 'TherapistAvailabilityPublished'"
        " AND key = $1",
        str(therapist_id),
    )
    return count


async def pending(pool: asyncpg.Pool, therapist_id: uuid.UUID) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM summary_requests WHERE therapist_id = $1", therapist_id
    )
    return count


async def book_days(pool, kit, therapist, now, days) -> None:  # type: ignore[no-untyped-def]
    client = uuid.uuid4()
    course = await kit.open_course(pool, client, therapist, now)
    for day in days:
        start = (now + timedelta(days=day)).replace(hour=9, minute=0, second=0, microsecond=0)
        await service.book_session(
            pool, Principal(client, "client"), course, start, f"d{day}-{client}", now
        )


async def test_changes_file_requests_and_one_summary_leaves_per_window(pool, kit) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    therapist = await kit.open_therapist(pool, now)
    await book_days(pool, kit, therapist, now, [2, 3, 4, 5])
    # Nothing was computed in the changes' transactions: only requests were filed.
    assert await summaries_in_outbox(pool, therapist) == 0
    assert await pending(pool, therapist) >= 6  # profile, hours, course, four bookings
    # Not due before its window has passed (an hour here)...
    await service.publish_due_summaries(pool, now, window_s=3600)
    assert await summaries_in_outbox(pool, therapist) == 0
    # ...and then one summary for all the requests, reflecting every booking.
    assert await service.publish_due_summaries(pool, now, window_s=0) >= 1
    assert await summaries_in_outbox(pool, therapist) == 1
    assert await pending(pool, therapist) == 0
    value = await pool.fetchval(
        "SELECT value FROM outbox WHERE key = $1 AND event_type = 'TherapistAvailabilityPublished'",
        str(therapist),
    )
    summary = decode(value).payload
    assert summary.active_courses == 1
    taken = {slot.starts_at for slot in summary.free_slots}
    ninth = [(now + timedelta(days=d)).replace(hour=9, minute=0, second=0) for d in (2, 3)]
    assert summary.free_slots and not taken & set(ninth)


async def test_replicas_share_a_pass_and_each_therapist_is_published_once(pool, kit) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    therapists = [await kit.open_therapist(pool, now) for _ in range(12)]
    await pool.execute("UPDATE summary_schedule SET next_at = now() - interval '1 second'")
    # Two replicas at the turn of the schedule: one of them queues the refresh.
    queued = await asyncio.gather(*(service.refresh_summaries(pool, now, 900) for _ in range(2)))
    assert sorted(q > 0 for q in queued) == [False, True]
    published = await asyncio.gather(
        *(service.publish_due_summaries(pool, now, window_s=0, batch=3) for _ in range(2))
    )
    assert sum(published) >= len(therapists)
    assert [await summaries_in_outbox(pool, t) for t in therapists] == [1] * len(therapists)


async def test_summaries_are_published_again_as_time_passes(
    settings, pool, kit, kafka_bootstrap
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    therapist = await kit.open_therapist(pool, now)
    later = now + timedelta(days=3)
    relay = OutboxRelay(settings, pool)
    async with kit.probe_for(settings, kafka_bootstrap) as probe:
        relay.start()
        try:
            await pool.execute("UPDATE summary_schedule SET next_at = now() - interval '1 second'")
            assert await service.refresh_summaries(pool, later, 900) >= 1
            assert await service.publish_due_summaries(pool, later, window_s=0) >= 1

            def refreshed(p) -> list:  # type: ignore[no-untyped-def]
                return [
                    s
                    for s in kit.mine(p, "TherapistAvailabilityPublished", therapist_id=therapist)
                    if s.computed_at == later
                ]

            await probe.wait_for(lambda p: len(refreshed(p)) == 1)
        finally:
            await relay.stop()
    summary = refreshed(probe)[0]
    # Nothing before the new "now" plus the therapist's 12 h notice; days ahead came in.
    first = min(slot.starts_at for slot in summary.free_slots)
    assert first >= later + timedelta(hours=12)
    assert first < later + timedelta(hours=12 + 24)
