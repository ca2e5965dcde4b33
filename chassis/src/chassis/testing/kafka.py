"""Reading topics in tests without joining a consumer group (no 5 s join wait)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import ContractError, Envelope, decode


class TopicProbe:
    """Collects every record of some topics from the beginning, as they arrive."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.records: list[Any] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> TopicProbe:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def _assign(self) -> None:
        assert self._consumer is not None
        tps: list[TopicPartition] = []
        # A fresh metadata read: the consumer's own cache only follows assigned topics.
        cluster = await self._consumer._client.fetch_all_metadata()
        for topic in self.topics:
            partitions = cluster.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in sorted(partitions or ())]
        known = set(self._consumer.assignment())
        if set(tps) != known:
            # assign() forgets positions: keep where we were on the partitions we had.
            positions = {tp: await self._consumer.position(tp) for tp in known}
            self._consumer.assign(tps)
            for tp, offset in positions.items():
                self._consumer.seek(tp, offset)
            new = [tp for tp in tps if tp not in known]
            if new:
                await self._consumer.seek_to_beginning(*new)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            await self._assign()
            if not self._consumer.assignment():
                await asyncio.sleep(0.1)
                continue
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(records)
            if batch:
                self._arrived.set()

    def envelopes(self, event_type: str | None = None) -> list[Envelope[Any]]:
        found = []
        for record in self.records:
            try:
                envelope = decode(record.value)
            except ContractError:
                continue
            if event_type is None or envelope.event_type == event_type:
                found.append(envelope)
        return found

    async def wait_for(
        self, condition: Callable[[TopicProbe], bool], timeout: float = 20.0
    ) -> TopicProbe:
        async def poll() -> None:
            while not condition(self):
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), 0.2)

        try:
            await asyncio.wait_for(poll(), timeout)
        except TimeoutError as exc:
            kinds = [r.topic for r in self.records]
            raise AssertionError(f"condition not met within {timeout}s; seen: {kinds}") from exc
        return self

    async def quiet(self, seconds: float = 1.0) -> None:
        """Let late records arrive (for asserting that something did NOT happen)."""
        await asyncio.sleep(seconds)


async def publish(bootstrap: str, topic_prefix: str, *events: Any) -> list[Envelope[Any]]:
    """Put events (payloads or envelopes) on their registry topics, as another service would."""
    from aiokafka import AIOKafkaProducer

    from contracts import REGISTRY

    envelopes = [e if isinstance(e, Envelope) else Envelope.wrap(e) for e in events]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(
                topic_prefix + REGISTRY.topic(envelope.event_type),
                envelope.to_bytes(),
                key=envelope.key.encode(),
            )
    finally:
        await producer.stop()
    return envelopes
