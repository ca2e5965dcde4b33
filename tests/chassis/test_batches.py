"""Batched consumers on the real broker and Postgres: one transaction per batch, per-key
order, a poison record dead-lettered while the rest apply, a worker killed mid-batch."""

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from prometheus_client import REGISTRY as METRICS

from chassis import db
from chassis.app import build
from chassis.consumer import dead_letter_topic
from chassis.deadletters import list_dead_letters
from chassis.testing.kafka import TopicProbe, publish
from chassis.testing.waiting import until
from contracts import Envelope
from contracts.events import ReviewPublished
from tests.chassis.ledger import FAILURES, LEDGER, review

ROOT = Path(__file__).resolve().parents[2]
# As deployed: the restarted worker has the killed one's static membership (its pod name
# and port), so it need not wait for the old session to expire.
RECOVERY = dict(kafka_static_membership=True, kafka_instance_id=f"ledger-{uuid.uuid4().hex[:6]}")


def keyed(keys: int, per_key: int) -> dict[uuid.UUID, list[ReviewPublished]]:
    return {
        t: [review(therapist_id=t, rating_count=n) for n in range(1, per_key + 1)]
        for t in (uuid.uuid4() for _ in range(keys))
    }


def interleaved(by_key: dict[uuid.UUID, list[ReviewPublished]]) -> list[ReviewPublished]:
    per_key = len(next(iter(by_key.values())))
    return [events[n] for n in range(per_key) for events in by_key.values()]


async def applied_counts(pool: asyncpg.Pool, keys: list[uuid.UUID]) -> dict[uuid.UUID, list[int]]:
    """Each key's rating_counts in the order the ledger applied them."""
    rows = await pool.fetch(
        "SELECT therapist_id, rating_count FROM entries WHERE therapist_id = any($1::uuid[])"
        " ORDER BY seq",
        keys,
    )
    seen: dict[uuid.UUID, list[int]] = {k: [] for k in keys}
    for row in rows:
        seen[row["therapist_id"]].append(row["rating_count"])
    return seen


async def eventually(check, timeout: float = 40.0) -> None:  # type: ignore[no-untyped-def]
    await until("the condition", check, timeout=timeout)


def batches_so_far() -> float:
    return (
        METRICS.get_sample_value(
            "samtal_consumer_batches_total", {"service": "ledger", "group": "ledger"}
        )
        or 0.0
    )


async def test_a_batch_applies_in_key_order_and_a_poison_record_goes_alone(
    migrated, serve, kafka_bootstrap, topic_prefix
) -> None:
    settings = await migrated(LEDGER, consumer_max_attempts=3, consumer_batch_size=100)
    pool = await db.create_pool(settings)
    by_key = keyed(keys=4, per_key=12)
    keys = list(by_key)
    poison = review(therapist_id=keys[0], rating=1, rating_count=99)  # PermanentError
    flaky = by_key[keys[1]][3]  # fails once: its key waits for it, the others do not
    FAILURES[flaky.review_id] = 1
    events = interleaved(by_key)
    events.insert(7, poison)
    try:
        # All on the topic before the worker starts: its first fetches are whole batches.
        await publish(kafka_bootstrap, topic_prefix, *events)
        before = batches_so_far()
        async with (
            serve(build(LEDGER, settings, "worker")),
            TopicProbe(kafka_bootstrap, [settings.topic(dead_letter_topic("ledger"))]) as dlq,
        ):

            async def all_applied() -> bool:
                seen = await applied_counts(pool, keys)
                return all(len(v) == 12 for v in seen.values())

            await eventually(all_applied)
            await dlq.wait_for(
                lambda p: any(e.payload.review_id == poison.review_id for e in p.envelopes())
            )
        seen = await applied_counts(pool, keys)
        assert all(v == list(range(1, 13)) for v in seen.values())  # once each, in key order
        assert FAILURES[flaky.review_id] == 0
        batches = batches_so_far() - before
        assert 1 <= batches < len(events) / 4  # applied in batches, not record by record
        letters = [
            d for d in await list_dead_letters(settings) if d.key in {str(k).encode() for k in keys}
        ]
        assert [d.error.split(":")[0] for d in letters] == ["rejected"]
        assert str(poison.review_id).encode() in letters[0].value
    finally:
        await pool.close()


async def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    migrated, serve, kafka_bootstrap, topic_prefix, tmp_path
) -> None:
    settings = await migrated(LEDGER, consumer_batch_size=100, **RECOVERY)
    pool = await db.create_pool(settings)
    by_key = keyed(keys=3, per_key=10)
    keys = list(by_key)
    events = interleaved(by_key)
    held = by_key[keys[1]][4]
    envelopes = [Envelope.wrap(e) for e in events]
    env = {
        **os.environ,
        "SAMTAL_LEDGER_DATABASE_URL": settings.database_url,
        "SAMTAL_LEDGER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SAMTAL_LEDGER_KAFKA_IDEMPOTENCE": str(settings.kafka_idempotence).lower(),
        "SAMTAL_LEDGER_KAFKA_FETCH_MAX_WAIT_MS": "10",
        "SAMTAL_LEDGER_TOPIC_PREFIX": topic_prefix,
        "SAMTAL_LEDGER_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
        "SAMTAL_LEDGER_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka_heartbeat_interval_ms),
        **{f"SAMTAL_LEDGER_{k.upper()}": str(v).lower() for k, v in RECOVERY.items()},
        "LEDGER_HOLD": str(held.review_id),
        "LEDGER_HELD": str(tmp_path / "held"),
        "PYTHONPATH": str(ROOT),
    }
    try:
        await publish(kafka_bootstrap, topic_prefix, *envelopes)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.chassis.ledger_worker", cwd=ROOT, env=env
        )
        try:

            async def holding() -> bool:
                assert worker.returncode is None, "the worker died on its own"
                return (tmp_path / "held").exists()

            await eventually(holding, timeout=60)
            # Mid-batch: the held key's lane has its transaction open, nothing of it is in.
            assert (await applied_counts(pool, keys))[keys[1]] == []
        finally:
            worker.kill()  # SIGKILL: no commit, no offsets, no leaving the group
            await asyncio.wait_for(worker.wait(), 10)

        restarted = time.monotonic()
        async with serve(build(LEDGER, settings, "worker"), timeout=60):

            async def first_applied() -> bool:  # of the records the killed worker held
                return len((await applied_counts(pool, keys))[keys[1]]) > 0

            await eventually(first_applied, timeout=60)
            recovery = time.monotonic() - restarted
            print(f"recovery: {recovery:.1f} s from restart to the first applied event")

            async def all_applied() -> bool:
                return all(len(v) == 10 for v in (await applied_counts(pool, keys)).values())

            await eventually(all_applied)
            await asyncio.sleep(0.5)
        seen = await applied_counts(pool, keys)
        assert all(v == list(range(1, 11)) for v in seen.values())  # nothing lost, in order
        inbox = await pool.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = any($1::uuid[])",
            [e.event_id for e in envelopes],
        )
        assert inbox == len(events)  # and nothing applied twice
    finally:
        await pool.close()
