"""What clients and clinicians read of intakes: the read use cases behind the api.

They return the stored intake with its answers and current match as domain objects
(`IntakeRead`); `responses.py` puts them into the HTTP answers' shapes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from matching import store
from matching.domain.intake import Intake
from matching.domain.matcher import Match


@dataclass(frozen=True)
class IntakeRead:
    """An intake as a reader sees it: the stored row, the answers as submitted, and its
    current match (row and matcher result) if it has one."""

    row: asyncpg.Record
    answers: Intake
    current: asyncpg.Record | None
    match: Match | None


def read_of(row: asyncpg.Record, current: asyncpg.Record | None) -> IntakeRead:
    return IntakeRead(
        row, store.intake_of(row), current, store.match_of(current) if current else None
    )


async def intake(conn: asyncpg.Connection, intake_id: uuid.UUID) -> IntakeRead | None:
    row = await store.get_intake(conn, intake_id)
    if row is None:
        return None
    return read_of(row, await store.current_match(conn, intake_id))


async def clients_intake(
    conn: asyncpg.Connection, client_id: uuid.UUID, intake_id: uuid.UUID
) -> IntakeRead | None:
    """The client's own intake; None for an unknown one or somebody else's (alike)."""
    row = await store.get_intake(conn, intake_id)
    if row is None or row["client_id"] != client_id:
        return None
    return read_of(row, await store.current_match(conn, intake_id))


async def clients_intakes(conn: asyncpg.Connection, client_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await store.intakes_of_client(conn, client_id))


async def clinician_queue(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Intakes awaiting triage (first) or approval, longest waiting first."""
    return list(await store.clinician_queue(conn, limit))
