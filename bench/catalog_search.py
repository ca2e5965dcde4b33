"""Catalog search at 10,000 published therapists: HTTP and store latency against `select 1`.

Run by `make bench` (never by tests). Takes infrastructure from SAMTAL_INFRA_* or starts it
(chassis.infra), creates a throwaway database, migrates, loads 10,000 synthetic profiles
through the store and outbox (`samtal-catalog load-synthetic`'s path), then measures a mix
of filter queries three ways in one run: a `select 1` round trip (the baseline), the store's
query directly, and GET /therapists through the api app (httpx ASGITransport). Prints median
and p99 of each and their ratio to the baseline, and which indexes each query used.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from catalog import store
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
) -> dict[str, dict[int, list[float]]]:
    """Milliseconds per way and query. The ways take turns on each query of each round, so
    the noise of a shared machine falls on all of them alike."""
    samples: dict[str, dict[int, list[float]]] = {
        way: {i: [] for i in range(len(QUERIES))} for way in ways
    }
    for round_ in range(WARMUP + ROUNDS):
        for i, params in enumerate(QUERIES):
            for way, action in ways.items():
                started = time.perf_counter()
                await action(params)
                if round_ >= WARMUP:
                    samples[way][i].append((time.perf_counter() - started) * 1000)
    return samples


def flat(per_query: dict[int, list[float]]) -> list[float]:
    return [s for samples in per_query.values() for s in samples]


def indexes_used(plan: Any) -> list[str]:
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.append(node["Index Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return sorted(set(found)) or ["(sequential scan)"]


async def explain(conn: asyncpg.Connection, params: dict[str, str]) -> str:
    query = SearchQuery.model_validate(params)
    sql = store.search_sql(query)
    count_plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql.count}", *sql.args)
    page_plan = await conn.fetchval(
        f"EXPLAIN (FORMAT JSON) {sql.page}", *sql.args, query.limit, query.offset
    )
    as_json = [json.loads(p) if isinstance(p, str) else p for p in (count_plan, page_plan)]
    return (
        f"count: {', '.join(indexes_used(as_json[0]))}; page: {', '.join(indexes_used(as_json[1]))}"
    )


def line(label: str, samples: list[float], base: tuple[float, float] | None) -> str:
    median, p99 = statistics.median(samples), pct(samples, 0.99)
    text = f"  {label:<34} median {median:7.3f} ms   p99 {p99:7.3f} ms"
    if base:
        text += f"   ({median / base[0]:6.1f}x / {p99 / base[1]:6.1f}x select 1)"
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

        async def via_store(params: dict[str, str]) -> None:
            async with pool.acquire() as conn:
                await store.search(conn, SearchQuery.model_validate(params))

        app = build(DEFINITION, settings, "api")
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

                async def via_http(params: dict[str, str]) -> None:
                    response = await http.get("/therapists", params=params)
                    response.raise_for_status()

                async def healthz(_: dict[str, str]) -> None:
                    (await http.get("/healthz")).raise_for_status()

                totals = []
                for params in QUERIES:
                    body = (await http.get("/therapists", params=params)).json()
                    totals.append(body["total"])

                samples = await interleaved(
                    {"select": select_one, "store": via_store, "http": via_http, "health": healthz}
                )

        baseline, store_each, http_each = samples["select"], samples["store"], samples["http"]
        n = ROUNDS * len(QUERIES)
        base = (statistics.median(flat(baseline)), pct(flat(baseline), 0.99))
        print(f"\nsearch over {THERAPISTS:,} published therapists, {n} samples each:")
        print(line("select 1 (baseline)", flat(baseline), None))
        print(line("store.search, query mix", flat(store_each), base))
        print(line("GET /therapists, query mix", flat(http_each), base))
        print(line("GET /healthz (HTTP, no database)", flat(samples["health"]), base))
        print("\nper query (store / HTTP medians; total matches; indexes used):")
        async with pool.acquire() as conn:
            for i, params in enumerate(QUERIES):
                shown = "&".join(f"{k}={v}" for k, v in params.items()) or "(no filter)"
                print(
                    f"  {shown:<58} {statistics.median(store_each[i]):6.2f} /"
                    f" {statistics.median(http_each[i]):6.2f} ms  total {totals[i]:>5}"
                )
                print(f"      {await explain(conn, params)}")
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        kafka.stop()
        postgres.stop()
    print(f"\ndone in {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
