"""The service's use cases beyond planning messages per event: a person's rights over
their data (GDPR art. 15, 17, 20) across the platform. Each runs in the caller's
transaction.

A request (export or erasure) is taken here: notifications does its own part at once
(its export part; or erasing contacts, channel choices and messages), and announces
`RightsRequested` (ids and the kind only). Catalog, matching and booking do theirs
(chassis.rights) and answer; when all have, the request is done and the person gets a
notice in the inbox (and by e-mail when they have an address): the export is ready, or
what was erased and what is kept and why. A request answers within `rights_due_hours`
(an alert can watch `due_at`); a repeated request while one runs is that same request.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from chassis import audit, outbox, retention, rights
from contracts import Envelope
from contracts.events import RIGHTS_REQUEST_HANDLED, RightsRequested
from notifications import store
from notifications.domain.plan import NotificationPlan, RecipientRole, plan_rights_notice

RightsKind = Literal["export", "erasure"]
# Every service that holds a person's data besides this one, and so must answer.
ANSWERING = frozenset(RIGHTS_REQUEST_HANDLED)
ERASED = ["contacts", "channel_preferences", "messages"]
KEPT = ["access_log"]
DUE_AFTER = timedelta(hours=24)
# Delivered messages stay in the inbox this long, then the retention job deletes them.
MESSAGES_KEPT_FOR = timedelta(days=365)


async def request_rights(
    conn: asyncpg.Connection, person_id: uuid.UUID, role: RecipientRole, kind: RightsKind
) -> tuple[asyncpg.Record, bool]:
    """The person's request of this kind: the running one, or a new one started now;
    (row, created)."""
    now = datetime.now(UTC)
    row, created = await store.open_rights_request(
        conn, uuid.uuid4(), person_id, role, kind, now + DUE_AFTER
    )
    if not created:
        return row, False
    requested = RightsRequested(request_id=row["request_id"], subject_id=person_id, kind=kind)
    if kind == "export":
        data = await store.personal_data(conn, person_id)
        messages = len(data["messages"])
        document = rights.export_document(
            "notifications",
            person_id,
            data,
            [f"Meddelanden: kontaktuppgifter, {messages} meddelanden, åtkomstloggen"],
            [f"Notifications: contact details, {messages} messages, the access log"],
        )
        await rights.save_export_part(conn, row["request_id"], person_id, document)
    else:
        await store.erase_person(conn, person_id, now)
    await audit.record(
        conn,
        actor_id=str(person_id),
        actor_role=role,
        subject_id=person_id,
        action=kind,
        resource="personal_data",
        resource_id=str(row["request_id"]),
    )
    await outbox.add(conn, requested)
    return row, True


async def rights_answered(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
    """A service did its part; when all have, the request is done and the person told."""
    answer = event.payload
    row = await store.rights_request(conn, answer.request_id, for_update=True)
    if row is None or row["status"] == "done":
        return  # not ours, or already told
    await store.record_rights_answer(
        conn,
        answer.request_id,
        event.producer,
        {"exported": answer.exported, "erased": answer.erased, "kept": answer.kept},
    )
    row = await store.rights_request(conn, answer.request_id)
    assert row is not None
    answers: dict[str, dict[str, list[str]]] = dict(row["answers"])
    if not ANSWERING <= set(answers):
        return
    await store.finish_rights_request(conn, answer.request_id)
    if row["kind"] == "erasure":
        answers["notifications"] = {"erased": ERASED, "kept": KEPT}
    else:
        answers["notifications"] = {"exported": ["contacts", "messages", "access_log"]}
    notice = plan_rights_notice(
        row["request_id"], row["subject_id"], row["requester_role"], row["kind"], answers
    )
    await store.save_plan(conn, event, NotificationPlan(messages=[notice]))


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The retention job's part here: delivered messages after a year, export parts after
    30 days, the access log and finished requests ten years on."""
    done = await store.purge_expired(
        conn, now - MESSAGES_KEPT_FOR, now - retention.CLINICAL_RETENTION
    )
    done["export_parts"] = await rights.purge_export_parts(conn, now)
    return done
