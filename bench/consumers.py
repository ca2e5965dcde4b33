"""Benchmark: events/s applied by a batched consumer (inbox + one row per event).

Beside, in the same run and on the same infrastructure: bare single-row Postgres commits
(8 connections), the baseline. The consumer is the chassis' own (`EventConsumers`, a
FastStream batch subscriber, one transaction per batch with its inbox rows) with a batch
handler writing one row per event, a batch's rows in one statement; the same
consumer taking one record at a time (`consumer_batch_size=1`) is shown for comparison.

    make bench        # or: uv run python bench/consumers.py [--events 4000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from chassis import db, observability
from chassis.app import make_broker, start_subscribers_together
from chassis.consumer import EventConsumers, dead_letter_publisher, provide
from chassis.infra import provide_kafka, provide_postgres
from chassis.settings import ServiceSettings, service_config
from contracts import REGISTRY, Envelope
from contracts.events import ReviewPublished

MIGRATION = """-- migrate:up
CREATE TABLE applied (event_id uuid PRIMARY KEY, therapist_id uuid NOT NULL, rating int NOT NULL);
CREATE TABLE reviews (review_id uuid PRIMARY KEY, therapist_id uuid NOT NULL, rating int NOT NULL);
-- migrate:down
DROP TABLE applied;
DROP TABLE reviews;
"""


class BenchSettings(ServiceSettings):
    model_config = service_config("bench")
    service: str = "bench_consumers"


consumers = EventConsumers("bench_consumers")


@consumers.batch_handler(ReviewPublished, name="recorder")
async def record(events: list[Envelope[Any]], conn: asyncpg.Connection) -> None:
    """Writes one row per event: the batch's rows in one statement (set-based, as a
    service's batch handler does; a failing batch goes record by record, a list of one)."""
    await conn.execute(
        "INSERT INTO applied SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[])",
        [e.event_id for e in events],
        [e.payload.therapist_id for e in events],
        [e.payload.rating for e in events],
    )


def a_review() -> ReviewPublished:
    return ReviewPublished(
        review_id=uuid.uuid4(),
        therapist_id=uuid.uuid4(),
        course_id=uuid.uuid4(),
        rating=4,
        rating_average=4.0,
        rating_count=1,
    )


async def bare_commits(pool: asyncpg.Pool, writers: int, total: int) -> float:
    per_writer = total // writers

    async def loop() -> None:
        for _ in range(per_writer):
            async with pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO reviews VALUES ($1, $2, 4)", uuid.uuid4(), uuid.uuid4()
                )

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(writers)))
    return per_writer * writers / (time.perf_counter() - started)


async def consumed(values: dict[str, Any], pool: asyncpg.Pool, total: int, batch: int) -> float:
    """Events/s from the first publish to the last applied row (the group has joined)."""
    settings = BenchSettings(
        **values, consumer_batch_size=batch, topic_prefix=f"b{uuid.uuid4().hex[:8]}."
    )
    broker = make_broker(settings)  # the worker's (its per-message log lines at DEBUG)
    provide(broker, pool=pool, dead_letters=dead_letter_publisher(broker, settings))
    consumers.subscribe(broker, settings)
    await start_subscribers_together(broker)  # returns once the group has its partitions
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await producer.start()
    topic = settings.topic(REGISTRY.topic(ReviewPublished))
    envelopes = [Envelope.wrap(a_review()) for _ in range(total)]
    ids = [e.event_id for e in envelopes]
    try:
        started = time.perf_counter()
        sent = [await producer.send(topic, e.to_bytes(), key=e.key.encode()) for e in envelopes]
        await asyncio.gather(*sent)
        while (
            await pool.fetchval("SELECT count(*) FROM applied WHERE event_id = any($1)", ids)
            < total
        ):
            await asyncio.sleep(0.02)
        return total / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await broker.stop()


async def main(events: int, rounds: int, writers: int) -> None:
    pg = provide_postgres()
    kafka = provide_kafka()
    name = f"samtal_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        values: dict[str, Any] = dict(
            database_url=pg.dsn_for(name),
            kafka_bootstrap=kafka.bootstrap,
            kafka_idempotence=not kafka.embedded,
            kafka_fetch_max_wait_ms=20,
            kafka_static_membership=False,
            db_pool_max=writers + 2,
            log_level="WARNING",
        )
        settings = BenchSettings(**values)
        observability.configure_logging(settings)
        await db.bootstrap_role(settings.database_url, settings.role, "bench")
        with tempfile.TemporaryDirectory() as migrations:
            Path(migrations, "20260901000000_applied.sql").write_text(MIGRATION)
            db.migrate(settings, Path(migrations))
        pool = await db.create_pool(settings)
        commits, batched, single = [], [], []
        for _ in range(rounds):
            commits.append(await bare_commits(pool, writers, events))
            batched.append(await consumed(values, pool, events, batch=settings.consumer_batch_size))
            single.append(await consumed(values, pool, max(200, events // 10), batch=1))
        await pool.close()
    finally:
        admin = await asyncpg.connect(pg.admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        kafka.stop()
        pg.stop()

    c, b, s = (statistics.median(x) for x in (commits, batched, single))
    print(
        f"infrastructure: postgres {pg.path}, kafka {kafka.path}; {events} events x {rounds}"
        f" rounds (medians)"
    )
    print(f"  bare single-row commits ({writers} conns): {c:8.0f} /s   (baseline)")
    print(f"  batched consumer, one row + inbox per event: {b:8.0f} events/s")
    print(f"  the same consumer one record at a time:      {s:8.0f} events/s")
    print(f"  ratio batched / bare commits: {b / c:.2f}  (aim >= 1.0)")
    print(f"bench consumer: ratio={b / c:.2f} unbatched_ratio={s / c:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds, args.writers))
