"""Matching benchmark (run by `make bench`, never by the tests; bounded well under 2 minutes).

1. The pure matcher: one intake against 10,000 synthetic therapists, median and p99.
2. End to end: intakes per second from an HTTP submit (httpx over ASGI) to TherapistMatched
   on the topic, through the outbox, the broker, the matcher and the outbox again; and the
   per-intake latency of the same path one at a time.
3. The bare broker round trip (produce -> consume of one message), in the same run, so the
   end-to-end figures can be read as multiples of what the broker alone costs.

Infrastructure: chassis.infra.provide_postgres / provide_kafka (settings, container, local,
or throwaway/embedded), a database of its own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from asgi_lifespan import LifespanManager

from chassis import auth, db
from chassis.app import build
from chassis.infra import KafkaServer, provide_kafka, provide_postgres
from contracts import REGISTRY
from contracts.events import (
    FreeSlot,
    TherapistAvailabilityPublished,
    TherapistMatched,
    TherapistProfilePublished,
)
from matching import store
from matching.app import DEFINITION, Settings
from matching.domain.intake import WeeklyWindow
from matching.domain.matcher import IntakeNeeds, TherapistCandidate, match

SEED = 20260301
PURE_THERAPISTS = 10_000
PURE_INTAKES = 60
E2E_THERAPISTS = 1_000  # in the read model (Postgres) for the end-to-end run
LATENCY_INTAKES = 40  # one at a time
THROUGHPUT_INTAKES = 320  # all at once, from CONCURRENT_CLIENTS submitters
CONCURRENT_CLIENTS = 8
BROKER_ROUND_TRIPS = 50
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

LANGUAGES = ("sv", "en", "ar", "fa", "so", "pl", "es", "ti", "fi", "de")
AREAS = (
    "grief",
    "role_transition",
    "interpersonal_dispute",
    "interpersonal_deficits",
    "depression",
    "anxiety",
    "stress",
    "relationships",
)
CITIES = ("Stockholm", "Göteborg", "Malmö", "Uppsala")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --------------------------------------------------------------------------- synthetic data


def therapist_fields(rng: random.Random) -> dict[str, Any]:
    profession = rng.choices(("psychologist", "psychotherapist", "certified_staff"), (5, 3, 2))[0]
    return dict(
        profession=profession,
        licensed=profession != "certified_staff",
        methods=rng.sample(("IPT", "KBT", "IPT-A"), rng.randint(1, 3)),
        focus_areas=rng.sample(AREAS, 3),
        languages=["sv", *rng.sample(LANGUAGES[1:], rng.randint(0, 2))],
        modes=rng.choice((["video"], ["video", "in_person"], ["in_person"])),
        city=rng.choice(CITIES),
        age_groups=rng.choice((["adults"], ["adults"], ["adults", "adolescents"])),
        accepting_new_clients=rng.random() < 0.9,
    )


def free_slots(rng: random.Random, count: int = 30) -> list[datetime]:
    return sorted({NOW + timedelta(minutes=30 * rng.randint(2, 8 * 7 * 48)) for _ in range(count)})


def candidates(rng: random.Random, n: int) -> list[TherapistCandidate]:
    return [
        TherapistCandidate(
            therapist_id=uuid.UUID(int=i + 1),
            capacity=12,
            active_courses=rng.randint(0, 12),
            rating_average=round(rng.uniform(3.0, 5.0), 1),
            rating_count=rng.randint(0, 40),
            free_slots=free_slots(rng),
            **therapist_fields(rng),
        )
        for i in range(n)
    ]


def intake_body(rng: random.Random) -> dict[str, Any]:
    mode = rng.choice(("video", "either", "in_person"))
    day = rng.randint(0, 4)
    start = rng.randint(8, 16)
    return {
        "age": rng.randint(18, 70),
        "languages": [rng.choice(LANGUAGES[1:]), "sv"],
        "preferred_mode": mode,
        "city": rng.choice(CITIES),
        "problem_areas": rng.sample(AREAS, rng.randint(1, 2)),
        "phq9": [rng.randint(0, 2) for _ in range(8)] + [0],
        "time_windows": [
            {"weekday": day, "start": f"{start:02d}:00", "end": f"{start + 3:02d}:00"}
        ],
        "consent_to_treatment": True,
        "consent_to_health_data": True,
    }


def needs_of(rng: random.Random) -> IntakeNeeds:
    body = intake_body(rng)
    [window] = body["time_windows"]
    return IntakeNeeds(
        intake_id=uuid.uuid4(),
        method=rng.choice(("IPT", "KBT")),
        age_group="adults",
        problem_areas=body["problem_areas"],
        languages=body["languages"],
        preferred_mode=body["preferred_mode"],
        city=body["city"],
        time_windows=(
            WeeklyWindow(
                weekday=window["weekday"],
                start=clock.fromisoformat(window["start"]),
                end=clock.fromisoformat(window["end"]),
            ),
        ),
        requires_licensed=rng.random() < 0.1,
    )


# --------------------------------------------------------------------------- 1. pure matcher


def bench_pure_matcher() -> dict[str, float]:
    rng = random.Random(SEED)
    pool = candidates(rng, PURE_THERAPISTS)
    timings = []
    for _ in range(PURE_INTAKES):
        needs = needs_of(rng)
        started = time.perf_counter()
        match(needs, pool, NOW)
        timings.append(time.perf_counter() - started)
    return {"median": statistics.median(timings), "p99": percentile(timings, 0.99)}


# --------------------------------------------------------------------------- 2. end to end


@contextlib.asynccontextmanager
async def database(admin_dsn: str) -> AsyncIterator[str]:
    name = f"samtal_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield admin_dsn.rpartition("/")[0] + "/" + name
    finally:
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def fill_read_model(settings: Settings) -> None:
    rng = random.Random(SEED + 1)
    pool = await db.create_pool(settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            for _ in range(E2E_THERAPISTS):
                therapist_id = uuid.uuid4()
                fields = therapist_fields(rng)
                fields["accepting_new_clients"] = True  # every intake should find somebody
                await store.apply_profile(
                    conn,
                    TherapistProfilePublished(therapist_id=therapist_id, capacity=10_000, **fields),
                )
                await store.apply_availability(
                    conn,
                    TherapistAvailabilityPublished(
                        therapist_id=therapist_id,
                        computed_at=datetime.now(UTC),
                        active_courses=rng.randint(0, 10),
                        free_slots=[FreeSlot(starts_at=s, minutes=50) for s in free_slots(rng)],
                    ),
                )
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client


class MatchedWatcher:
    """Notes when each intake's TherapistMatched reaches the topic. Lighter than TopicProbe:
    each record is parsed once, so watching costs the worker (same process) next to nothing."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        self.arrived: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MatchedWatcher:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.consumer.stop()

    async def _run(self) -> None:
        while not self.consumer.assignment():
            metadata = await self.consumer._client.fetch_all_metadata()
            partitions = metadata.partitions_for_topic(self.topic) or ()
            if partitions:
                tps = [TopicPartition(self.topic, p) for p in partitions]
                self.consumer.assign(tps)
                await self.consumer.seek_to_beginning(*tps)
            else:
                await asyncio.sleep(0.05)
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    self.arrived[json.loads(record.value)["payload"]["intake_id"]] = now
            if batch:
                self._changed.set()

    async def wait(self, intake_ids: set[str], timeout: float) -> float:
        """When the last of these intakes was matched."""

        async def all_there() -> None:
            while not intake_ids <= self.arrived.keys():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(all_there(), timeout)
        return max(self.arrived[i] for i in intake_ids)


