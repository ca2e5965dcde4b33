"""Helpers for booking's integration tests (real Postgres, real broker)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from booking import service
from booking.app import DEFINITION, Settings
from chassis import db
from chassis.auth import Principal, Role, mint
from chassis.testing.events import a_match, a_profile
from chassis.testing.kafka import TopicProbe
from chassis.testing.waiting import until
from contracts import REGISTRY
from contracts.events import TherapistProfilePublished

Headers = dict[str, str]
EVERY_DAY = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
OUR_EVENTS = (
    "CourseStarted",
    "SessionBooked",
    "SessionCancelled",
    "SessionRescheduled",
    "SessionAttended",
    "CourseCompleted",
    "CourseEnded",
    "TherapistAvailabilityPublished",
)


@pytest.fixture
def auth(jwt_keys: tuple[str, str]) -> Callable[[Role, uuid.UUID], Headers]:
    """`auth("client", person_id)`: a bearer header for that person."""

    def headers(role: Role, subject: uuid.UUID) -> Headers:
        return {"authorization": f"Bearer {mint(jwt_keys[0], subject, role)}"}

    return headers


@pytest.fixture
async def settings(migrated: Callable[..., Awaitable[Settings]]) -> Settings:
    return await migrated(DEFINITION)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    opened = await db.create_pool(settings.model_copy(update={"db_pool_max": 60}))
    try:
        yield opened
    finally:
        await opened.close()


def probe_for(settings: Settings, kafka_bootstrap: str) -> TopicProbe:
    """A probe on every topic booking publishes."""
    return TopicProbe(kafka_bootstrap, [settings.topic(REGISTRY.topic(e)) for e in OUR_EVENTS])


def mine(probe: TopicProbe, event_type: str, **match: Any) -> list[Any]:
    """Payloads of one type whose fields equal `match` (the topics hold other tests' events)."""
    return [
        e.payload
        for e in probe.envelopes(event_type)
        if all(getattr(e.payload, k) == v for k, v in match.items())
    ]


def profile(therapist_id: uuid.UUID, **changes: Any) -> TherapistProfilePublished:
    return a_profile(therapist_id, **{"methods": ["IPT", "KBT"], "capacity": 10, **changes})


match = a_match


def hours(text: str = "08:00-20:00", **settings: Any) -> dict[str, Any]:
    """An availability document: the same hours every day."""
    return {
        "weekly": {day: [text] for day in EVERY_DAY},
        "exceptions": [],
        "buffer_minutes": 15,
        "min_notice_hours": 12,
        "horizon_days": 56,
        **settings,
    }


async def open_therapist(
    pool: asyncpg.Pool,
    now: datetime,
    availability: dict[str, Any] | None = None,
    **profile_changes: Any,
) -> uuid.UUID:
    """A published therapist with working hours, set up as the handlers and routes would."""
    therapist_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await service.apply_profile(conn, profile(therapist_id, **profile_changes), now)
    await service.set_availability(
        pool, Principal(therapist_id, "therapist"), therapist_id, availability or hours(), now
    )
    return therapist_id


async def open_course(
    pool: asyncpg.Pool, client_id: uuid.UUID, therapist_id: uuid.UUID, now: datetime, **changes: Any
) -> uuid.UUID:
    async with pool.acquire() as conn, conn.transaction():
        course_id = await service.open_course(conn, match(client_id, therapist_id, **changes), now)
    assert course_id is not None
    return course_id


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    await until("the condition", check, timeout=timeout)


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (they cannot import a conftest)."""
    return SimpleNamespace(
        probe_for=probe_for,
        mine=mine,
        profile=profile,
        match=match,
        hours=hours,
        open_therapist=open_therapist,
        open_course=open_course,
        eventually=eventually,
    )
