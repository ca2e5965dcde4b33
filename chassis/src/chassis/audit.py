"""The audit log of health-data access (DOMAIN.md, Privacy): who, whose data, what, when, why.

`record` writes the entry where the access happens, and in the same transaction an
`<Service>AccessRecorded` event (ids, role, action, resource kind, reason code: no
health content, no reason text) that notifications keeps as the person's one access
log across services. An access outside the reader's standing access (a clinician's
emergency access) carries `emergency=True`, a `reason_code` and the stated `reason`;
the reason text stays in this service.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from chassis import outbox
from contracts.events import ACCESS_RECORDED

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
    # The service is the pool's application name (chassis.db), else its schema.
    row = await conn.fetchrow(
        "INSERT INTO audit_log (actor_id, actor_role, subject_id, action, resource, resource_id,"
        " reason_code, reason, emergency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " RETURNING at, current_setting('application_name') AS app, current_schema() AS schema",
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
    assert row is not None
    event = ACCESS_RECORDED.get(row["app"]) or ACCESS_RECORDED.get(row["schema"])
    if event is None:
        raise RuntimeError(
            f"audit: no access event for service {row['app']!r} (schema {row['schema']!r})"
        )
    await outbox.add(
        conn,
        event(
            entry_id=uuid.uuid4(),
            subject_id=subject_id,
            actor_id=actor_id,
            actor_role=actor_role,
            action=action,
            resource=resource,
            resource_id=resource_id,
            reason_code=reason_code,
            emergency=emergency,
            at=row["at"],
        ),
    )


async def for_subject(conn: asyncpg.Connection, subject_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT actor_id, actor_role, action, resource, resource_id, reason_code, reason,"
        " emergency, at FROM audit_log WHERE subject_id = $1 ORDER BY at, id",
        subject_id,
    )
    return [dict(row) for row in rows]
