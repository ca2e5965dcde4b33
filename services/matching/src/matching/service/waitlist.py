"""The waitlist: retried first come, first served when capacity may have opened."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from prometheus_client import Counter

from chassis import db
from chassis.app import Runtime
from matching import store
from matching.domain import lifecycle
from matching.domain.matcher import Match, Waitlist
from matching.domain.waitlist import WaitingIntake, waitlist_order
from matching.service.common import _now, log
from matching.service.decisions import Candidates, IndexedCandidates, match_intake
from matching.service.index import _keeping, worker_index

PASSED_OVER = Counter(
    "samtal_waitlist_intakes_passed_over_total",
    "Waitlisted intakes a retry pass could not decide (an error; still waitlisted, tried again"
    " by the next pass)",
)


async def retry_waitlist(pool: asyncpg.Pool, candidates: Candidates | None = None) -> int:
    """One pass over the waitlist, first come first served, each intake in its own
    transaction. With the worker's index, an intake the index has no place for is passed
    over without one: a failed retry keeps its place and its reasons, and a pass on every
    wake-up opened a transaction (a lock and a read) for every waiting intake. Returns how
    many were matched."""
    async with pool.acquire() as conn:
        rows = await store.waitlisted(conn)
    by_id = {r["intake_id"]: r for r in rows}
    order = waitlist_order(WaitingIntake(r["intake_id"], r["waitlisted_at"]) for r in rows)
    index = candidates.index if isinstance(candidates, IndexedCandidates) else None
    matched = 0
    for waiting in order:
        try:
            # (Asked in turn: the places earlier intakes took in this pass count.)
            if index is not None:
                needs = store.needs_of(by_id[waiting.intake_id])
                if isinstance(index.decide(needs, _now()), Waitlist):
                    continue
            async with pool.acquire() as conn, conn.transaction():
                result = await match_intake(
                    conn, waiting.intake_id, from_states=lifecycle.RETRYABLE, candidates=candidates
                )
        except Exception as exc:
            if db.database_away(exc):  # not this intake's: the pass stops, tried again later
                raise
            # One intake that cannot be decided (a stored row today's code cannot read, a
            # bug) is passed over this time, still waitlisted (its transaction rolled back):
            # the ones behind it in line must not wait for it forever.
            PASSED_OVER.inc()
            log.error(
                "waitlisted intake cannot be decided; passed over",
                intake_id=str(waiting.intake_id),
                error=repr(exc),
            )
            continue
        matched += isinstance(result, Match)
    if matched:
        log.info("waitlist retried", waiting=len(order), matched=matched)
    return matched


async def waitlist_retrier(runtime: Runtime) -> None:
    """Worker task: a pass whenever a handler says capacity may have opened, and every
    `waitlist_retry_s` as a safety net.

    The wake-up comes from the index keeper (keep_candidate_index), which hears the
    committed NOTIFY on the same connection as the therapist changes committed with it,
    and passes it on only once the index holds them: a pass never decides on an index
    that has not yet seen the therapist who opened the place."""
    pool = runtime.pool
    assert pool is not None
    every: float = getattr(runtime.settings, "waitlist_retry_s", 30.0)
    keeping = _keeping(runtime.settings)
    keeping.waitlist_wake.set()  # a first pass at start: wake-ups may have come meanwhile
    while True:
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(keeping.waitlist_wake.wait(), every)
            keeping.waitlist_wake.clear()
            await retry_waitlist(pool, await worker_index(runtime.settings))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: wait, then try again
            log.warning("waitlist retry failed; retrying", error=str(exc))
            keeping.waitlist_wake.set()
            await asyncio.sleep(1.0)
