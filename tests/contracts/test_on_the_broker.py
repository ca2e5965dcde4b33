"""Contracts on the real broker: FastStream publishes an envelope, a group consumer validates it."""

import asyncio
import json
import uuid
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker, KafkaMessage

from contracts import REGISTRY, ContractError, Envelope, decode
from contracts.events import SessionBooked


def a_booking() -> SessionBooked:
    return SessionBooked(
        session_id=uuid.uuid4(),
        course_id=uuid.uuid4(),
        client_id=uuid.uuid4(),
        therapist_id=uuid.uuid4(),
        number=3,
        phase="initial",
        starts_at=datetime(2026, 10, 25, 9, 0, tzinfo=UTC),
        ends_at=datetime(2026, 10, 25, 9, 50, tzinfo=UTC),
        time_zone="Europe/Stockholm",
        mode="in_person",
        practice_address="Drottninggatan 1, Stockholm",
        booked_by="therapist",
    )


async def test_an_envelope_travels_through_a_consumer_group(kafka_bootstrap, topic_prefix) -> None:
    topic = topic_prefix + REGISTRY.topic(SessionBooked)
    received: asyncio.Queue = asyncio.Queue()
    rejected: asyncio.Queue = asyncio.Queue()
    broker = KafkaBroker(kafka_bootstrap, enable_idempotence=False)

    @broker.subscriber(topic, group_id=f"{topic_prefix}consumer", auto_offset_reset="earliest")
    async def consume(message: KafkaMessage) -> None:
        try:
            await received.put(decode(message.body, expected=SessionBooked))
        except ContractError as err:
            await rejected.put(err)

    event = Envelope.wrap(a_booking(), correlation_id="journey-42")
    malformed = json.loads(Envelope.wrap(a_booking()).to_bytes())
    malformed["payload"]["number"] = "three"

    async with broker:
        await broker.start()
        await broker.publish(event.to_bytes(), topic, key=event.key.encode())
        await broker.publish(json.dumps(malformed).encode(), topic, key=event.key.encode())
        got = await asyncio.wait_for(received.get(), 30)
        err = await asyncio.wait_for(rejected.get(), 30)

    assert got == event
    assert isinstance(got.payload, SessionBooked)
    assert got.payload.practice_address == "Drottninggatan 1, Stockholm"
    assert got.correlation_id == "journey-42"
    assert err.field == "payload.number"
