"""Transactional outbox: events commit with the change that caused them; a relay publishes.

The relay that holds the schema's advisory lock is the only one publishing;
others wait as hot standbys and take over when its connection drops. That
keeps per-key order and publishes each row once in normal operation. After a
crash between publishing and marking, rows go again: consumers' inboxes make
the effect happen once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
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


def channel(schema: str) -> str:
    return f"{schema}_outbox"


async def add(
    conn: asyncpg.Connection,
    payload: EventPayload,
    *,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Envelope[Any]:
    """Write one event in the caller's transaction. Returns the envelope written."""
    context = observability.current_ids()
    envelope = Envelope.wrap(
        payload,
        correlation_id=correlation_id or context.get("correlation_id"),
        # What caused this event: the consumed event, else the HTTP request.
        causation_id=causation_id or context.get("event_id") or context.get("request_id"),
    )
    await add_envelope(conn, envelope)
    return envelope


async def add_envelope(conn: asyncpg.Connection, envelope: Envelope[Any]) -> None:
    spec = REGISTRY.spec(envelope.event_type)
    headers = {
        "event_type": envelope.event_type,
        "correlation_id": envelope.correlation_id,
        **observability.trace_headers(),
    }
    # NOTIFY takes a database-wide lock at commit, so under load a writer wakes the relay
    # at most once per NOTIFY_EVERY_S; a busy relay drains everything anyway, and an idle
    # one polls every `outbox_poll_s` at worst.
    global _last_notify
    now = time.monotonic()
    notify = now - _last_notify >= NOTIFY_EVERY_S
    if notify:
        _last_notify = now
    await conn.execute(
        _INSERT_AND_NOTIFY if notify else _INSERT,
        envelope.event_id,
        envelope.event_type,
        spec.topic,
        envelope.key,
        envelope.to_bytes(),
        headers,
    )


_INSERT = (
    "INSERT INTO outbox (event_id, event_type, topic, key, value, headers)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
)
_INSERT_AND_NOTIFY = (
    f"WITH written AS ({_INSERT} RETURNING id)"
    " SELECT pg_notify(current_schema() || '_outbox', '') FROM written"
)
NOTIFY_EVERY_S = 0.02
_last_notify = 0.0


class OutboxRelay:
    """Publishes unsent outbox rows in id order, then marks them sent."""

    def __init__(
        self,
        settings: ServiceSettings,
        pool: asyncpg.Pool,
        *,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.schema = settings.db_schema
        self._producer_factory = producer_factory or self._default_producer
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.is_leader = False
        self._lag_observed_at = 0.0
        # Test seam: runs after a batch is published and before it is marked sent.
        self.after_publish: Callable[[Sequence[int]], Awaitable[None]] | None = None

    def _default_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=self.settings.kafka_idempotence,
            linger_ms=5,
            request_timeout_ms=10_000,
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
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self.pool.acquire() as leader_conn:
                    await self._lead(leader_conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: wait, then try again
                log.warning("outbox relay lost its database", error=str(exc))
                self.is_leader = False
                await self._sleep(1.0)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        while not self._stopping.is_set():
            if await conn.fetchval("select pg_try_advisory_lock($1)", self.lock_id):
                break
            await self._sleep(self.settings.outbox_poll_s * 2)
        else:
            return
        self.is_leader = True
        await conn.add_listener(channel(self.schema), self._on_notify)
        try:
            while not self._stopping.is_set():
                producer = self._producer_factory()
                try:
                    await producer.start()
                    await self._drain_forever(producer)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the broker is away: rows wait, then go
                    log.warning("outbox relay cannot publish; retrying", error=str(exc))
                    await self._sleep(1.0)
                finally:
                    with contextlib.suppress(Exception):
                        await producer.stop()
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await conn.remove_listener(channel(self.schema), self._on_notify)
                await conn.execute("select pg_advisory_unlock($1)", self.lock_id)

    async def _drain_forever(self, producer: AIOKafkaProducer) -> None:
        last_cleanup = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            self._wake.clear()
            published = await self.publish_batch(producer)
            if loop.time() - last_cleanup > 60:
                await self.clean_up()
                last_cleanup = loop.time()
            if published == 0:
                await self._wait_for_work()
            elif published < self.settings.outbox_batch_size:
                # Writers skip NOTIFY for NOTIFY_EVERY_S after one: look once more after
                # that window, so the tail of a burst does not wait for the poll.
                await self._sleep(NOTIFY_EVERY_S * 1.5)

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers FROM outbox"
                " WHERE sent_at IS NULL ORDER BY id LIMIT $1",
                self.settings.outbox_batch_size,
            )
            if time.monotonic() - self._lag_observed_at > 1.0:
                await self._observe_lag(conn)
                self._lag_observed_at = time.monotonic()
        if not rows:
            return 0
        # Sends are queued in id order; the producer keeps that order per partition.
        futures = [
            await producer.send(
                self.settings.topic(row["topic"]),
                value=row["value"],
                key=row["key"].encode(),
                headers=[(k, str(v).encode()) for k, v in row["headers"].items()],
            )
            for row in rows
        ]
        await asyncio.gather(*futures)
        ids = [row["id"] for row in rows]
        if self.after_publish:
            await self.after_publish(ids)
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids
            )
        OUTBOX_PUBLISHED.labels(self.settings.service).inc(len(ids))
        return len(ids)

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

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.outbox_poll_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