async def bench_end_to_end(settings: Settings, private_key: str) -> dict[str, float]:
    rng = random.Random(SEED + 2)
    topic = settings.topic(REGISTRY.topic(TherapistMatched))
    api, worker = build(DEFINITION, settings, "api"), build(DEFINITION, settings, "worker")
    # FastStream's own access log (it resets the level at connect; a filter stays).
    logging.getLogger("faststream.access.kafka").addFilter(
        lambda record: record.levelno >= logging.WARNING
    )
    async with (
        running(api) as http,
        running(worker),
        MatchedWatcher(settings.kafka_bootstrap, topic) as watcher,
    ):
        headers = {"authorization": f"Bearer {auth.mint(private_key, uuid.uuid4(), 'client')}"}

        async def submit() -> str:
            r = await http.post("/intakes", json=intake_body(rng), headers=headers)
            assert r.status_code == 201, r.text
            return str(r.json()["intake_id"])

        # Warm up: connections, consumer groups, relay.
        await watcher.wait({await submit() for _ in range(5)}, timeout=60)

        latencies = []
        for _ in range(LATENCY_INTAKES):
            started = time.perf_counter()
            matched_at = await watcher.wait({await submit()}, timeout=30)
            latencies.append(matched_at - started)

        started = time.perf_counter()
        per_client = THROUGHPUT_INTAKES // CONCURRENT_CLIENTS

        async def client() -> list[str]:
            return [await submit() for _ in range(per_client)]

        batches = await asyncio.gather(*(client() for _ in range(CONCURRENT_CLIENTS)))
        submitted_in = time.perf_counter() - started
        wanted = {i for batch in batches for i in batch}
        last = await watcher.wait(wanted, timeout=90)
    return {
        "latency_median": statistics.median(latencies),
        "latency_p99": percentile(latencies, 0.99),
        "intakes": len(wanted),
        "throughput": len(wanted) / (last - started),
        "submit_rate": len(wanted) / submitted_in,
    }


