"""Catalog search at 10,000 published therapists: HTTP search latency against `/healthz`.

Run by `make bench` (never by tests). Takes infrastructure from SAMTAL_INFRA_* or starts it
(chassis.infra), creates a throwaway database, migrates, loads 10,000 synthetic profiles
through the store and outbox (`samtal-catalog load-synthetic`'s path), then measures a mix
of filter queries in one run, taking turns: GET /healthz (HTTP, no database: the
baseline), a `select 1` round trip, and GET /therapists through the api app (httpx
ASGITransport). Every total is checked against a count in the database. A second pass
changes a profile's rating before every tenth search (the replica reads the change first).

Last line: `bench catalog: search_p99_over_healthz=… store_p99_over_select=…`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from catalog.app import DEFINITION, Settings, synthetic_entries
from catalog.domain.search import SearchQuery
from catalog.service import load
from chassis import db
from chassis.app import build
from chassis.infra import InfraSettings, provide_kafka, provide_postgres

THERAPISTS = 10_000
ROUNDS = 60  # of the whole query mix, per way of asking
WARMUP = 5
QUERIES: list[dict[str, str]] = [
    {},
    {"method": "IPT"},
    {"method": "IPT-A", "age_group": "adolescents"},
    {"language": "ar", "mode": "video"},
    {"city": "Malmö", "sort": "name"},
    {"area": "grief", "accepting": "true"},
    {"method": "KBT", "language": "fa", "city": "Umeå", "mode": "in_person"},
    {"sort": "name", "page": "20", "page_size": "50"},
]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def interleaved(
    ways: dict[str, Callable[[dict[str, str]], Awaitable[Any]]],
    before: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, dict[int, list[float]]]:
    """Milliseconds per way and query. The ways take turns on each query of each round, so
    the noise of a shared machine falls on all of them alike. `before` runs, untimed,
    before each query."""
    samples: dict[str, dict[int, list[float]]] = {
        way: {i: [] for i in range(len(QUERIES))} for way in ways
    }
    for round_ in range(WARMUP + ROUNDS):
        for i, params in enumerate(QUERIES):
            if before is not None:
                await before()
            for way, action in ways.items():
                started = time.perf_counter()
                await action(params)
                if round_ >= WARMUP:
                    samples[way][i].append((time.perf_counter() - started) * 1000)
    return samples


def flat(per_query: dict[int, list[float]]) -> list[float]:
    return [s for samples in per_query.values() for s in samples]


def sql_count(params: dict[str, str]) -> tuple[str, list[Any]]:
    """The query's total, counted by the database (the check that totals are exact)."""
    query = SearchQuery.model_validate(params)
    clauses, args = ["status = 'published'"], []
    for column, value in (
        ("methods", query.method),
        ("focus_areas", query.focus_area),
        ("languages", query.language),
        ("modes", query.mode),
        ("age_groups", query.age_group),
    ):
        if value is not None:
            args.append([value])
            clauses.append(f"{column} @> ${len(args)}::text[]")
    if query.city is not None:
        args.append(query.city)
        clauses.append(f"lower(city) = lower(${len(args)})")
    if query.accepting_new_clients is not None:
        args.append(query.accepting_new_clients)
        clauses.append(f"accepting_new_clients = ${len(args)}")
    return f"SELECT count(*) FROM therapists WHERE {' AND '.join(clauses)}", args


def line(
    label: str, samples: list[float], base: tuple[float, float] | None, base_name: str = ""
) -> str:
    median, p99 = statistics.median(samples), pct(samples, 0.99)
    text = f"  {label:<34} median {median:7.3f} ms   p99 {p99:7.3f} ms"
    if base:
        text += f"   ({median / base[0]:6.1f}x / {p99 / base[1]:6.1f}x {base_name})"
    return text


