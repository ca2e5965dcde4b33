"""Booking benchmark: clients racing for one therapist's slots, free-slot listing, and a
summary refresh pass over 10,000 therapists.

Run by `make bench` (never by the tests), one benchmark at a time on an otherwise idle machine.
It starts its own infrastructure through chassis.infra.provide_postgres, works in a throwaway
database, and stops within about three minutes.

1. Attempts per second: 32 concurrent clients each book one of the therapist's earliest free
   times (and, refused, one of the alternatives offered; offered none, the calendar is full:
   they list again and stop when nothing is free), through the service layer (one
   read, the rules, one statement that claims the time as cells and writes session, answer,
   event and summary request, or refuses at once a time a committed booking holds). Then SQL
   checks must find zero overlapping sessions and zero sessions inside another's buffer.
   Beside it, in the same run, the rate of bare single-row inserts with the same concurrency
   (on the same pool), and the ratios. The outbox relay counts as awake, as under load.
   Before the first phase, an untimed warm-up race of each scenario for other therapists: a
   replica's first seconds pay once per connection what it never pays again (each statement
   prepared, and planned afresh its first five times on each connection before Postgres
   settles on a plan it keeps; the booking functions compiled; asyncpg's type introspection),
   and the phases measure a replica that has been serving for a while. Each scenario sends
   statements the other does not (the spread phase, once measured cold, spent about a third
   of its database time planning).
   With each phase, where the CPU went per attempt: this process (the clients and the
   service) and the database's backends. The pool opens every connection before timing.
   Then, beside them, what a booking costs with nobody in its way: each client books times
   no other client tries (every 32nd free hour, its own), one after another, until its
   courses are full; bookings per second over bare inserts (`uncontended`) and the CPU per
   booking, with the CPU per bare insert for comparison. Every attempt of the two phases is
   a booking or a refusal: this says how far from bare inserts the bookings alone are.
2. Free-slot listing for an 8-week horizon (`free_slots`, from the precomputed day tables),
   median and p99, beside a trivial baseline that only lists the same number of times.
3. A refresh pass: every one of 10,000 bookable therapists' summaries requested and published
   by two publishers at once (two worker replicas), each therapist exactly once.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from outbox import cpu_seconds  # (bench/outbox.py: Linux /proc)

from booking import service
from booking.app import DEFINITION, Settings
from booking.domain.availability import AvailabilityRules, Hours, free_slots
from chassis import db
from chassis.auth import Principal
from chassis.errors import Conflict
from chassis.infra import provide_postgres
from chassis.testing.events import a_match, a_profile

CLIENTS = 32
COURSES_PER_CLIENT = 2  # 64 courses of 12 sessions: more than the therapist's free hours
BOOKING_SECONDS = 12.0
WARM_UP_SECONDS = 1.5
INSERT_SECONDS = 5.0
SLOT_RUNS = 300
RELIST_UP_TO = 50
REFRESH_THERAPISTS = 10_000
REFRESH_REPLICAS = 2
# How many of the earliest free times a client picks from: few makes them collide all the
# time (the race); all of them spreads the bookings (the throughput of the booking path).
SCENARIOS = (("racing for the 8 earliest free times", 8), ("spread over all free times", 2000))
EVERY_DAY = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
AVAILABILITY: dict[str, Any] = {
    "weekly": {day: ["08:00-20:00"] for day in EVERY_DAY},
    "exceptions": [],
    "buffer_minutes": 15,
    "min_notice_hours": 12,
    "horizon_days": 56,
}


async def admin(server_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measured(
    pool: asyncpg.Pool, work: Callable[[], Awaitable[Any]]
) -> tuple[float, tuple[float, float]]:
    """Runs `work()` (made only once the clocks start: `asyncio.gather` starts its tasks at
    once): the seconds it took and, where the CPU went (a diagnostic beside the
    ratios), the CPU seconds used meanwhile by this process (the clients and the service)
    and by the database's backends serving the pool."""
    backends = [
        row["pid"]
        for row in await pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        )
    ]

    def postgres() -> float:
        return sum(cpu_seconds(pid) for pid in backends)

    cpu_before = time.process_time(), postgres()
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    return elapsed, (time.process_time() - cpu_before[0], postgres() - cpu_before[1])


