"""Search is answered from each api replica's memory, yet its totals stay exact.

Two api replicas; profiles are created, published, edited, withdrawn and rated through
one of them, and changed by transactions that commit out of order. After every change both
replicas answer exactly what counting in the database answers at that moment.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from catalog import service, store
from catalog.app import DEFINITION
from catalog.domain.profile import TherapistProfile
from catalog.domain.reviews import ReviewRight
from catalog.domain.search import SearchQuery
from chassis import db
from chassis.app import build


def sql_count(town: str, params: dict[str, str]) -> tuple[str, list[Any]]:
    """The same filter, counted by the database."""
    clauses, args = ["status = 'published'", "lower(city) = lower($1)"], [town]
    for name, column in (("method", "methods"), ("language", "languages"), ("mode", "modes")):
        if name in params:
            args.append([params[name]])
            clauses.append(f"{column} @> ${len(args)}::text[]")
    if "accepting" in params:
        args.append(params["accepting"] == "true")
        clauses.append(f"accepting_new_clients = ${len(args)}")
    return f"SELECT count(*) FROM therapists WHERE {' AND '.join(clauses)}", args


FILTERS: list[dict[str, str]] = [
    {},
    {"method": "IPT"},
    {"method": "KBT"},
    {"language": "ar"},
    {"mode": "in_person", "accepting": "true"},
    {"method": "IPT", "language": "en", "accepting": "false"},
]


async def test_two_replicas_give_exact_totals_after_every_change(
    migrated, serve, auth, profile
) -> None:
    settings = await migrated(DEFINITION)
    town = f"Räknestad {uuid.uuid4().hex[:8]}"
    admin = auth("admin")
    pool = await db.create_pool(settings)
    try:
        async with (
            serve(build(DEFINITION, settings, "api")) as one,
            serve(build(DEFINITION, settings, "api")) as two,
        ):

            async def check(step: str) -> None:
                everyone = await pool.fetchval(
                    "SELECT count(*) FROM therapists WHERE status = 'published'"
                )
                for replica in (one, two):
                    body = (await replica.get("/therapists", params={"page_size": "1"})).json()
                    assert body["total"] == everyone, step
                    for params in FILTERS:
                        sql, args = sql_count(town, params)
                        r = await replica.get("/therapists", params={"city": town, **params})
                        assert r.status_code == 200, r.text
                        assert r.json()["total"] == await pool.fetchval(sql, *args), (step, params)

            await check("before")  # both replicas have read the catalog once
            ids = []
            for i in range(6):
                data = profile(
                    name=f"Person {i}",
                    city=town,
                    methods=["KBT"] if i % 3 == 0 else ["IPT"],
                    languages=["sv", "ar"] if i % 2 else ["sv", "en"],
                    accepting_new_clients=i != 4,
                )
                if data["methods"] == ["KBT"]:
                    data.update(profession="certified_staff", licence_number=None)
                    data["certifications"] = ["KBT"]
                r = await one.post("/therapists", json=data, headers=admin)
                assert r.status_code == 201, r.text
                ids.append(r.json()["therapist_id"])
                await check(f"draft {i}")  # drafts are not found
                assert (await one.post(f"/therapists/{ids[-1]}/publish", headers=admin)).is_success
                await check(f"published {i}")

            r = await one.patch(f"/therapists/{ids[1]}", json={"languages": ["en"]}, headers=admin)
            assert r.status_code == 200, r.text
            await check("edited")
            r = await one.post(
                f"/therapists/{ids[2]}/withdraw", json={"reason": "other"}, headers=admin
            )
            assert r.status_code == 200, r.text
            await check("withdrawn")
            assert (await one.post(f"/therapists/{ids[2]}/publish", headers=admin)).is_success
            await check("published again")

            # A rating moves a profile to the top of the rating order on both replicas.
            client, course = uuid.uuid4(), uuid.uuid4()
            async with pool.acquire() as conn:
                await store.record_review_right(
                    conn, ReviewRight(course, client, uuid.UUID(ids[5])), datetime.now(UTC)
                )
            r = await one.post(
                f"/therapists/{ids[5]}/reviews",
                json={"course_id": str(course), "rating": 5, "text": "Bra"},
                headers=auth("client", client),
            )
            assert r.status_code == 201, r.text
            for replica in (one, two):
                top = (await replica.get("/therapists", params={"city": town})).json()
                assert top["items"][0]["therapist_id"] == ids[5]
                assert top["items"][0]["rating_average"] == 5.0

            # Out of order: a transaction that began first commits last. A replica reads
            # while it is open; its change must still reach the replica once committed.
            slow = await pool.acquire()
            fast = await pool.acquire()
            try:
                slow_tx = slow.transaction()
                await slow_tx.start()
                await slow.execute(
                    "UPDATE therapists SET accepting_new_clients = NOT accepting_new_clients"
                    " WHERE therapist_id = $1",
                    uuid.UUID(ids[0]),
                )
                async with fast.transaction():
                    await fast.execute(
                        "UPDATE therapists SET modes = '{video}' WHERE therapist_id = $1",
                        uuid.UUID(ids[3]),
                    )
                await check("a later transaction committed first")
                await slow_tx.commit()
                await check("the earlier one committed after")
                await slow.execute("DELETE FROM therapists WHERE therapist_id = $1", ids[4])
                await check("erased")
            finally:
                await pool.release(slow)
                await pool.release(fast)
    finally:
        await pool.close()


async def test_a_replica_reads_every_change_when_more_came_than_it_reads_at_once(
    migrated, profile
) -> None:
    settings = await migrated(DEFINITION)
    town = f"Massby {uuid.uuid4().hex[:8]}"
    query = SearchQuery(city=town)
    pool = await db.create_pool(settings)
    catalog = service.PublishedCatalog(changes_at_once=2)
    try:
        assert (await catalog.search(pool, query))[0] == 0  # read the whole catalog once
        entries = [
            (uuid.uuid4(), TherapistProfile.model_validate(profile(name=f"Person {i}", city=town)))
            for i in range(5)
        ]
        await service.load(pool, entries)  # five changes since that read, in one transaction
        total, items = await catalog.search(pool, query)
        assert total == 5
        assert {item["therapist_id"] for item in items} == {id_ for id_, _ in entries}
        async with pool.acquire() as conn:  # exactly as many as it reads at once
            await conn.execute(
                "UPDATE therapists SET status = 'withdrawn' WHERE therapist_id = ANY($1)",
                [id_ for id_, _ in entries[:2]],
            )
        assert (await catalog.search(pool, query))[0] == 3
    finally:
        await catalog.close()
        await pool.close()


async def test_a_replica_that_lost_its_connection_reads_on_a_new_one(migrated, profile) -> None:
    settings = await migrated(DEFINITION)
    town = f"Avbrottsby {uuid.uuid4().hex[:8]}"
    query = SearchQuery(city=town)
    pool = await db.create_pool(settings)
    catalog = service.PublishedCatalog()
    try:
        await catalog.search(pool, query)
        await catalog.search(pool, query)  # its connection's last statement: the change read
        lost = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND state = 'idle'"
            " AND query LIKE '%FROM search_changes%'"
        )
        assert lost == 1
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await catalog.search(pool, query)  # the read that finds it gone fails
        await service.load(
            pool, [(uuid.uuid4(), TherapistProfile.model_validate(profile(city=town)))]
        )
        assert (await catalog.search(pool, query))[0] == 1
    finally:
        await catalog.close()
        await pool.close()
