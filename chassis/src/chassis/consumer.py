"""Event consumers: decode, inbox, retry with backoff, dead-letter, move on.

A service declares its handlers in FastStream's style and the chassis wraps
each one with the delivery rules of docs/architecture.md:

    consumers = EventConsumers("booking")

    @consumers.handler(TherapistMatched, name="course-opener")
    async def open_course(event: Envelope[TherapistMatched], conn: asyncpg.Connection) -> None:
        ...

The handler runs in one transaction with the inbox row, so a second delivery
does nothing; a message that fails validation, or still fails after N tries,
goes to the service's dead-letter topic with the original bytes and headers
saying error, consumer and attempts, and the consumer moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream_fastapi import Context as StreamContext
from prometheus_client import Counter, Gauge
from structlog.contextvars import bound_contextvars

from chassis import inbox
from chassis.settings import ServiceSettings
from contracts import REGISTRY, ContractError, Envelope, EventPayload, decode, envelope_of

log = structlog.get_logger("chassis.consumer")

EVENTS_HANDLED = Counter(
    "samtal_events_handled_total", "Events consumed, by outcome", ["service", "consumer", "outcome"]
)
CONSUMER_LAG = Gauge(
    "samtal_consumer_lag",
    "Messages on a partition not yet consumed by the group",
    ["service", "group", "topic", "partition"],
)
DEAD_LETTERS = Counter(
    "samtal_dead_letters_total", "Messages dead-lettered", ["service", "consumer"]
)

Handler = Callable[[Envelope[Any], asyncpg.Connection], Awaitable[None]]


class PermanentError(Exception):
    """A failure that retrying cannot cure: dead-letter at once."""


def dead_letter_topic(service: str) -> str:
    return f"{service}.dead-letters.v1"


@dataclass(frozen=True)
class HandlerSpec:
    model: type[EventPayload]
    # The inbox key: this handler applies each event once.
    name: str
    func: Handler
    # The Kafka consumer group; handlers sharing one are fed by one multi-topic consumer.
    group: str


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential, bounded: base, 2·base, 4·base … up to cap."""
    return min(cap, base * 2.0 ** (attempt - 1))


