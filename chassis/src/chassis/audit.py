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
from datetime import UTC, datetime
from typing import Any

import asyncpg

from chassis import outbox
from contracts import EventPayload
from contracts.events import ACCESS_RECORDED

EMERGENCY_ACCESS = "emergency_access"

_ENTRY_COLUMNS = (
    "actor_id, actor_role, subject_id, action, resource, resource_id, reason_code, reason,"
    " emergency, at"
)


def entry_insert(first: int) -> str:
    """INSERT of one entry passed as the ten values of `entry` from parameter `$first`,
    for a statement of the caller's (the entry in the same round trip as what it audits)."""
    values = ", ".join(f"${first + i}" for i in range(10))
    return f"INSERT INTO audit_log ({_ENTRY_COLUMNS}) VALUES ({values})"


def entry(
    service: str,
    *,
    actor_id: str,
    actor_role: str,
    subject_id: uuid.UUID,
    action: str,
    resource: str,
    resource_id: str | None = None,
) -> tuple[tuple[Any, ...], EventPayload]:
    """The values of `entry_insert` and the service's access event, as `record` writes
    them, for an entry written in one statement with the change it audits; the caller
    writes the event with that change. The entry's time is taken here."""
    at = datetime.now(UTC)
    values = (actor_id, actor_role, subject_id, action, resource, resource_id, None, None, False)
    recorded = ACCESS_RECORDED[service](
        entry_id=uuid.uuid4(),
        subject_id=subject_id,
        actor_id=actor_id,
        actor_role=actor_role,
        action=action,
        resource=resource,
        resource_id=resource_id,
        reason_code=None,
        emergency=False,
        at=at,
    )
    return (*values, at), recorded


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


async def for_subject(
    conn: asyncpg.Connection, subject_id: uuid.UUID, newest: int | None = None
) -> list[dict[str, Any]]:
    """The person's entries, oldest first: all of them (an export), or the `newest` few."""
    columns = (
        "actor_id, actor_role, action, resource, resource_id, reason_code, reason, emergency, at"
    )
    if newest is None:
        rows = await conn.fetch(
            f"SELECT {columns} FROM audit_log WHERE subject_id = $1 ORDER BY at, id", subject_id
        )
    else:
        rows = await conn.fetch(
            f"SELECT {columns} FROM (SELECT {columns}, id FROM audit_log WHERE subject_id = $1"
            " ORDER BY at DESC, id DESC LIMIT $2) AS newest ORDER BY at, id",
            subject_id,
            newest,
        )
    return [dict(row) for row in rows]
