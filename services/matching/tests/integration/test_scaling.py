"""Matching on several replicas: per-therapist claims instead of one lock, the worker's
candidate index equal to the Postgres read model whatever order events arrive in, and a
worker restarted under load that rebuilds its index first and loses no intake."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from prometheus_client import REGISTRY

from chassis.app import build, worker_pool_floor
from chassis.testing.waiting import until
from contracts import decode
from contracts.events import (
    FreeSlot,
    IntakeSubmitted,
    ReviewPublished,
    TherapistAvailabilityPublished,
    TherapistProfileWithdrawn,
)
from matching import service, store
from matching.app import DEFINITION
from matching.domain.candidate_index import CandidateIndex
from matching.domain.matcher import TherapistCandidate
from matching.service.index import _keeping as index_keeping

from .conftest import Matching


async def index_agrees_with_read_model(
    m: Matching, therapist_ids: list[uuid.UUID], timeout: float = 20
) -> dict[uuid.UUID, TherapistCandidate | None]:
    """Waits until the worker's index holds each therapist as Postgres does; returns it."""
    assert m.settings is not None
    index = (await service.worker_index(m.settings)).index
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with m.pool.acquire() as conn:
            fresh = {c.therapist_id: c for c in await store.candidates_of(conn, therapist_ids)}
        held = {t: index.held(t) for t in therapist_ids}
        if held == {t: fresh.get(t) for t in therapist_ids}:
            return held
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"index {held} != read model {fresh}")
        await asyncio.sleep(0.05)


async def in_order(m: Matching, consumer_of: dict[str, str], *events: Any) -> None:
    """Publish one event at a time, each consumed before the next is sent."""
    for event in events:
        [envelope] = await m.publish(event)
        await m.consumed(consumer_of[type(event).__name__], envelope)


CONSUMER_OF = {
    "TherapistProfilePublished": "therapist-profiles",
    "TherapistProfileWithdrawn": "therapist-withdrawals",
    "ReviewPublished": "therapist-ratings",
    "TherapistAvailabilityPublished": "therapist-availability",
}


async def test_the_index_ends_equal_to_the_read_model_in_either_order(matching_service) -> None:
    async with matching_service() as m:
        now = datetime.now(UTC).replace(microsecond=0)

        def summary(tid: uuid.UUID, minutes_ago: int, hours: list[int]) -> Any:
            return TherapistAvailabilityPublished(
                therapist_id=tid,
                computed_at=now - timedelta(minutes=minutes_ago),
                active_courses=len(hours),
                free_slots=[
                    FreeSlot(starts_at=now + timedelta(hours=h), minutes=50) for h in hours
                ],
            )

        cases: list[tuple[str, list[uuid.UUID], list[Any], Any]] = []
        for order in ("forward", "backward"):
            # Facts for a therapist the read model does not know yet, then the profile.
            unknown = m.therapist()
            early = [
                summary(unknown.therapist_id, 5, [30, 50]),
                ReviewPublished(
                    review_id=uuid.uuid4(),
                    therapist_id=unknown.therapist_id,
                    course_id=uuid.uuid4(),
                    rating=5,
                    rating_average=4.8,
                    rating_count=7,
                ),
            ]
            # A newer availability summary and an older one.
            summarised = m.therapist()
            newer, older = (
                summary(summarised.therapist_id, 1, [26]),
                summary(summarised.therapist_id, 60, [27, 28, 29]),
            )
            # Withdrawn (version 2) and an older publication (version 1).
            withdrawn = m.therapist(version=1)
            withdrawal = TherapistProfileWithdrawn(
                therapist_id=withdrawn.therapist_id, reason="left_platform", version=2
            )
            sequence = [*early, unknown, summarised, newer, older, withdrawn, withdrawal]
            if order == "backward":
                sequence = [summarised, older, newer, withdrawal, withdrawn, unknown, *early]
            cases.append(
                (
                    order,
                    [unknown.therapist_id, summarised.therapist_id, withdrawn.therapist_id],
                    sequence,
                    newer,
                )
            )

        for order, ids, sequence, newer in cases:
            await in_order(m, CONSUMER_OF, *sequence)
            held = await index_agrees_with_read_model(m, ids)
            unknown_id, summarised_id, withdrawn_id = ids
            got_unknown, got_summarised = held[unknown_id], held[summarised_id]
            assert got_unknown is not None, order
            assert (got_unknown.rating_average, got_unknown.rating_count) == (4.8, 7), order
            assert len(got_unknown.free_slots) == 2, order
            assert got_summarised is not None, order
            assert list(got_summarised.free_slots) == [s.starts_at for s in newer.free_slots]
            assert got_summarised.active_courses == 1, order
            assert held[withdrawn_id] is None, order


