"""The worker's candidate index: built from the read model, kept fresh by the
notifications of committed therapist changes; one per database and schema in a process."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import Counter, Gauge

from chassis import db
from chassis.app import Runtime
from chassis.settings import ServiceSettings
from matching import store
from matching.domain.candidate_index import CandidateIndex
from matching.service.common import log
from matching.service.decisions import IndexedCandidates, OwnMatches

INDEX_THERAPISTS = Gauge(
    "samtal_matching_index_therapists", "Therapists in this worker's candidate index"
)
INDEX_READS = Counter(
    "samtal_matching_index_reads",
    "Therapists the candidate index read again from the read model on a notification",
)
INDEX_OWN_MATCHES = Counter(
    "samtal_matching_index_own_matches",
    "Matches of this worker's own decisions its index held already when notified",
)


@dataclass
class _IndexKeeping:
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    index: CandidateIndex = field(default_factory=CandidateIndex)
    # What this worker's decisions left in the index (renewed with the index).
    own: OwnMatches = field(default_factory=OwnMatches)
    # Set by the keeper once the index holds what was committed before a waitlist wake-up.
    waitlist_wake: asyncio.Event = field(default_factory=asyncio.Event)


# One per database and schema a worker in this process serves (tests run several workers
# in one process; they share the read model, so they may share its index).
_INDEXES: dict[tuple[str, str], _IndexKeeping] = {}


def _keeping(settings: ServiceSettings) -> _IndexKeeping:
    return _INDEXES.setdefault((settings.database_url, settings.db_schema), _IndexKeeping())


async def worker_index(settings: ServiceSettings) -> IndexedCandidates:
    """The worker's candidate index, once built: decisions wait for the (re)build, so a
    (re)started worker never decides on a partial index."""
    keeping = _keeping(settings)
    if not keeping.ready.is_set():  # (wait_for makes a task even for a set event)
        await asyncio.wait_for(keeping.ready.wait(), settings.startup_timeout_s)
    return built_index(settings)


class IndexNotReady(Exception):
    """The candidate index is being built again: the intakes are retried once it is."""


async def index_ready(settings: ServiceSettings) -> None:
    """Returns once the worker's candidate index is built (the matcher's `ready`: awaited
    before its intakes take a connection, since the keeper may need one of the same pool
    to build it). Waits as long as that takes, saying so now and then: the intakes are
    not dead-lettered for waiting."""
    keeping = _keeping(settings)
    began = time.monotonic()
    while not keeping.ready.is_set():
        try:
            await asyncio.wait_for(keeping.ready.wait(), settings.startup_timeout_s)
        except TimeoutError:
            waited = round(time.monotonic() - began)
            log.warning("the matcher waits for the candidate index", waited_s=waited)


def built_index(settings: ServiceSettings) -> IndexedCandidates:
    """The worker's candidate index as it is, without waiting: IndexNotReady while it is
    being built (the matcher's intakes then go back, unapplied, to wait in `index_ready`)."""
    keeping = _keeping(settings)
    if not keeping.ready.is_set():
        raise IndexNotReady("the candidate index is being built again")
    return IndexedCandidates(keeping.index, keeping.own)


INDEX_PAGE = 1000
# A quiet keeper asks its connection this often whether it is still there: a connection
# that died without closing (a network gone) says nothing, and its notifications with it.
FEED_CHECK_S = 5.0


async def _built_index(conn: asyncpg.Connection) -> CandidateIndex:
    """The index from the read model, a page at a time (what changes meanwhile is named
    by a notification the keeper reads again after)."""
    index = CandidateIndex()
    after: uuid.UUID | None = None
    while page := await store.candidates_after(conn, after, INDEX_PAGE):
        for candidate in page:
            index.put(candidate)
        after = page[-1].therapist_id
    return index


async def keep_candidate_index(runtime: Runtime) -> None:
    """Worker task: builds the candidate index from the read model, then reads again every
    therapist a committed NOTIFY names (store.therapist_changed). It listens before it
    reads, so no change falls between; a lost connection (its notifications are lost with
    it) builds the index anew: noticed when it closes, or by a probe when it went quiet
    without closing."""
    pool = runtime.pool
    assert pool is not None
    keeping = _keeping(runtime.settings)
    channel = store.therapists_channel(runtime.settings.db_schema)
    waitlist = store.waitlist_channel(runtime.settings.db_schema)
    # Notified therapists in order of arrival, each with the match that changed it, if any.
    changed: list[tuple[uuid.UUID, uuid.UUID | None]] = []
    poke = asyncio.Event()
    waitlist_woken = False

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        therapist, _, match = payload.partition(" ")
        changed.append((uuid.UUID(therapist), uuid.UUID(match) if match else None))
        poke.set()

    def on_waitlist(*_: object) -> None:
        # Heard on this connection after the therapist changes committed before it (or
        # with it): passed on to the retrier once they are in the index.
        nonlocal waitlist_woken
        waitlist_woken = True
        poke.set()

    while True:
        try:
            async with (
                pool.acquire() as conn,
                db.listening(
                    conn,
                    {channel: on_notify, waitlist: on_waitlist},
                    poke,
                    answer_within=runtime.settings.db_held_timeout_s,
                ) as feed,
            ):
                started = time.perf_counter()
                changed.clear()
                gc.unfreeze()  # a rebuild: the old index may go
                keeping.index = await _built_index(conn)
                keeping.own = OwnMatches()
                # Tens of thousands of long-lived objects: out of the collector's way,
                # so its passes (and the pauses they add to decisions) stay short.
                gc.collect()
                gc.freeze()
                keeping.ready.set()
                keeping.waitlist_wake.set()  # wake-ups may have been lost meanwhile
                INDEX_THERAPISTS.set(len(keeping.index))
                log.info(
                    "candidate index built",
                    therapists=len(keeping.index),
                    ms=round((time.perf_counter() - started) * 1000),
                )
                while True:
                    if not await feed.wait(FEED_CHECK_S):
                        continue  # (quiet, and the connection answered)
                    feed.check()  # (a closed connection wakes it: build anew)
                    poke.clear()
                    notified = list(changed)
                    changed.clear()
                    wake, waitlist_woken = waitlist_woken, False
                    # A match decided here is held here (OwnMatches); the rest is read.
                    to_read: dict[uuid.UUID, None] = {}
                    for therapist_id, match_id in notified:
                        if match_id is not None and keeping.own.held_already(
                            therapist_id, match_id
                        ):
                            INDEX_OWN_MATCHES.inc()
                        else:
                            to_read[therapist_id] = None
                    ids = list(to_read)
                    if ids:
                        fresh = {c.therapist_id: c for c in await store.candidates_of(conn, ids)}
                        for therapist_id in ids:
                            if therapist_id in fresh:
                                keeping.index.put(fresh[therapist_id])
                            else:
                                keeping.index.drop(therapist_id)
                            keeping.own.read_again(therapist_id)
                        INDEX_READS.inc(len(ids))
                        INDEX_THERAPISTS.set(len(keeping.index))
                    if wake:
                        keeping.waitlist_wake.set()
        except asyncio.CancelledError:
            keeping.ready.clear()
            raise
        except Exception as exc:  # the database went away: build anew once it is back
            keeping.ready.clear()
            log.warning("candidate index lost its feed; building it anew", error=str(exc))
            await asyncio.sleep(1.0)
