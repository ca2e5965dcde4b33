"""The booking path's questions as every connection ends up running them: Postgres plans a
prepared statement afresh its first five times on a connection, then keeps one generic plan
when it costs no more than planning each time. These are those generic plans."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg

from booking.store import claims


async def generic_plan(conn: asyncpg.Connection, sql: str) -> dict[str, Any]:
    """The plan of `sql` a connection keeps once it settled (any parameter values)."""
    parameters = max(int(n) for n in re.findall(r"\$(\d+)", sql))
    name = f"q_{uuid.uuid4().hex}"
    await conn.execute(f"PREPARE {name} AS {sql}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        nulls = ", ".join(["NULL"] * parameters)
        found = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})")
    finally:
        await conn.execute(f"DEALLOCATE {name}")
        await conn.execute("RESET plan_cache_mode")
    plan: dict[str, Any] = found[0]["Plan"]  # (the pool reads json as Python)
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def scans_of(plan: dict[str, Any], table: str) -> list[str]:
    """The node types of every read of `table` in the plan."""
    return [node["Node Type"] for node in nodes(plan) if node.get("Relation Name") == table]


async def test_each_question_sums_the_therapists_calendar_revision_once(pool) -> None:
    """The revision is the sum of the calendar's slots (a read of sixty-four rows): a
    question that uses it in several places must sum it once, not once per use."""
    async with pool.acquire() as conn:
        for sql in (claims._CALENDARS_IN, claims._CHECK_READING, claims._CHECK_MANY):
            plan = await generic_plan(conn, sql)
            assert len(scans_of(plan, "calendar_slots")) == 1, sql


async def test_a_refusal_reads_the_clients_calendar_revision_once(pool) -> None:
    async with pool.acquire() as conn:
        plan = await generic_plan(conn, claims._CHECK_READING)
    # The course of the question (by its key), and the client's courses for the revision.
    assert len(scans_of(plan, "courses")) == 2


async def test_the_questions_asked_together_look_each_one_up_by_its_keys(pool) -> None:
    """Bookings asking together are looked up one by one through the primary keys (their
    answer to the key, their course), never by reading the whole table, which grows with
    every booking (a plan that hashes the table is chosen while it is small, and then kept)."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (actor_id, key, request_hash, response)"
            " SELECT gen_random_uuid(), 'k', 'h', '{}' FROM generate_series(1, 1000)"
        )
        await conn.execute("ANALYZE idempotency_keys")
        plan = await generic_plan(conn, claims._CHECK_MANY)
    assert set(scans_of(plan, "idempotency_keys")) <= {"Index Scan", "Index Only Scan"}
    assert set(scans_of(plan, "courses")) <= {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


async def test_the_services_connections_keep_one_plan_per_statement(pool) -> None:
    """Booking's statements are written to have one plan good for every parameter (above):
    its connections plan each once, instead of afresh on call after call."""
    assert await pool.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
