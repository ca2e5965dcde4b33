"""Benchmark: events/s through state change + outbox + relay + broker.

Beside, in the same run and on the same infrastructure: a bare single-row
Postgres commit loop and a raw aiokafka producer. Figures are printed as ratios
against those baselines (these machines are shared and noisy: compare ratios).

    make bench        # or: uv run python bench/outbox.py [--events 6000] [--writers 8]

Diagnostics (printed per round): how busy the writers' Python (this process) is alone;
the CPU per event of the relay process, its lock connection's Postgres backend, the broker
and the writers' Python while flat out, with the claims and rows per
claim (from `pg_stat_user_tables`, hence a second's pause around the timed part), and the
paced phase's claims and p50. `OUTBOX_BENCH_PROFILE=<file>` writes a cProfile (CPU time)
of the relay process.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
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


async def broker_round_trip(bootstrap: str, idempotence: bool, samples: int = 200) -> float:
    """Median time to publish one record and have it acknowledged (acks=all)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotence
    )
    await producer.start()
    payload = a_review(uuid.uuid4()).model_dump_json().encode()
    try:
        await producer.send_and_wait("bench.rtt", payload, key=b"k")  # metadata, connection
        times = []
        for i in range(samples):
            started = time.perf_counter()
            await producer.send_and_wait("bench.rtt", payload, key=str(i % 8).encode())
            times.append(time.perf_counter() - started)
        return statistics.median(times)
    finally:
        await producer.stop()


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
        profile = os.environ.get("OUTBOX_BENCH_PROFILE")  # diagnostics: cProfile the relay
        if profile:
            import cProfile

            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            profiler.enable()
        pool = await db.create_pool(settings)
        relay = OutboxRelay(settings, pool)
        relay.start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await relay.stop()
        await pool.close()
        if profile:
            profiler.disable()
            profiler.dump_stats(profile)

    asyncio.run(run())


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU a process has used so far (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def p99_of(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("nan")


async def through_outbox(
    settings_values: dict,
    pool: asyncpg.Pool,
    writers: int,
    total: int,
    paced_rate: float,
    broker_pid: int | None = None,
) -> tuple[float, float, float, float, float, float]:
    """State change + outbox row per event (the writers, like the api), the relay in its own
    process (like the worker).

    Flat out: time until every event is published (the throughput). Then paced at
    `paced_rate` events/s, with a bare broker round trip measured at the same time on the
    same machine: commit -> published latency against that round trip. (Flat out, every
    latency is queueing behind the writers; a latency target is for a load that fits.)

    Commit -> published: from the moment the writer's commit returned (its clock) to the
    moment the broker acknowledged the record (the relay's clock, stored as `sent_at`; one
    machine, one clock). From the statement's start (`created_at`) it also counts the
    writer's own statement and commit, which no relay can shorten; that is printed too.
    Returns (events/s flat out, p99 flat out, p99 paced, p99 paced from the statement's
    start, median broker round trip paced, events/s of the writers alone).
    """
    therapists = [uuid.uuid4() for _ in range(64)]
    committed: dict[uuid.UUID, float] = {}

    async def one(i: int) -> None:
        event = outbox.envelope_for(a_review(therapists[i % 64]))
        async with pool.acquire() as conn:
            # The state change and its event in one statement (as the services' hot paths).
            await outbox.write(
                conn,
                "INSERT INTO reviews VALUES ($1, $2, $3)",
                event.payload.review_id,
                event.payload.therapist_id,
                event.payload.rating,
                events=[event],
            )
        committed[event.event_id] = time.time()

    # Writers alone, no relay running, flagged awake as a busy relay is (no NOTIFY): the
    # rate the relay's cost comes off. The relay publishes these rows when it starts.
    await pool.execute("UPDATE outbox_relay SET sleeping = false")
    own_cpu, own_started = cpu_seconds(os.getpid()), time.perf_counter()
    alone = await in_parallel(writers, total, one)
    print(
        "  writers alone: their Python (this process) busy"
        f" {(cpu_seconds(os.getpid()) - own_cpu) / (time.perf_counter() - own_started):.0%}"
        " of a core"
    )

    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    relay = context.Process(target=_relay_process, args=(settings_values, ready, stop))
    relay.start()
    await asyncio.to_thread(ready.wait, 60)

    async def all_published() -> None:
        while await pool.fetchval("select count(*) from outbox where sent_at is null"):
            await asyncio.sleep(0.01)

    async def lags_after(first_id: int) -> tuple[list[float], list[float]]:
        """Commit -> published, and statement start -> published, of the rows after one."""
        rows = await pool.fetch(
            "select event_id, extract(epoch from sent_at)::float8 as sent,"
            " extract(epoch from sent_at - created_at)::float8 as lag"
            " from outbox where id > $1",
            first_id,
        )
        from_commit = [max(0.0, r["sent"] - committed[r["event_id"]]) for r in rows]
        return from_commit, [r["lag"] for r in rows]

    try:
        await all_published()
        mark = await pool.fetchval("select coalesce(max(id), 0) from outbox")
        # Diagnostics only: CPU per event of the relay, its lock connection's backend and the
        # broker during the flat-out phase.
        relay_backend = await pool.fetchval(
            "select pid from pg_locks where locktype = 'advisory' and granted limit 1"
        )
        pids = {
            "relay": relay.pid,
            "its backend": relay_backend,
            "broker": broker_pid,
            "writers' Python": os.getpid(),
        }
        claims = "select n_tup_upd from pg_stat_user_tables where relname = 'outbox_relay'"
        await asyncio.sleep(1.1)  # a busy backend's statistics arrive within a second
        claims_before = await pool.fetchval(claims)
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        await in_parallel(writers, total, one)
        written = time.perf_counter() - started
        await all_published()
        rate = total / (time.perf_counter() - started)
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        await asyncio.sleep(1.1)
        claimed = await pool.fetchval(claims) - claims_before
        print(
            "  flat out, CPU per event: "
            + ", ".join(
                f"{name} {(cpu_after[name] - cpu_before[name]) / total * 1e6:.0f} us"
                for name in pids
            )
            + f" ({rate:.0f} events/s; written in {written * 1000:.0f} ms, all published"
            f" {total / rate * 1000:.0f} ms; about {claimed} claims,"
            f" {total / max(1, claimed):.1f} rows each)"
        )
        p99_flat = p99_of((await lags_after(mark))[0])

        mark = await pool.fetchval("select coalesce(max(id), 0) from outbox")
        paced_total = max(writers, int(paced_rate * 4))  # about four seconds
        interval = writers / paced_rate
        done = asyncio.Event()

        async def paced(w: int) -> None:
            next_at = time.perf_counter()
            for i in range(paced_total // writers):
                await one(w * 100_000 + i)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

        async def round_trips() -> list[float]:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings_values["kafka_bootstrap"],
                acks="all",
                enable_idempotence=settings_values["kafka_idempotence"],
            )
            await producer.start()
            payload = a_review(uuid.uuid4()).model_dump_json().encode()
            times: list[float] = []
            try:
                await producer.send_and_wait("bench.rtt", payload, key=b"k")
                while not done.is_set():
                    began = time.perf_counter()
                    await producer.send_and_wait("bench.rtt", payload, key=b"k")
                    times.append(time.perf_counter() - began)
                    await asyncio.sleep(0.005)
            finally:
                await producer.stop()
            return times

        probe = asyncio.create_task(round_trips())
        await asyncio.sleep(0.2)
        claims_before = await pool.fetchval(claims)
        # Staggered writers, so the pace is even rather than eight at once.
        await asyncio.gather(*(staggered(paced, w, w * interval / writers) for w in range(writers)))
        await all_published()
        done.set()
        rtts = await probe
        from_commit, from_start = await lags_after(mark)
        await asyncio.sleep(1.1)
        claimed = await pool.fetchval(claims) - claims_before
        print(
            f"  paced, {len(from_commit)} events: about {claimed} claims,"
            f" {len(from_commit) / max(1, claimed):.1f} rows each;"
            f" p50 commit->published {statistics.median(from_commit) * 1000:.1f} ms"
        )
        return (
            rate,
            p99_flat,
            p99_of(from_commit),
            p99_of(from_start),
            statistics.median(rtts),
            alone,
        )
    finally:
        stop.set()
        await asyncio.to_thread(relay.join, 30)


async def staggered(run, w: int, delay: float) -> None:  # type: ignore[no-untyped-def]
    await asyncio.sleep(delay)
    await run(w)


async def main(events: int, writers: int, rounds: int, pace: float, linger: float) -> None:
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
            outbox_linger_s=linger,
        )
        settings = BenchSettings(**values)
        await db.bootstrap_role(settings.database_url, settings.role, "bench")
        with tempfile.TemporaryDirectory() as migrations:
            Path(migrations, "20260901000000_reviews.sql").write_text(MIGRATION)
            db.migrate(settings, Path(migrations))
        pool = await db.create_pool(settings)
        commits, produced, outboxed, flat, paced, started, rtts, idle_rtts, alone = (
            [] for _ in range(9)
        )
        for _ in range(rounds):
            idle_rtts.append(await broker_round_trip(kafka.bootstrap, settings.kafka_idempotence))
            commits.append(await bare_commits(pool, writers, events))
            produced.append(await raw_producer(kafka.bootstrap, settings.kafka_idempotence, events))
            rate, p99_flat, p99_paced, p99_started, rtt, writers_alone = await through_outbox(
                values,
                pool,
                writers,
                events,
                paced_rate=commits[-1] * pace,
                broker_pid=kafka.process.pid if kafka.process else None,
            )
            outboxed.append(rate)
            alone.append(writers_alone)
            flat.append(p99_flat)
            paced.append(p99_paced)
            started.append(p99_started)
            rtts.append(rtt)
        await pool.close()
    finally:
        admin = await asyncpg.connect(pg.admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        kafka.stop()
        pg.stop()

    c, k, o, a = (statistics.median(x) for x in (commits, produced, outboxed, alone))
    rtt, idle_rtt = statistics.median(rtts), statistics.median(idle_rtts)
    p99_flat, p99 = statistics.median(flat), statistics.median(paced)
    p99_started = statistics.median(started)
    print(
        f"infrastructure: postgres {pg.path}, kafka {kafka.path}; {events} events x {rounds}"
        f" rounds, {writers} writers (medians)"
    )
    print(f"  bare single-row commits ({writers} conns): {c:10.0f} /s   (baseline)")
    print(f"  raw aiokafka producer (pipelined):        {k:10.0f} msg/s")
    print(f"  state change + outbox, no relay running:  {a:10.0f} events/s (the writers alone)")
    print(
        f"  state change + outbox + relay + broker:   {o:10.0f} events/s flat out"
        f" (p99 commit->published {p99_flat * 1000:.1f} ms: queueing)"
    )
    print(
        f"  paced at {pace:.0%} of the bare commit rate: p99 commit->published"
        f" {p99 * 1000:.1f} ms; bare broker round trip meanwhile {rtt * 1000:.1f} ms"
        f" (median; {idle_rtt * 1000:.1f} ms on an idle machine)"
    )
    print(
        f"  the same from the writer's statement start (its own commit included):"
        f" p99 {p99_started * 1000:.1f} ms"
    )
    print(f"  ratio outbox / bare commits:   {o / c:.2f}  (aim >= 0.6)")
    print(f"  ratio outbox / raw producer:   {o / k:.2f}")
    print(f"  p99 commit->published / broker round trip: {p99 / rtt:.2f}  (aim <= 3)")
    print(
        f"bench outbox: ratio={o / c:.2f} p99_over_rtt={p99 / rtt:.2f}"
        f" p99_from_start_over_rtt={p99_started / rtt:.2f} writers_alone={a / c:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pace", type=float, default=0.3, help="latency phase load, share of bare commit rate"
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=ServiceSettings.model_fields["outbox_linger_s"].default,
        help="the relay's outbox_linger_s",
    )
    args = parser.parse_args()
    asyncio.run(main(args.events, args.writers, args.rounds, args.pace, args.linger))
