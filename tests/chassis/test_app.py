"""The app factory: health, readiness, metrics, AsyncAPI, journey ids, auth, start-up."""

import asyncio
import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from chassis import auth, db
from chassis.app import build, worker_pool_floor
from chassis.testing.kafka import TopicProbe
from contracts import REGISTRY
from contracts.events import ReviewPublished, TherapistAvailabilityPublished
from tests.chassis.ledger import LEDGER, LedgerSettings


def runtime_pool(app):  # type: ignore[no-untyped-def]
    return app._application.state.runtime.pool


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_operations_endpoints_and_asyncapi(migrated, serve) -> None:
    settings = await migrated(LEDGER)
    async with serve(api := build(LEDGER, settings, "api")) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok", "service": "ledger"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "database": True, "broker": True}
        await http.get("/healthz")
        # the api's metrics are on a port of their own (tests/chassis/test_edges.py)
        port = api._application.state.runtime.metrics_port
        async with httpx.AsyncClient() as plain:
            metrics = await plain.get(f"http://127.0.0.1:{port}/metrics")
        assert "samtal_http_requests_total" in metrics.text
        assert 'route="/healthz"' in metrics.text
        openapi = (await http.get("/openapi.json")).json()
        assert "/reviews" in openapi["paths"]
    async with serve(build(LEDGER, settings, "worker")) as http:
        doc = (await http.get("/asyncapi.json")).json()
        assert (await http.get("/readyz")).status_code == 200
    channels = json.dumps(doc["channels"])
    assert settings.topic(REGISTRY.topic(ReviewPublished)) in channels  # consumed
    assert settings.topic(REGISTRY.topic(TherapistAvailabilityPublished)) in channels  # published
    assert "ledger-recorder" in json.dumps(doc)
    assert "ledger-availability" in json.dumps(doc)


async def test_auth_answers_401_and_403_with_a_clear_body(migrated, serve, jwt_keys) -> None:
    settings = await migrated(LEDGER)
    private, _ = jwt_keys
    other_private, _ = auth.generate_keypair()
    person = uuid.uuid4()
    expired = auth.mint(
        private,
        person,
        "client",
        now=datetime.now(UTC) - timedelta(hours=9),
        ttl=timedelta(hours=1),
    )
    async with serve(build(LEDGER, settings, "api")) as http:
        missing = await http.get("/me")
        assert missing.status_code == 401 and "token" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        late = await http.get("/me", headers=bearer(expired))
        assert late.status_code == 401 and "expired" in late.json()["detail"]
        forged = await http.get("/me", headers=bearer(auth.mint(other_private, person, "client")))
        assert forged.status_code == 401 and "signature" in forged.json()["detail"]
        garbage = await http.get("/me", headers=bearer("not.a.jwt"))
        assert garbage.status_code == 401
        wrong_role = await http.get("/me", headers=bearer(auth.mint(private, person, "admin")))
        assert (
            wrong_role.status_code == 403 and "client or therapist" in wrong_role.json()["detail"]
        )
        ok = await http.get("/me", headers=bearer(auth.mint(private, person, "client")))
        assert ok.status_code == 200 and ok.json() == {"id": str(person), "role": "client"}
        invalid = await http.post(
            "/reviews",
            json={"therapist_id": "x", "rating": 3},
            headers=bearer(auth.mint(private, person, "admin")),
        )
        assert invalid.status_code == 422
        assert invalid.json()["detail"].startswith("therapist_id:")


def test_rotated_keys_both_verify(jwt_keys) -> None:
    old_private, old_public = jwt_keys
    new_private, new_public = auth.generate_keypair()
    settings = LedgerSettings(jwt_public_keys=[new_public, old_public])
    person = uuid.uuid4()
    assert auth.verify(auth.mint(old_private, person, "client"), settings).subject == person
    assert auth.verify(auth.mint(new_private, person, "therapist"), settings).role == "therapist"


async def test_endless_journey_ids_are_cut_to_what_an_event_carries(
    migrated, serve, jwt_keys
) -> None:
    """A client's own x-request-id (the gateway keeps it) or x-correlation-id of any length:
    longer than an event's envelope takes (100), every write answered 500; now each is cut
    to that, in the answer and on the events alike."""
    settings = await migrated(LEDGER)
    admin = auth.mint(jwt_keys[0], uuid.uuid4(), "admin")
    long_request, long_journey = "r" * 300, "j" * 300
    async with serve(build(LEDGER, settings, "api")) as http:
        for ids in (
            {"x-request-id": long_request},
            {"x-request-id": "req-2", "x-correlation-id": long_journey},
        ):
            answer = await http.post(
                "/reviews",
                json={"therapist_id": str(uuid.uuid4()), "rating": 5},
                headers={**bearer(admin), **ids},
            )
            assert answer.status_code == 201, answer.text
            assert len(answer.headers["x-correlation-id"]) == 100
        assert answer.headers["x-request-id"] == "req-2"


async def test_a_database_away_answers_503_and_the_request_is_served_once_it_is_back(
    migrated, serve, jwt_keys, database_dsn
) -> None:
    """Every connection of the api cut (as by a Postgres restart) and no new one to be had:
    a write answers 503 with Retry-After and a message a frontend can show, not a 500;
    with the database back, the same request is served."""
    settings = await migrated(LEDGER)
    admin = bearer(auth.mint(jwt_keys[0], uuid.uuid4(), "admin"))
    review = {"therapist_id": str(uuid.uuid4()), "rating": 4}
    async with serve(build(LEDGER, settings, "api")) as http:
        assert (await http.post("/reviews", json=review, headers=admin)).status_code == 201
        owner = await asyncpg.connect(database_dsn)
        try:
            await owner.execute(f'ALTER ROLE "{settings.role}" CONNECTION LIMIT 0')
            cut = await owner.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
                settings.role,
            )
            assert cut >= 1
            for _ in range(3):  # a connection cut under the request, then none to be had
                away = await http.post("/reviews", json=review, headers=admin)
                assert away.status_code == 503, away.text
                assert away.json() == {
                    "code": "unavailable",
                    "detail": "We could not reach our records just now; please try again"
                    " in a moment.",
                }
                assert away.headers["retry-after"] == "1"
        finally:
            await owner.execute(f'ALTER ROLE "{settings.role}" CONNECTION LIMIT -1')
            await owner.close()
        assert (await http.post("/reviews", json=review, headers=admin)).status_code == 201


