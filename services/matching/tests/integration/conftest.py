"""A running matching service (api, optionally worker) on the real Postgres and broker.

Tests share the session's database, so each test speaks a language of its own: its
therapists and intakes can only ever match each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from chassis import auth, db
from chassis.app import build
from chassis.testing.kafka import TopicProbe, publish
from contracts import REGISTRY, Envelope
from contracts.events import (
    IntakeEscalated,
    IntakeSubmitted,
    IntakeTriaged,
    IntakeWaitlisted,
    MatchApproved,
    MatchRejected,
    TherapistMatched,
    TherapistProfilePublished,
)
from matching.app import DEFINITION

PRODUCED = [
    IntakeSubmitted,
    IntakeEscalated,
    IntakeTriaged,
    IntakeWaitlisted,
    TherapistMatched,
    MatchApproved,
    MatchRejected,
]
_languages_used: set[str] = set()


def a_language() -> str:
    """A two-letter code no other test in this session speaks."""
    while True:
        code = "".join(random.choices(string.ascii_lowercase, k=2))
        if code not in _languages_used:
            _languages_used.add(code)
            return code


@dataclass
class Matching:
    http: httpx.AsyncClient
    probe: TopicProbe
    pool: asyncpg.Pool
    bootstrap: str
    topic_prefix: str
    private_key: str
    worker: httpx.AsyncClient | None = None
    language: str = field(default_factory=a_language)
    settings: Any = None  # the service's settings, to start more workers

    def another_language(self) -> str:
        return a_language()

    def headers(self, subject: uuid.UUID, role: auth.Role = "client") -> dict[str, str]:
        token = auth.mint(self.private_key, subject, role)
        return {"authorization": f"Bearer {token}"}

    def therapist(self, **changes: Any) -> TherapistProfilePublished:
        """A profile that fits `intake()` on every hard filter."""
        fields: dict[str, Any] = dict(
            therapist_id=uuid.uuid4(),
            profession="psychologist",
            licensed=True,
            methods=["IPT", "KBT"],
            focus_areas=["grief", "depression"],
            languages=[self.language],
            modes=["video"],
            age_groups=["adults"],
            capacity=5,
            accepting_new_clients=True,
            version=1,
        )
        fields.update(changes)
        return TherapistProfilePublished(**fields)

    def intake(self, **changes: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "age": 34,
            "languages": [self.language],
            "preferred_mode": "video",
            "problem_areas": ["grief"],
            "phq9": [1, 1, 1, 1, 1, 1, 1, 1, 0],
            "free_text": "Min mamma dog i våras och jag sover dåligt.",
            "time_windows": [{"weekday": 1, "start": "13:00", "end": "17:00"}],
            "consent_to_treatment": True,
            "consent_to_health_data": True,
        }
        body.update(changes)
        return body

    async def publish(self, *events: Any) -> list[Envelope[Any]]:
        return await publish(self.bootstrap, self.topic_prefix, *events)

    async def submit(self, client: uuid.UUID, **changes: Any) -> httpx.Response:
        return await self.http.post(
            "/intakes", json=self.intake(**changes), headers=self.headers(client)
        )

    async def submitted(self, client: uuid.UUID, **changes: Any) -> uuid.UUID:
        r = await self.submit(client, **changes)
        assert r.status_code == 201, r.text
        return uuid.UUID(r.json()["intake_id"])

    def events(self, event_type: str, intake_id: uuid.UUID) -> list[Envelope[Any]]:
        return [e for e in self.probe.envelopes(event_type) if e.payload.intake_id == intake_id]

    async def wait_for(self, event_type: str, intake_id: uuid.UUID, count: int = 1) -> Any:
        """The `count`-th payload of this type for the intake."""
        try:
            await self.probe.wait_for(
                lambda _: len(self.events(event_type, intake_id)) >= count, timeout=30
            )
        except AssertionError as exc:
            status = await self.pool.fetchval(
                "SELECT status FROM intakes WHERE intake_id = $1", intake_id
            )
            seen = [e.event_type for e in self.probe.envelopes() if e.key == str(intake_id)]
            raise AssertionError(
                f"no {event_type} #{count} for intake {intake_id} ({status}); its events: {seen}"
            ) from exc
        return self.events(event_type, intake_id)[count - 1].payload

    async def eventually(self, query: str, *args: Any, expect: Any, timeout: float = 20) -> None:
        """Poll the service's database until `query` answers `expect`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (got := await self.pool.fetchval(query, *args)) != expect:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{query!r} gave {got!r}, not {expect!r}")
            await asyncio.sleep(0.05)

    async def in_read_model(self, *therapists: TherapistProfilePublished) -> None:
        ids = [t.therapist_id for t in therapists]
        await self.eventually(
            "SELECT count(*) FROM therapists WHERE therapist_id = ANY($1) AND NOT withdrawn",
            ids,
            expect=len(ids),
        )

    async def consumed(self, consumer: str, envelope: Envelope[Any]) -> None:
        await self.eventually(
            "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2",
            consumer,
            envelope.event_id,
            expect=1,
        )

    async def view(
        self, intake_id: uuid.UUID, client: uuid.UUID, lang: str = "sv"
    ) -> dict[str, Any]:
        r = await self.http.get(
            f"/intakes/{intake_id}", params={"lang": lang}, headers=self.headers(client)
        )
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def matching_service(migrated, serve, jwt_keys, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    """`async with matching_service(worker=True) as m:` the api (and the worker) running."""

    @contextlib.asynccontextmanager
    async def run(worker: bool = True, **overrides: Any) -> AsyncIterator[Matching]:
        settings = await migrated(DEFINITION, **overrides)
        topics = [settings.topic(REGISTRY.topic(model)) for model in PRODUCED]
        pool = await db.create_pool(settings)
        try:
            async with contextlib.AsyncExitStack() as stack:
                http = await stack.enter_async_context(serve(build(DEFINITION, settings, "api")))
                worker_http = None
                if worker:
                    worker_http = await stack.enter_async_context(
                        serve(build(DEFINITION, settings, "worker"))
                    )
                probe = await stack.enter_async_context(TopicProbe(kafka_bootstrap, topics))
                yield Matching(
                    http,
                    probe,
                    pool,
                    kafka_bootstrap,
                    topic_prefix,
                    jwt_keys[0],
                    worker_http,
                    settings=settings,
                )
        finally:
            await pool.close()

    return run
