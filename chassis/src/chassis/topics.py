"""Creating a service's topics as the contracts' registry describes them.

Partitions and compaction come from the registry; an existing topic is left as it
is (the broker answers TOPIC_ALREADY_EXISTS, which is fine). Real clusters may
create topics ahead (deploy/kafka/create-topics.sh); this makes a fresh
environment right too, instead of leaving it to auto-creation with defaults.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from chassis.consumer import dead_letter_topic
from chassis.settings import ServiceSettings
from contracts import REGISTRY, EventPayload

log = structlog.get_logger("chassis.topics")
TOPIC_ALREADY_EXISTS = 36


def topics_for(settings: ServiceSettings, models: Iterable[type[EventPayload]]) -> list[NewTopic]:
    wanted: dict[str, NewTopic] = {}
    for model in models:
        spec = REGISTRY.spec(model)
        configs = {"cleanup.policy": "compact"} if spec.compacted else {}
        name = settings.topic(spec.topic)
        wanted[name] = NewTopic(name, spec.partitions, 1, topic_configs=configs)
    dlq = settings.topic(dead_letter_topic(settings.service))
    wanted[dlq] = NewTopic(dlq, 1, 1)
    return list(wanted.values())


async def ensure_topics(settings: ServiceSettings, models: Iterable[type[EventPayload]]) -> None:
    new = topics_for(settings, models)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        answer = await admin.create_topics(new)
        for topic, code, *_ in answer.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                log.warning("topic not created", topic=topic, error_code=code)
    finally:
        await admin.close()