async def main() -> None:
    began = time.perf_counter()
    infra = InfraSettings()
    postgres = provide_postgres(infra)
    kafka = provide_kafka(infra)
    name = f"samtal_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = Settings(
            database_url=postgres.dsn_for(name),
            kafka_bootstrap=kafka.bootstrap,
            kafka_idempotence=not kafka.embedded,
            log_level="WARNING",
            db_pool_max=4,
        )
        await db.bootstrap_role(
            settings.database_url, settings.role, settings.db_password.get_secret_value()
        )
        await asyncio.to_thread(db.migrate, settings, DEFINITION.migrations)
        print(f"infrastructure: postgres {postgres.path}, kafka {kafka.path}; database {name}")

        pool = await db.create_pool(settings)
        started = time.perf_counter()
        entries = synthetic_entries(THERAPISTS)
        loaded = await load(pool, entries, batch=500)
        load_s = time.perf_counter() - started
        # Bench setup only: ratings for ~70% so that sort=rating has something to order.
        await pool.execute(
            "UPDATE therapists SET"
            " rating_average = round(1 + (abs(hashtext(therapist_id::text)) % 401) / 100.0, 2),"
            " rating_count = 1 + abs(hashtext(name || therapist_id::text)) % 40"
            " WHERE abs(hashtext(therapist_id::text)) % 10 < 7"
        )
        # That setup rewrote most rows: compact, then vacuum as autovacuum would (statistics,
        # visibility map), so the measurement sees the table as loaded and settled.
        await pool.execute("VACUUM FULL therapists")
        await pool.execute("VACUUM (ANALYZE) therapists")
        events = await pool.fetchval("SELECT count(*) FROM outbox")
        print(
            f"loaded {loaded.created} profiles through the store and outbox in {load_s:.1f} s"
            f" ({loaded.created / load_s:,.0f}/s; {events} events in the outbox)"
        )

        async def select_one(_: dict[str, str]) -> None:
            async with pool.acquire() as conn:
                await conn.fetchval("select 1")

        app = build(DEFINITION, settings, "api")
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

                async def via_http(params: dict[str, str]) -> None:
                    response = await http.get("/therapists", params=params)
                    response.raise_for_status()

                async def healthz(_: dict[str, str]) -> None:
                    (await http.get("/healthz")).raise_for_status()

                started = time.perf_counter()
                totals = []
                for params in QUERIES:  # the first search reads the whole catalog
                    body = (await http.get("/therapists", params=params)).json()
                    totals.append(body["total"])
                first_s = time.perf_counter() - started
                counted = []
                for params in QUERIES:
                    sql, args = sql_count(params)
                    counted.append(await pool.fetchval(sql, *args))
                exact = totals == counted

                samples = await interleaved(
                    {"health": healthz, "select": select_one, "http": via_http}
                )

                ids = [row["therapist_id"] for row in await pool.fetch(
                    "SELECT therapist_id FROM therapists ORDER BY therapist_id LIMIT 100"
                )]  # fmt: skip
                changes = 0

                async def change() -> None:
                    nonlocal changes
                    changes += 1
                    if changes % 10 == 0:  # as a review would: a new rating, a new place
                        await pool.execute(
                            "UPDATE therapists SET rating_average = $2, rating_count ="
                            " rating_count + 1 WHERE therapist_id = $1",
                            ids[changes % len(ids)],
                            1 + (changes % 400) / 100,
                        )

                changed = await interleaved({"health": healthz, "http": via_http}, change)
                for params in QUERIES:  # still exact after the changes
                    sql, args = sql_count(params)
                    body = (await http.get("/therapists", params=params)).json()
                    exact = exact and body["total"] == await pool.fetchval(sql, *args)

        health, baseline, http_each = samples["health"], samples["select"], samples["http"]
        n = ROUNDS * len(QUERIES)
        hbase = (statistics.median(flat(health)), pct(flat(health), 0.99))
        print(f"\nsearch over {THERAPISTS:,} published therapists, {n} samples each:")
        print(f"  first search (reads the whole catalog): {first_s * 1000:.0f} ms")
        print(line("GET /healthz (baseline)", flat(health), None))
        print(line("select 1", flat(baseline), hbase, "healthz"))
        print(line("GET /therapists, query mix", flat(http_each), hbase, "healthz"))
        chbase = (statistics.median(flat(changed["health"])), pct(flat(changed["health"]), 0.99))
        print(line("  same, a change every 10th search", flat(changed["http"]), chbase, "healthz"))
        print("\nper query (HTTP median; total, as counted by the database):")
        for i, params in enumerate(QUERIES):
            shown = "&".join(f"{k}={v}" for k, v in params.items()) or "(no filter)"
            print(
                f"  {shown:<58} {statistics.median(http_each[i]):6.2f} ms"
                f"  total {totals[i]:>5} ({counted[i]:>5})"
            )
        await pool.close()
        ratio = pct(flat(http_each), 0.99) / hbase[1]
        with_changes = pct(flat(changed["http"]), 0.99) / chbase[1]
        summary = (
            f"bench catalog: search_p99_over_healthz={ratio:.2f}"
            f" with_changes_p99_over_healthz={with_changes:.2f} exact={str(exact).lower()}"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        kafka.stop()
        postgres.stop()
    print(f"\ndone in {time.perf_counter() - began:.0f} s")
    print(summary)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