async def set_up(pool: asyncpg.Pool, now: datetime) -> tuple[uuid.UUID, list[list[Any]]]:
    """A published therapist with working hours, and each client's courses with them."""
    therapist = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        profile = a_profile(therapist, capacity=100)
        await service.apply_profile(conn, profile, now)
    await service.set_availability(
        pool, Principal(therapist, "therapist"), therapist, AVAILABILITY, now
    )
    clients: list[list[Any]] = []
    for _ in range(CLIENTS):
        client = uuid.uuid4()
        courses = []
        for _ in range(COURSES_PER_CLIENT):
            match = a_match(client, therapist, score=50)
            async with pool.acquire() as conn, conn.transaction():
                courses.append(await service.open_course(conn, match, now))
        clients.append([client, courses])
    return therapist, clients


async def race(
    pool: asyncpg.Pool,
    therapist: uuid.UUID,
    clients: list[list[Any]],
    now: datetime,
    choose_from: int,
    seconds: float = BOOKING_SECONDS,
) -> dict[str, Any]:
    """Each client books one of the therapist's earliest free times (from the slot list, as
    the app shows it); refused, one of the alternatives the 409 offers; then the next."""
    counts = {"booked": 0, "refused": 0, "other": 0}
    latencies: list[float] = []
    rng = random.Random(1)
    # Each attempt a new idempotency key: a counter, not uuid4 (a getrandom call each: the
    # load generator shares the process and the cores with the service it measures).
    keys = map(str, itertools.count())
    deadline = time.perf_counter() + seconds

    async def client_loop(client: uuid.UUID, courses: list[uuid.UUID]) -> None:
        who = Principal(client, "client")

        listed: list[datetime] = []

        async def earliest(again: bool = False) -> datetime | None:
            # Racing: the app lists the few earliest times again after each booking. Spread:
            # a client picks among all the times listed once (a taken one is refused with
            # alternatives), and lists again only when its list is used up, or when a
            # refusal offers no alternative (the calendar is full: its list is all taken).
            if choose_from <= RELIST_UP_TO or not listed or again:
                found = await service.free_slots_for(pool, who, therapist, now, limit=choose_from)
                listed[:] = [slot.starts_at for slot in found.slots]
                rng.shuffle(listed)
            return listed.pop() if listed else None

        target = await earliest()
        while courses and target is not None and time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                await service.book_session(pool, who, courses[0], target, next(keys), now)
                counts["booked"] += 1
                latencies.append(time.perf_counter() - began)
                target = await earliest()
            except Conflict as exc:
                if exc.code == "course_full":
                    courses.pop(0)
                    continue
                latencies.append(time.perf_counter() - began)
                counts["refused" if exc.code == "taken" else "other"] += 1
                offered = exc.extra.get("alternatives") or []
                target = (
                    datetime.fromisoformat(rng.choice(offered)["starts_at"])
                    if offered
                    else await earliest(again=True)
                )

    elapsed, cpu = await measured(
        pool, lambda: asyncio.gather(*(client_loop(c, list(courses)) for c, courses in clients))
    )
    return {**counts, "seconds": elapsed, "latencies": latencies, "cpu": cpu}


