"""Submitting an intake: screened and stored, IntakeSubmitted (and IntakeEscalated) with it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from chassis import audit
from contracts.events import (
    IntakeEscalated,
    IntakeSubmitted,
    MatchingAccessRecorded,
)
from matching import store
from matching.domain import lifecycle
from matching.domain.intake import Intake
from matching.domain.lifecycle import IntakeStatus
from matching.domain.screening import Screening, screen_intake


@dataclass(frozen=True)
class Submitted:
    intake_id: uuid.UUID
    screening: Screening
    status: IntakeStatus


async def submit(conn: asyncpg.Connection, client_id: uuid.UUID, intake: Intake) -> Submitted:
    """Screen and store an intake; the matcher picks it up from IntakeSubmitted.

    It replaces the client's intake still waiting for a therapist, if any (the newest
    answers win). Raises ScreeningRefused (under 12), or IntakeInProgress (the client has
    one that holds or awaits a place: a high-risk intake is taken all the same), before
    anything is stored. Its own transaction.
    """
    screening = screen_intake(intake)
    intake_id = uuid.uuid4()
    status = lifecycle.status_on_submit(screening)
    events: list[IntakeSubmitted | IntakeEscalated] = [
        IntakeSubmitted(
            intake_id=intake_id,
            client_id=client_id,
            age_group=screening.age_group,
            method=screening.method,
            problem_areas=list(intake.problem_areas),
            severity_band=screening.band,
            risk_level=screening.risk_level,
            requires_approval=screening.requires_approval,
            preferred_mode=intake.preferred_mode,
            direct_therapist_id=intake.direct_therapist_id,
        )
    ]
    if screening.escalate:
        events.append(
            IntakeEscalated(intake_id=intake_id, client_id=client_id, severity_band=screening.band)
        )
    try:
        async with conn.transaction():
            # The newest answers win: an intake still waiting for a therapist gives way.
            await store.replace_waiting(conn, client_id)
            if not screening.escalate:  # (a crisis is taken whatever else is open)
                in_progress = await store.intake_in_progress(conn, client_id)
                lifecycle.check_one_at_a_time(screening, in_progress)
            # The intake, its audit entry and the events in one statement.
            await store.insert_intake(
                conn,
                intake_id=intake_id,
                client_id=client_id,
                intake=intake,
                screening=screening,
                status=status,
                events=events,
                audit_entry=audit.entry(
                    MatchingAccessRecorded.producer,
                    actor_id=str(client_id),
                    actor_role="client",
                    subject_id=client_id,
                    action="create",
                    resource="intake",
                    resource_id=str(intake_id),
                ),
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "intakes_one_at_a_time":
            raise
        # Another submission of the client's committed meanwhile (sent at once).
        raise lifecycle.IntakeInProgress(await store.intake_in_progress(conn, client_id)) from exc
    return Submitted(intake_id, screening, status)
