"""What the store's modules share: the statuses that occupy time, the outbox, and the
stored answers to idempotent requests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from chassis import outbox
from contracts import EventPayload

LIVE = ("booked", "attended", "no_show")  # statuses that occupy time (the constraints' WHERE)
# The same, as SQL the planner can match to the exclusion constraints' partial indexes.
LIVE_SQL = "status IN ('booked', 'attended', 'no_show')"


# --------------------------------------------------------------------------- outbox


async def add_events(conn: asyncpg.Connection, events: Sequence[EventPayload]) -> None:
    """Many events in the caller's transaction, in one statement (as chassis.outbox adds
    them, with the correlation of the current request or event)."""
    await outbox.add_envelope(conn, *(outbox.envelope_for(event) for event in events))


# --------------------------------------------------------------------------- idempotency


async def find_answer(
    conn: asyncpg.Connection, actor_id: uuid.UUID, key: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT request_hash, response FROM idempotency_keys WHERE actor_id = $1 AND key = $2",
        actor_id,
        key,
    )


async def save_answer(
    conn: asyncpg.Connection,
    actor_id: uuid.UUID,
    key: str,
    request_hash: str,
    response: dict[str, Any],
) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (actor_id, key, request_hash, response)"
        " VALUES ($1, $2, $3, $4)",
        actor_id,
        key,
        request_hash,
        response,
    )