async def own_times(
    pool: asyncpg.Pool, therapist: uuid.UUID, clients: list[list[Any]], now: datetime
) -> dict[str, Any]:
    """Each client books times no other client tries, until its courses are full or its
    times run out: bookings without contention (none refused, none waiting on another)."""
    found = await service.free_slots_for(
        pool, Principal(therapist, "therapist"), therapist, now, limit=2000
    )
    hours = [slot.starts_at for slot in found.slots if slot.starts_at.minute == 0]
    keys = map(str, itertools.count())
    booked = 0

    async def client_loop(
        client: uuid.UUID, courses: list[uuid.UUID], times: list[datetime]
    ) -> None:
        nonlocal booked
        who = Principal(client, "client")
        for starts_at in times:
            while courses:  # (a full course: the same time with the next course)
                try:
                    await service.book_session(pool, who, courses[0], starts_at, next(keys), now)
                    booked += 1
                    break
                except Conflict as exc:
                    if exc.code != "course_full":
                        raise
                    courses.pop(0)

    elapsed, cpu = await measured(
        pool,
        lambda: asyncio.gather(
            *(
                client_loop(client, list(courses), hours[n :: len(clients)])
                for n, (client, courses) in enumerate(clients)
            )
        ),
    )
    return {"booked": booked, "seconds": elapsed, "cpu": cpu}


async def double_bookings(pool: asyncpg.Pool, therapist: uuid.UUID) -> tuple[int, int]:
    """(overlapping sessions, sessions closer than the buffer) among live sessions."""
    live = "status IN ('booked', 'attended', 'no_show')"
    overlaps = await pool.fetchval(
        f"SELECT count(*) FROM sessions a JOIN sessions b ON a.therapist_id = b.therapist_id"
        f" AND a.session_id < b.session_id AND a.{live} AND b.{live}"
        " AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)"
        " WHERE a.therapist_id = $1",
        therapist,
    )
    too_close = await pool.fetchval(
        f"SELECT count(*) FROM sessions a JOIN sessions b ON a.therapist_id = b.therapist_id"
        f" AND a.session_id < b.session_id AND a.{live} AND b.{live}"
        " AND tstzrange(a.starts_at, a.ends_at + interval '15 minutes')"
        " && tstzrange(b.starts_at, b.ends_at + interval '15 minutes')"
        " WHERE a.therapist_id = $1",
        therapist,
    )
    return overlaps, too_close


async def refresh_pass(pool: asyncpg.Pool, now: datetime) -> tuple[float, int, int]:
    """(seconds, therapists published, most summaries of one therapist) for one periodic
    refresh of REFRESH_THERAPISTS therapists with hours and a few sessions each, published by
    REFRESH_REPLICAS publishers sharing the work."""
    await pool.execute(
        "INSERT INTO therapists (therapist_id, published, version)"
        " SELECT gen_random_uuid(), true, 1 FROM generate_series(1, $1)",
        REFRESH_THERAPISTS,
    )
    await pool.execute(
        "INSERT INTO availability (therapist_id, weekly, exceptions, buffer_minutes,"
        " min_notice_hours, horizon_days) SELECT therapist_id, $1, '[]', 15, 12, 56"
        " FROM therapists t WHERE NOT EXISTS (SELECT 1 FROM availability a"
        "  WHERE a.therapist_id = t.therapist_id)",
        {day: ["08:00-12:00", "13:00-17:00"] for day in EVERY_DAY[:5]},
    )
    await pool.execute("DELETE FROM summary_requests")
    await pool.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
    await pool.execute("DELETE FROM summary_schedule")
    began = time.perf_counter()
    requested = await service.refresh_summaries(pool, now, 900)
    done = await asyncio.gather(
        *(service.publish_due_summaries(pool, now, window_s=0) for _ in range(REFRESH_REPLICAS))
    )
    seconds = time.perf_counter() - began
    most = await pool.fetchval(
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM outbox"
        " WHERE event_type = 'TherapistAvailabilityPublished' AND sent_at IS NULL"
        " GROUP BY key) AS per_therapist"
    )
    assert requested >= REFRESH_THERAPISTS, requested
    return seconds, sum(done), most


