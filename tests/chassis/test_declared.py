"""Every service declares what it publishes, from the registry, and publishes nothing else."""

import asyncio
import importlib
import json
import uuid

import pytest

from chassis import db, outbox
from chassis.app import ServiceDefinition, describe
from chassis.consumer import dead_letter_topic
from chassis.outbox import OutboxRelay
from chassis.testing.kafka import TopicProbe
from contracts import REGISTRY
from contracts.events import ReviewPublished, TherapistAvailabilityPublished
from tests.chassis.ledger import LEDGER, review

SERVICES = ["catalog", "matching", "booking", "notifications"]


def definition_of(service: str) -> ServiceDefinition:
    definition: ServiceDefinition = importlib.import_module(f"{service}.app").DEFINITION
    return definition


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_declares_exactly_what_the_registry_says_it_produces(service: str) -> None:
    definition = definition_of(service)
    produced = {s.event_type for s in REGISTRY.specs if s.model.producer == service}
    assert {m.event_type for m in definition.published()} == produced


@pytest.mark.parametrize("service", SERVICES)
def test_the_asyncapi_document_names_every_published_and_consumed_topic(service: str) -> None:
    definition = definition_of(service)
    settings = definition.settings_class(topic_prefix="", kafka_group_prefix="")
    doc = json.loads(describe(definition, settings).to_specification().to_json())
    addresses = {c["address"] for c in doc["channels"].values()}
    published = {REGISTRY.topic(m) for m in definition.published()}
    consumed = {REGISTRY.topic(h.model) for h in definition.consumers.handlers}
    assert published | consumed | {dead_letter_topic(service)} <= addresses
    for topic in published:  # each published channel carries its envelope's schema
        assert any(c["address"] == topic and c.get("messages") for c in doc["channels"].values())


async def test_the_relay_refuses_an_event_the_service_does_not_declare(
    migrated, kafka_bootstrap
) -> None:
    settings = await migrated(LEDGER)
    pool = await db.create_pool(settings)
    relay = OutboxRelay(settings, pool, publishes=[ReviewPublished])
    stray = TherapistAvailabilityPublished(
        therapist_id=uuid.uuid4(), computed_at="2026-01-01T00:00:00Z", active_courses=0
    )
    declared = review()
    topics = [settings.topic(REGISTRY.topic(m)) for m in (ReviewPublished, type(stray))]
    try:
        # Any earlier test's rows first, so that only ours are left unsent.
        await pool.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
        async with TopicProbe(kafka_bootstrap, topics) as probe:
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, stray)
                await outbox.add(conn, declared)
            relay.start()
            await asyncio.sleep(2.0)
        assert probe.envelopes() == []  # nothing published: the stray one blocks its batch
        unsent = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        assert unsent == 2
    finally:
        await relay.stop()
        await pool.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
        await pool.close()