@contextlib.asynccontextmanager
async def workers(serve: Any, settings: Any, count: int) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(serve(build(DEFINITION, settings, "worker")))
        yield


def outcomes(m: Matching, intake_ids: list[uuid.UUID]) -> Counter[uuid.UUID]:
    """How many decisions (TherapistMatched or IntakeWaitlisted) each intake got."""
    decided = [
        e.payload.intake_id
        for e in [*m.probe.envelopes("TherapistMatched"), *m.probe.envelopes("IntakeWaitlisted")]
    ]
    wanted = set(intake_ids)
    return Counter(i for i in decided if i in wanted)


async def test_two_replicas_never_overfill_a_therapist_nor_match_an_intake_twice(
    matching_service, serve
) -> None:
    async with matching_service(worker=False) as m:
        therapists = [m.therapist(capacity=2) for _ in range(3)]  # six places in all
        await m.publish(*therapists)
        async with workers(serve, m.settings, count=2):
            await m.in_read_model(*therapists)
            clients = [uuid.uuid4() for _ in range(24)]
            intake_ids = await asyncio.gather(*(m.submitted(c) for c in clients))
            await m.probe.wait_for(
                lambda _: sum(outcomes(m, intake_ids).values()) >= len(intake_ids), timeout=60
            )
            await m.probe.quiet(1.5)  # nothing more comes (no second decision for anybody)

        decided = outcomes(m, intake_ids)
        assert set(decided) == set(intake_ids) and set(decided.values()) == {1}
        rows = await m.pool.fetch(
            "SELECT therapist_id, count(*) AS n FROM matches WHERE intake_id = ANY($1)"
            " AND status IN ('proposed', 'active') GROUP BY therapist_id",
            intake_ids,
        )
        assert {r["therapist_id"]: r["n"] for r in rows} == {t.therapist_id: 2 for t in therapists}
        statuses = Counter(
            await m.pool.fetch("SELECT status FROM intakes WHERE intake_id = ANY($1)", intake_ids)
        )
        assert {s["status"]: n for s, n in statuses.items()} == {"matched": 6, "waitlisted": 18}
        assert all(
            e.payload.therapist_id in {t.therapist_id for t in therapists}
            for e in m.probe.envelopes("TherapistMatched")
            if e.payload.intake_id in set(intake_ids)
        )


async def test_a_worker_restarted_under_load_rebuilds_its_index_first_and_loses_no_intake(
    matching_service, serve
) -> None:
    async with matching_service(worker=False) as m:
        first = m.therapist(capacity=100)
        await m.publish(first)
        clients = [uuid.uuid4() for _ in range(30)]
        intake_ids: list[uuid.UUID] = []
        async with workers(serve, m.settings, count=1):
            await m.in_read_model(first)
            for client in clients[:10]:
                intake_ids.append(await m.submitted(client))
            # Stopped while intakes keep coming: some are surely not decided yet.
            async with asyncio.TaskGroup() as more:
                late = [more.create_task(m.submitted(c)) for c in clients[10:20]]
        intake_ids += [t.result() for t in late]

        # While no worker runs, the read model changes: a therapist only the last intakes fit.
        language = m.another_language()
        newcomer = m.therapist(languages=[language], capacity=100)
        async with m.pool.acquire() as conn:
            assert await store.apply_profile(conn, newcomer)
        newcomers_intakes = [await m.submitted(c, languages=[language]) for c in clients[20:]]

        async with workers(serve, m.settings, count=1):
            every = [*intake_ids, *newcomers_intakes]
            await m.probe.wait_for(
                lambda _: sum(outcomes(m, every).values()) >= len(every), timeout=60
            )
            await m.probe.quiet(1.0)
        decided = outcomes(m, every)
        assert set(decided) == set(every) and set(decided.values()) == {1}
        matched_to = {
            e.payload.intake_id: e.payload.therapist_id
            for e in m.probe.envelopes("TherapistMatched")
        }
        assert all(matched_to.get(i) == first.therapist_id for i in intake_ids)
        # Decided from an index rebuilt at start: it knew the therapist added while down.
        assert all(matched_to.get(i) == newcomer.therapist_id for i in newcomers_intakes)


