"""The audit log of health-data access (DOMAIN.md, Privacy): who, whose data, what, when, why.

`record` writes the entry where the access happens. An access outside the reader's
standing access (a clinician's emergency access) carries `emergency=True`, a
`reason_code` and the stated `reason`; the reason text stays in this service.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

EMERGENCY_ACCESS = "emergency_access"


async def record(
    conn: asyncpg.Connection,
    *,
    actor_id: str,
    actor_role: str,
    subject_id: uuid.UUID,
    action: str,
    resource: str,
    resource_id: str | None = None,
    reason_code: str | None = None,
    reason: str | None = None,
    emergency: bool = False,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor_id, actor_role, subject_id, action, resource, resource_id,"
        " reason_code, reason, emergency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        actor_id,
        actor_role,
        subject_id,
        action,
        resource,
        resource_id,
        reason_code,
        reason,
        emergency,
    )


async def for_subject(conn: asyncpg.Connection, subject_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT actor_id, actor_role, action, resource, resource_id, reason_code, reason,"
        " emergency, at FROM audit_log WHERE subject_id = $1 ORDER BY at, id",
        subject_id,
    )
    return [dict(row) for row in rows]
