"""Wiring of booking: settings, the service definition and its command line."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from booking import api, handlers, service
from chassis.app import ServiceDefinition
from chassis.cli import service_cli
from chassis.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("booking")  # env: SAMTAL_BOOKING_*
    service: str = "booking"
    # `make demo` may move booking's clock forward (POST /demo/clock); never in production.
    demo_clock: bool = False
    # How often free-slot summaries are published again as time passes.
    summary_refresh_s: float = Field(default=900, gt=0)
    # A change's summary leaves at most this long after the change (one per therapist per
    # window however many changes), plus `summary_poll_s` (how often the worker looks).
    summary_window_s: float = Field(default=1.0, ge=0)
    summary_poll_s: float = Field(default=0.25, gt=0)


DEFINITION = ServiceDefinition(
    name="booking",
    settings_class=Settings,
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router],
    consumers=handlers.consumers,
    worker_tasks=[service.summary_publisher],
    description="Availability, treatment courses, sessions and course completion.",
)
cli = service_cli(DEFINITION)
