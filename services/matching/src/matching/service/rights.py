"""Patient rights: this service's part of an export or an erasure, and the retention purge."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from chassis import audit, retention, rights
from contracts.events import (
    RightsRequested,
)
from matching import store

# What an erasure empties here, and what it keeps as the clinical record (and why: the
# notice in notifications says it in words).
ERASED = ["intake_free_text", "intake_city", "intake_time_windows", "intake_meeting_preference"]
KEPT = ["intake_screening", "matches", "triage", "audit_log"]


async def handle_rights_request(conn: asyncpg.Connection, requested: RightsRequested) -> None:
    """Export this service's part, or erase what need not be kept, and answer."""
    if requested.kind == "export":
        data = await store.personal_data(conn, requested.subject_id)
        data["access_log"] = await audit.for_subject(conn, requested.subject_id)
        intakes, matches = len(data["intakes"]), len(data["matches"])
        count = rights.counted
        await rights.store_export(
            conn,
            requested,
            data,
            [
                f"Matchning: {count(intakes, 'förfrågan', 'förfrågningar')} (svar, fritext,"
                f" screening), {count(matches, 'matchning', 'matchningar')}, vilka som läst dem"
            ],
            [
                f"Matching: {count(intakes, 'intake', 'intakes')} (answers, free text,"
                f" screening), {count(matches, 'match', 'matches')}, who read them"
            ],
        )
    else:
        await store.erase_free_text(conn, requested.subject_id)
        await rights.record_erasure(conn, requested, erased=ERASED, kept=KEPT)


async def purge_expired(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The retention job's part here: clinical records ten years after the last entry."""
    return {
        "intakes": await store.purge_expired(conn, now - retention.CLINICAL_RETENTION),
        "export_parts": await rights.purge_export_parts(conn, now),
    }