# --------------------------------------------------------------------------- 3. bare broker


async def bench_broker_round_trip(kafka: KafkaServer, fetch_wait_ms: int) -> dict[str, float]:
    topic = f"bench-round-trip-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=not kafka.embedded
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")  # creates the topic
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=fetch_wait_ms
    )
    await consumer.start()
    try:
        partitions = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in partitions.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        trips = []
        for n in range(BROKER_ROUND_TRIPS):
            body = f"ping-{n}".encode()
            started = time.perf_counter()
            await producer.send_and_wait(topic, body)
            got = False
            while not got:
                batch = await consumer.getmany(timeout_ms=1000)
                got = any(r.value == body for records in batch.values() for r in records)
            trips.append(time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()
    return {"median": statistics.median(trips), "p99": percentile(trips, 0.99)}


# --------------------------------------------------------------------------- the run


async def main() -> None:
    began = time.perf_counter()
    print(f"pure matcher: {PURE_INTAKES} intakes x {PURE_THERAPISTS:,} therapists ...")
    pure = bench_pure_matcher()
    print(f"  per intake: median {ms(pure['median'])}, p99 {ms(pure['p99'])}")

    postgres, kafka = provide_postgres(), provide_kafka()
    print(f"infrastructure: postgres {postgres.path}, kafka {kafka.path}")
    private_key, public_key = auth.generate_keypair()
    try:
        async with database(postgres.admin_dsn) as dsn:
            settings = Settings(
                database_url=dsn,
                kafka_bootstrap=kafka.bootstrap,
                kafka_idempotence=not kafka.embedded,
                kafka_fetch_max_wait_ms=10,
                topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
                jwt_public_keys=[public_key],
                # The api and the worker share one process here, so the chassis' NOTIFY
                # debounce (module-wide) can swallow the worker's wake-up right after the
                # api's; the relay's poll then bounds the wait.
                outbox_poll_s=0.05,
                log_level="WARNING",
                db_pool_max=20,
            )
            await db.bootstrap_role(dsn, settings.role, settings.db_password.get_secret_value())
            await asyncio.to_thread(db.migrate, settings, DEFINITION.migrations)
            await fill_read_model(settings)
            broker = await bench_broker_round_trip(kafka, settings.kafka_fetch_max_wait_ms)
            print(
                f"bare broker round trip (produce -> consume, fetch wait "
                f"{settings.kafka_fetch_max_wait_ms} ms): median {ms(broker['median'])}, "
                f"p99 {ms(broker['p99'])}"
            )
            print(
                f"end to end: {E2E_THERAPISTS:,} therapists in the read model; api and worker "
                f"share this process, outbox_poll_s={settings.outbox_poll_s:g} ..."
            )
            e2e = await bench_end_to_end(settings, private_key)
    finally:
        kafka.stop()
        postgres.stop()

    print(
        f"  one intake at a time, submit -> TherapistMatched on the topic: "
        f"median {ms(e2e['latency_median'])}, p99 {ms(e2e['latency_p99'])}"
    )
    print(
        f"  {e2e['intakes']:.0f} intakes from {CONCURRENT_CLIENTS} concurrent clients: "
        f"{e2e['throughput']:.1f} intakes/s matched end to end "
        f"(submitted at {e2e['submit_rate']:.1f}/s)"
    )
    print("ratios:")
    print(
        f"  end-to-end latency / bare broker round trip: "
        f"{e2e['latency_median'] / broker['median']:.1f}x (median)"
    )
    print(
        f"  end-to-end latency / pure matcher against {PURE_THERAPISTS:,}: "
        f"{e2e['latency_median'] / pure['median']:.2f}x (median)"
    )
    print(
        f"  broker round trips per second / end-to-end intakes per second: "
        f"{(1 / broker['median']) / e2e['throughput']:.2f}x"
    )
    print(f"done in {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
