"""Matching's settings (env: SAMTAL_MATCHING_*), read by every module of the service."""

from __future__ import annotations

from pydantic import Field

from chassis.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("matching")  # env: SAMTAL_MATCHING_*
    service: str = "matching"
    # The waitlist is retried at once when capacity may have opened; this is the safety net.
    waitlist_retry_s: float = Field(default=30.0, gt=0)
    # How often the worker refreshes the waiting gauges (crisis triage, waitlist).
    waiting_watch_s: float = Field(default=15.0, gt=0)
