"""Wiring: settings, the service definition, the command line (`samtal-matching ...`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chassis.app import ServiceDefinition
from chassis.cli import service_cli
from chassis.settings import ServiceSettings, service_config
from contracts.events import (
    IntakeEscalated,
    IntakeSubmitted,
    IntakeTriaged,
    IntakeWaitlisted,
    MatchApproved,
    MatchRejected,
    TherapistMatched,
)
from matching import api, handlers, service


class Settings(ServiceSettings):
    model_config = service_config("matching")  # env: SAMTAL_MATCHING_*
    service: str = "matching"
    # The waitlist is retried at once when capacity may have opened; this is the safety net.
    waitlist_retry_s: float = Field(default=30.0, gt=0)
    # How often the worker refreshes the waiting gauges (crisis triage, waitlist).
    waiting_watch_s: float = Field(default=15.0, gt=0)


DEFINITION = ServiceDefinition(
    name="matching",
    settings_class=Settings,
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router],
    consumers=handlers.consumers,
    worker_tasks=[service.keep_candidate_index, service.waitlist_retrier, service.waiting_watch],
    publishes=[
        IntakeSubmitted,
        IntakeEscalated,
        IntakeTriaged,
        IntakeWaitlisted,
        TherapistMatched,
        MatchApproved,
        MatchRejected,
    ],
    description="Intakes, screening with crisis routing, the matcher and the waitlist.",
)
cli = service_cli(DEFINITION)