async def bare_inserts(pool: asyncpg.Pool) -> tuple[float, tuple[float, float]]:
    """Single-row insert transactions per second at the same concurrency, and the CPU per
    insert (this process, the database's backends)."""
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bench_rows (id uuid PRIMARY KEY, at timestamptz)"
    )
    done = 0
    deadline = time.perf_counter() + INSERT_SECONDS

    async def writer() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO bench_rows (id, at) VALUES ($1, now())", uuid.uuid4()
                )
            done += 1

    elapsed, (python_s, postgres_s) = await measured(
        pool, lambda: asyncio.gather(*(writer() for _ in range(CLIENTS)))
    )
    cpu = python_s / done, postgres_s / done
    return done / elapsed, cpu


def slot_timings(now: datetime) -> tuple[list[float], list[float], int]:
    """free_slots over 8 weeks with a busy calendar, and a trivial baseline of equal output."""
    rules = AvailabilityRules(
        weekly={d: [Hours.parse("08:00-12:00"), Hours.parse("13:00-18:00")] for d in range(7)},
        buffer_minutes=15,
    )
    rng = random.Random(7)
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0)
    busy = []
    for day in range(56):
        for hour in rng.sample(range(7, 17), 4):  # four sessions a day
            start = day0 + timedelta(days=day, hours=hour)
            busy.append((start, start + timedelta(minutes=45)))
    computed, baseline = [], []
    found = len(free_slots(rules, 45, busy, now))  # the day tables are computed once, here
    gc.collect()
    gc.disable()  # as timeit does: a collection landing in one run says nothing of either
    for _ in range(SLOT_RUNS):
        began = time.perf_counter()
        found = len(free_slots(rules, 45, busy, now))
        computed.append(time.perf_counter() - began)
        began = time.perf_counter()
        step = timedelta(minutes=15)
        trivial = [now + step * k for k in range(found)]
        baseline.append(time.perf_counter() - began)
        assert len(trivial) == found
    gc.enable()
    return computed, baseline, found