async def submitted_again_if_away(m: Any, client: uuid.UUID) -> uuid.UUID:
    """An intake submitted as a frontend does: asked again after a 503."""
    for _ in range(5):
        answer = await m.submit(client)
        if answer.status_code != 503:
            break
        await asyncio.sleep(0.1)
    assert answer.status_code == 201, answer.text
    return uuid.UUID(answer.json()["intake_id"])


async def test_a_worker_that_lost_its_database_builds_its_index_again_and_matches_meanwhile(
    matching_service, serve
) -> None:
    """Every connection of the worker cut (as by a Postgres restart) with intakes arriving:
    the keeper notices at once, the index is built anew and every intake is matched, none
    retried or dead-lettered, on the smallest pool a worker may have (three: the relay's
    lock, the keeper's, one for the rest; the matcher's lanes wait for the index holding
    no connection, so the keeper can take one to build it)."""
    async with matching_service(worker=False, db_pool_max=worker_pool_floor(DEFINITION)) as m:
        therapist = m.therapist(capacity=100)
        await m.publish(therapist)
        dead = counted('samtal_dead_letters_total{service="matching",consumer="matcher"}')
        retried = counted(
            'samtal_events_handled_total{service="matching",consumer="matcher",outcome="retried"}'
        )
        dead_before, retried_before = dead(), retried()
        async with workers(serve, m.settings, count=1):
            await m.in_read_model(therapist)
            before = [await m.submitted(uuid.uuid4()) for _ in range(3)]
            await until(
                "the first three decided", lambda: len(outcomes(m, before)) == 3, every=0.02
            )
            old = (await service.worker_index(m.settings)).index
            keeping = index_keeping(m.settings)
            cut = await m.pool.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'matching' AND pid <> pg_backend_pid()"
            )
            assert cut >= 2  # the worker's (index keeper, relay) and the api's at least
            # The keeper waits a second before it builds again: these come meanwhile.
            await until("the keeper noticing", lambda: not keeping.ready.is_set(), every=0.02)
            # The api's pooled connections were cut too: a submission that meets one is
            # answered 503 (try again), and a frontend asks again.
            during = [await submitted_again_if_away(m, uuid.uuid4()) for _ in range(8)]
            # Meanwhile no lane of the worker sits in a transaction waiting for the index.
            waiting_in_transaction = 0
            while not keeping.ready.is_set():
                waiting_in_transaction = max(
                    waiting_in_transaction,
                    await m.pool.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = 'matching' AND state LIKE 'idle in trans%'"
                        " AND now() - xact_start > interval '500 milliseconds'"
                    ),
                )
                await asyncio.sleep(0.05)
            assert waiting_in_transaction == 0
            every = [*before, *during]
            await until(
                "every intake decided",
                lambda: len(outcomes(m, every)) == len(every),
                timeout=60,
                every=0.02,
            )
            assert keeping.ready.is_set() and keeping.index is not old  # built anew
        decided = outcomes(m, every)
        assert set(decided.values()) == {1}
        matched = {e.payload.intake_id for e in m.probe.envelopes("TherapistMatched")}
        assert set(every) <= matched
        assert (dead(), retried()) == (dead_before, retried_before)


async def test_a_batch_decision_passes_over_a_held_therapist_but_waits_for_a_chosen_one(
    matching_service,
) -> None:
    async with matching_service(worker=False) as m:
        best, next_best = m.therapist(), m.therapist(focus_areas=["anxiety"])
        async with m.pool.acquire() as conn:  # no worker here: straight into the read model
            for profile in (best, next_best):
                await store.apply_profile(conn, profile)
        passed, chosen = await asyncio.gather(
            m.submitted(uuid.uuid4()),
            m.submitted(uuid.uuid4(), direct_therapist_id=str(best.therapist_id)),
        )

        async def decide(intake_id: uuid.UUID) -> Any:
            async with m.pool.acquire() as conn, conn.transaction():
                return await service.match_intake(conn, intake_id, wait_for_held=False)

        # Another decision holds the best therapist's row until it commits.
        other = await m.pool.acquire()
        held = other.transaction()
        await held.start()
        try:
            await other.execute(
                "SELECT 1 FROM therapists WHERE therapist_id = $1 FOR UPDATE", best.therapist_id
            )
            # A batch's decision does not wait (it may hold other rows): the next best.
            assert (await decide(passed)).therapist_id == next_best.therapist_id
            # The client's own choice is waited for.
            deciding = asyncio.create_task(decide(chosen))
            await m.eventually(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'",
                expect=1,
            )
            assert not deciding.done()
        finally:
            await held.rollback()
            await m.pool.release(other)
        assert (await deciding).therapist_id == best.therapist_id


