"""Booking's settings (env: SAMTAL_BOOKING_*), read by every module of the service."""

from __future__ import annotations

from pydantic import Field

from chassis.settings import PlanCacheMode, ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("booking")  # env: SAMTAL_BOOKING_*
    service: str = "booking"
    # `make demo` may move booking's clock forward (POST /demo/clock); never in production.
    demo_clock: bool = False
    # The booking path's statements each have one plan good for any parameters (see
    # store.claims): planned once per connection, not afresh at every call as "auto" went on
    # doing for many of them (a quarter of Postgres's time under contention went to planning).
    db_plan_cache_mode: PlanCacheMode = "force_generic_plan"
    # How often free-slot summaries are published again as time passes.
    summary_refresh_s: float = Field(default=900, gt=0)
    # A change's summary leaves at most this long after the change (one per therapist per
    # window however many changes), plus `summary_poll_s` (how often the worker looks).
    summary_window_s: float = Field(default=1.0, ge=0)
    summary_poll_s: float = Field(default=0.25, gt=0)
