"""Fast tests of a service's event handlers: FastStream's in-memory `TestKafkaBroker`.

    async with handlers_of(consumers, settings, pool) as worker:
        await worker.deliver(Envelope.wrap(CourseCompleted(...)))
        assert ...  # what the handler wrote, read back through the store
        assert worker.dead_letters == []

The records go through the very subscribers the worker declares (batch decoder, inbox,
savepoints, dead letters, the handlers' `Context()` dependencies); only the broker is
in memory. For handlers only: the integration tests keep the real broker.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from chassis.consumer import EventConsumers, dead_letter_publisher, dead_letter_topic, provide
from chassis.settings import ServiceSettings
from contracts import REGISTRY, Envelope, EventPayload


@dataclass
class InMemoryWorker:
    """A service's subscribers on an in-memory broker, and what they dead-lettered."""

    broker: KafkaBroker
    settings: ServiceSettings
    dead_letters: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    async def deliver(self, *envelopes: Envelope[Any]) -> None:
        """Publishes each envelope on its topic; returns when its subscriber is done."""
        for envelope in envelopes:
            await self.send(type(envelope.payload), envelope.to_bytes(), key=envelope.key)

    async def send(self, model: type[EventPayload], value: bytes, *, key: str) -> None:
        """Publishes raw bytes on the topic of `model` (e.g. a record breaking its contract)."""
        topic = self.settings.topic(REGISTRY.topic(model))
        await self.broker.publish(value, topic, key=key.encode())


@contextlib.asynccontextmanager
async def handlers_of(
    consumers: EventConsumers, settings: ServiceSettings, pool: asyncpg.Pool
) -> AsyncIterator[InMemoryWorker]:
    """The service's consumers subscribed to an in-memory broker, on the real database."""
    broker = KafkaBroker(settings.kafka_bootstrap)
    provide(
        broker, settings=settings, pool=pool, dead_letters=dead_letter_publisher(broker, settings)
    )
    consumers.subscribe(broker, settings)
    worker = InMemoryWorker(broker, settings)

    @broker.subscriber(settings.topic(dead_letter_topic(settings.service)))
    async def collect(_: Any, message: KafkaMessage) -> None:
        worker.dead_letters.append((message.body, dict(message.headers)))

    async with TestKafkaBroker(broker):
        yield worker
