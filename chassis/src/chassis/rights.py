"""A person's rights over their data across services (GDPR art. 15, 17, 20): the part every
service plays in an export or an erasure, the same way in each.

Notifications takes the request (`RightsRequested`: ids and the kind only). Every service
that holds the person's data then, in the transaction of its inbox row:
- export: builds its part of the export (`{"service", "generated_at", "data", "summary"}`)
  from its own tables and stores it here (`export_parts`); the person fetches it through
  the gateway (`GET /api/<service>/me/exports/{request_id}`, router below). Health content
  never travels on a topic.
- erasure: erases at once what the law does not require it to keep and lists, as codes,
  what it erased and what it keeps (clinical records, for `CLINICAL_RETENTION`).
and answers with its `<Service>RightsRequestHandled` (codes only), from which notifications
tells the person that the export is ready, or what was erased and what is kept and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from chassis import audit, outbox
from chassis.app import pool_of
from chassis.auth import Principal, require
from chassis.errors import NotFound
from chassis.http import SIGNED_IN, problems
from contracts.events import RIGHTS_REQUEST_HANDLED, RightsRequested

# An export part waits this long for its person, then the retention job deletes it.
EXPORT_KEPT_FOR = timedelta(days=30)


async def _service_of(conn: asyncpg.Connection) -> str:
    row = await conn.fetchrow(
        "SELECT current_setting('application_name') AS app, current_schema() AS schema"
    )
    assert row is not None
    for name in (row["app"], row["schema"]):
        if name in RIGHTS_REQUEST_HANDLED:
            return str(name)
    raise RuntimeError(f"rights: no answer event for service {row['app']!r}")


def counted(n: int, one: str, many: str) -> str:
    """`1 omdöme`, `2 omdömen`: a count in a summary's words."""
    return f"{n} {one if n == 1 else many}"


def export_document(
    service: str,
    subject_id: uuid.UUID,
    data: Mapping[str, Any],
    summary_sv: Sequence[str],
    summary_en: Sequence[str],
) -> dict[str, Any]:
    """One service's part: machine-readable `data` and a human-readable summary in sv/en."""
    return {
        "service": service,
        "subject_id": str(subject_id),
        "generated_at": datetime.now(UTC).isoformat(),
        "data": to_jsonable_python(dict(data)),
        "summary": {"sv": list(summary_sv), "en": list(summary_en)},
    }


async def save_export_part(
    conn: asyncpg.Connection, request_id: uuid.UUID, subject_id: uuid.UUID, document: Any
) -> None:
    await conn.execute(
        "INSERT INTO export_parts (request_id, subject_id, document) VALUES ($1, $2, $3)"
        " ON CONFLICT (request_id) DO NOTHING",
        request_id,
        subject_id,
        document,
    )


async def store_export(
    conn: asyncpg.Connection,
    requested: RightsRequested,
    data: Mapping[str, Any],
    summary_sv: Sequence[str],
    summary_en: Sequence[str],
) -> None:
    """Store this service's export part, audit it, and say it is ready."""
    service = await _service_of(conn)
    document = export_document(service, requested.subject_id, data, summary_sv, summary_en)
    await save_export_part(conn, requested.request_id, requested.subject_id, document)
    await _answer(conn, service, requested, exported=sorted(data))


async def record_erasure(
    conn: asyncpg.Connection,
    requested: RightsRequested,
    *,
    erased: Sequence[str],
    kept: Sequence[str],
) -> None:
    """Remember the erasure (`erased_since`), audit it and say what was erased and kept."""
    await remember_erasure(conn, requested.subject_id)
    await _answer(conn, await _service_of(conn), requested, erased=erased, kept=kept)


async def remember_erasure(conn: asyncpg.Connection, subject_id: uuid.UUID) -> None:
    """Remember the erasure, and drop the person's export parts made before it: a copy of
    what was just erased must not wait here for its 30 days."""
    await conn.execute("DELETE FROM export_parts WHERE subject_id = $1", subject_id)
    await conn.execute(
        "INSERT INTO erasures (subject_id, erased_at) VALUES ($1, now())"
        " ON CONFLICT (subject_id) DO UPDATE SET erased_at = EXCLUDED.erased_at",
        subject_id,
    )


async def erased_since(
    conn: asyncpg.Connection, subject_id: uuid.UUID, occurred_at: datetime
) -> bool:
    """Whether the person's data was erased here after `occurred_at`: an event from before
    the erasure, arriving only now, must not bring back what the erasure took."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM erasures WHERE subject_id = $1 AND erased_at >= $2)",
        subject_id,
        occurred_at,
    )
    return found


async def _answer(
    conn: asyncpg.Connection,
    service: str,
    requested: RightsRequested,
    *,
    exported: Sequence[str] = (),
    erased: Sequence[str] = (),
    kept: Sequence[str] = (),
) -> None:
    """Audit what was done for the request (by the system, on the person's asking) and
    answer it."""
    await audit.record(
        conn,
        actor_id="system",
        actor_role="system",
        subject_id=requested.subject_id,
        action=requested.kind,
        resource="personal_data",
        resource_id=str(requested.request_id),
    )
    await outbox.add(
        conn,
        RIGHTS_REQUEST_HANDLED[service](
            request_id=requested.request_id,
            subject_id=requested.subject_id,
            kind=requested.kind,
            exported=list(exported),
            erased=list(erased),
            kept=list(kept),
        ),
    )


async def export_part(
    conn: asyncpg.Connection, request_id: uuid.UUID, subject_id: uuid.UUID
) -> dict[str, Any] | None:
    document: dict[str, Any] | None = await conn.fetchval(
        "SELECT document FROM export_parts WHERE request_id = $1 AND subject_id = $2",
        request_id,
        subject_id,
    )
    return document


async def purge_export_parts(conn: asyncpg.Connection, now: datetime) -> int:
    status = await conn.execute(
        "DELETE FROM export_parts WHERE created_at < $1", now - EXPORT_KEPT_FOR
    )
    return int(status.split()[-1])


Client = Annotated[Principal, Depends(require("client", "therapist", "clinician"))]
export_router = APIRouter()


class ExportSummary(BaseModel):
    sv: list[str]
    en: list[str]


class ExportPart(BaseModel):
    """One service's part of a person's export: its data as JSON, and a summary in words."""

    service: str
    subject_id: uuid.UUID
    generated_at: datetime
    data: dict[str, Any]
    summary: ExportSummary


@export_router.get(
    "/me/exports/{request_id}",
    response_model=ExportPart,
    responses=problems(*SIGNED_IN, 404, 422),
    tags=["privacy"],
)
async def my_export_part(request_id: uuid.UUID, request: Request, who: Client) -> dict[str, Any]:
    """This service's part of your data export (GDPR art. 15/20): JSON data and a summary
    in sv/en. Somebody else's export, or one not ready yet, answers 404."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        document = await export_part(conn, request_id, who.subject)
        if document is None:
            raise NotFound("No such export (yet): it is ready when the inbox says so")
        await audit.record(
            conn,
            actor_id=who.id,
            actor_role=who.role,
            subject_id=who.subject,
            action="read",
            resource="export",
            resource_id=str(request_id),
        )
    return document
