"""What the store's modules share: the statuses that occupy time, the outbox, and the
stored answers to idempotent requests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from chassis import outbox
from contracts import EventPayload

LIVE = ("booked", "attended", "no_show")  # statuses that occupy time (the constraints' WHERE)
# The same, as SQL the planner can match to the exclusion constraints' partial indexes.
LIVE_SQL = "status IN ('booked', 'attended', 'no_show')"


# --------------------------------------------------------------------------- busy times


# Busy times that come back in bulk (a calendar with a refusal, or with a listing) travel as
# microseconds since the epoch (int8 arrays), made datetimes here through a kept map: asyncpg
# makes each timestamptz a new datetime (about half a microsecond each, half a millisecond for
# a whole calendar's starts and ends), while the same few moments come back read after read.
def epoch_us_sql(column: str) -> str:
    """SQL of `column` (a timestamptz) as microseconds since the epoch (exact: numeric)."""
    return f"(extract(epoch FROM {column}) * 1000000)::int8"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MOMENTS: dict[int, datetime] = {}
_MOMENTS_KEPT = 200_000  # bounded: when full, it starts again from nothing


def moments(micros: Sequence[int] | None) -> list[datetime] | None:
    """Microseconds since the epoch (`epoch_us_sql`) as UTC datetimes (None stays None)."""
    if micros is None:
        return None
    found = list(map(_MOMENTS.get, micros))
    if not all(found):  # (a datetime is always true: only a None is not)
        if len(_MOMENTS) >= _MOMENTS_KEPT:
            _MOMENTS.clear()
        for index, at in enumerate(found):
            if at is None:
                micro = micros[index]
                at = found[index] = _MOMENTS[micro] = _EPOCH + timedelta(microseconds=micro)
    return found  # type: ignore[return-value]  # (no None left)


def with_moments(row: asyncpg.Record, names: Sequence[str]) -> dict[str, Any]:
    """`row` as a dict, its `names` columns (`epoch_us_sql` arrays) made datetimes."""
    found = dict(row)
    for name in names:
        found[name] = moments(found[name])
    return found


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
