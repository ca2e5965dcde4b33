"""Erasure in notifications: contacts and messages go at once; an event about the person
still in flight from before the erasure plans nothing for them; the request is one while
it runs, and somebody else's is a 404."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chassis import db
from chassis.app import build
from chassis.auth import mint
from chassis.testing.events import a_session_booked
from chassis.testing.kafka import publish
from contracts import Envelope
from notifications.app import DEFINITION


def auth(jwt_keys: Any, person: uuid.UUID, role: str = "client") -> dict[str, str]:
    return {"authorization": f"Bearer {mint(jwt_keys[0], person, role)}"}  # type: ignore[arg-type]


def booked(client: uuid.UUID, therapist: uuid.UUID, occurred_at: datetime) -> Envelope[Any]:
    starts = datetime.now(UTC) + timedelta(days=7)
    session = a_session_booked(
        client, starts, therapist_id=therapist, ends_at=starts + timedelta(minutes=50)
    )
    return Envelope.wrap(session, occurred_at=occurred_at)


async def test_erasure_at_once_and_events_in_flight_plan_nothing_for_the_person(
    migrated, serve, jwt_keys, kafka_bootstrap, topic_prefix
) -> None:
    settings = await migrated(DEFINITION)
    client, therapist = uuid.uuid4(), uuid.uuid4()
    me = auth(jwt_keys, client)
    pool = await db.create_pool(settings)

    async def messages_to(person: uuid.UUID, event_id: uuid.UUID | None = None) -> int:
        sql = "SELECT count(*) FROM messages WHERE recipient_id = $1"
        if event_id is None:
            return int(await pool.fetchval(sql, person))
        return int(await pool.fetchval(sql + " AND event_id = $2", person, event_id))

    async def eventually(check: Any, timeout: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await check():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.1)

    try:
        async with (
            serve(build(DEFINITION, settings, "api")) as http,
            serve(build(DEFINITION, settings, "worker")),
        ):
            r = await http.put("/contacts/me", headers=me, json={"email": "ann@example.se"})
            assert r.status_code == 200
            before = booked(client, therapist, datetime.now(UTC) - timedelta(seconds=1))
            await publish(kafka_bootstrap, topic_prefix, before)

            async def planned() -> bool:
                return await messages_to(client, before.event_id) > 0

            await eventually(planned)

            # An export made before the erasure: notifications' part is there at once.
            export = await http.post("/me/rights-requests", headers=me, json={"kind": "export"})
            part = f"/me/exports/{export.json()['request_id']}"
            assert (await http.get(part, headers=me)).status_code == 200

            first = await http.post("/me/rights-requests", headers=me, json={"kind": "erasure"})
            again = await http.post("/me/rights-requests", headers=me, json={"kind": "erasure"})
            assert first.status_code == 202 and again.status_code == 200
            assert again.json()["request_id"] == first.json()["request_id"]
            request_id = first.json()["request_id"]
            other = auth(jwt_keys, uuid.uuid4())
            assert (
                await http.get(f"/me/rights-requests/{request_id}", headers=other)
            ).status_code == 404
            assert (
                await http.get(f"/me/rights-requests/{request_id}", headers=me)
            ).status_code == 200
            # At once: no contacts, no messages.
            contacts = (await http.get("/contacts/me", headers=me)).json()
            assert contacts["saved"] is False and contacts["email"] is None
            assert await messages_to(client) == 0
            # The export's copy of the contacts and messages went with them.
            assert (await http.get(part, headers=me)).status_code == 404

            # Still in flight: an event from before the erasure (redelivered, or late) plans
            # nothing for the person; the therapist still hears of it. One from after does.
            in_flight = booked(client, therapist, datetime.now(UTC) - timedelta(seconds=5))
            after = booked(client, therapist, datetime.now(UTC) + timedelta(seconds=1))
            await publish(kafka_bootstrap, topic_prefix, before, in_flight, after)

            async def therapist_told() -> bool:
                return (
                    await messages_to(therapist, in_flight.event_id) > 0
                    and await messages_to(client, after.event_id) > 0
                )

            await eventually(therapist_told)
            assert await messages_to(client, in_flight.event_id) == 0
            assert await messages_to(client, before.event_id) == 0
    finally:
        await pool.close()
