"""End to end: the whole platform as `make run` starts it, driven through the real gateway.

The services run as their own processes (api and worker of each), against this test
session's Postgres database and the test broker, with a topic prefix of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from samtal_deploy import demo, local_run

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def platform(postgres_server, kafka_server, tmp_path_factory) -> Iterator:
    with local_run.throwaway_platform(
        tmp_path_factory.mktemp("run"), postgres=postgres_server, kafka=kafka_server, name="e2e"
    ) as running:
        yield running


@pytest.mark.timeout(600)
async def test_the_journey_and_the_crisis_path_through_the_gateway(platform) -> None:
    lines: list[str] = []
    first, second, journey = await demo.run_journeys(
        platform.gateway_url,
        platform.private_key,
        platform.kafka_bootstrap,
        platform.topic_prefix,
        local_run.ON_CALL_CLINICIAN,
        say=lines.append,
    )
    types = [e.event_type for e in journey.events]
    # The happy journey, event by event.
    for expected in (
        "TherapistProfilePublished",
        "IntakeSubmitted",
        "TherapistMatched",
        "CourseStarted",
        "SessionBooked",
        "SessionAttended",
        "CourseCompleted",
        "ReviewPublished",
    ):
        assert expected in types, f"{expected} never seen; saw {sorted(set(types))}"
    assert first["outcome"] == "remission"
    booked = [
        e
        for e in journey.events
        if e.event_type == "SessionBooked" and str(e.payload.course_id) == first["course_id"]
    ]
    assert len(booked) == 12
    # The crisis path: escalated, triaged, and only then matched.
    crisis = {
        e.event_type: e
        for e in journey.events
        if str(getattr(e.payload, "intake_id", "")) == second["intake_id"]
    }
    assert {"IntakeEscalated", "IntakeTriaged", "TherapistMatched"} <= set(crisis)
    escalated, triaged = crisis["IntakeEscalated"], crisis["IntakeTriaged"]
    assert escalated.occurred_at < triaged.occurred_at <= crisis["TherapistMatched"].occurred_at
    assert any("112" in line for line in lines)
    # Delivered messages: e-mails reached the local SMTP server.
    mail = list((platform.mail_dir / "new").glob("*"))
    assert mail, "no e-mail arrived at the mail catcher"
    bodies = "\n".join(p.read_text(errors="replace") for p in mail)
    assert "amanuel@example.se" in bodies and "client.two@example.se" in bodies
    # The first client's rights: one access log, one export document, an erasure.
    rights = journey.rights
    logged = {(e["service"], e["actor_role"]) for e in rights["access_log"]["entries"]}
    assert {("booking", "therapist"), ("catalog", "client")} <= logged, logged
    assert list(rights["export"]["parts"]) == ["catalog", "matching", "booking", "notifications"]
    assert rights["export"]["parts"]["catalog"]["data"]["reviews"]
    assert set(rights["erasure"]["answers"]) == {"catalog", "matching", "booking"}
    assert "phq9_totals" in rights["erasure"]["answers"]["booking"]["kept"]
    # Shown with `pytest -s`: what `make demo` prints.
    print("\n".join(lines))


async def test_the_gateway_guards_the_services(platform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as http:
        public = await http.get("/api/catalog/therapists?language=sv&page_size=1")
        assert public.status_code == 200 and public.json()["total"] > 0
        closed = await http.get("/api/matching/intakes")
        assert closed.status_code == 401
        forged = await http.get(
            "/api/matching/intakes", headers={"authorization": "Bearer not.a.token"}
        )
        assert forged.status_code == 401
        traced = await http.get("/api/catalog/methods", headers={"x-request-id": "journey-e2e-1"})
        assert traced.status_code == 200
        assert traced.headers["x-request-id"] == "journey-e2e-1"
        docs = await http.get("/api/booking/openapi.json")
        assert docs.status_code == 200 and "/courses" in docs.json()["paths"]
