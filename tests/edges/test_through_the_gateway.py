"""The platform as `make run` starts it (processes, two replicas of two apis, the real
Envoy gateway), attacked through the gateway.

- Fuzzing: schemathesis generates requests from every service's OpenAPI (read through
  the gateway, so a route added later is fuzzed too) and sends them with a valid token
  of each role the route admits: no answer may be a server error, every answer must
  match the schema the route declares.
- Replicas: under a steady load of reads and of bookings (each with its idempotency
  key), one of two api replicas is killed: no client sees a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chassis.auth import ROLES, mint
from chassis.testing.events import a_match
from samtal_deploy import local_run

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Examples per operation, role and mode (valid and invalid data): enough to find the
# classes of bad input, few enough for `make test` (about a minute for every service).
EXAMPLES = 4


@pytest.fixture(scope="module")
def running(postgres_server, kafka_server, tmp_path_factory) -> Iterator[Any]:
    with local_run.throwaway_platform(
        tmp_path_factory.mktemp("edges-run"),
        postgres=postgres_server,
        kafka=kafka_server,
        name="edges",
        rate_limit_per_s=100_000,
        replicas={"matching": 2, "booking": 2},
    ) as platform:
        yield platform


# ------------------------------------------------------------------------------ fuzzing


@dataclass
class Tally:
    operations: int = 0
    examples: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _fuzz_operation(operation: Any, base_url: str, token: str | None, tally: Tally) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    headers = {"authorization": f"Bearer {token}"} if token else {}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            tally.examples += 1
            tally.statuses[response.status_code] += 1
            try:
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )
            except BaseException as exc:  # schemathesis's FailureGroup is a BaseExceptionGroup
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                tally.failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{str(exc)[:300]}\n  {case.as_curl_command()[:400]}"
                )

        try:
            fuzz()
        except Unsatisfiable:
            # an operation without parameters or body has no invalid form to send
            if mode is not GenerationMode.NEGATIVE:
                tally.failures.append(f"{operation.label}: no valid request can be made")
        except BaseException as exc:  # a generation problem, not an answer: say which
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            tally.failures.append(f"{operation.label}: could not fuzz: {exc!r}"[:400])


def _admitted_roles(operation: Any, base_url: str, tokens: dict[str, str]) -> list[str | None]:
    """The roles the route lets through (a wrong role answers 403 before any validation);
    a route nobody signs in for is fuzzed without a token."""
    path = operation.path
    for name in ("therapist_id", "intake_id", "course_id", "session_id", "match_id"):
        path = path.replace("{" + name + "}", str(uuid.uuid4()))
    path = path.replace("{message_id}", str(uuid.uuid4())).replace("{delivery_id}", "1")
    for param in ("{review_id}",):
        path = path.replace(param, str(uuid.uuid4()))
    admitted: list[str | None] = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        if http.request(operation.method.upper(), path).status_code not in (401, 403):
            return [None]
        for role, token in tokens.items():
            answer = http.request(
                operation.method.upper(), path, headers={"authorization": f"Bearer {token}"}
            )
            if answer.status_code != 403:
                admitted.append(role)
    return admitted


@pytest.mark.timeout(900)
def test_fuzzing_every_operation_of_every_service_finds_no_server_error(running) -> None:
    import schemathesis

    tokens = {r: mint(running.private_key, uuid.uuid4(), r) for r in ROLES}  # type: ignore[arg-type]
    tally = Tally()
    started = time.monotonic()
    for service in ("catalog", "matching", "booking", "notifications"):
        base_url = f"{running.gateway_url}/api/{service}"
        raw = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
        raw.pop("servers", None)  # base_url already names the mount
        schema = schemathesis.openapi.from_dict(raw)
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path in ("/healthz", "/readyz"):
                continue
            tally.operations += 1
            for role in _admitted_roles(operation, base_url, tokens):
                _fuzz_operation(operation, base_url, tokens[role] if role else None, tally)
    elapsed = time.monotonic() - started
    print(
        f"\nfuzz: operations={tally.operations} examples={tally.examples} "
        f"failures={len(tally.failures)} seconds={elapsed:.0f} statuses={dict(tally.statuses)}"
    )
    assert tally.operations >= 30, tally.operations
    assert tally.examples >= tally.operations * EXAMPLES
    assert not tally.failures, "\n".join(tally.failures[:20])
    # after all that, an ordinary request is answered as usual
    assert httpx.get(f"{running.gateway_url}/api/catalog/methods", timeout=10).status_code == 200


# ----------------------------------------------------------------------------- replicas


@dataclass
class Load:
    """Clients reading and writing through the gateway until told to stop."""

    gateway_url: str
    reads: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)  # answers cut off by a kill, asked again
    stop: threading.Event = field(default_factory=threading.Event)


async def _request(
    http: httpx.AsyncClient, load: Load, method: str, path: str, **kwargs: Any
) -> httpx.Response | None:
    """One request as a client makes it: an answer cut off by the crash is asked again once.

    The gateway retries what failed before any answer came (refused connections, resets);
    it cannot retry an answer whose headers it had already passed on when the replica was
    killed between them and the body. The client asks again, a write with the same
    Idempotency-Key, so the booking still happens once (checked below)."""
    for attempt in range(2):
        try:
            return await http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            if attempt == 0:
                load.cut.append(f"{method} {path}: {exc!r}")
            else:
                load.problems.append(f"{method} {path} asked again: {exc!r}")
    return None


async def _eventually_json(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Any:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        r = await http.get(path, headers=headers)
        if r.status_code == 200 and r.json():
            return r.json()
        await asyncio.sleep(0.5)
    raise AssertionError(f"{path} stayed empty")


async def _courses(running: Any, count: int) -> tuple[str, list[tuple[str, str]]]:
    """A published therapist with working hours and `count` clients matched to them, as
    catalog and matching would announce it: (therapist token, [(client token, course)])."""
    from chassis.testing.kafka import publish
    from contracts.events import TherapistProfilePublished

    therapist = uuid.uuid4()
    clients = [uuid.uuid4() for _ in range(count)]
    await publish(
        running.kafka_bootstrap,
        running.topic_prefix,
        TherapistProfilePublished(
            therapist_id=therapist,
            profession="psychologist",
            licensed=True,
            methods=["IPT"],
            languages=["sv"],
            modes=["video"],
            age_groups=["adults"],
            capacity=50,
            accepting_new_clients=True,
        ),
    )
    await asyncio.sleep(2)  # the profile first: a match for an unknown therapist waits
    await publish(
        running.kafka_bootstrap,
        running.topic_prefix,
        *[a_match(client, therapist) for client in clients],
    )
    therapist_token = mint(running.private_key, therapist, "therapist")
    by_therapist = {"authorization": f"Bearer {therapist_token}"}
    out = []
    async with httpx.AsyncClient(base_url=running.gateway_url, timeout=30) as http:
        every_day = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        r = await http.put(
            f"/api/booking/therapists/{therapist}/availability",
            json={"weekly": {d: ["07:00-22:00"] for d in every_day}, "horizon_days": 120},
            headers=by_therapist,
        )
        assert r.status_code == 200, r.text
        for client in clients:
            token = mint(running.private_key, client, "client")
            courses = await _eventually_json(
                http, "/api/booking/courses", {"authorization": f"Bearer {token}"}
            )
            course_id = courses[0]["course_id"]
            r = await http.patch(
                f"/api/booking/courses/{course_id}",
                json={"planned_sessions": 16},
                headers=by_therapist,
            )
            assert r.status_code == 200, r.text
            out.append((token, course_id))
    return therapist_token, out


async def _writer(
    load: Load, token: str, course_id: str, slots: list[str], booked: dict[str, str]
) -> None:
    """Books sessions, each with its idempotency key: a booking retried by the gateway (or
    asked again by the client) is answered from the first, never twice.
    Goes round its slots until told to stop, so writes keep coming however fast booking
    answers (once a course is full every further attempt is a 409: still a write)."""
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=load.gateway_url, timeout=30) as http:
        for starts_at in itertools.cycle(slots):
            if load.stop.is_set():
                return
            key = f"edges-{uuid.uuid4().hex}"
            r = await _request(
                http,
                load,
                "POST",
                f"/api/booking/courses/{course_id}/sessions",
                json={"starts_at": starts_at, "idempotency_key": key},
                headers={**auth, "idempotency-key": key},
            )
            if r is None:
                load.writes["failed"] += 1
            elif r.status_code >= 500:
                load.writes["failed"] += 1
                load.problems.append(f"write {r.status_code} {r.text[:200]}")
            else:
                load.writes[str(r.status_code)] += 1
                if r.status_code == 201:
                    booked[key] = r.json()["session_id"]


async def _reader(load: Load, path: str, token: str) -> None:
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=load.gateway_url, timeout=30) as http:
        while not load.stop.is_set():
            r = await _request(http, load, "GET", path, headers=auth)
            if r is None:
                load.reads["failed"] += 1
                continue
            load.reads["ok" if r.status_code == 200 else "failed"] += 1
            if r.status_code != 200:
                load.problems.append(f"read {path} {r.status_code} {r.text[:200]}")


def _gateway_retries(running: Any) -> dict[str, int]:
    """Envoy's retry counters of the killed services' clusters (what the gateway retried,
    and what it could not because the retry budget was spent)."""
    counters = running.gateway.counters(r"^cluster\.(booking|matching)\..*retry")
    return {name.removeprefix("cluster."): n for name, n in counters.items() if n}


@pytest.mark.timeout(600)
async def test_killing_one_of_two_api_replicas_under_load_fails_no_request(running) -> None:
    assert running.api_replicas("booking") == ["booking-api", "booking-api-2"]
    assert running.api_replicas("matching") == ["matching-api", "matching-api-2"]
    therapist_token, courses = await _courses(running, 6)
    load = Load(running.gateway_url)
    booked: dict[str, str] = {}
    slots = await _free_slots(running, therapist_token)
    # each writer its own slots, two hours apart (no two sessions collide)
    per_writer = [slots[i :: len(courses)] for i in range(len(courses))]
    tasks = [
        asyncio.create_task(_writer(load, token, course, mine, booked))
        for (token, course), mine in zip(courses, per_writer, strict=True)
    ]
    client_token = courses[0][0]
    tasks += [
        asyncio.create_task(_reader(load, "/api/booking/courses", client_token)),
        asyncio.create_task(_reader(load, "/api/matching/intakes", client_token)),
        asyncio.create_task(_reader(load, "/api/booking/courses", client_token)),
    ]
    await asyncio.sleep(3)
    before = (sum(load.reads.values()), sum(load.writes.values()))
    running.kill("booking-api-2")
    running.kill("matching-api-2")
    await asyncio.sleep(8)
    after_kill = (sum(load.reads.values()), sum(load.writes.values()))
    load.stop.set()
    await asyncio.gather(*tasks)
    await asyncio.to_thread(running.restart, "booking-api-2")
    await asyncio.to_thread(running.restart, "matching-api-2")
    reads, writes = sum(load.reads.values()), sum(load.writes.values())
    retries = _gateway_retries(running)
    print(
        f"\nreplica kill: reads={reads} writes={writes} booked={len(booked)} "
        f"failures={load.reads['failed'] + load.writes['failed']} "
        f"after_kill_reads={after_kill[0] - before[0]} "
        f"after_kill_writes={after_kill[1] - before[1]} "
        f"writes_by_status={dict(load.writes)} cut_and_asked_again={load.cut} "
        f"gateway_retries={retries}"
    )
    assert not load.problems, load.problems[:10]
    # only what was in flight on a killed replica can be cut: one request per client
    assert len(load.cut) <= len(tasks), load.cut
    assert after_kill[0] - before[0] > 20, "too little load after the kill to show anything"
    assert after_kill[1] - before[1] > 5
    # a booking retried by the gateway was booked once: each key is one session
    async with httpx.AsyncClient(base_url=running.gateway_url, timeout=30) as http:
        sessions = 0
        for token, course in courses:
            r = await http.get(
                f"/api/booking/courses/{course}", headers={"authorization": f"Bearer {token}"}
            )
            sessions += len([s for s in r.json()["sessions"] if s["status"] == "booked"])
    assert sessions == len(booked) == len(set(booked.values()))


async def _free_slots(running: Any, therapist_token: str) -> list[str]:
    therapist = jwt_subject(therapist_token)
    async with httpx.AsyncClient(base_url=running.gateway_url, timeout=30) as http:
        r = await http.get(
            f"/api/booking/therapists/{therapist}/slots",
            params={"limit": 2000, "minutes": 45},
            headers={"authorization": f"Bearer {therapist_token}"},
        )
    assert r.status_code == 200, r.text
    starts = [datetime.fromisoformat(s["starts_at"]) for s in r.json()["slots"]]
    spaced: list[datetime] = []
    for at in starts:
        if not spaced or at - spaced[-1] >= timedelta(hours=2):
            spaced.append(at)
    return [at.astimezone(UTC).isoformat() for at in spaced]


def jwt_subject(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["sub"])
