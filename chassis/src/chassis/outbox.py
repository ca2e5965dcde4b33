"""Transactional outbox: events commit with the change that caused them; a relay publishes.

Writing. `write` puts a state change and its events in ONE SQL statement (one round
trip, atomic without BEGIN/COMMIT); `add` writes events inside a transaction the caller
already holds. Either way the INSERT itself wakes a sleeping relay (NOTIFY, sent at
commit); a busy relay is never woken (NOTIFY serialises committing transactions on a
cluster-wide lock, so writers only pay for it when the relay is idle).

Relaying. Relays elect a leader with the schema's advisory lock; the leader is fenced
by an epoch (`outbox_relay.epoch`, bumped by every new leader). Each batch is claimed
on the lock connection in a statement that succeeds only while the epoch is still the
leader's own and that records the claimed ids as `in_flight`. So:
- a relay whose lock connection died cannot claim (the statement fails) and one that
  lost the epoch claims nothing: it stops at once, settles what it already sent, and
  goes back to standing by;
- a new leader bumps the epoch, then waits until its predecessor's `in_flight` rows are
  marked sent (the predecessor is finishing them) or `outbox_takeover_grace_s` has
  passed (the predecessor died: those rows go again and consumers' inboxes make the
  effect happen once). No record is published by two live relays.
Batches are pipelined: while one awaits the broker's acknowledgement the next is
claimed and sent; marks run beside the claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import socket
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from prometheus_client import Counter, Gauge

from chassis import observability
from chassis.settings import ServiceSettings
from contracts import REGISTRY, Envelope, EventPayload

log = structlog.get_logger("chassis.outbox")

OUTBOX_PUBLISHED = Counter("samtal_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_PENDING = Gauge("samtal_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST = Gauge(
    "samtal_outbox_oldest_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
OUTBOX_TAKEOVERS = Counter(
    "samtal_outbox_takeovers_total", "Times a relay took the lead", ["service"]
)


@functools.lru_cache(maxsize=65536)
def _hash_of(key: str) -> int:
    """The default partitioner's hash of a key (pure Python murmur2: keys repeat, so cached)."""
    return int(murmur2(key.encode())) & 0x7FFFFFFF


def channel(schema: str) -> str:
    return f"{schema}_outbox"


# --------------------------------------------------------------------------- writing


