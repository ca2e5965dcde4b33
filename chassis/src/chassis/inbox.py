"""Idempotent consumers: `(consumer, event_id)` recorded in the same transaction as the effect."""

from __future__ import annotations

import uuid

import asyncpg


async def claim(
    conn: asyncpg.Connection, consumer: str, event_id: uuid.UUID, event_type: str
) -> bool:
    """True the first time; False when this consumer has already applied the event."""
    inserted = await conn.fetchval(
        "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
        event_type,
    )
    return bool(inserted)
