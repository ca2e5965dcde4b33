"""`make demo`: a guided journey through the gateway against a running `make run`.

Journey 1: an admin publishes a therapist; a client sets contacts and submits an
intake; the match and its reasons; the therapist opens their calendar and the
client books a weekly series; the therapist records every session and the
PHQ-9s (booking's demo clock moves the weeks along); the course completes with
its outcome; the client writes a verified review; the messages each person got.
Journey 2: a client whose intake shows thoughts of self-harm gets the crisis
answer at once; the on-call clinician's urgent alert and triage.
Journey 3: the first client's rights: their one access log across the services, an
export downloaded as one JSON document with its summary, and an erasure (what was
erased at once, what is kept as the clinical record).

Each step prints what was asked, what came back and the events it caused.
`run_journeys` is also what the end-to-end tests run, through the real gateway.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from chassis.auth import Role, mint
from chassis.testing.kafka import TopicProbe
from chassis.testing.waiting import until
from contracts import REGISTRY


class JourneyFailed(AssertionError):
    pass


@dataclass
class Journey:
    gateway_url: str
    private_key: str
    kafka_bootstrap: str
    topic_prefix: str
    on_call_clinician: uuid.UUID
    say: Callable[[str], None] = print
    http: httpx.AsyncClient = field(init=False)
    probe: TopicProbe = field(init=False)
    _seen: int = 0
    events: list[Any] = field(default_factory=list)
    # What journey 3 showed: the access log, the export document, the erasure's answers.
    rights: dict[str, Any] = field(default_factory=dict)

    def token(self, role: Role, person: uuid.UUID) -> dict[str, str]:
        return {"authorization": f"Bearer {mint(self.private_key, person, role)}"}

    async def call(
        self,
        method: str,
        path: str,
        who: dict[str, str] | None = None,
        *,
        expect: int | tuple[int, ...] = (200, 201),
        show: bool = True,
        **kwargs: Any,
    ) -> Any:
        answer = await self.http.request(method, path, headers=who or {}, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        if show:
            self.say(f"    {method} {path} -> {answer.status_code}")
        if answer.status_code not in expected:
            raise JourneyFailed(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    async def until(
        self, what: str, check: Callable[[], Awaitable[Any]], timeout: float = 60
    ) -> Any:
        return await until(what, check, timeout=timeout, every=0.3, failure=JourneyFailed)

    async def show_events(self, pause: float = 1.0) -> list[Any]:
        """The events caused since the last look, in arrival order."""
        await asyncio.sleep(pause)
        envelopes = self.probe.envelopes()
        new = envelopes[self._seen :]
        self._seen = len(envelopes)
        for e in new:
            ids = {
                k: str(v)[:8]
                for k, v in e.payload.model_dump().items()
                if k.endswith("_id") and v is not None
            }
            facts = {
                k: v
                for k, v in e.payload.model_dump(mode="json").items()
                if k
                in (
                    "status",
                    "outcome",
                    "risk_level",
                    "severity_band",
                    "number",
                    "phase",
                    "decision",
                    "attendance",
                    "rating",
                    "reasons",
                )
            }
            self.say(f"      event {e.event_type} {ids} {facts if facts else ''}".rstrip())
        self.events += new
        return new


async def journey_one(j: Journey) -> dict[str, Any]:
    say = j.say
    admin = j.token("admin", uuid.uuid4())
    therapist_id = uuid.uuid4()
    therapist = j.token("therapist", therapist_id)
    client_id = uuid.uuid4()
    client = j.token("client", client_id)

    say("\n1. An admin publishes a therapist")
    await j.call(
        "POST",
        "/api/catalog/therapists",
        admin,
        json={
            "therapist_id": str(therapist_id),
            "name": "Selam Tesfay",
            "profession": "psychotherapist",
            "licence_number": "720431",
            "methods": ["IPT", "KBT"],
            "focus_areas": ["grief", "role_transition", "depression", "relationships"],
            "languages": ["ti", "sv", "en"],
            "modes": ["video", "in_person"],
            "city": "Uppsala",
            "practice_address": "Dragarbrunnsgatan 12, 753 20 Uppsala",
            "age_groups": ["adults"],
            "bio": "Legitimerad psykoterapeut. Interpersonell terapi på tigrinja, svenska "
            "och engelska.",
            "capacity": 12,
            "accepting_new_clients": True,
        },
    )
    await j.call("POST", f"/api/catalog/therapists/{therapist_id}/publish", admin)
    await j.show_events()

    say("\n2. The therapist opens their calendar (weekdays 09-17, Stockholm time)")
    weekdays = ["monday", "tuesday", "wednesday", "thursday", "friday"]
    await j.until(
        "booking to know the therapist",
        lambda: j.call(
            "PUT",
            f"/api/booking/therapists/{therapist_id}/availability",
            therapist,
            json={
                "weekly": {d: ["09:00-17:00"] for d in weekdays},
                "buffer_minutes": 15,
                "min_notice_hours": 12,
                "horizon_days": 120,
            },
            expect=(200, 404, 409),
            show=False,
        ),
    )
    await j.show_events()

    say("\n3. A client sets their contacts and submits an intake")
    await j.call(
        "PUT",
        "/api/notifications/contacts/me",
        client,
        json={"email": "amanuel@example.se", "language": "sv"},
    )
    submitted = await j.call(
        "POST",
        "/api/matching/intakes",
        client,
        json={
            "age": 34,
            "languages": ["ti", "sv"],
            "preferred_mode": "either",
            "city": "Uppsala",
            "problem_areas": ["grief", "role_transition"],
            "phq9": [2, 2, 1, 2, 1, 1, 2, 1, 0],
            "free_text": "Min pappa dog i våras och jag har just börjat ett nytt jobb.",
            "time_windows": [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
            "direct_therapist_id": str(therapist_id),
            "consent_to_treatment": True,
            "consent_to_health_data": True,
        },
    )
    intake_id = submitted["intake_id"]
    say(f"    screening: {submitted['screening']}")
    await j.show_events()

    say("\n4. The match and its reasons")

    async def matched() -> Any:
        intake = await j.call("GET", f"/api/matching/intakes/{intake_id}", client, show=False)
        return intake if intake["match"] else None

    intake = await j.until("the match", matched)
    say(
        f"    matched with {intake['match']['therapist_id'][:8]} (score {intake['match']['score']})"
    )
    for line in intake["explanation"]:
        say(f"      - {line}")
    if intake["match"]["therapist_id"] != str(therapist_id):
        raise JourneyFailed("the client's chosen therapist was not matched")
    await j.show_events()

    say("\n5. The client books a weekly series for the whole course")

    async def course() -> Any:
        courses = await j.call("GET", "/api/booking/courses", client, show=False)
        return courses[0] if courses else None

    found = await j.until("the course", course)
    course_id = found["course_id"]
    planned = found["planned_sessions"]
    say(
        f"    course {course_id[:8]}: {found['method']}, {planned} sessions of "
        f"{found['session_minutes']} minutes"
    )
    slots = await j.call("GET", f"/api/booking/therapists/{therapist_id}/slots", client)
    first = slots["slots"][0]["starts_at"]
    series = await j.call(
        "POST",
        f"/api/booking/courses/{course_id}/series",
        client,
        json={
            "first_starts_at": first,
            "count": planned,
            "every_weeks": 1,
            "idempotency_key": f"demo-series-{course_id}",
        },
    )
    sessions = series["sessions"] if isinstance(series, dict) and "sessions" in series else series
    say(f"    booked {len(sessions)} sessions, first {first}")
    await j.show_events()

    say("\n6. The therapist records each session and the PHQ-9 at the start and the end")
    phq9 = {1: 12, planned // 2: 8, planned: 3}
    for session in sorted(sessions, key=lambda s: s["number"]):
        # The demo clock moves booking to just after the session's start.
        hours = datetime.fromisoformat(session["starts_at"]) - await _booking_now(j, admin)
        await j.call(
            "POST",
            "/api/booking/demo/clock",
            admin,
            show=False,
            json={"advance_hours": max(hours.total_seconds() / 3600 + 0.25, 0.01)},
        )
        body: dict[str, Any] = {"attendance": "attended"}
        if session["number"] in phq9:
            body["phq9_total"] = phq9[session["number"]]
        await j.call(
            "POST",
            f"/api/booking/sessions/{session['session_id']}/attendance",
            therapist,
            json=body,
            show=False,
        )
        say(
            f"    session {session['number']:2} ({session['phase']}) attended"
            + (f", PHQ-9 {body['phq9_total']}" if "phq9_total" in body else "")
        )
    await j.show_events()

    say("\n7. The course completes with its outcome")
    done = await j.call("GET", f"/api/booking/courses/{course_id}", client)
    say(
        f"    status {done['status']}, outcome {done['outcome']} "
        f"({done['start_severity_band']} -> {done['final_severity_band']})"
    )
    if done["status"] != "completed":
        raise JourneyFailed(f"the course did not complete: {done['status']}")

    say("\n8. The client writes a verified review")
    review = {"course_id": course_id, "rating": 5, "text": "Trygg och varm. Tack för allt."}
    await j.until(
        "catalog to know the course completed",
        lambda: _posted(j, therapist_id, client, review),
    )
    detail = await j.call("GET", f"/api/catalog/therapists/{therapist_id}")
    say(f"    rating now {detail.get('rating_average') or detail.get('reviews', {})}")
    await j.show_events()

    say("\n9. The messages each person received")
    for who, name in ((client, "client"), (therapist, "therapist")):
        inbox = await j.until(f"the {name}'s messages", functools.partial(_inbox, j, who))
        say(f"    {name}: {inbox['total']} messages")
        for message in inbox["messages"][:12]:
            say(f"      - {message.get('subject')}")
    return {
        "intake_id": intake_id,
        "course_id": course_id,
        "therapist_id": str(therapist_id),
        "client_id": str(client_id),
        "outcome": done["outcome"],
    }


async def _posted(
    j: Journey, therapist_id: uuid.UUID, who: dict[str, str], review: dict[str, Any]
) -> bool:
    answer = await j.http.post(
        f"/api/catalog/therapists/{therapist_id}/reviews", headers=who, json=review
    )
    if answer.status_code == 201:
        j.say(f"    POST /api/catalog/therapists/{therapist_id}/reviews -> 201")
        return True
    if answer.status_code in (404, 409) and answer.json().get("code") == "already_reviewed":
        return True
    if answer.status_code != 404:
        raise JourneyFailed(f"review refused: {answer.status_code} {answer.text}")
    return False


async def _inbox(j: Journey, who: dict[str, str]) -> Any:
    inbox = await j.call("GET", "/api/notifications/inbox", who, show=False)
    return inbox if inbox["total"] else None


async def _booking_now(j: Journey, admin: dict[str, str]) -> datetime:
    moved = await j.call(
        "POST", "/api/booking/demo/clock", admin, json={"advance_hours": 0.001}, show=False
    )
    return datetime.fromisoformat(moved["now"])


async def journey_two(j: Journey) -> dict[str, Any]:
    say = j.say
    client_id = uuid.uuid4()
    client = j.token("client", client_id)
    clinician = j.token("clinician", j.on_call_clinician)

    say("\n10. A second client: the intake shows thoughts of self-harm")
    await j.call(
        "PUT",
        "/api/notifications/contacts/me",
        client,
        json={"email": "client.two@example.se", "language": "sv"},
    )
    answer = await j.call(
        "POST",
        "/api/matching/intakes",
        client,
        json={
            "age": 27,
            "languages": ["sv"],
            "preferred_mode": "video",
            "problem_areas": ["interpersonal_deficits"],
            "phq9": [2, 3, 2, 2, 1, 2, 2, 1, 2],
            "consent_to_treatment": True,
            "consent_to_health_data": True,
        },
    )
    crisis = answer["crisis"]
    if not crisis:
        raise JourneyFailed("no crisis answer for a high-risk intake")
    say(f"    the answer, at once: {crisis['sv'] if isinstance(crisis, dict) else crisis}")
    await j.show_events()

    say("\n11. The on-call clinician's urgent alert and triage")
    alert = await j.until("the clinician's alert", lambda: _inbox(j, clinician))
    say(f"    clinician inbox: {[m.get('subject') for m in alert['messages'][:3]]}")
    queue = await j.call("GET", "/api/matching/clinician/queue", clinician)
    waiting = [
        q
        for q in (queue if isinstance(queue, list) else queue.get("items", []))
        if q["intake_id"] == answer["intake_id"]
    ]
    if not waiting:
        raise JourneyFailed("the escalated intake is not in the clinician's queue")
    if any(
        e.event_type == "TherapistMatched" and str(e.payload.intake_id) == answer["intake_id"]
        for e in j.probe.envelopes()
    ):
        raise JourneyFailed("a high-risk intake was matched before triage")
    await j.call(
        "POST",
        f"/api/matching/clinician/intakes/{answer['intake_id']}/triage",
        clinician,
        json={"decision": "resume_matching"},
    )
    await j.show_events(pause=3)
    return {"intake_id": answer["intake_id"], "client_id": str(client_id)}


async def _request_done(j: Journey, who: dict[str, str], request_id: str) -> Any:
    status = await j.call(
        "GET", f"/api/notifications/me/rights-requests/{request_id}", who, show=False
    )
    return status if status["status"] == "done" else None


async def _notice(j: Journey, who: dict[str, str], kind: str) -> Any:
    inbox = await j.call("GET", "/api/notifications/inbox", who, show=False)
    return next((m for m in inbox["messages"] if m["kind"] == kind), None)


async def journey_three(j: Journey, client_id: str) -> dict[str, Any]:
    say = j.say
    client = j.token("client", uuid.UUID(client_id))

    say("\n12. The first client's access log: who read or changed their data, everywhere")
    log = await j.call("GET", "/api/notifications/me/access-log", client, params={"limit": 100})
    for e in log["entries"]:
        flag = f" EMERGENCY ({e['reason_code']})" if e["emergency"] else ""
        say(
            f"    {e['at'][:19]} {e['service']:<13} {e['actor_role']:<9} "
            f"{e['action']:<8} {e['resource']}{flag}"
        )

    say("\n13. The client asks for an export and downloads it as one JSON document")
    asked = await j.call(
        "POST",
        "/api/notifications/me/rights-requests",
        client,
        json={"kind": "export"},
        expect=(200, 202),
    )
    status = await j.until(
        "the export", functools.partial(_request_done, j, client, asked["request_id"])
    )
    notice = await j.until(
        "the export notice", functools.partial(_notice, j, client, "rights_export_ready")
    )
    say(f"    inbox: {notice['subject']}")
    document = await j.call("GET", status["document"], client)
    for line in document["summary"]["sv"]:
        say(f"    sv: {line}")
    for line in document["summary"]["en"]:
        say(f"    en: {line}")
    for service, part in document["parts"].items():
        held = {k: len(v) if isinstance(v, list) else 1 for k, v in part["data"].items() if v}
        say(f"    parts.{service}.data: {held}")

    say("\n14. The client asks for erasure: what goes at once, what is kept and why")
    asked = await j.call(
        "POST",
        "/api/notifications/me/rights-requests",
        client,
        json={"kind": "erasure"},
        expect=(200, 202),
    )
    erased = await j.until(
        "the erasure", functools.partial(_request_done, j, client, asked["request_id"])
    )
    for service, answer in sorted(erased["answers"].items()):
        say(f"    {service}: erased {answer.get('erased', [])}, kept {answer.get('kept', [])}")
    notice = await j.until(
        "the erasure notice", functools.partial(_notice, j, client, "rights_erasure_done")
    )
    say(f"    inbox: {notice['subject']}")
    for line in notice["body"].strip().splitlines():
        say(f"      | {line}")
    j.rights = {"access_log": log, "export": document, "erasure": erased, "notice": notice}
    return j.rights


async def run_journeys(
    gateway_url: str,
    private_key: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    on_call_clinician: str,
    say: Callable[[str], None] = print,
) -> tuple[dict[str, Any], dict[str, Any], Journey]:
    journey = Journey(
        gateway_url, private_key, kafka_bootstrap, topic_prefix, uuid.UUID(on_call_clinician), say
    )
    topics = [topic_prefix + spec.topic for spec in REGISTRY.specs]
    async with (
        httpx.AsyncClient(base_url=gateway_url, timeout=30) as http,
        TopicProbe(kafka_bootstrap, topics) as probe,
    ):
        journey.http, journey.probe = http, probe
        await asyncio.sleep(1.0)
        journey._seen = len(probe.envelopes())  # what happened before the journey
        first = await journey_one(journey)
        second = await journey_two(journey)
        await journey_three(journey, first["client_id"])
    say("\nThe journeys completed.")
    return first, second, journey


def main(run_dir: Path) -> None:
    state_file = run_dir / "state.json"
    if not state_file.exists():
        sys.exit(f"no running platform found ({state_file}): start `make run` first")
    state = json.loads(state_file.read_text())
    try:
        asyncio.run(
            run_journeys(
                state["gateway_url"],
                Path(state["private_key_file"]).read_text(),
                state["kafka_bootstrap"],
                state["topic_prefix"],
                state["on_call_clinician"],
            )
        )
    except JourneyFailed as exc:
        sys.exit(f"\nthe journey stopped: {exc}")