def envelope_for(
    payload: EventPayload,
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope[Any]:
    """The envelope of an event caused by the current request or consumed event."""
    context = observability.current_ids()
    return Envelope.wrap(
        payload,
        correlation_id=correlation_id or context.get("correlation_id"),
        # What caused this event: the consumed event, else the HTTP request.
        causation_id=causation_id or context.get("event_id") or context.get("request_id"),
    )


@functools.lru_cache(maxsize=1024)
def _topic_of(event_type: str) -> str:
    return REGISTRY.spec(event_type).topic


@functools.lru_cache(maxsize=1024)
def _headers_before_correlation(event_type: str) -> str:
    return '{"event_type": ' + json.dumps(event_type) + ', "correlation_id": '


def event_row(envelope: Envelope[Any], trace: dict[str, str]) -> tuple[Any, ...]:
    """The outbox columns of one event (`event_insert`).

    The topic and the headers' fixed part are looked up once per event type: the writers'
    Python is what a burst of writes waits on (a third of the CPU per outboxed event)."""
    if trace:
        headers = json.dumps(
            {"event_type": envelope.event_type, "correlation_id": envelope.correlation_id, **trace}
        )
    else:
        headers = (
            _headers_before_correlation(envelope.event_type)
            + json.dumps(envelope.correlation_id)
            + "}"
        )
    return (
        envelope.event_id,
        envelope.event_type,
        _topic_of(envelope.event_type),
        envelope.key,
        envelope.to_bytes(),
        headers,
    )


def event_columns(envelopes: Sequence[Envelope[Any]]) -> tuple[list[Any], ...]:
    """The outbox columns of some events, as one array per column (for `unnest`)."""
    trace = observability.trace_headers()
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    for envelope in envelopes:
        for column, value in zip(columns, event_row(envelope, trace), strict=True):
            column.append(value)
    return columns


_OUTBOX_COLUMNS = "event_id, event_type, topic, key, value, headers"

# Wakes a sleeping relay from the INSERT itself: one row, whose NOTIFY runs only while the
# relay is flagged sleeping (NOTIFY serialises committing transactions on a cluster-wide
# lock, so writers pay for it only when the relay is idle). In the statement's plan rather
# than a trigger: no function call and no query of its own per write. A wake-up missed
# because the relay fell asleep between this INSERT and its commit is caught by the
# relay's second look or its poll.
_WAKE = (
    "(SELECT count(pg_notify(current_schema() || '_outbox', ''))"
    " FROM outbox_relay WHERE sleeping) AS wake"
)


def events_insert(first: int) -> str:
    """INSERT of the events passed as six arrays (`event_columns`) from parameter `$first`."""
    p = [f"${first + i}" for i in range(6)]
    return (
        f"INSERT INTO outbox ({_OUTBOX_COLUMNS})"
        f" SELECT e.event_id, e.event_type, e.topic, e.key, e.value, e.headers::jsonb"
        f" FROM unnest({p[0]}::uuid[], {p[1]}::text[], {p[2]}::text[], {p[3]}::text[],"
        f" {p[4]}::bytea[], {p[5]}::text[])"
        f" AS e(event_id, event_type, topic, key, value, headers) CROSS JOIN {_WAKE}"
    )


def event_insert(first: int) -> str:
    """INSERT of ONE event passed as six values (`event_row`) from parameter `$first`: no
    arrays to encode or unnest (most writes carry one event)."""
    p = [f"${first + i}" for i in range(6)]
    return (
        f"INSERT INTO outbox ({_OUTBOX_COLUMNS})"
        f" SELECT {p[0]}::uuid, {p[1]}::text, {p[2]}::text, {p[3]}::text, {p[4]}::bytea,"
        f" {p[5]}::text::jsonb FROM {_WAKE}"
    )


_INSERT = events_insert(1)
_INSERT_ONE = event_insert(1)
_PARAMETER = re.compile(r"\$(\d+)")
_RETURNING = re.compile(r"\breturning\b", re.IGNORECASE)


def _wrapped(events: Iterable[EventPayload | Envelope[Any]]) -> list[Envelope[Any]]:
    return [e if isinstance(e, Envelope) else envelope_for(e) for e in events]


async def add(
    conn: asyncpg.Connection,
    payload: EventPayload,
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope[Any]:
    """Write one event in the caller's transaction. Returns the envelope written."""
    envelope = envelope_for(payload, correlation_id=correlation_id, causation_id=causation_id)
    await add_envelope(conn, envelope)
    return envelope


async def add_envelope(conn: asyncpg.Connection, *envelopes: Envelope[Any]) -> None:
    """Write ready-made envelopes in the caller's transaction (one statement for all)."""
    if len(envelopes) == 1:
        await conn.execute(_INSERT_ONE, *event_row(envelopes[0], observability.trace_headers()))
    elif envelopes:
        await conn.execute(_INSERT, *event_columns(envelopes))


@functools.lru_cache(maxsize=256)
def _write_statement(change: str, only_if_changed: bool, one_event: bool) -> tuple[str, bool]:
    """The one statement of `write` and whether it returns rows (composed once per change:
    writes are a hot path)."""
    if only_if_changed and not _RETURNING.search(change):
        raise ValueError("only_if_changed needs a RETURNING clause in the change")
    first = max((int(n) for n in _PARAMETER.findall(change)), default=0) + 1
    insert = event_insert(first) if one_event else events_insert(first)
    if only_if_changed:
        insert += " WHERE EXISTS (SELECT FROM change)"
    returns = bool(_RETURNING.search(change))
    result = "SELECT * FROM change" if returns else "SELECT WHERE false"
    return f"WITH change AS ({change}), written AS ({insert}) {result}", returns


async def write(
    conn: asyncpg.Connection,
    change: str,
    *args: Any,
    events: Sequence[EventPayload | Envelope[Any]],
    only_if_changed: bool = False,
) -> list[asyncpg.Record]:
    """A state change and its events in one SQL statement: one round trip, one commit.

        rows = await outbox.write(
            conn,
            "UPDATE intakes SET status = 'matched' WHERE intake_id = $1 AND status = 'open'"
            " RETURNING intake_id",
            intake_id,
            events=[TherapistMatched(...)],
            only_if_changed=True,   # no row changed (a lost race): no event either
        )

    `change` is any INSERT/UPDATE/DELETE (or a CTE chain of them) using `$1..$n`; its
    RETURNING rows are returned. Outside a transaction the statement commits on its own
    (atomically: change and events or nothing); inside one it joins it. With
    `only_if_changed` the events are written only when the change returned a row, so it
    needs a RETURNING clause.
    """
    envelopes = _wrapped(events)
    if len(envelopes) == 1:
        sql, returns = _write_statement(change, only_if_changed, one_event=True)
        values = event_row(envelopes[0], observability.trace_headers())
    else:
        sql, returns = _write_statement(change, only_if_changed, one_event=False)
        values = event_columns(envelopes)
    if not returns:
        await conn.execute(sql, *args, *values)  # no rows to build
        return []
    rows: list[asyncpg.Record] = await conn.fetch(sql, *args, *values)
    return rows


# --------------------------------------------------------------------------- relaying

# Claim the next batch on the leader's lock connection, fenced by the epoch, and mark the
# batches the broker acknowledged since the last claim as sent at $7, when the broker
# acknowledged the last of them (whatever the fence says: they were published). No row
# back: fenced out. One row of NULLs: nothing to do (and, with $4, the relay now sleeps).
# The rows marked here are still unsent in the statement's snapshot, hence `<> ALL($6)` in
# the batch.
_CLAIM = """
WITH marked AS (
    UPDATE outbox SET sent_at = $7 WHERE id = ANY($6::bigint[]) AND sent_at IS NULL
), batch AS (
    SELECT id, topic, key, value, headers FROM outbox
    WHERE sent_at IS NULL AND id <> ALL($3::bigint[]) AND id <> ALL($6::bigint[])
    ORDER BY id LIMIT $2
), fence AS (
    UPDATE outbox_relay SET
        in_flight = $5::text::int8multirange
            + coalesce((SELECT range_agg(int8range(id, id, '[]')) FROM batch), '{}'),
        sleeping = $4 AND NOT EXISTS (SELECT FROM batch)
    WHERE epoch = $1
    RETURNING epoch
)
SELECT b.id, b.topic, b.key, b.value, b.headers FROM fence LEFT JOIN batch b ON true
ORDER BY b.id
"""

_TAKE_LEAD = """
UPDATE outbox_relay SET epoch = epoch + 1, sleeping = false, leader = $1, led_since = now()
RETURNING epoch, in_flight::text
"""


def ranges(ids: Iterable[int]) -> str:
    """An int8multirange literal covering `ids` (consecutive ids fold into one range)."""
    spans: list[list[int]] = []
    for i in sorted(set(ids)):
        if spans and spans[-1][1] == i - 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return "{" + ",".join(f"[{a},{b}]" for a, b in spans) + "}"


class LeadLost(Exception):
    """This relay may no longer lead: its lock connection failed, or another took the epoch."""


class PublishFailed(Exception):
    """The broker did not acknowledge every record of a batch in time."""


class UndeclaredEvent(Exception):
    """A row of an event the service does not declare it publishes: the relay stops there."""


@dataclass
class _Batch:
    ids: list[int]
    sent: list[asyncio.Future[Any]]
    settled: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class OutboxRelay:
    """Publishes unsent outbox rows in id order while it holds the lead, then marks them sent."""

    # Batches sent and not yet acknowledged at once, at most.
    PIPELINE_DEPTH = 4

    def __init__(
        self,
        settings: ServiceSettings,
        pool: asyncpg.Pool,
        *,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        publishes: Iterable[type[EventPayload]] | None = None,
    ) -> None:
        self.settings = settings
        # The topics the service declares (None: any), checked before anything is sent.
        self.declared = None if publishes is None else {REGISTRY.topic(m) for m in publishes}
        self.pool = pool
        self.schema = settings.db_schema
        self._producer_factory = producer_factory or self._default_producer
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.is_leader = False
        self.epoch: int | None = None
        self._lag_observed_at = 0.0
        # Ids the broker acknowledged, marked sent by the next claim (or, when the lock
        # connection failed, on a fresh one), and when the last of them was acknowledged.
        self._acked: list[int] = []
        self._acked_at = datetime.now(UTC)
        self._last_cleanup = 0.0
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        # Test seam: runs after a batch is published and before it is marked sent.
        self.after_publish: Callable[[Sequence[int]], Awaitable[None]] | None = None

    def _default_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=self.settings.kafka_idempotence,
            # No linger: a batch is sent at once and records pile up behind the request
            # in flight anyway, so batching comes from the load, not from waiting.
            linger_ms=0,
            request_timeout_ms=int(self.settings.outbox_publish_timeout_s * 1000),
        )

    @property
    def lock_id(self) -> int:
        return zlib.crc32(f"samtal-outbox-{self.schema}".encode())

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self.schema}")
        return self._task

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, self.settings.outbox_publish_timeout_s + 5)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self.pool.acquire() as lock_conn:
                    await self._lead(lock_conn)
            except asyncio.CancelledError:
                raise
            except LeadLost as exc:
                log.warning("outbox relay stopped leading", reason=str(exc))
                await self._sleep(self.settings.outbox_poll_s)
            except Exception as exc:  # the database went away: stand by, then try again
                log.warning("outbox relay lost its database", error=str(exc))
                await self._sleep(1.0)
            finally:
                self.is_leader = False

    async def _lead(self, conn: asyncpg.Connection) -> None:
        conn.keep_session_state()  # the lock, the LISTEN and the SET below are the session's
        answer_within = self.settings.db_held_timeout_s
        while not self._stopping.is_set():
            try:
                locked = await conn.fetchval(
                    "select pg_try_advisory_lock($1)", self.lock_id, timeout=answer_within
                )
            except BaseException:
                conn.terminate()  # (unanswered: nobody waits on it again, not even the pool)
                raise
            if locked:
                break
            await self._sleep(self.settings.outbox_poll_s * 2)
        else:
            return
        ended_well = False
        try:
            await conn.add_listener(channel(self.schema), self._on_notify)
            row = await conn.fetchrow(_TAKE_LEAD, self.name, timeout=answer_within)
            self.epoch = int(row["epoch"])
            # The relay's own bookkeeping (claims, marks) commits without waiting for the WAL
            # flush, so it does not queue behind the writers' commits. A Postgres crash may
            # forget the last claims and marks: those rows are published again, and
            # consumers' inboxes make that once. The epoch above was committed durably.
            await conn.execute("SET synchronous_commit = off", timeout=answer_within)
            self.is_leader = True
            OUTBOX_TAKEOVERS.labels(self.settings.service).inc()
            log.info("outbox relay leads", epoch=self.epoch)
            await self._await_predecessor(conn, row["in_flight"])
            while not self._stopping.is_set():
                producer = self._producer_factory()
                try:
                    await producer.start()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the broker is away: rows wait, then go
                    log.warning("outbox relay cannot reach the broker; retrying", error=str(exc))
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    await self._sleep(1.0)
                    continue
                try:
                    await self._pump(conn, producer)
                except (LeadLost, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a publish failed: start over from the unsent rows
                    log.warning("outbox relay cannot publish; retrying", error=str(exc))
                    await self._sleep(0.5)
                finally:
                    with contextlib.suppress(Exception):
                        await producer.stop()
            ended_well = True
        finally:
            self.is_leader = False
            if not ended_well:
                # Whatever ended the lead (the lock connection cut or unanswered, fenced,
                # cancelled), the connection goes, its session's lock with it: nothing waits
                # on one that may have stopped answering (an unlock, the pool's reset).
                conn.terminate()
            else:
                # Apart: an UNLISTEN that fails must not skip the unlock (a connection still
                # open would go back to the pool holding the lock).
                with contextlib.suppress(Exception):
                    await conn.remove_listener(channel(self.schema), self._on_notify)
                with contextlib.suppress(Exception):
                    await conn.execute("select pg_advisory_unlock($1)", self.lock_id)

    async def _await_predecessor(self, conn: asyncpg.Connection, in_flight: str) -> None:
        """Let the previous leader finish what it had sent; after the grace, send it again."""
        if in_flight == "{}":
            return
        deadline = time.monotonic() + self.settings.outbox_takeover_grace_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            left = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                " AND id <@ $1::text::int8multirange",
                in_flight,
                timeout=self.settings.db_held_timeout_s,
            )
            if not left:
                return
            await self._sleep(0.02)
        log.warning("previous outbox leader left rows unmarked; publishing them again")

    async def _pump(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> None:
        """Claim, send, settle — up to PIPELINE_DEPTH batches in flight — until stopped."""
        pending: deque[_Batch] = deque()
        claimed_at = 0.0
        quiet = 0  # claims in a row that found nothing while nothing was in flight
        try:
            while not self._stopping.is_set():
                while pending and pending[0].done.is_set():
                    finished = pending.popleft()
                    assert finished.settled is not None
                    finished.settled.result()  # a failed publish ends this producer's run
                in_flight = [i for b in pending for i in b.ids]
                idle = not pending
                self._wake.clear()
                acked, self._acked = self._acked, []
                try:
                    rows = await conn.fetch(
                        _CLAIM,
                        self.epoch,
                        self.settings.outbox_batch_size,
                        in_flight,
                        idle,
                        ranges(in_flight),
                        acked,
                        self._acked_at,
                        timeout=self.settings.db_held_timeout_s,
                    )
                except asyncio.CancelledError:
                    self._acked[:0] = acked
                    raise
                except Exception as exc:  # whatever failed, the lock is not provably ours
                    self._acked[:0] = acked
                    raise LeadLost(f"lock connection failed: {exc!r}") from exc
                if acked:
                    OUTBOX_PUBLISHED.labels(self.settings.service).inc(len(acked))
                if not rows:
                    raise LeadLost("fenced: another relay took the epoch")
                batch_rows = [r for r in rows if r["id"] is not None]
                if batch_rows:
                    claimed_at, quiet = time.monotonic(), 0
                    pending.append(await self._send(producer, batch_rows))
                await self._housekeeping()
                if len(batch_rows) == self.settings.outbox_batch_size and (
                    len(pending) < self.PIPELINE_DEPTH
                ):
                    continue  # a backlog: claim the next batch while this one is on the wire
                if pending:
                    await pending[0].done.wait()
                    if batch_rows:
                        # Rows keep coming: the next batch gathers for the rest of the linger
                        # (each claim and produce request costs the machine far more than a
                        # row does). After a quiet spell the first rows go at once.
                        linger = self.settings.outbox_linger_s
                        await self._sleep(claimed_at + linger - time.monotonic())
                elif not batch_rows:
                    quiet += 1
                    await self._wait_for_work(second_look=quiet == 1)
        finally:
            await self._settle_all(pending)
            acked, self._acked = self._acked, []
            if acked:
                await self._mark_sent(acked, self._acked_at)

    async def _send(self, producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]) -> _Batch:
        if self.declared is not None:
            undeclared = {row["topic"] for row in rows} - self.declared
            if undeclared:
                log.error("outbox holds events the service does not declare", topics=undeclared)
                raise UndeclaredEvent(f"{self.settings.service} does not publish {undeclared}")
        # One record batch per partition (not a future per record: the relay's CPU per event
        # is what the writers' commit rate pays for on a shared machine). Rows go in id
        # order; the producer keeps batches in order per partition. Partitions are chosen
        # as the producer's default partitioner would, so keys stay where they were.
        groups: dict[tuple[str, int], list[asyncpg.Record]] = {}
        topics: dict[str, tuple[str, list[int]]] = {}
        for row in rows:
            if (known := topics.get(row["topic"])) is None:
                topic = self.settings.topic(row["topic"])
                known = topics[row["topic"]] = (topic, list(await producer.partitions_for(topic)))
            topic, partitions = known
            partition = partitions[_hash_of(row["key"]) % len(partitions)]
            groups.setdefault((topic, partition), []).append(row)
        sent: dict[int, asyncio.Future[Any]] = {}
        for (topic, partition), group in groups.items():
            builder, members = producer.create_batch(), list[int]()
            for row in group:
                record = {
                    "key": row["key"].encode(),
                    "value": row["value"],
                    "timestamp": None,
                    "headers": [(k, str(v).encode()) for k, v in _headers(row["headers"]).items()],
                }
                if builder.append(**record) is None:  # full: send it, start the next
                    future = await producer.send_batch(builder, topic, partition=partition)
                    sent.update((i, future) for i in members)
                    builder, members = producer.create_batch(), []
                    if builder.append(**record) is None:
                        raise PublishFailed(f"outbox row {row['id']} does not fit a batch")
                members.append(row["id"])
            future = await producer.send_batch(builder, topic, partition=partition)
            sent.update((i, future) for i in members)
        futures = [sent[row["id"]] for row in rows]
        batch = _Batch(ids=[row["id"] for row in rows], sent=futures)
        batch.settled = asyncio.create_task(self._settle(batch))
        return batch

    async def _settle(self, batch: _Batch) -> None:
        """Wait for the broker's acknowledgements; what was published is marked sent by the
        next claim, or when the relay stops leading.

        The producer gives up on a record after the publish timeout, so every future ends;
        records acknowledged even late are marked (retrying on fresh connections if ours
        were cut: saying so stops a successor from sending them again)."""
        try:
            await asyncio.wait(batch.sent, timeout=self.settings.outbox_publish_timeout_s * 2)
            published = [
                i
                for i, sent in zip(batch.ids, batch.sent, strict=True)
                if sent.done() and not sent.cancelled() and sent.exception() is None
            ]
            acked_at = datetime.now(UTC)
            if self.after_publish:
                await self.after_publish(published)
            if published:
                self._acked.extend(published)  # marked by the next claim
                self._acked_at = acked_at
            if len(published) < len(batch.ids):
                raise PublishFailed(f"{len(batch.ids) - len(published)} records not acknowledged")
        finally:
            batch.done.set()

    async def _mark_sent(self, ids: list[int], acked_at: datetime) -> None:
        deadline = time.monotonic() + self.settings.outbox_takeover_grace_s
        while True:
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE outbox SET sent_at = $2 WHERE id = ANY($1::bigint[])", ids, acked_at
                    )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("outbox relay retries marking a batch sent", error=repr(exc))
                await asyncio.sleep(0.05)
        OUTBOX_PUBLISHED.labels(self.settings.service).inc(len(ids))

    async def _settle_all(self, pending: Iterable[_Batch]) -> None:
        tasks = [b.settled for b in pending if b.settled is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        try:
            if now - self._lag_observed_at > 1.0:
                self._lag_observed_at = now
                async with self.pool.acquire() as conn:
                    await self._observe_lag(conn)
            if now - self._last_cleanup > 60:
                self._last_cleanup = now
                await self.clean_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # metrics and cleaning wait for the next round
            log.warning("outbox housekeeping failed", error=repr(exc))

    async def _observe_lag(self, conn: asyncpg.Connection) -> None:
        pending, oldest = await conn.fetchrow(
            "SELECT count(*), coalesce(extract(epoch from now() - min(created_at)), 0)"
            " FROM outbox WHERE sent_at IS NULL"
        )
        OUTBOX_PENDING.labels(self.settings.service).set(pending)
        OUTBOX_OLDEST.labels(self.settings.service).set(float(oldest))

    async def clean_up(self) -> int:
        async with self.pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)",
                self.settings.outbox_retention_hours * 3600,
            )
        return int(status.split()[-1])

    # How soon a relay that just fell asleep looks again: a writer whose INSERT read the
    # `sleeping` flag just before the claim set it, and whose transaction commits just after
    # the claim's snapshot, sends no NOTIFY; its rows would wait for the next writer's wake-up
    # or the poll (at 60-80 writes/s the next writer's, p99 ~11-14 ms for the hop). Such a
    # transaction is finishing (its INSERT ran already), so a second look soon finds it.
    SECOND_LOOK_S = 0.002

    async def _wait_for_work(self, *, second_look: bool = False) -> None:
        # The relay is flagged sleeping: the next writer's commit NOTIFYs. The first wait
        # after falling asleep is a short one (SECOND_LOOK_S); the poll is the fallback.
        wait = self.settings.outbox_poll_s
        if second_look:
            wait = min(wait, self.SECOND_LOOK_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _headers(value: Any) -> dict[str, Any]:
    # jsonb arrives decoded on the services' pools (chassis.db) and as text elsewhere.
    if isinstance(value, str):
        decoded: dict[str, Any] = json.loads(value)
        return decoded
    return dict(value or {})