async def test_a_set_based_batch_keeps_what_it_claimed_and_decides_again_what_was_held(
    matching_service,
) -> None:
    """The matcher's batch path: intakes choosing a free therapist are recorded together;
    those choosing one another decision holds are decided again alone (the next best), and
    the index ends as the read model is."""
    async with matching_service(worker=False) as m:
        best, next_best = m.therapist(capacity=3), m.therapist(focus_areas=["anxiety"])
        async with m.pool.acquire() as conn:
            for profile in (best, next_best):
                await store.apply_profile(conn, profile)
            index = CandidateIndex()
            for candidate in await store.candidates_after(conn, None, 100):
                index.put(candidate)
        candidates = service.IndexedCandidates(index)
        intakes = [await m.submitted(uuid.uuid4()) for _ in range(4)]
        rows = await m.pool.fetch(
            "SELECT key, value FROM outbox WHERE event_type = 'IntakeSubmitted'"
            " AND key = ANY($1::text[])",
            [str(i) for i in intakes],
        )
        by_key = {r["key"]: decode(r["value"], expected=IntakeSubmitted) for r in rows}
        submitted = [by_key[str(i)] for i in intakes]

        async def therapists_of(ids: list[uuid.UUID]) -> list[uuid.UUID]:
            found = await m.pool.fetch(
                "SELECT intake_id, therapist_id FROM matches WHERE intake_id = ANY($1::uuid[])",
                ids,
            )
            of = {r["intake_id"]: r["therapist_id"] for r in found}
            return [of.get(i) for i in ids]

        # Free: both go to the best, recorded together (the second counts the first place).
        async with m.pool.acquire() as conn, conn.transaction():
            await service.match_submitted(conn, submitted[:2], candidates)
        assert await therapists_of(intakes[:2]) == [best.therapist_id] * 2
        # Another decision holds the best therapist: the batch passes it over.
        other = await m.pool.acquire()
        held = other.transaction()
        await held.start()
        try:
            await other.execute(
                "SELECT 1 FROM therapists WHERE therapist_id = $1 FOR UPDATE", best.therapist_id
            )
            async with m.pool.acquire() as conn, conn.transaction():
                await service.match_submitted(conn, submitted[2:], candidates)
        finally:
            await held.rollback()
            await m.pool.release(other)
        assert await therapists_of(intakes[2:]) == [next_best.therapist_id] * 2
        async with m.pool.acquire() as conn:
            fresh = {
                c.therapist_id: c
                for c in await store.candidates_of(
                    conn, [best.therapist_id, next_best.therapist_id]
                )
            }
        assert index.held(best.therapist_id) == fresh[best.therapist_id]
        assert index.held(next_best.therapist_id) == fresh[next_best.therapist_id]
        assert fresh[best.therapist_id].active_courses == 2


def counted(name: str) -> Callable[[], float]:
    return lambda: REGISTRY.get_sample_value(name) or 0.0


