"""A person's rights over what booking holds (GDPR art. 15/17/20; chassis.rights): their
export part, and erasure of what need not be kept; the retention job's purge."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from booking import store
from chassis import audit, retention, rights
from contracts.events import RightsRequested

# What an erasure drops here, and the clinical record it keeps for the retention period.
# Matches stay: they are matching's (kept there as the clinical record), and a proposal
# waiting for a clinician must still open its course when the approval comes.
ERASED = ["booking_request_replies"]
KEPT = ["courses", "sessions", "attendance", "phq9_totals", "matches", "audit_log"]


async def handle_rights_request(conn: asyncpg.Connection, requested: RightsRequested) -> None:
    """Export this service's part, or erase what need not be kept, and answer."""
    if requested.kind == "export":
        data = await store.personal_data(conn, requested.subject_id)
        data["access_log"] = await audit.for_subject(conn, requested.subject_id)
        courses, sessions = len(data["courses"]), len(data["sessions"])
        await rights.store_export(
            conn,
            requested,
            data,
            [
                f"Bokning: {rights.counted(courses, 'behandling', 'behandlingar')},"
                f" {rights.counted(sessions, 'session', 'sessioner')} med närvaro och PHQ-9"
            ],
            [
                f"Booking: {rights.counted(courses, 'course', 'courses')},"
                f" {rights.counted(sessions, 'session', 'sessions')} with attendance and PHQ-9"
            ],
        )
    else:
        await store.erase_requests(conn, requested.subject_id)
        await rights.record_erasure(conn, requested, erased=ERASED, kept=KEPT)


# How long the answer to a booking request is kept for a retry of it (an idempotency key):
# a retry comes within seconds or hours; a key used again after this books anew. The hourly
# delete reads the whole table: an index on its time would cost every booking (a BRIN one
# measured ~150 µs of Postgres CPU per booking with 32 at once).
IDEMPOTENCY_KEPT = timedelta(days=30)


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The retention job's part here: clinical records ten years after the last entry,
    matches that never opened a course ten years after they came, and the answers kept for
    retried requests after IDEMPOTENCY_KEPT."""
    return {
        "courses": await store.purge_expired(conn, now - retention.CLINICAL_RETENTION),
        "export_parts": await rights.purge_export_parts(conn, now),
        "idempotency_keys": await store.forget_requests(conn, now - IDEMPOTENCY_KEPT),
    }
