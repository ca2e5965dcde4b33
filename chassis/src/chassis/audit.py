"""The audit log of health-data access (docs/domain.md, Privacy): who, whose data, what, when."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def record(
    conn: asyncpg.Connection,
    *,
    actor_id: str,
    actor_role: str,
    subject_id: uuid.UUID,
    action: str,
    resource: str,
    resource_id: str | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor_id, actor_role, subject_id, action, resource, resource_id)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        actor_id,
        actor_role,
        subject_id,
        action,
        resource,
        resource_id,
    )


async def for_subject(conn: asyncpg.Connection, subject_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT actor_id, actor_role, action, resource, resource_id, at FROM audit_log"
        " WHERE subject_id = $1 ORDER BY at, id",
        subject_id,
    )
    return [dict(row) for row in rows]
