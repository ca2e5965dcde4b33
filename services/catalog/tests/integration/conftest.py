"""Helpers for the catalog's integration tests (real Postgres, real broker)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from chassis.auth import Role, mint
from chassis.settings import ServiceSettings
from chassis.testing.waiting import until
from contracts import REGISTRY, EventPayload

Headers = dict[str, str]
COMPACTED = {"cleanup.policy": "compact"}


@pytest.fixture
def auth(jwt_keys: tuple[str, str]) -> Callable[..., Headers]:
    """`auth("admin")` or `auth("therapist", person_id)`: a bearer header."""

    def headers(role: Role, subject: uuid.UUID | None = None) -> Headers:
        token = mint(jwt_keys[0], subject or uuid.uuid4(), role)
        return {"authorization": f"Bearer {token}"}

    return headers


def profile_data(**changes: Any) -> dict[str, Any]:
    """A valid profile as an admin submits it; `changes` override fields."""
    base: dict[str, Any] = {
        "name": "Elin Bergqvist",
        "profession": "psychologist",
        "licence_number": "402117",
        "certifications": [],
        "methods": ["IPT"],
        "age_groups": ["adults"],
        "focus_areas": ["grief", "depression"],
        "languages": ["sv", "en"],
        "modes": ["video", "in_person"],
        "city": "Stockholm",
        "practice_address": "Götgatan 48, 118 26 Stockholm",
        "bio": "Legitimerad psykolog som arbetar med IPT.",
        "capacity": 12,
        "accepting_new_clients": True,
    }
    base.update(changes)
    return base


@pytest.fixture
def profile() -> Callable[..., dict[str, Any]]:
    return profile_data


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    await until("the condition", check, timeout=timeout)


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """`await eventually(async_check)`: poll until the check holds (fails after a timeout)."""
    return _eventually


async def _create_topics(
    bootstrap: str, settings: ServiceSettings, *events: type[EventPayload]
) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [settings.topic(REGISTRY.topic(e)) for e in events]
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=REGISTRY.spec(e).partitions,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"}
                    if REGISTRY.spec(e).compacted
                    else {},
                )
                for name, e in zip(names, events, strict=True)
            ]
        )
    finally:
        await admin.close()
    return names


@pytest.fixture
def create_topics(kafka_bootstrap: str) -> Callable[..., Awaitable[list[str]]]:
    """`await create_topics(settings, *events)`: the events' topics, made up front (compacted
    where the contract says so); returns their names.

    A TopicProbe that meets a new topic while running assigns its partitions again, which can
    skip a record on the topics it was already reading; topics made first avoid that.
    """

    async def create(settings: ServiceSettings, *events: type[EventPayload]) -> list[str]:
        return await _create_topics(kafka_bootstrap, settings, *events)

    return create
