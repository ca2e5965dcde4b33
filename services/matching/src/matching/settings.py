"""Matching's settings (env: SAMTAL_MATCHING_*), read by every module of the service."""

from __future__ import annotations

import uuid

from pydantic import Field, model_validator

from chassis.settings import ServiceSettings, service_config
from contracts.oncall import OnCallRoster, OnCallShift


class Settings(ServiceSettings):
    model_config = service_config("matching")  # env: SAMTAL_MATCHING_*
    service: str = "matching"
    # The waitlist is retried at once when capacity may have opened; this is the safety net.
    waitlist_retry_s: float = Field(default=30.0, gt=0)
    # How often the worker refreshes the waiting gauges (crisis triage, waitlist).
    waiting_watch_s: float = Field(default=15.0, gt=0)
    # The on-call roster (the same as notifications'): the clinicians who may open escalated
    # intakes without stating a reason (domain/access.py). Unset: every clinician may.
    on_call_clinicians: list[uuid.UUID] = Field(default_factory=list)
    on_call_shifts: list[OnCallShift] = Field(default_factory=list)

    @model_validator(mode="after")
    def _roster_is_valid(self) -> Settings:
        self.on_call_roster  # noqa: B018 - a bad roster fails at start
        return self

    @property
    def on_call_roster(self) -> OnCallRoster | None:
        if not self.on_call_clinicians:
            return None
        return OnCallRoster(clinician_ids=self.on_call_clinicians, shifts=self.on_call_shifts)
