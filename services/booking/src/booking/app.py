"""Wiring of booking: settings, the service definition and its command line."""

from __future__ import annotations

from pathlib import Path

from booking import api, handlers, service
from booking.settings import Settings
from chassis import retention, rights
from chassis.app import ServiceDefinition
from chassis.cli import service_cli

__all__ = ["DEFINITION", "Settings", "cli"]

DEFINITION = ServiceDefinition(
    name="booking",
    settings_class=Settings,
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router, rights.export_router],
    consumers=handlers.consumers,
    worker_tasks=[service.summary_publisher, retention.retention_task(service.purge_expired)],
    description="Availability, treatment courses, sessions and course completion.",
)
cli = service_cli(DEFINITION)
