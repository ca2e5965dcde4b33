"""Wiring: settings, the service definition and the command line.

samtal-notifications api      contacts, the in-app inbox, failed deliveries for operators
samtal-notifications worker   event handlers (messages planned per event) and the sender
"""

from __future__ import annotations

from pathlib import Path

from chassis import retention, rights
from chassis.app import ServiceDefinition
from chassis.cli import service_cli
from contracts.events import NotificationsAccessRecorded, RightsRequested
from notifications import api, handlers, on_call, overdue, sender, service
from notifications.settings import Settings

__all__ = ["DEFINITION", "Settings", "cli"]


DEFINITION = ServiceDefinition(
    name="notifications",
    settings_class=Settings,
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router, rights.export_router],
    consumers=handlers.consumers,
    worker_tasks=[
        sender.run,
        retention.retention_task(service.purge_expired),
        overdue.watch,
        on_call.watch,
    ],
    worker_connections_held=1,  # the sender's LISTEN
    publishes=[RightsRequested, NotificationsAccessRecorded],
    description="Contacts, messages per event in the recipient's language, reminders, "
    "e-mail, SMS and the in-app inbox.",
)
cli = service_cli(DEFINITION)
