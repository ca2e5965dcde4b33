"""Every service declares what it publishes, from the registry, and publishes nothing else."""

import importlib
import json
import uuid

import pytest

from chassis import db, outbox
from chassis.app import ServiceDefinition, describe
from chassis.consumer import dead_letter_topic
from chassis.outbox import OutboxRelay
from chassis.testing.kafka import TopicProbe
from chassis.testing.waiting import until
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


async def test_the_relay_holds_an_event_the_service_does_not_declare_and_publishes_the_rest(
    migrated, kafka_bootstrap
) -> None:
    """A row of a topic the service does not declare (written by another version of the
    code: a rolling deploy, a rollback) is never published by this relay, nor does it stop
    the rows behind it: it is held, with why, and counted. A relay that declares the topic
    gives it back when it leads."""
    settings = await migrated(LEDGER)
    pool = await db.create_pool(settings)
    stray = TherapistAvailabilityPublished(
        therapist_id=uuid.uuid4(), computed_at="2026-01-01T00:00:00Z", active_courses=0
    )
    declared = review()
    topics = [settings.topic(REGISTRY.topic(m)) for m in (ReviewPublished, type(stray))]
    relay = OutboxRelay(settings, pool, publishes=[ReviewPublished])
    try:
        # Any earlier test's rows first, so that only ours are left unsent.
        await pool.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
        async with TopicProbe(kafka_bootstrap, topics) as probe:
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, stray)
                await outbox.add(conn, declared)
            relay.start()
            await probe.wait_for(lambda p: len(p.envelopes()) >= 1)
            await probe.quiet(1.5)
            assert [e.event_type for e in probe.envelopes()] == ["ReviewPublished"]
            held = await pool.fetchrow(
                "SELECT event_type, held, sent_at FROM outbox WHERE held IS NOT NULL"
            )
            assert held is not None and held["sent_at"] is None
            assert held["event_type"] == "TherapistAvailabilityPublished"
            assert (
                "does not declare" in held["held"] and REGISTRY.topic(type(stray)) in held["held"]
            )
            await until(
                "the held row counted",
                lambda: outbox.OUTBOX_HELD.labels(settings.service)._value.get() == 1,
                timeout=10,
            )
            await relay.stop()

            # The version that declares it leads now: it is published, once.
            relay = OutboxRelay(settings, pool, publishes=[ReviewPublished, type(stray)])
            relay.start()
            await probe.wait_for(lambda p: len(p.envelopes()) >= 2)
            await probe.quiet(1.0)
            published = [e.event_type for e in probe.envelopes()]
            assert published == ["ReviewPublished", "TherapistAvailabilityPublished"]
        unsent = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        assert unsent == 0
    finally:
        await relay.stop()
        await pool.execute("UPDATE outbox SET sent_at = now(), held = NULL WHERE sent_at IS NULL")
        await pool.close()
