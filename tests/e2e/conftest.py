"""For the patient-rights tests: all four services in this process (api and worker each) on
the test Postgres and broker, with helpers to act as each person.

The gateway only routes `/api/<service>/...` to a service; these tests call the services
directly with the same tokens, and put on topics only what another service would publish.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from booking.app import DEFINITION as BOOKING
from catalog.app import DEFINITION as CATALOG
from chassis.app import ServiceDefinition, build
from chassis.auth import Role, mint
from chassis.testing.events import a_match
from chassis.testing.kafka import publish
from chassis.testing.waiting import until
from contracts.events import CourseCompleted
from matching.app import DEFINITION as MATCHING
from notifications.app import DEFINITION as NOTIFICATIONS

DEFINITIONS: dict[str, ServiceDefinition] = {
    "catalog": CATALOG,
    "matching": MATCHING,
    "booking": BOOKING,
    "notifications": NOTIFICATIONS,
}
SEVERE_PHQ9 = [3, 3, 2, 3, 2, 2, 3, 2, 0]  # 20: severe, needs a clinician's approval


@dataclass
class Platform:
    http: dict[str, httpx.AsyncClient]
    private_key: str
    kafka_bootstrap: str
    topic_prefix: str

    def who(self, role: Role, person: uuid.UUID) -> dict[str, str]:
        return {"authorization": f"Bearer {mint(self.private_key, person, role)}"}

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        who: dict[str, str] | None = None,
        *,
        expect: int | tuple[int, ...] = (200, 201, 202),
        **kwargs: Any,
    ) -> Any:
        answer = await self.http[service].request(method, path, headers=who or {}, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        assert answer.status_code in expected, (
            f"{method} {path}: {answer.status_code} {answer.text}"
        )
        return answer.json() if answer.content else None

    async def publish(self, *events: Any) -> None:
        await publish(self.kafka_bootstrap, self.topic_prefix, *events)

    async def until(
        self, what: str, check: Callable[[], Awaitable[Any]], timeout: float = 60
    ) -> Any:
        return await until(what, check, timeout=timeout, every=0.3)

    # ------------------------------------------------------------ a client in every service

    async def a_client_everywhere(
        self, client: uuid.UUID, therapist: uuid.UUID, clinician: uuid.UUID | None = None
    ) -> dict[str, Any]:
        """Contacts, a severe intake with free text, a course and a hidden review: the client's
        data in all four services, with a clinician (an on-call one where there is a roster),
        the therapist and an admin reading it."""
        as_client = self.who("client", client)
        admin = self.who("admin", uuid.uuid4())
        await self.call(
            "notifications",
            "PUT",
            "/contacts/me",
            as_client,
            json={"email": f"{client.hex[:8]}@example.se", "language": "sv"},
        )
        await self.call(
            "catalog",
            "POST",
            "/therapists",
            admin,
            json={
                "therapist_id": str(therapist),
                "name": "Selam Tesfay",
                "profession": "psychotherapist",
                "licence_number": "720431",
                "methods": ["IPT"],
                "focus_areas": ["grief"],
                "languages": ["sv"],
                "modes": ["video"],
                "age_groups": ["adults"],
                "bio": "Legitimerad psykoterapeut.",
                "capacity": 12,
                "accepting_new_clients": True,
            },
        )
        await self.call("catalog", "POST", f"/therapists/{therapist}/publish", admin)
        intake = await self.call(
            "matching",
            "POST",
            "/intakes",
            as_client,
            json={
                "age": 34,
                "languages": ["sv"],
                "preferred_mode": "video",
                "problem_areas": ["grief"],
                "phq9": SEVERE_PHQ9,
                "free_text": "Min pappa dog i våras.",
                "consent_to_treatment": True,
                "consent_to_health_data": True,
            },
        )
        intake_id = uuid.UUID(intake["intake_id"])
        clinician = clinician or uuid.uuid4()
        await self.call(
            "matching", "GET", f"/clinician/intakes/{intake_id}", self.who("clinician", clinician)
        )
        # Matching's match, as matching publishes it once a clinician approved it.
        match = a_match(client, therapist, intake_id=intake_id, severity_band="severe")
        await self.publish(match)
        as_therapist = self.who("therapist", therapist)

        async def course() -> Any:
            courses = await self.call("booking", "GET", "/courses", as_therapist)
            return courses[0] if courses else None

        course_id = (await self.until("the course", course))["course_id"]
        await self.call("booking", "GET", f"/courses/{course_id}", as_therapist)
        # Booking's completion, as catalog hears it: the client may review.
        await self.publish(
            CourseCompleted(
                course_id=uuid.UUID(course_id),
                client_id=client,
                therapist_id=therapist,
                method="IPT",
                sessions_held=12,
                start_severity_band="severe",
                final_severity_band="minimal",
                outcome="remission",
                completed_at=datetime.now(UTC),
            )
        )

        async def reviewed() -> Any:
            answer = await self.http["catalog"].post(
                f"/therapists/{therapist}/reviews",
                headers=as_client,
                json={"course_id": course_id, "rating": 4, "text": "Trygg och varm."},
            )
            return answer.json() if answer.status_code == 201 else None

        review = await self.until("the review", reviewed)
        review_id = review.get("review_id") or review.get("id")
        await self.call("catalog", "POST", f"/reviews/{review_id}/hide", admin)
        return {
            "intake_id": str(intake_id),
            "course_id": course_id,
            "review_id": str(review_id),
            "clinician_id": str(clinician),
            "therapist_id": str(therapist),
        }


@contextlib.asynccontextmanager
async def running_platform(
    migrated: Any, serve: Any, jwt_keys: tuple[str, str], kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[Platform]:
    async with contextlib.AsyncExitStack() as stack:
        http: dict[str, httpx.AsyncClient] = {}
        settings = {name: await migrated(d) for name, d in DEFINITIONS.items()}
        for name, definition in DEFINITIONS.items():
            http[name] = await stack.enter_async_context(
                serve(build(definition, settings[name], "api"))
            )
        for name, definition in DEFINITIONS.items():
            await stack.enter_async_context(
                serve(build(definition, settings[name], "worker"), timeout=60)
            )
        yield Platform(http, jwt_keys[0], kafka_bootstrap, topic_prefix)


@pytest.fixture
def rights_platform(migrated, serve, jwt_keys, kafka_bootstrap, topic_prefix):  # type: ignore[no-untyped-def]
    """`async with rights_platform() as p:` every service's api and worker running."""
    return lambda: running_platform(migrated, serve, jwt_keys, kafka_bootstrap, topic_prefix)


@pytest.fixture
def platform_behind() -> Callable[[str, str, str, str], Platform]:
    """`platform_behind(gateway_url, private_key, kafka_bootstrap, topic_prefix)`: the same
    helpers, acting on a platform of processes through its gateway (close `p.http` after)."""

    def make(gateway_url: str, private_key: str, bootstrap: str, prefix: str) -> Platform:
        http = {
            name: httpx.AsyncClient(base_url=f"{gateway_url}/api/{name}", timeout=30)
            for name in DEFINITIONS
        }
        return Platform(http, private_key, bootstrap, prefix)

    return make
