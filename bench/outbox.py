"""Benchmark: events/s through state change + outbox + relay + broker.

Beside, in the same run and on the same infrastructure: a bare single-row
Postgres commit loop and a raw aiokafka producer. Figures are printed as ratios
against those baselines (these machines are shared and noisy: compare ratios).

    make bench        # or: uv run python bench/outbox.py [--events 6000] [--writers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from chassis import db, outbox
from chassis.infra import provide_kafka, provide_postgres
from chassis.outbox import OutboxRelay
from chassis.settings import ServiceSettings, service_config
from contracts.events import ReviewPublished

MIGRATION = """-- migrate:up
CREATE TABLE reviews (review_id uuid PRIMARY KEY, therapist_id uuid NOT NULL, rating int NOT NULL);
-- migrate:down
DROP TABLE reviews;
"""


class BenchSettings(ServiceSettings):
    model_config = service_config("bench")
    service: str = "bench_outbox"


def a_review(therapist: uuid.UUID) -> ReviewPublished:
    return ReviewPublished(
        review_id=uuid.uuid4(),
        therapist_id=therapist,
        course_id=uuid.uuid4(),
        rating=4,
        rating_average=4.0,
        rating_count=1,
    )


async def in_parallel(writers: int, total: int, one) -> float:  # type: ignore[no-untyped-def]
    """Run `one(i)` total times over `writers` concurrent loops; return per-second rate."""
    per_writer = total // writers

    async def loop(w: int) -> None:
        for i in range(per_writer):
            await one(w * per_writer + i)

    started = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(writers)))
    return per_writer * writers / (time.perf_counter() - started)


async def bare_commits(pool: asyncpg.Pool, writers: int, total: int) -> float:
    therapist = uuid.uuid4()

    async def one(_: int) -> None:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO reviews VALUES ($1, $2, 4)", uuid.uuid4(), therapist)

    return await in_parallel(writers, total, one)


async def raw_producer(bootstrap: str, idempotence: bool, total: int) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotence, linger_ms=5
    )
    await producer.start()
    payload = a_review(uuid.uuid4()).model_dump_json().encode()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send("bench.raw", payload, key=str(i % 64).encode())
            for i in range(total)
        ]
        await asyncio.gather(*futures)
        return total / (time.perf_counter() - started)
    finally:
        await producer.stop()


def _relay_process(settings_values: dict, ready, stop) -> None:  # type: ignore[no-untyped-def]
    """The relay in a process of its own, as in production (it runs in the worker)."""

    async def run() -> None:
        settings = BenchSettings(**settings_values)
        pool = await db.create_pool(settings)
        relay = OutboxRelay(settings, pool)
        relay.start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await relay.stop()
        await pool.close()

    asyncio.run(run())


async def through_outbox(
    settings_values: dict, pool: asyncpg.Pool, writers: int, total: int
) -> tuple[float, float]:
    """State change + outbox row per event (the writers, like the api), the relay in its own
    process (like the worker); time until every event is published."""
    therapists = [uuid.uuid4() for _ in range(64)]
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    relay = context.Process(target=_relay_process, args=(settings_values, ready, stop))
    relay.start()
    await asyncio.to_thread(ready.wait, 60)

    async def one(i: int) -> None:
        event = a_review(therapists[i % 64])
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO reviews VALUES ($1, $2, $3)",
                event.review_id,
                event.therapist_id,
                event.rating,
            )
            await outbox.add(conn, event)

    started = time.perf_counter()
    await in_parallel(writers, total, one)
    while await pool.fetchval("select count(*) from outbox where sent_at is null"):
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    rows = await pool.fetch(
        "select extract(epoch from sent_at - created_at) as lag from outbox"
        " where sent_at is not null order by id desc limit $1",
        total,
    )
    latencies = sorted(float(r["lag"]) for r in rows)
    stop.set()
    await asyncio.to_thread(relay.join, 30)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    return total / elapsed, p99


async def main(events: int, writers: int, rounds: int) -> None:
    pg = provide_postgres()
    kafka = provide_kafka()
    name = f"samtal_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        values = dict(
            database_url=pg.dsn_for(name),
            kafka_bootstrap=kafka.bootstrap,
            kafka_idempotence=not kafka.embedded,
            db_pool_max=writers + 2,
            outbox_poll_s=0.05,
            topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
        )
        settings = BenchSettings(**values)
        await db.bootstrap_role(settings.database_url, settings.role, "bench")
        with tempfile.TemporaryDirectory() as migrations:
            Path(migrations, "20260901000000_reviews.sql").write_text(MIGRATION)
            db.migrate(settings, Path(migrations))
        pool = await db.create_pool(settings)
        commits, produced, outboxed, p99s = [], [], [], []
        for _ in range(rounds):
            commits.append(await bare_commits(pool, writers, events))
            produced.append(await raw_producer(kafka.bootstrap, settings.kafka_idempotence, events))
            rate, p99 = await through_outbox(values, pool, writers, events)
            outboxed.append(rate)
            p99s.append(p99)
        await pool.close()
    finally:
        admin = await asyncpg.connect(pg.admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        kafka.stop()
        pg.stop()

    c, k, o = (statistics.median(x) for x in (commits, produced, outboxed))
    print(
        f"infrastructure: postgres {pg.path}, kafka {kafka.path}; {events} events x {rounds}"
        f" rounds, {writers} writers (medians)"
    )
    print(f"  bare single-row commits ({writers} conns): {c:10.0f} /s   (baseline)")
    print(f"  raw aiokafka producer (pipelined):        {k:10.0f} msg/s")
    print(
        f"  state change + outbox + relay + broker:   {o:10.0f} events/s,"
        f" p99 commit->published {statistics.median(p99s) * 1000:.0f} ms"
    )
    print(f"  ratio outbox / bare commits:   {o / c:.2f}  (aim >= 0.50)")
    print(f"  ratio outbox / raw producer:   {o / k:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.writers, args.rounds))
