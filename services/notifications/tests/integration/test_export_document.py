"""The one-document export route and the overdue watch, against the real Postgres.

The happy path (every service's part fetched through the real gateway) is the end-to-end
test tests/e2e/test_export_through_the_gateway.py; here: what the route answers when it
must not or cannot give the document, and how an overdue request is seen by an operator.
"""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from chassis import db
from chassis.app import build
from chassis.auth import mint
from notifications import overdue, service, store
from notifications.app import DEFINITION


def auth(jwt_keys: Any, person: uuid.UUID) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(jwt_keys[0], person, 'client')}"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is


async def test_the_export_is_the_persons_own_and_only_once_done(migrated, serve, jwt_keys) -> None:
    # The other services' parts are asked for at a port nobody listens on.
    settings = await migrated(
        DEFINITION, export_parts_url=f"http://127.0.0.1:{closed_port()}/api/{{service}}"
    )
    person = uuid.uuid4()
    pool = await db.create_pool(settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            row, _ = await service.request_rights(conn, person, "client", "export")
        request_id = row["request_id"]
        path = f"/me/rights-requests/{request_id}/export"
        async with serve(build(DEFINITION, settings, "api")) as http:
            running = await http.get(path, headers=auth(jwt_keys, person))
            assert running.status_code == 404, running.text
            async with pool.acquire() as conn:
                await store.finish_rights_request(conn, request_id)
            stranger = await http.get(path, headers=auth(jwt_keys, uuid.uuid4()))
            assert stranger.status_code == 404
            # Done, but the other parts cannot be fetched now: 503 naming the part, never 5xx
            # of its own making, and nothing read is recorded for notifications' part.
            away = await http.get(path, headers=auth(jwt_keys, person))
            assert away.status_code == 503, away.text
            assert away.json()["code"] == "part_unavailable"
            assert "part of your export" in away.json()["detail"]
            status = await http.get(
                f"/me/rights-requests/{request_id}", headers=auth(jwt_keys, person)
            )
            assert status.json()["document"] == f"/api/notifications{path}"
            bad = await http.get("/me/rights-requests/42/export", headers=auth(jwt_keys, person))
            assert bad.status_code == 422 and "request_id" in bad.text
        reads = await pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE subject_id = $1 AND resource = 'export'",
            person,
        )
        assert reads == 0
    finally:
        await pool.close()


async def test_an_overdue_request_raises_the_gauge_and_names_what_it_waits_for(migrated) -> None:
    settings = await migrated(DEFINITION)
    pool = await db.create_pool(settings)
    now = datetime.now(UTC)
    late_person, fresh_person = uuid.uuid4(), uuid.uuid4()
    try:
        async with pool.acquire() as conn, conn.transaction():
            late, _ = await store.open_rights_request(
                conn, uuid.uuid4(), late_person, "client", "erasure", now - timedelta(hours=2)
            )
            await store.record_rights_answer(conn, late["request_id"], "catalog", {"erased": []})
            fresh, _ = await store.open_rights_request(
                conn, uuid.uuid4(), fresh_person, "client", "erasure", now + timedelta(hours=20)
            )
        async with pool.acquire() as conn:
            with capture_logs() as logs:
                rows = await overdue.check(conn, now)
        ids = {r["request_id"] for r in rows}
        assert late["request_id"] in ids and fresh["request_id"] not in ids
        gauge = REGISTRY.get_sample_value("samtal_rights_requests_overdue", {"kind": "erasure"})
        assert gauge is not None and gauge >= 1
        line = next(e for e in logs if e.get("request_id") == str(late["request_id"]))
        assert line["event"] == "rights request overdue" and line["log_level"] == "error"
        assert line["waiting_for"] == ["booking", "matching"]
        assert line["overdue_minutes"] >= 119
        assert str(late_person) not in str(line)  # the request, not the person

        # Done, it is no longer overdue.
        async with pool.acquire() as conn:
            await store.finish_rights_request(conn, late["request_id"])
            await store.finish_rights_request(conn, fresh["request_id"])
            rows = await overdue.check(conn, now)
        assert late["request_id"] not in {r["request_id"] for r in rows}
    finally:
        await pool.close()