async def main() -> int:
    server = provide_postgres()
    name = f"bench_booking_{uuid.uuid4().hex[:8]}"
    await admin(server.admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = server.dsn_for(name)
    results = []
    try:
        # Every connection opened before anything is timed: a connection's first use costs a
        # backend start and asyncpg's type introspection (~10 ms), which would otherwise land
        # in the first phase measured and not in the bare inserts' (run last, on the same pool).
        settings = Settings(
            database_url=dsn, db_pool_min=CLIENTS + 4, db_pool_max=CLIENTS + 4, log_json=False
        )
        await db.bootstrap_role(dsn, settings.role, settings.db_password.get_secret_value())
        await asyncio.to_thread(db.migrate, settings, Path(DEFINITION.migrations))
        pool = await db.create_pool(settings)
        try:
            # No relay runs here. Its `sleeping` flag stays as a relay under load keeps it
            # (awake): otherwise every booking would NOTIFY a relay that is not there, and
            # NOTIFY serialises the committing transactions of the whole database.
            await pool.execute("UPDATE outbox_relay SET sleeping = false")
            for _, choose_from in SCENARIOS:  # (each scenario sends statements of its own)
                now = datetime.now(UTC)
                await race(pool, *await set_up(pool, now), now, choose_from, WARM_UP_SECONDS)
            for title, choose_from in SCENARIOS:
                now = datetime.now(UTC)
                therapist, clients = await set_up(pool, now)
                result = await race(pool, therapist, clients, now, choose_from)
                results.append((title, result, *await double_bookings(pool, therapist)))
            now = datetime.now(UTC)
            uncontended = await own_times(pool, *await set_up(pool, now), now)
            inserts, insert_cpu = await bare_inserts(pool)
            refresh_s, refreshed, most = await refresh_pass(pool, datetime.now(UTC))
        finally:
            await pool.close()
    finally:
        await admin(server.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.stop()

    print(f"postgres: {server.path}; {CLIENTS} clients booking one therapist through the service")
    print(
        f"  bare single-row inserts/s (same concurrency): {inserts:,.0f};"
        f" CPU per insert µs: this process {insert_cpu[0] * 1e6:.0f},"
        f" Postgres backends {insert_cpu[1] * 1e6:.0f}"
    )
    failed = False
    ratios, p99s, doubles, inside_buffer = [], [], 0, 0
    for title, result, overlaps, too_close in results:
        attempts = result["booked"] + result["refused"] + result["other"]
        booked_rate = result["booked"] / result["seconds"]
        attempt_rate = attempts / result["seconds"]
        lat = [s * 1000 for s in result["latencies"]]
        median, p99 = statistics.median(lat), percentile(lat, 0.99)
        print(f"  {title}:")
        print(
            f"    {result['booked']} booked, {result['refused']} refused (409 taken),"
            f" {result['other']} other, in {result['seconds']:.1f} s"
        )
        print(
            f"    bookings/s {booked_rate:,.0f} ({booked_rate / inserts:.3f} of bare inserts/s);"
            f" attempts/s {attempt_rate:,.0f} ({attempt_rate / inserts:.3f})"
        )
        print(f"    attempt latency ms: median {median:.1f}, p99 {p99:.1f}")
        python_s, postgres_s = result["cpu"]
        print(
            f"    CPU per attempt µs: this process (clients + service)"
            f" {python_s / attempts * 1e6:.0f}, Postgres backends {postgres_s / attempts * 1e6:.0f}"
        )
        print(
            f"    double bookings (SQL overlap check): {overlaps}; inside the buffer: {too_close}"
        )
        failed = failed or bool(overlaps or too_close or result["booked"] == 0)
        ratios.append(attempt_rate / inserts)
        p99s.append(p99)
        doubles, inside_buffer = doubles + overlaps, inside_buffer + too_close

    alone_rate = uncontended["booked"] / uncontended["seconds"]
    python_s, postgres_s = uncontended["cpu"]
    print("  each client booking its own times (no contention):")
    print(
        f"    {uncontended['booked']} booked in {uncontended['seconds']:.1f} s;"
        f" bookings/s {alone_rate:,.0f} ({alone_rate / inserts:.3f} of bare inserts/s)"
    )
    print(
        f"    CPU per booking µs: this process {python_s / uncontended['booked'] * 1e6:.0f},"
        f" Postgres backends {postgres_s / uncontended['booked'] * 1e6:.0f}"
    )
    failed = failed or uncontended["booked"] == 0

    computed, baseline, found = slot_timings(datetime.now(UTC))
    ms = [s * 1000 for s in computed]
    base_ms = [s * 1000 for s in baseline]
    print(f"free-slot listing, 8-week horizon, {found} free slots, {SLOT_RUNS} runs:")
    print(f"  free_slots ms: median {statistics.median(ms):.3f}, p99 {percentile(ms, 0.99):.3f}")
    print(
        f"  trivial baseline (list {found} times) ms: median {statistics.median(base_ms):.3f},"
        f" p99 {percentile(base_ms, 0.99):.3f}"
    )
    slots_ratio = percentile(ms, 0.99) / percentile(base_ms, 0.99)
    print(
        f"  ratio: median {statistics.median(ms) / statistics.median(base_ms):.2f}x,"
        f" p99 {slots_ratio:.2f}x"
    )
    print(
        f"refresh pass: {refreshed:,} of {REFRESH_THERAPISTS:,} therapists' summaries published"
        f" by {REFRESH_REPLICAS} publishers in {refresh_s:.1f} s; most for one therapist: {most}"
    )
    failed = failed or refreshed < REFRESH_THERAPISTS or most != 1
    print(
        f"bench booking: racing={ratios[0]:.2f} spread={ratios[1]:.2f} doubles={doubles}"
        f" inside_buffer={inside_buffer} uncontended={alone_rate / inserts:.2f}"
        f" slots_over_baseline={slots_ratio:.2f}"
        f" refresh_s={refresh_s:.1f} attempt_p99_ms={max(p99s):.0f}"
    )
    if failed:
        print("FAILED: double bookings or nothing booked", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
