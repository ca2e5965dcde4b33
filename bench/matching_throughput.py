"""Matching benchmark (run by `make bench`, never by the tests; bounded: about 5-8 minutes).

Every figure is read against the bare broker round trip measured in the same run.

1. Pure matcher, one intake against 10,000 therapists: the worker's candidate index
   (the path the worker takes) and, for reference, `match()` itself on a few intakes
   (the index must answer the same).
2. Sustained load through the HTTP API, with 1,000 and with 10,000 therapists in the read
   model: intakes offered at a constant rate; a short probe per rate from the aim (100/s)
   down finds the highest rate at which the backlog does not grow and p99 submit ->
   TherapistMatched on the topic stays within 8x the RTT, which then runs for 30 s.
3. One and two matching worker replicas side by side (10,000 therapists): a backlog of
   intakes piled up on the topic while the replicas (each a process of its own, their
   consumer group settled) are held at their first write, then drained; throughput of
   each, the CPU the workers and the whole machine used meanwhile, and the time decisions
   spent waiting on therapist row locks (as the workers measure it and as Postgres shows
   it in pg_stat_activity).
4. The worker's resident memory with the 1,000- and the 10,000-therapist index loaded.

Beside the round trip on an empty topic (every `_over_rtt` figure and the bar), a second,
labelled `filled`: the round trip on a topic filled (at the end of the run, so it loads
the broker under no other figure) with as many records (one per produce request, as the
relays send them at these rates) as the intake topic held when each catalog's load
began. The embedded broker's fetch slows as a partition fills (a topic of 4,000 such
records: 4.4 ms against 2.3 ms empty), and the 10,000-therapist load runs on topics the
1,000 one filled. Real Kafka reads by an offset index, so its fetch does not slow as a
topic fills; Tansu's memory storage does. `sustained_filled_per_s` (and `_1k_`): the
highest rate among the 30 s runs made whose backlog held and whose p99 stayed within 8x
that round trip.

The api and the workers run as processes of their own (`samtal-matching api|worker`), as
deployed. Infrastructure: chassis.infra.provide_postgres / provide_kafka, a database of
its own, dropped at the end. Last line: `bench matching: ...`.

While working on one part: `BENCH_MATCHING_ONLY=sustained` runs only the sustained load
(no pure matcher, no replicas; the last line then carries only what was measured), and
`BENCH_MATCHING_CATALOGS=1000` only the catalogs named; `BENCH_MATCHING_RATES=20,50,100`
offers each rate for SUSTAIN_S instead of the burst and probes. The default is the full run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from chassis import auth, db
from chassis.infra import KafkaServer, free_port, provide_kafka, provide_postgres
from contracts import REGISTRY
from contracts.events import (
    FreeSlot,
    IntakeSubmitted,
    TherapistAvailabilityPublished,
    TherapistMatched,
    TherapistProfilePublished,
)
from matching import store
from matching.app import DEFINITION, Settings
from matching.domain.candidate_index import CandidateIndex
from matching.domain.intake import WeeklyWindow
from matching.domain.matcher import IntakeNeeds, TherapistCandidate, match

SEED = 20260301
PURE_THERAPISTS = 10_000
PURE_INTAKES = 300  # through the index
REFERENCE_INTAKES = 8  # through match() itself (about 0.1-0.3 s each)
CATALOGS = (1_000, 10_000)
AIM_PER_S = 100
STEP_DOWN = 0.75  # the next probe offers this share of the last
MIN_RATE = 2.0
SUSTAIN_TRIES = 3  # 30 s runs per catalog at most (a failed one steps down again)
BURST = 150  # intakes as fast as 16 clients can: where the probes start
PROBE_S = 6.0
SUSTAIN_S = 30.0
DRAIN_S = 3.0  # a rate holds when every intake is matched within this after offering ends
E2E_P99_LIMIT = 8.0  # x the broker round trip
BACKLOG = 1000  # intakes drained by 1 and by 2 replicas
INTAKE_PARTITIONS = 6
BROKER_ROUND_TRIPS = 50
FETCH_WAIT_MS = 10  # the round trip's consumer and the watcher's, alike
# The matcher group's own fetch wait (SAMTAL_MATCHING_KAFKA_GROUP_FETCH_MAX_WAIT_MS): the
# broker answers a fetch at the end of its wait, so this is what an intake may wait on the
# topic. 2 ms instead of 10 took the hop's p99 from ~8.5 to ~6 ms for ~5-7% more of a core in
# the idle-polling worker; the round trip and the watcher keep 10 ms.
MATCHER_FETCH_WAIT_MS = int(os.environ.get("BENCH_MATCHING_MATCHER_WAIT_MS", "2"))
FILLERS = 4  # connections filling the read model
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
ONLY = os.environ.get("BENCH_MATCHING_ONLY", "")  # "sustained": that part alone
if os.environ.get("BENCH_MATCHING_CATALOGS"):
    CATALOGS = tuple(int(c) for c in os.environ["BENCH_MATCHING_CATALOGS"].split(","))
FIXED_RATES = [float(r) for r in os.environ.get("BENCH_MATCHING_RATES", "").split(",") if r]

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


STARTED = time.perf_counter()


def say(*what: object) -> None:
    """Progress, with the time since the start."""
    print(f"[{time.perf_counter() - STARTED:5.0f} s]", *what, flush=True)


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


PURE_FIGURES = ("build", "median", "p99", "reference_median", "agreed")


def bench_pure_matcher() -> dict[str, float]:
    rng = random.Random(SEED)
    pool = candidates(rng, PURE_THERAPISTS)
    started = time.perf_counter()
    index = CandidateIndex(pool)
    built = time.perf_counter() - started
    gc.collect()
    gc.freeze()  # as the worker does once its index is built
    intakes = [needs_of(rng) for _ in range(PURE_INTAKES)]
    index.decide(intakes[0], NOW)  # the slot table is laid out on the first decision
    timings = []
    for needs in intakes:
        started = time.perf_counter()
        index.decide(needs, NOW)
        timings.append(time.perf_counter() - started)
    reference, agreed = [], 0
    for needs in intakes[:REFERENCE_INTAKES]:
        started = time.perf_counter()
        expected = match(needs, pool, NOW)
        reference.append(time.perf_counter() - started)
        agreed += index.decide(needs, NOW) == expected
    return {
        "build": built,
        "median": statistics.median(timings),
        "p99": percentile(timings, 0.99),
        "reference_median": statistics.median(reference),
        "agreed": agreed,
    }


# --------------------------------------------------------------------------- infrastructure


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


async def fill_read_model(settings: Settings, rng: random.Random, count: int) -> None:
    """`count` therapists through the read model's own store functions, a few connections
    side by side (the events are drawn first, so the catalog is the same every run)."""
    events = []
    for _ in range(count):
        therapist_id = uuid.uuid4()
        fields = therapist_fields(rng)
        fields["accepting_new_clients"] = True  # every intake should find somebody
        # Room as in practice (12-24 places, 0-10 taken): places fill as the run goes on and
        # decisions spread over the catalog. (Room for 100,000 each would send every similar
        # intake to the same few therapists: one hot row that every decision queues on.)
        profile = TherapistProfilePublished(
            therapist_id=therapist_id, capacity=rng.randint(12, 24), **fields
        )
        availability = TherapistAvailabilityPublished(
            therapist_id=therapist_id,
            computed_at=datetime.now(UTC),
            active_courses=rng.randint(0, 10),
            free_slots=[FreeSlot(starts_at=s, minutes=50) for s in free_slots(rng)],
        )
        events.append((profile, availability))
    pool = await db.create_pool(settings)

    async def fill(part: list[tuple[TherapistProfilePublished, TherapistAvailabilityPublished]]):
        async with pool.acquire() as conn, conn.transaction():
            for profile, availability in part:
                await store.apply_profile(conn, profile)
                await store.apply_availability(conn, availability)

    try:
        await asyncio.gather(*(fill(events[k::FILLERS]) for k in range(FILLERS)))
    finally:
        await pool.close()


@dataclass
class Process:
    """One `samtal-matching api|worker` process of our own."""

    kind: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        return kb / 1024

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Platform:
    settings: Settings
    public_key: str
    logs: Path
    running: list[Process] = field(default_factory=list)

    def env(self, port: int, instance: str) -> dict[str, str]:
        s = self.settings
        values = {
            # As deployed: a replica restarted under its own name takes its partitions back
            # at once (static membership); a fresh name would wait for the old one to expire.
            "KAFKA_INSTANCE_ID": instance,
            "DATABASE_URL": s.database_url,
            "KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "KAFKA_IDEMPOTENCE": json.dumps(s.kafka_idempotence),
            "KAFKA_FETCH_MAX_WAIT_MS": str(s.kafka_fetch_max_wait_ms),
            "KAFKA_GROUP_FETCH_MAX_WAIT_MS": json.dumps(s.kafka_group_fetch_max_wait_ms),
            "TOPIC_PREFIX": s.topic_prefix,
            "JWT_PUBLIC_KEYS": json.dumps([self.public_key]),
            "OUTBOX_POLL_S": str(s.outbox_poll_s),
            "LOG_LEVEL": "WARNING",
            "DB_POOL_MAX": str(s.db_pool_max),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
        }
        return {**os.environ, **{f"SAMTAL_MATCHING_{k}": v for k, v in values.items()}}

    def spawn(self, kind: str, port: int, log: Path, instance: str) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-c", "from matching.app import cli; cli()", kind],
                env=self.env(port, instance),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def start(self, kind: str, replica: int = 0) -> Process:
        """One process; `replica` names it among the workers (worker 0 restarted is worker 0)."""
        port = free_port()
        log = self.logs / f"{kind}-{port}.log"
        popen = self.spawn(kind, port, log, f"bench-{kind}-{replica}")
        process = Process(kind, port, popen, log)
        self.running.append(process)
        deadline = time.monotonic() + 240  # a loaded machine: readiness waits for Kafka joins
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if popen.poll() is not None:
                    raise RuntimeError(f"{kind} exited: {log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        return process
                await asyncio.sleep(0.3)
        raise TimeoutError(f"{kind} not ready; see {log}")

    async def stop(self, process: Process) -> None:
        await asyncio.to_thread(process.stop)
        self.running.remove(process)

    def stop_all(self) -> None:
        for process in self.running:
            process.stop()
        self.running.clear()


async def index_built(worker: Process, therapists: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = await worker.metrics()
        found = re.search(r"^samtal_matching_index_therapists (\S+)", text, re.M)
        if found and float(found.group(1)) >= therapists:
            return
        await asyncio.sleep(0.3)
    raise TimeoutError(f"the worker's index did not reach {therapists} therapists")


async def claim_figures(workers: list[Process]) -> dict[str, float]:
    """What the workers say of their claims: how many, how many found the row held by
    another decision and waited (and how long in all), how many were refused."""
    figures = {"claims": 0.0, "waits": 0.0, "waited": 0.0, "refused": 0.0, "passed_over": 0.0}
    names = {
        "samtal_matching_claims_total": "claims",
        "samtal_matching_claim_wait_seconds_count": "waits",
        "samtal_matching_claim_wait_seconds_sum": "waited",
        "samtal_matching_claims_refused_total": "refused",
        "samtal_matching_claims_held_total": "passed_over",
    }
    for worker in workers:
        text = await worker.metrics()
        for name, value in re.findall(r"^(samtal_matching_\w+) (\S+)$", text, re.M):
            if name in names:
                figures[names[name]] += float(value)
    return figures


class LockWaits:
    """Postgres' own view of lock waits, sampled from pg_stat_activity while the replicas
    drain: backends of the bench's database waiting on a lock (any lock: rows, advisory
    locks, relations), each sample standing for SAMPLE_S of waiting."""

    SAMPLE_S = 0.005

    def __init__(self, admin_dsn: str, database: str) -> None:
        self.admin_dsn = admin_dsn
        self.database = database
        self.samples = 0
        self.waiting = 0
        self.by_event: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LockWaits:
        self._conn = await asyncpg.connect(self.admin_dsn)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self._conn.close()

    async def _run(self) -> None:
        while True:
            rows = await self._conn.fetch(
                "SELECT wait_event FROM pg_stat_activity"
                " WHERE datname = $1 AND wait_event_type = 'Lock'",
                self.database,
            )
            self.samples += 1
            self.waiting += len(rows)
            for row in rows:
                self.by_event[row["wait_event"]] = self.by_event.get(row["wait_event"], 0) + 1
            await asyncio.sleep(self.SAMPLE_S)

    @property
    def seconds(self) -> float:
        return self.waiting * self.SAMPLE_S


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class MatchedWatcher:
    """Notes when each intake's TherapistMatched reaches the topic, and (for the hops) when
    the relay published it and the intake's IntakeSubmitted (the records' create times).
    Both are keyed by the intake.

    The consumers run in a process of their own (`watch`), not beside the load generator:
    sharing its event loop, a record that had arrived waited for the submitter's tasks
    before it was noted. TherapistMatched has a consumer of its own there, configured as
    the round trip's (one topic, the same fetch wait); IntakeSubmitted's records, read for
    the hops only, do not share its fetches. (perf_counter is the system's monotonic clock
    on Linux: the same in both processes.)"""

    def __init__(self, bootstrap: str, matched_topic: str, submitted_topic: str) -> None:
        self.command = [sys.executable, __file__, "--watch", bootstrap, matched_topic]
        self.command.append(submitted_topic)
        self.arrived: dict[str, float] = {}  # perf_counter
        self.matched_published: dict[str, float] = {}  # wall clock
        self.submitted_published: dict[str, float] = {}  # wall clock
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MatchedWatcher:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.PIPE, limit=1 << 20
        )
        assert self.process.stdout is not None
        if (await self.process.stdout.readline()).strip() != b"watching":
            raise RuntimeError("the watcher did not start")
        self._task = asyncio.create_task(self._run(self.process.stdout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        await self.process.wait()

    async def _run(self, lines: asyncio.StreamReader) -> None:
        while line := await lines.readline():
            kind, intake_id, *times = line.decode().split()
            if kind == "M":
                self.arrived[intake_id] = float(times[0])
                self.matched_published[intake_id] = float(times[1])
                self._changed.set()
            else:
                self.submitted_published[intake_id] = float(times[0])

    async def wait_any(self, intake_ids: set[str], timeout: float) -> None:
        """Until the first of these intakes was matched."""

        async def one_there() -> None:
            while intake_ids.isdisjoint(self.arrived.keys()):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(one_there(), timeout)

    async def wait(self, intake_ids: set[str], timeout: float) -> float:
        """When the last of these intakes was matched."""

        async def all_there() -> None:
            while not intake_ids <= self.arrived.keys():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(all_there(), timeout)
        return max(self.arrived[i] for i in intake_ids)


class KeptAliveHttp:
    """POSTs over a few kept-alive HTTP/1.1 connections, written and read by hand.

    The load generator shares the machine's two cores with what it measures: httpx spent
    5-6 ms of CPU per request here, and its pool's bookkeeping grows with the requests
    queued in it, so once the machine was busy the generator fell behind its schedule and
    never caught up (the api itself idle at 10-20% CPU). This costs a small fraction."""

    MAX_CONNECTIONS = 64

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.opened = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.MAX_CONNECTIONS:
            self.opened += 1
            try:
                return await asyncio.open_connection("127.0.0.1", self.port)
            except BaseException:
                self.opened -= 1
                raise
        return await self.idle.get()

    async def post(self, path: str, body: bytes, headers: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connection()
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                b"%scontent-length: %d\r\n\r\n%s" % (path.encode(), headers, len(body), body)
            )
            status = int((await reader.readline()).split()[1])
            length, keep = 0, True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    keep = b"close" not in value.lower()
                elif name == b"transfer-encoding":
                    raise RuntimeError("chunked responses are not read here")
            answer = await reader.readexactly(length)
        except BaseException:
            self.opened -= 1
            writer.close()
            raise
        if keep:
            self.idle.put_nowait((reader, writer))
        else:
            self.opened -= 1
            writer.close()
        return status, answer

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()


class Submitter:
    def __init__(
        self, api: Process, private_key: str, rng: random.Random, settings: Settings
    ) -> None:
        self.settings = settings
        self.http = KeptAliveHttp(api.port)
        self.private_key = private_key
        self.clients: list[bytes] = []  # (a client's headers: signed before the clocks start)
        self.rng = rng

    def prepare(self, count: int) -> None:
        """Sign the tokens of `count` new clients now: each intake comes from a client of its
        own (one intake in progress per client), and signing one costs ~0.5 ms of CPU."""
        while len(self.clients) < count:
            token = auth.mint(self.private_key, uuid.uuid4(), "client")
            self.clients.append(f"authorization: Bearer {token}\r\n".encode())

    async def submit(self) -> tuple[str, float]:
        started = time.perf_counter()
        if not self.clients:
            self.prepare(1)
        body = json.dumps(intake_body(self.rng)).encode()
        status, answer = await self.http.post("/intakes", body, self.clients.pop())
        assert status == 201, answer
        return str(json.loads(answer)["intake_id"]), started

    async def offer(self, rate: float, seconds: float) -> tuple[list[tuple[str, float]], float]:
        """Intakes submitted at a constant rate (each on its own schedule, not waiting for
        the one before); returns (id, when it was due) and when offering should have
        ended. Latency counts from when an intake was due, so a slow api counts too."""
        count = int(rate * seconds)
        self.prepare(count)
        began = time.perf_counter()

        async def one(k: int) -> tuple[str, float]:
            due = began + k / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            intake_id, _ = await self.submit()
            return intake_id, due

        submitted = await asyncio.gather(*(one(k) for k in range(count)))
        return list(submitted), began + seconds

    async def burst(self, count: int, clients: int = 16) -> tuple[set[str], float]:
        """`count` intakes from `clients` submitting one after another; the ids, and when
        the burst began."""
        self.prepare(count)
        began = time.perf_counter()

        async def client(n: int) -> list[str]:
            return [(await self.submit())[0] for _ in range(n)]

        batches = await asyncio.gather(*(client(count // clients) for _ in range(clients)))
        return {i for batch in batches for i in batch}, began


@dataclass
class Run:
    rate: float
    seconds: float
    holds: bool
    p99: float
    median: float
    drained_in: float
    # Per hop: (median, p99, mean over the slowest 1% of intakes), seconds.
    hops: dict[str, tuple[float, float, float]] = field(default_factory=dict)


# perf_counter -> wall clock (the hops compare the bench's times with Postgres' and the
# relay's, all on this machine's clock).
WALL = time.time() - time.perf_counter()
HOPS = (
    # due -> the api's transaction began (the IntakeSubmitted outbox row's created_at)
    "api",
    # -> the relay published IntakeSubmitted (the record's create time)
    "relay",
    # -> the matcher's batch transaction began (the TherapistMatched row's created_at):
    # the broker, the matcher's fetch, the batch before it
    "to_matcher",
    # -> the relay published TherapistMatched: the decision, its commit, the relay
    "decided",
    # -> the bench's consumer saw it: the broker and its fetch
    "to_watcher",
)


async def hops_of(
    database_url: str,
    schema: str,
    watcher: MatchedWatcher,
    submitted: list[tuple[str, float]],
) -> dict[str, tuple[float, float, float]]:
    """Where each intake's time went, hop by hop, from the outbox rows' created_at (the
    writing transaction's start) and the records' create times."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            f"SELECT event_type, key, extract(epoch FROM created_at)::float8 AS at"
            f" FROM {schema}.outbox WHERE key = ANY($1::text[])"
            " AND event_type IN ('IntakeSubmitted', 'TherapistMatched')",
            [i for i, _ in submitted],
        )
    finally:
        await conn.close()
    began = {(r["event_type"], r["key"]): r["at"] for r in rows}
    per_intake = []
    for intake_id, due in submitted:
        times = (
            due + WALL,
            began.get(("IntakeSubmitted", intake_id)),
            watcher.submitted_published.get(intake_id),
            began.get(("TherapistMatched", intake_id)),
            watcher.matched_published.get(intake_id),
            watcher.arrived[intake_id] + WALL,
        )
        if None in times:
            continue
        steps = [b - a for a, b in itertools.pairwise(times)]  # type: ignore[operator]
        per_intake.append((times[-1] - times[0], steps))  # type: ignore[operator]
    if not per_intake:
        return {}
    per_intake.sort(key=lambda t: t[0])
    slowest = per_intake[-max(1, len(per_intake) // 100) :]
    return {
        hop: (
            statistics.median(steps[k] for _, steps in per_intake),
            percentile([steps[k] for _, steps in per_intake], 0.99),
            statistics.mean(steps[k] for _, steps in slowest),
        )
        for k, hop in enumerate(HOPS)
    }


def describe_hops(run: Run) -> str:
    return "      hops (median / p99 / slowest 1%): " + ", ".join(
        f"{hop} {a * 1000:.1f}/{b * 1000:.1f}/{c * 1000:.1f}" for hop, (a, b, c) in run.hops.items()
    )


async def offered(
    submitter: Submitter, watcher: MatchedWatcher, rate: float, seconds: float, rtt: float
) -> Run:
    submitted, ended = await submitter.offer(rate, seconds)
    ids = {i for i, _ in submitted}
    with contextlib.suppress(TimeoutError):
        await watcher.wait(ids, timeout=DRAIN_S)
    # Not drained in DRAIN_S: the backlog grew; let it drain before the next run.
    last = await watcher.wait(ids, timeout=120)
    latencies = [watcher.arrived[i] - at for i, at in submitted]
    p99 = percentile(latencies, 0.99)
    drained_in = max(0.0, last - ended)
    settings = submitter.settings
    hops = await hops_of(settings.database_url, settings.db_schema, watcher, submitted)
    return Run(
        rate,
        seconds,
        drained_in <= DRAIN_S,
        p99,
        statistics.median(latencies),
        drained_in,
        hops,
    )


def within(run: Run, rtt: float) -> bool:
    """The issue's bar: the backlog does not grow and p99 stays within the limit."""
    return run.holds and run.p99 <= E2E_P99_LIMIT * rtt


def describe(run: Run, rtt: float) -> str:
    return (
        f"{run.rate:5.0f}/s for {run.seconds:.0f} s: p99 {ms(run.p99)} "
        f"({run.p99 / rtt:.1f}x RTT, {'within' if run.p99 <= E2E_P99_LIMIT * rtt else 'above'}"
        f" {E2E_P99_LIMIT:.0f}x), median {ms(run.median)}, "
        f"drained {run.drained_in:.2f} s after offering ended -> "
        f"{'backlog holds' if run.holds else 'backlog grows'}"
    ) + (f"\n{describe_hops(run)}" if run.hops else "")


@dataclass
class Sustained:
    burst_per_s: float
    # The highest probed rate whose backlog did not grow (whatever its p99).
    drains_per_s: float = 0.0
    # The SUSTAIN_S run at the highest rate within the bar (None: no rate down to MIN_RATE).
    within: Run | None = None
    # When no rate is within the bar: the first SUSTAIN_S run that fell out of it, else one
    # at `drains_per_s`, for its figures.
    best_effort: Run | None = None
    # Every SUSTAIN_S run made (for the figure against the filled topic's round trip).
    runs: list[Run] = field(default_factory=list)

    def within_filled(self, filled_rtt: float) -> Run | None:
        """The highest-rate SUSTAIN_S run within the bar measured against `filled_rtt`."""
        held = [r for r in self.runs if within(r, filled_rtt)]
        return max(held, key=lambda r: r.rate, default=None)


async def fixed_rates(
    submitter: Submitter, watcher: MatchedWatcher, rtt: float, processes: list[Process]
) -> Sustained:
    """Each of FIXED_RATES for SUSTAIN_S (BENCH_MATCHING_RATES), with the CPU each of our
    processes used meanwhile."""
    found = Sustained(burst_per_s=0.0)
    for rate in FIXED_RATES:
        cpu0 = [cpu_seconds(p.popen.pid) for p in processes]
        bench0, (busy0, total0) = time.process_time(), machine_busy()
        began = time.perf_counter()
        run = await offered(submitter, watcher, rate, SUSTAIN_S, rtt)
        wall = time.perf_counter() - began
        busy1, total1 = machine_busy()
        cpu = ", ".join(
            f"{p.kind} {(cpu_seconds(p.popen.pid) - c) / wall * 100:.0f}%"
            for p, c in zip(processes, cpu0, strict=True)
        )
        cpu += (
            f", the bench {(time.process_time() - bench0) / wall * 100:.0f}%; whole machine"
            f" {(busy1 - busy0) / max(1, total1 - total0) * 100:.0f}% of its cores"
        )
        say(f"    fixed {describe(run, rtt)}\n      CPU: {cpu}")
        found.runs.append(run)
        if run.holds:
            found.drains_per_s = max(found.drains_per_s, rate)
        if within(run, rtt) and (found.within is None or rate > found.within.rate):
            found.within = run
        found.best_effort = found.best_effort or run
    return found


async def sustained(submitter: Submitter, watcher: MatchedWatcher, rtt: float) -> Sustained:
    """A burst says how fast intakes can go through at all; probes from there (at most the
    aim) step down until one is within the bar (backlog holds, p99 within the limit), which
    then runs for SUSTAIN_S (a run that falls out of the bar steps down again, at most
    SUSTAIN_TRIES runs). When no probe is, the highest rate whose backlog held runs for
    SUSTAIN_S instead, so its figures are shown."""
    ids, began = await submitter.burst(BURST)
    last = await watcher.wait(ids, timeout=180)
    found = Sustained(burst_per_s=len(ids) / (last - began))
    say(f"    burst: {len(ids)} intakes from 16 clients matched at {found.burst_per_s:.1f}/s")
    rate = min(float(AIM_PER_S), round(found.burst_per_s))
    tries = 0
    while rate >= MIN_RATE and tries < SUSTAIN_TRIES:
        probe = await offered(submitter, watcher, rate, PROBE_S, rtt)
        say(f"    probe {describe(probe, rtt)}")
        if probe.holds and not found.drains_per_s:
            found.drains_per_s = rate
        if within(probe, rtt):
            tries += 1
            run = await offered(submitter, watcher, rate, SUSTAIN_S, rtt)
            say(f"    sustained {describe(run, rtt)}")
            found.runs.append(run)
            if within(run, rtt):
                found.within = run
                return found
            found.best_effort = found.best_effort or run
        lower = round(rate * STEP_DOWN)
        rate = lower if lower < rate else rate - 1
    if found.drains_per_s and found.best_effort is None:
        found.best_effort = await offered(submitter, watcher, found.drains_per_s, SUSTAIN_S, rtt)
        say(f"    sustained (no rate within the bar) {describe(found.best_effort, rtt)}")
        found.runs.append(found.best_effort)
    return found


async def records_on(bootstrap: str, topic: str) -> int:
    """How many records a topic holds (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(topic, p) for p in metadata.partitions_for_topic(topic) or ()]
        return sum((await consumer.end_offsets(tps)).values()) if tps else 0
    finally:
        await consumer.stop()


async def partitions_shared(workers: list[Process], group: str, timeout: float = 120) -> None:
    """Until the workers' consumer group has settled: each worker consumes some of the
    intake topic's partitions and together all of them (each worker exports the lag of
    the partitions it holds)."""
    deadline = time.monotonic() + timeout
    pattern = re.compile(rf'^samtal_consumer_lag{{[^}}]*group="{re.escape(group)}"[^}}]*}}', re.M)
    while time.monotonic() < deadline:
        held = []
        for worker in workers:
            text = await worker.metrics()
            held.append(
                {re.search(r'partition="(\d+)"', m).group(1) for m in pattern.findall(text)}
            )
        if all(held) and len(set().union(*held)) >= INTAKE_PARTITIONS:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError("the matcher group did not settle")


async def backlog_drained(
    platform: Platform,
    submitter: Submitter,
    watcher: MatchedWatcher,
    replicas: int,
    locks: LockWaits,
) -> dict[str, float]:
    """BACKLOG intakes drained by `replicas` workers; with the CPU the workers and the whole
    machine used while they drained.

    The workers start first, build their indexes and settle their consumer group (so no
    rebalance falls into the drain); then the backlog piles up on the topic while the
    bench holds the matches table (decisions stop at their first write), and the drain is
    timed from the moment the bench lets go."""
    settings = platform.settings
    workers = list(await asyncio.gather(*(platform.start("worker", n) for n in range(replicas))))
    for worker in workers:
        await index_built(worker, PURE_THERAPISTS)
    await partitions_shared(workers, settings.group("matcher"))
    warm = {(await submitter.submit())[0] for _ in range(5)}
    await watcher.wait(warm, timeout=120)
    hold = await asyncpg.connect(settings.database_url)
    try:
        async with hold.transaction():
            await hold.execute(f"LOCK TABLE {settings.db_schema}.matches IN EXCLUSIVE MODE")
            submitter.prepare(BACKLOG)
            pending = await asyncio.gather(*(submitter.submit() for _ in range(BACKLOG)))
            await asyncio.sleep(2.0)  # the relay publishes the last of them
            began, (busy0, total0) = time.perf_counter(), machine_busy()
            cpu0 = [cpu_seconds(w.popen.pid) for w in workers]
    finally:
        await hold.close()
    ids = {i for i, _ in pending}
    async with locks:
        last = await watcher.wait(ids, timeout=300)
    wall = time.perf_counter() - began
    busy1, total1 = machine_busy()
    worker_cpu = [
        (cpu_seconds(w.popen.pid) - c) / wall * 100 for w, c in zip(workers, cpu0, strict=True)
    ]
    figures = await claim_figures(workers)
    for worker in workers:
        await platform.stop(worker)
    return {
        "per_s": len(ids) / (last - began),
        "lock_wait_s": locks.seconds,
        "machine_busy": (busy1 - busy0) / max(1, total1 - total0) * 100,
        "worker_cpu": sum(worker_cpu),
        **{f"worker{n}_cpu": c for n, c in enumerate(worker_cpu)},
        **figures,
    }


# --------------------------------------------------------------------------- 3. bare broker


async def bench_broker_round_trip(
    kafka: KafkaServer, fetch_wait_ms: int, fill: int = 0
) -> dict[str, float]:
    """Produce -> consume on a topic of its own; with `fill`, the topic first gets that many
    records, one produce request each (as the relays send at these rates), keyed over
    its partitions."""
    topic = f"bench-round-trip-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=not kafka.embedded
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")  # creates the topic
    for n in range(fill):
        await producer.send_and_wait(topic, b"f" * 400, key=str(uuid.UUID(int=n)).encode())
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
        gaps = random.Random(SEED)
        for n in range(BROKER_ROUND_TRIPS):
            # A ping sent the moment the last one came back lands in step with the consumer's
            # next fetch and comes back at once (a 1-3 ms "round trip" in some runs, 7-9 ms
            # in others): an intake reaches the broker at no particular moment of the
            # fetch's wait, so neither does a ping.
            await asyncio.sleep(gaps.uniform(0, fetch_wait_ms / 1000))
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


@contextlib.contextmanager
def logs_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-matching-") as tmp:
        yield Path(tmp)


async def main() -> None:
    began = time.perf_counter()
    say(f"1. pure matcher: {PURE_INTAKES} intakes x {PURE_THERAPISTS:,} therapists ...")
    pure = bench_pure_matcher() if ONLY != "sustained" else dict.fromkeys(PURE_FIGURES, 0.0)
    say(
        f"  candidate index (built in {pure['build']:.1f} s): median {ms(pure['median'])}, "
        f"p99 {ms(pure['p99'])}"
    )
    say(
        f"  match() itself on {REFERENCE_INTAKES} of them: median {ms(pure['reference_median'])};"
        f" the index agreed on {pure['agreed']:.0f}/{REFERENCE_INTAKES}"
    )

    postgres, kafka = provide_postgres(), provide_kafka()
    say(f"infrastructure: postgres {postgres.path}, kafka {kafka.path}")
    private_key, public_key = auth.generate_keypair()
    sustained_at: dict[int, Sustained] = {}
    filled_rtt: dict[int, float] = {}
    held_at: dict[int, int] = {}
    rss: dict[int, float] = {}
    replicas: dict[int, dict[str, float]] = {}
    try:
        async with database(postgres.admin_dsn) as dsn:
            settings = Settings(
                database_url=dsn,
                kafka_bootstrap=kafka.bootstrap,
                kafka_idempotence=not kafka.embedded,
                # The matcher's fetches wait MATCHER_FETCH_WAIT_MS; the other groups (the
                # read model: idle here) keep the default. Each fetch the embedded broker
                # holds costs it and the worker CPU the decisions then lack: idle, a worker
                # polling every group at 10 ms took 21% of a core and the broker 32%, with
                # only the matcher at 10 ms 12% and 22%.
                kafka_group_fetch_max_wait_ms={"matcher": MATCHER_FETCH_WAIT_MS},
                topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
                jwt_public_keys=[public_key],
                outbox_poll_s=0.05,
                log_level="WARNING",
                db_pool_max=20,
            )
            await db.bootstrap_role(dsn, settings.role, settings.db_password.get_secret_value())
            await asyncio.to_thread(db.migrate, settings, DEFINITION.migrations)
            broker = await bench_broker_round_trip(kafka, FETCH_WAIT_MS)
            rtt = broker["median"]
            say(
                f"bare broker round trip (produce -> consume, fetch wait "
                f"{FETCH_WAIT_MS} ms, as the watcher's; the matcher's "
                f"{MATCHER_FETCH_WAIT_MS} ms): median {ms(rtt)}, p99 {ms(broker['p99'])}"
            )
            matched_topic = settings.topic(REGISTRY.topic(TherapistMatched))
            submitted_topic = settings.topic(REGISTRY.topic(IntakeSubmitted))
            rng = random.Random(SEED + 1)
            with logs_dir() as logs:
                platform = Platform(settings, public_key, logs)
                try:
                    api = await platform.start("api")
                    submitter = Submitter(api, private_key, random.Random(SEED + 2), settings)
                    async with MatchedWatcher(
                        settings.kafka_bootstrap, matched_topic, submitted_topic
                    ) as watcher:
                        filled = 0
                        for catalog in CATALOGS:
                            say(f"2. sustained load, {catalog:,} therapists in the read model")
                            await fill_read_model(settings, rng, catalog - filled)
                            filled = catalog
                            worker = await platform.start("worker")
                            await index_built(worker, catalog)
                            rss[catalog] = worker.rss_mb()
                            say(f"  worker RSS with the index loaded: {rss[catalog]:.0f} MB")
                            # Warm up: connections, consumer groups, relay.
                            warm = {(await submitter.submit())[0] for _ in range(5)}
                            await watcher.wait(warm, timeout=120)
                            # How full the intake topic is as this load begins (the
                            # round trip on a topic as full is measured at the very end:
                            # filling it here would load the broker under the runs).
                            held_at[catalog] = await records_on(
                                settings.kafka_bootstrap, submitted_topic
                            )
                            if FIXED_RATES:
                                sustained_at[catalog] = await fixed_rates(
                                    submitter, watcher, rtt, [api, worker]
                                )
                            else:
                                sustained_at[catalog] = await sustained(submitter, watcher, rtt)
                            await platform.stop(worker)
                        say(f"3. replicas: a backlog of {BACKLOG} intakes, {filled:,} therapists")
                        for count in (1, 2) if ONLY != "sustained" else ():
                            locks = LockWaits(postgres.admin_dsn, dsn.rpartition("/")[2])
                            replicas[count] = await backlog_drained(
                                platform, submitter, watcher, count, locks
                            )
                            r = replicas[count]
                            each = ", ".join(f"{r[f'worker{n}_cpu']:.0f}%" for n in range(count))
                            say(
                                f"  {count} replica(s): {r['per_s']:.1f} intakes/s; CPU while "
                                f"draining: worker(s) {each}, whole machine "
                                f"{r['machine_busy']:.0f}% of 2 cores"
                            )
                            say(
                                f"    {r['claims']:.0f} claims, {r['waits']:.0f} found the "
                                f"therapist's row held and waited {r['waited'] * 1000:.1f} ms in "
                                f"all, {r['refused']:.0f} refused, {r['passed_over']:.0f} passed a"
                                f" held therapist over; Postgres saw backends waiting "
                                f"on locks for {r['lock_wait_s'] * 1000:.0f} ms in all "
                                f"({locks.samples} samples, {locks.by_event or 'none'})"
                            )
                    await submitter.http.close()
                finally:
                    platform.stop_all()
            for catalog, held in held_at.items():
                trip = await bench_broker_round_trip(kafka, FETCH_WAIT_MS, held)
                filled_rtt[catalog] = trip["median"]
                say(
                    f"round trip on a topic filled as the intake topic was when the "
                    f"{catalog:,}-therapist load began ({held:,} records): median "
                    f"{ms(trip['median'])}, p99 {ms(trip['p99'])}"
                )
    finally:
        kafka.stop()
        postgres.stop()

    ten_k = sustained_at[CATALOGS[-1]]
    one_k = sustained_at[CATALOGS[0]]

    def e2e(found: Sustained) -> float:
        run = found.within or found.best_effort
        return run.p99 / rtt if run else float("nan")

    # Beside the figures above (unchanged): against the round trip on a topic as full as the
    # platform's intake topic was when each catalog's load began.
    ten_k_trip, one_k_trip = filled_rtt[CATALOGS[-1]], filled_rtt[CATALOGS[0]]
    ten_k_filled = ten_k.within_filled(ten_k_trip)
    one_k_filled = one_k.within_filled(one_k_trip)
    shown = ten_k_filled or ten_k.within or ten_k.best_effort
    filled_keys = (
        f"rtt_filled_ms={ten_k_trip * 1000:.2f} "
        f"e2e_p99_over_filled_rtt={shown.p99 / ten_k_trip if shown else float('nan'):.1f} "
        f"sustained_filled_per_s={ten_k_filled.rate if ten_k_filled else 0:.0f} "
        f"sustained_1k_filled_per_s={one_k_filled.rate if one_k_filled else 0:.0f} "
    )

    if ONLY == "sustained":
        print(
            f"bench matching (sustained only, catalogs {CATALOGS}): "
            f"e2e_p99_over_rtt={e2e(ten_k):.1f} "
            f"sustained_per_s={ten_k.within.rate if ten_k.within else 0:.0f} "
            f"sustained_1k_per_s={one_k.within.rate if one_k.within else 0:.0f} "
            f"backlog_holds_per_s={ten_k.drains_per_s:.0f} rtt_ms={rtt * 1000:.2f} "
            f"{filled_keys}"
            f"load1={os.getloadavg()[0]:.2f}"
        )
        return
    scaling = replicas[2]["per_s"] / replicas[1]["per_s"]
    print("ratios:")
    print(f"  index p99 / bare broker round trip (median): {pure['p99'] / rtt:.2f}")
    print(f"  match() median / index median: {pure['reference_median'] / pure['median']:.0f}x")
    for catalog, found in sustained_at.items():
        run = found.within
        if run is not None:
            print(
                f"  {catalog:,} therapists: sustained {run.rate:.0f}/s (aim {AIM_PER_S}/s) with "
                f"e2e p99 {run.p99 / rtt:.1f}x RTT (limit {E2E_P99_LIMIT:.0f}x); backlog held "
                f"up to {found.drains_per_s:.0f}/s; burst {found.burst_per_s:.0f}/s"
            )
        else:
            best = found.best_effort
            print(
                f"  {catalog:,} therapists: no offered rate (down to {MIN_RATE:.0f}/s, at most"
                f" {SUSTAIN_TRIES} runs of 30 s) kept p99 within "
                f"{E2E_P99_LIMIT:.0f}x RTT; backlog held up to {found.drains_per_s:.0f}/s"
                + (f" (30 s at {best.rate:.0f}/s: p99 {best.p99 / rtt:.1f}x RTT)" if best else "")
                + f"; burst {found.burst_per_s:.0f}/s"
            )
    for catalog, found in sustained_at.items():
        trip = filled_rtt[catalog]
        run = found.within_filled(trip)
        print(
            f"  {catalog:,} therapists, against the round trip on a topic filled as the intake"
            f" topic was ({trip * 1000:.2f} ms): "
            + (
                f"sustained {run.rate:.0f}/s with e2e p99 {run.p99 / trip:.1f}x"
                if run
                else f"no 30 s run within {E2E_P99_LIMIT:.0f}x"
            )
        )
    print(
        f"  2 replicas / 1 replica, backlog drain rate: {scaling:.2f} "
        f"(machine CPU busy while draining: {replicas[1]['machine_busy']:.0f}% with 1, "
        f"{replicas[2]['machine_busy']:.0f}% with 2)"
    )
    print(f"done in {time.perf_counter() - began:.1f} s")

    print(
        f"bench matching: matcher_p99_over_rtt={pure['p99'] / rtt:.2f} "
        f"e2e_p99_over_rtt={e2e(ten_k):.1f} "
        f"sustained_per_s={ten_k.within.rate if ten_k.within else 0:.0f} "
        f"sustained_1k_per_s={one_k.within.rate if one_k.within else 0:.0f} "
        f"backlog_holds_per_s={ten_k.drains_per_s:.0f} "
        f"replicas2_over_1={scaling:.2f} "
        f"lock_wait_ms={replicas[2]['lock_wait_s'] * 1000:.0f} "
        f"claim_wait_ms={replicas[2]['waited'] * 1000:.1f} "
        f"rss_mb={rss[CATALOGS[-1]]:.0f} "
        f"{filled_keys}"
        f"load1={os.getloadavg()[0]:.2f}"
    )


async def watch(bootstrap: str, matched_topic: str, submitted_topic: str) -> None:
    """The watcher's process: a consumer per topic from the beginning; a line per record on
    stdout (`M intake arrived published` or `S intake published`)."""
    consumers = {
        topic: AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS
        )
        for topic in (matched_topic, submitted_topic)
    }
    for consumer in consumers.values():
        await consumer.start()
    out = sys.stdout
    out.write("watching\n")
    out.flush()

    async def follow(topic: str, consumer: AIOKafkaConsumer) -> None:
        while not consumer.assignment():  # the topic is made by its first record
            metadata = await consumer._client.fetch_all_metadata()
            found = metadata.partitions_for_topic(topic) or ()
            if found:
                tps = [TopicPartition(topic, p) for p in found]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
            else:
                await asyncio.sleep(0.05)
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    intake_id = (record.key or b"").decode()
                    if topic == matched_topic:
                        out.write(f"M {intake_id} {now!r} {record.timestamp / 1000!r}\n")
                    else:
                        out.write(f"S {intake_id} {record.timestamp / 1000!r}\n")
            if batch:
                out.flush()

    await asyncio.gather(*(follow(t, c) for t, c in consumers.items()))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if sys.argv[1:2] == ["--watch"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(watch(*sys.argv[2:5]))
    else:
        asyncio.run(main())
