"""Inspecting and replaying a service's dead letters."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from chassis.consumer import dead_letter_topic
from chassis.settings import ServiceSettings

DEAD_LETTER_HEADERS = (
    "x-dead-letter-error",
    "x-dead-letter-consumer",
    "x-dead-letter-attempts",
    "x-original-topic",
    "x-original-partition",
    "x-original-offset",
)


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def ref(self) -> str:
        """How an operator names it: `partition:offset`."""
        return f"{self.partition}:{self.offset}"

    @property
    def error(self) -> str:
        return self.headers.get("x-dead-letter-error", "")

    @property
    def consumer(self) -> str:
        return self.headers.get("x-dead-letter-consumer", "")

    @property
    def original_topic(self) -> str:
        return self.headers.get("x-original-topic", "")


async def list_dead_letters(settings: ServiceSettings, limit: int = 1000) -> list[DeadLetter]:
    """Everything on the service's dead-letter topic, read without joining a group."""
    topic = settings.topic(dead_letter_topic(settings.service))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        await consumer.topics()  # a fresh metadata round trip: the partitions as they are now
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[DeadLetter] = []
        while len(found) < limit and await _behind(consumer, ends):
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    found.append(
                        DeadLetter(
                            tp.partition,
                            r.offset,
                            r.key,
                            r.value or b"",
                            {k: v.decode(errors="replace") for k, v in r.headers},
                        )
                    )
        return sorted(found, key=lambda d: (d.partition, d.offset))[:limit]
    finally:
        await consumer.stop()


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


async def replay(settings: ServiceSettings, refs: list[str]) -> list[DeadLetter]:
    """Publish the chosen dead letters again to their original topics, original bytes and key."""
    wanted = set(refs)
    letters = [d for d in await list_dead_letters(settings) if d.ref in wanted]
    missing = wanted - {d.ref for d in letters}
    if missing:
        raise KeyError(f"no dead letter at {', '.join(sorted(missing))}")
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
    )
    await producer.start()
    try:
        for letter in letters:
            headers = [
                (k, v.encode()) for k, v in letter.headers.items() if k not in DEAD_LETTER_HEADERS
            ] + [("x-replayed-from", letter.ref.encode())]
            await producer.send_and_wait(
                letter.original_topic, letter.value, key=letter.key, headers=headers
            )
    finally:
        await producer.stop()
    return letters
