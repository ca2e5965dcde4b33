"""The demo clock exists only when switched on, and only an admin may move it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from booking.app import DEFINITION
from chassis.app import build


async def test_the_demo_clock_is_off_unless_switched_on(migrated, serve, auth) -> None:
    admin = auth("admin", uuid.uuid4())
    settings = await migrated(DEFINITION)
    async with serve(build(DEFINITION, settings, "api")) as http:
        answer = await http.post("/demo/clock", json={"advance_hours": 24}, headers=admin)
        assert answer.status_code == 404

    demo = await migrated(DEFINITION, demo_clock=True)
    async with serve(build(DEFINITION, demo, "api")) as http:
        client = auth("client", uuid.uuid4())
        refused = await http.post("/demo/clock", json={"advance_hours": 24}, headers=client)
        assert refused.status_code == 403
        bad = await http.post("/demo/clock", json={"advance_hours": -1}, headers=admin)
        assert bad.status_code == 422
        moved = await http.post("/demo/clock", json={"advance_hours": 24 * 7}, headers=admin)
        assert moved.status_code == 200
        now = datetime.fromisoformat(moved.json()["now"])
        assert now - datetime.now(UTC) > timedelta(days=6, hours=23)
