"""A client switches therapist: a rematch with the current therapist excluded."""

from __future__ import annotations

import uuid

import asyncpg

from chassis import audit
from matching import store
from matching.domain import lifecycle
from matching.domain.matcher import Waitlist
from matching.service.common import _now
from matching.service.decisions import ReadModelCandidates, _decide, _record_match


class NobodyToSwitchTo(Exception):
    """No other therapist fits now; the client keeps the current one."""

    def __init__(self, result: Waitlist) -> None:
        super().__init__("nobody to switch to")
        self.result = result


async def switch(
    conn: asyncpg.Connection, intake_id: uuid.UUID, client_id: uuid.UUID
) -> uuid.UUID | None:
    """Rematch with the current therapist excluded; the new match's id. None: not theirs."""
    intake = await store.get_intake(conn, intake_id, for_update=True)
    if intake is None or intake["client_id"] != client_id:
        return None
    lifecycle.switch(intake["status"])
    # Its course over, the client may have submitted another intake since: one at a time.
    newer = await store.intake_in_progress(conn, client_id, other_than=intake_id)
    if newer is not None:
        raise lifecycle.IntakeInProgress(newer)
    current = await store.current_match(conn, intake_id)
    assert current is not None, "a matched intake has a current match"
    # Marked switched first: that is what excludes the current therapist.
    await store.set_match_status(conn, current["match_id"], "switched")
    result = await _decide(conn, intake, _now(), ReadModelCandidates())
    if isinstance(result, Waitlist):
        raise NobodyToSwitchTo(result)  # the caller's transaction rolls back
    try:
        match_id = await _record_match(
            conn, intake, result, previous_therapist_id=current["therapist_id"]
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "intakes_one_at_a_time":
            raise
        # Another intake of the client's went in progress meanwhile (the caller rolls back).
        raise lifecycle.IntakeInProgress(None) from exc
    await audit.record(
        conn,
        actor_id=str(client_id),
        actor_role="client",
        subject_id=client_id,
        action="switch",
        resource="intake",
        resource_id=str(intake_id),
    )
    await store.therapist_changed(conn, current["therapist_id"])
    await store.wake_waitlist(conn)
    return match_id