def test_only_errors_of_a_database_away_are_told_apart() -> None:
    assert db.database_away(asyncpg.ConnectionDoesNotExistError("closed in the middle"))
    assert db.database_away(asyncpg.InterfaceError("cannot call fetch(): connection is closed"))
    assert db.database_away(asyncpg.TooManyConnectionsError("too many connections"))
    assert db.database_away(ConnectionRefusedError())
    assert db.database_away(OSError(113, "No route to host"))
    assert db.database_away(asyncpg.InterfaceError("pool is closing"))
    assert not db.database_away(FileNotFoundError(2, "No such file"))
    assert not db.database_away(PermissionError(13, "Permission denied"))
    assert db.database_away(
        asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation")
    )
    assert not db.database_away(asyncpg.InterfaceError("another operation is in progress"))
    assert not db.database_away(asyncpg.UniqueViolationError("duplicate key"))
    assert not db.database_away(RuntimeError("a bug"))


async def test_journey_ids_flow_from_request_to_events_to_events(
    migrated, serve, jwt_keys, kafka_bootstrap, capsys
) -> None:
    settings = await migrated(LEDGER)
    admin = auth.mint(jwt_keys[0], uuid.uuid4(), "admin")
    topics = [
        settings.topic(REGISTRY.topic(ReviewPublished)),
        settings.topic(REGISTRY.topic(TherapistAvailabilityPublished)),
    ]
    therapist = uuid.uuid4()
    async with (
        serve(build(LEDGER, settings, "api")) as http,
        serve(worker := build(LEDGER, settings, "worker")),
        TopicProbe(kafka_bootstrap, topics) as probe,
    ):
        answer = await http.post(
            "/reviews",
            json={"therapist_id": str(therapist), "rating": 5},
            headers={**bearer(admin), "x-request-id": "req-1", "x-correlation-id": "journey-7"},
        )
        assert answer.status_code == 201
        assert answer.headers["x-request-id"] == "req-1"
        assert answer.headers["x-correlation-id"] == "journey-7"

        def caused(p: TopicProbe) -> list:
            return [
                e
                for e in p.envelopes("TherapistAvailabilityPublished")
                if e.payload.therapist_id == therapist
            ]

        await probe.wait_for(lambda p: len(caused(p)) == 1)
        # The same consumer group also consumes the caused event, on its other topic.
        pool = runtime_pool(worker)
        for _ in range(100):
            seen = await pool.fetchval(
                "select count(*) from availability_seen where therapist_id = $1", therapist
            )
            if seen:
                break
            await asyncio.sleep(0.1)
        assert seen == 1
    first = next(
        e for e in probe.envelopes("ReviewPublished") if e.payload.therapist_id == therapist
    )
    assert (first.correlation_id, first.causation_id) == ("journey-7", "req-1")
    second = caused(probe)[0]
    assert second.correlation_id == "journey-7"
    assert second.causation_id == str(first.event_id)
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    request_log = next(line for line in lines if line.get("route") == "/reviews")
    assert request_log["request_id"] == "req-1"
    assert request_log["correlation_id"] == "journey-7"
    assert request_log["service"] == "ledger"
    handled = next(
        line
        for line in lines
        if line.get("event") == "event handled" and line.get("event_id") == str(first.event_id)
    )
    assert handled["correlation_id"] == "journey-7"
    assert handled["causation_id"] == "req-1"


async def test_start_up_fails_loudly_and_in_bounded_time(settings_for, serve, database_dsn) -> None:
    no_db = settings_for(
        LedgerSettings, database_url="postgresql://postgres@127.0.0.1:1/x", startup_timeout_s=2
    )
    started = time.monotonic()
    with pytest.raises(BaseException, match="Postgres|Connect|refused|Errno"):
        async with serve(build(LEDGER, no_db, "api"), timeout=20):
            pass
    assert time.monotonic() - started < 15

    no_kafka = settings_for(LedgerSettings, kafka_bootstrap="127.0.0.1:1", startup_timeout_s=2)
    await db.bootstrap_role(database_dsn, no_kafka.role, no_kafka.db_password.get_secret_value())
    started = time.monotonic()
    with pytest.raises(BaseException, match="Kafka"):
        async with serve(build(LEDGER, no_kafka, "worker"), timeout=20):
            pass
    assert time.monotonic() - started < 15
    await asyncio.sleep(0)


def test_a_worker_refuses_a_pool_too_small_for_what_it_holds(offline_settings_for) -> None:
    listening = replace(LEDGER, worker_connections_held=1)  # as a task with a LISTEN would
    assert worker_pool_floor(LEDGER) == 2 and worker_pool_floor(listening) == 3
    small = offline_settings_for(LedgerSettings, db_pool_max=2)
    with pytest.raises(ValueError, match="SAMTAL_LEDGER_DB_POOL_MAX is 2: .* set it to 3 or more"):
        build(listening, small, "worker")
    build(LEDGER, small, "worker")  # the relay's lock and one more: enough
    build(listening, offline_settings_for(LedgerSettings, db_pool_max=1), "api")  # holds none
