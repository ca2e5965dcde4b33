"""Wiring: settings, the service definition, the command line (`samtal-matching ...`)."""

from __future__ import annotations

from pathlib import Path

from chassis import retention, rights
from chassis.app import ServiceDefinition
from chassis.cli import service_cli
from contracts.events import (
    IntakeEscalated,
    IntakeSubmitted,
    IntakeTriaged,
    IntakeWaitlisted,
    MatchApproved,
    MatchingAccessRecorded,
    MatchingRightsRequestHandled,
    MatchRejected,
    TherapistMatched,
)
from matching import api, handlers, service
from matching.settings import Settings

__all__ = ["DEFINITION", "Settings", "cli"]


DEFINITION = ServiceDefinition(
    name="matching",
    settings_class=Settings,
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router, rights.export_router],
    consumers=handlers.consumers,
    worker_tasks=[
        service.keep_candidate_index,
        service.waitlist_retrier,
        service.waiting_watch,
        retention.retention_task(service.purge_expired),
    ],
    worker_connections_held=1,  # the candidate index keeper's LISTEN
    publishes=[
        IntakeSubmitted,
        IntakeEscalated,
        IntakeTriaged,
        IntakeWaitlisted,
        TherapistMatched,
        MatchApproved,
        MatchRejected,
        MatchingAccessRecorded,
        MatchingRightsRequestHandled,
    ],
    description="Intakes, screening with crisis routing, the matcher and the waitlist.",
)
cli = service_cli(DEFINITION)
