"""Topics are created with the registry's partition counts; creating again is harmless."""

from aiokafka import AIOKafkaConsumer

from chassis.topics import ensure_topics, topics_for
from contracts import REGISTRY
from contracts.events import ReviewPublished, TherapistProfilePublished
from tests.chassis.ledger import LedgerSettings


def test_compacted_topics_are_asked_for_as_compacted(settings_for) -> None:
    settings = settings_for(LedgerSettings)
    wanted = {t.name: t for t in topics_for(settings, [TherapistProfilePublished, ReviewPublished])}
    profile = wanted[settings.topic(REGISTRY.topic(TherapistProfilePublished))]
    assert profile.topic_configs == {"cleanup.policy": "compact"}
    assert wanted[settings.topic(REGISTRY.topic(ReviewPublished))].topic_configs == {}
    assert settings.topic("ledger.dead-letters.v1") in wanted


async def test_topics_get_the_registry_partition_counts(settings_for, kafka_bootstrap) -> None:
    settings = settings_for(LedgerSettings)
    await ensure_topics(settings, [TherapistProfilePublished, ReviewPublished])
    await ensure_topics(settings, [TherapistProfilePublished])  # again: no error
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        for model in (TherapistProfilePublished, ReviewPublished):
            spec = REGISTRY.spec(model)
            partitions = cluster.partitions_for_topic(settings.topic(spec.topic))
            assert partitions is not None and len(partitions) == spec.partitions
    finally:
        await consumer.stop()