async def test_the_index_holds_its_own_matches_and_reads_a_therapist_changed_meanwhile(
    matching_service,
) -> None:
    """A match this worker decided is not read again when its commit notifies (the index
    counts the place already); a change committed between a decision's claim and its
    commit (which the keeper reads without the match) has the therapist read again."""
    async with matching_service(worker=False) as m:
        therapist = m.therapist(capacity=10)
        tid = therapist.therapist_id
        async with m.pool.acquire() as conn:
            await store.apply_profile(conn, therapist)
        first, second = [await m.submitted(uuid.uuid4()) for _ in range(2)]
        # The worker's keeper alone: every decision here is the test's own.
        keeper = asyncio.create_task(
            service.keep_candidate_index(SimpleNamespace(pool=m.pool, settings=m.settings))  # type: ignore[arg-type]
        )
        try:
            candidates = await service.worker_index(m.settings)
            reads = counted("samtal_matching_index_reads_total")
            own = counted("samtal_matching_index_own_matches_total")
            reads_before, own_before = reads(), own()

            async with m.pool.acquire() as conn, conn.transaction():
                matched = await service.match_intake(conn, first, candidates=candidates)
            assert matched is not None and matched.therapist_id == tid
            await until("its own match held", lambda: own() == own_before + 1, every=0.02)
            assert reads() == reads_before
            assert (await index_agrees_with_read_model(m, [tid]))[tid].active_courses == 1

            later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
            summary = TherapistAvailabilityPublished(
                therapist_id=tid,
                computed_at=datetime.now(UTC),
                active_courses=0,
                free_slots=[FreeSlot(starts_at=later, minutes=50)],
            )
            async with m.pool.acquire() as conn:
                async with conn.transaction():
                    matched = await service.match_intake(conn, second, candidates=candidates)
                    assert matched is not None and matched.therapist_id == tid
                    async with m.pool.acquire() as other:  # commits before the match does
                        assert await store.apply_availability(other, summary)
                        await store.therapist_changed(other, tid)
                    await until(
                        "the therapist read again", lambda: reads() == reads_before + 1, every=0.02
                    )
                    held = candidates.index.held(tid)
                    assert held is not None and held.free_slots == (later,)
                    assert held.active_courses == 1  # read without the uncommitted match
            held_now = await index_agrees_with_read_model(m, [tid])
            assert held_now[tid] is not None and held_now[tid].active_courses == 2
            assert reads() == reads_before + 2
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


async def test_a_set_based_batch_takes_back_a_match_on_a_therapist_changed_since_the_index(
    matching_service,
) -> None:
    """The batch claims and records in one round trip; a therapist found changed since the
    index saw it (here: full) has the match taken back (no row, no event, the intake as it
    was) and the intake decided again alone on what is true now."""
    async with matching_service(worker=False) as m:
        best, next_best = m.therapist(capacity=2), m.therapist(focus_areas=["anxiety"])
        async with m.pool.acquire() as conn:
            for profile in (best, next_best):
                await store.apply_profile(conn, profile)
            index = CandidateIndex()
            for candidate in await store.candidates_after(conn, None, 100):
                index.put(candidate)
            # Booking fills the best therapist; the index has not heard of it.
            assert await store.apply_availability(
                conn,
                TherapistAvailabilityPublished(
                    therapist_id=best.therapist_id,
                    computed_at=datetime.now(UTC),
                    active_courses=2,
                    free_slots=[],
                ),
            )
        intake_id = await m.submitted(uuid.uuid4())
        [row] = await m.pool.fetch(
            "SELECT value FROM outbox WHERE event_type = 'IntakeSubmitted' AND key = $1",
            str(intake_id),
        )
        submitted = decode(row["value"], expected=IntakeSubmitted)
        refused = counted("samtal_matching_claims_refused_total")
        refused_before = refused()
        async with m.pool.acquire() as conn, conn.transaction():
            await service.match_submitted(conn, [submitted], service.IndexedCandidates(index))
        assert refused() == refused_before + 1
        matches = await m.pool.fetch(
            "SELECT therapist_id FROM matches WHERE intake_id = $1", intake_id
        )
        assert [r["therapist_id"] for r in matches] == [next_best.therapist_id]
        events = await m.pool.fetch(
            "SELECT value FROM outbox WHERE event_type = 'TherapistMatched' AND key = $1",
            str(intake_id),
        )
        assert [decode(e["value"]).payload.therapist_id for e in events] == [next_best.therapist_id]
        assert (
            await m.pool.fetchval("SELECT status FROM intakes WHERE intake_id = $1", intake_id)
            == "matched"
        )
        async with m.pool.acquire() as conn:
            fresh = {
                c.therapist_id: c
                for c in await store.candidates_of(
                    conn, [best.therapist_id, next_best.therapist_id]
                )
            }
        assert index.held(best.therapist_id) == fresh[best.therapist_id]
        assert index.held(next_best.therapist_id) == fresh[next_best.therapist_id]