class EventConsumers:
    """A service's event handlers, grouped into Kafka consumer groups.

    Each consumer group joins on its own (about 5 s on the embedded broker, and more
    after a restart), so handlers that may share a queue share a group; a handler that
    must never wait behind others (the matcher, crisis alerts) gets a group of its own.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.handlers: list[HandlerSpec] = []
        # The running worker's settings, for handlers that need configuration.
        self.settings: ServiceSettings | None = None

    def handler(
        self, model: type[EventPayload], *, name: str, group: str | None = None
    ) -> Callable[[Handler], Handler]:
        def register(func: Handler) -> Handler:
            self.handlers.append(HandlerSpec(model, name, func, group or name))
            return func

        return register

    def groups(self) -> dict[str, list[HandlerSpec]]:
        grouped: dict[str, list[HandlerSpec]] = {}
        for spec in self.handlers:
            grouped.setdefault(spec.group, []).append(spec)
        return grouped

    def describe(self, broker: KafkaBroker, settings: ServiceSettings) -> None:
        """Declare the subscriptions on a broker that only feeds the AsyncAPI document."""
        for spec in self.handlers:
            broker.subscriber(
                settings.topic(REGISTRY.topic(spec.model)),
                group_id=settings.group(spec.group),
                title=f"{settings.service}.{spec.name}",
                description=spec.func.__doc__,
            )(_paper_endpoint(spec))

    def subscribe(
        self, broker: KafkaBroker, settings: ServiceSettings, pool: Callable[[], asyncpg.Pool]
    ) -> None:
        """One group subscriber per consumer group, over the topics of its handlers."""
        self.settings = settings
        for group, specs in self.groups().items():
            routes: dict[str, list[_Runner]] = {}
            for spec in specs:
                topic = settings.topic(REGISTRY.topic(spec.model))
                routes.setdefault(topic, []).append(_Runner(spec, broker, settings, pool))
            broker.subscriber(
                *routes,
                group_id=settings.group(group),
                auto_offset_reset="earliest",
                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                ack_policy=AckPolicy.NACK_ON_ERROR,
                title=f"{settings.service}.{group}",
                description=" ".join(filter(None, (s.func.__doc__ for s in specs))) or None,
            )(_endpoint(group, routes))


def _endpoint(group: str, routes: dict[str, list[_Runner]]) -> Callable[..., Awaitable[None]]:
    # The worker runs under FastStreamAPI, whose handlers resolve like FastAPI routes;
    # we take the raw message, route it by topic and decode it ourselves.
    async def on_message(message: KafkaMessage = StreamContext("message")) -> None:
        raw = message.raw_message
        record: Any = raw[0] if isinstance(raw, tuple) else raw
        for runner in routes[record.topic]:
            await runner(message)

    on_message.__name__ = f"on_{group.replace('-', '_')}"
    return on_message


def _paper_endpoint(spec: HandlerSpec) -> Callable[..., Awaitable[None]]:
    async def described(event: Any) -> None:
        """Never runs: it describes the channel for the AsyncAPI document."""

    # Resolved now (this module's annotations are strings): the envelope of this event.
    described.__annotations__ = {"event": envelope_of(spec.model), "return": None}
    described.__name__ = spec.func.__name__
    described.__doc__ = spec.func.__doc__
    return described


class _Runner:
    def __init__(
        self,
        spec: HandlerSpec,
        broker: KafkaBroker,
        settings: ServiceSettings,
        pool: Callable[[], asyncpg.Pool],
    ) -> None:
        self.spec = spec
        self.broker = broker
        self.settings = settings
        self.pool = pool

    def _count(self, outcome: str) -> None:
        EVENTS_HANDLED.labels(self.settings.service, self.spec.name, outcome).inc()

    async def __call__(self, message: KafkaMessage) -> None:
        try:
            envelope = decode(message.body, expected=self.spec.model)
        except ContractError as exc:
            await self.dead_letter(message, f"invalid: {exc}", attempts=1)
            return
        with bound_contextvars(
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            consumer=self.spec.name,
        ):
            await self._handle(message, envelope)

    async def _handle(self, message: KafkaMessage, envelope: Envelope[Any]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.pool().acquire() as conn, conn.transaction():
                    first = await inbox.claim(
                        conn, self.spec.name, envelope.event_id, envelope.event_type
                    )
                    if first:
                        await self.spec.func(envelope, conn)
                self._count("handled" if first else "duplicate")
                log.info("event handled" if first else "duplicate event ignored", attempt=attempt)
                return
            except PermanentError as exc:
                await self.dead_letter(message, f"rejected: {exc}", attempts=attempt)
                return
            except Exception as exc:
                if attempt >= self.settings.consumer_max_attempts:
                    await self.dead_letter(
                        message, f"failed: {type(exc).__name__}: {exc}", attempts=attempt
                    )
                    return
                self._count("retried")
                delay = backoff(
                    attempt, self.settings.consumer_backoff_s, self.settings.consumer_backoff_max_s
                )
                log.warning(
                    "handler failed; retrying", attempt=attempt, delay=delay, error=str(exc)
                )
                await asyncio.sleep(delay)

    async def dead_letter(self, message: KafkaMessage, error: str, attempts: int) -> None:
        raw = message.raw_message
        record: Any = raw[0] if isinstance(raw, tuple) else raw
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update(
            {
                "x-dead-letter-error": error[:1000],
                "x-dead-letter-consumer": self.spec.name,
                "x-dead-letter-attempts": str(attempts),
                "x-original-topic": record.topic,
                "x-original-partition": str(record.partition),
                "x-original-offset": str(record.offset),
            }
        )
        await self.broker.publish(
            message.body,
            self.settings.topic(dead_letter_topic(self.settings.service)),
            key=record.key,
            headers=headers,
        )
        DEAD_LETTERS.labels(self.settings.service, self.spec.name).inc()
        self._count("dead_lettered")
        log.error("event dead-lettered", error=error, attempts=attempts)


async def observe_lag(broker: KafkaBroker, service: str, every_s: float = 5.0) -> None:
    """Export each subscriber's lag (high-water mark minus position) until cancelled."""
    exported: set[tuple[str, str, str, str]] = set()
    try:
        while True:
            for subscriber in broker.subscribers:
                consumer = getattr(subscriber, "consumer", None)
                if consumer is None:
                    continue
                group = getattr(consumer, "_group_id", None) or "-"
                for tp in consumer.assignment():
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    try:
                        position = await consumer.position(tp)
                    except Exception:  # a rebalance moved the partition away meanwhile
                        continue
                    labels = (service, group, tp.topic, str(tp.partition))
                    CONSUMER_LAG.labels(*labels).set(max(0, highwater - position))
                    exported.add(labels)
            await asyncio.sleep(every_s)
    finally:
        # A stopped worker reports no lag: its partitions are someone else's now.
        for labels in exported:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(*labels)
