"""Wiring of booking: settings, the service definition and its command line."""

from __future__ import annotations

from pathlib import Path

from booking import api, handlers
from chassis.app import ServiceDefinition
from chassis.cli import service_cli
from chassis.settings import ServiceSettings, service_config


class Settings(ServiceSettings):
    model_config = service_config("booking")  # env: SAMTAL_BOOKING_*
    service: str = "booking"
    # `make demo` may move booking's clock forward (POST /demo/clock); never in production.
    demo_clock: bool = False


DEFINITION = ServiceDefinition(
    name="booking",
    settings_class=Settings,
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router],
    consumers=handlers.consumers,
    description="Availability, treatment courses, sessions and course completion.",
)
cli = service_cli(DEFINITION)
