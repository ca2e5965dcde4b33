"""Free-slot summaries follow the clock: refreshed without any booking to trigger them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from booking import service
from chassis.outbox import OutboxRelay


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
            assert await service.refresh_summaries(pool, later) >= 1

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
