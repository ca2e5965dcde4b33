"""Wiring of the catalog: settings, the service definition and its command line.

`samtal-catalog api | worker | migrate | dead-letters | load-demo | load-synthetic`
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated

import typer

from catalog import api, handlers, service
from catalog.demo import demo_therapists, synthetic_profiles, synthetic_therapist_id
from catalog.domain.profile import TherapistProfile
from catalog.settings import Settings
from chassis import db, retention, rights
from chassis.app import ServiceDefinition
from chassis.cli import service_cli

__all__ = ["DEFINITION", "Settings", "cli"]

DEFINITION = ServiceDefinition(
    name="catalog",
    settings_class=Settings,
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router, rights.export_router],
    consumers=handlers.consumers,
    worker_tasks=[retention.retention_task(service.purge_expired)],
    description="Therapists, methods and verified reviews.",
)


async def load_profiles(
    settings: Settings, entries: list[tuple[uuid.UUID, TherapistProfile]]
) -> service.LoadResult:
    """Write profiles through the store and the outbox (the worker's relay publishes them)."""
    pool = await db.create_pool(settings)
    try:
        return await service.load(pool, entries)
    finally:
        await pool.close()


def demo_entries() -> list[tuple[uuid.UUID, TherapistProfile]]:
    return [(t.therapist_id, t.profile) for t in demo_therapists()]


def synthetic_entries(count: int, seed: int = 0) -> list[tuple[uuid.UUID, TherapistProfile]]:
    profiles = synthetic_profiles(count, seed)
    return [(synthetic_therapist_id(i, seed), p) for i, p in enumerate(profiles)]


cli = service_cli(DEFINITION)


def _report(result: service.LoadResult) -> None:
    typer.echo(f"created {result.created}, updated {result.updated}, unchanged {result.unchanged}")


@cli.command("load-demo")
def load_demo() -> None:
    """Load the demo catalog (fixed ids, published); running it again changes nothing."""
    _report(asyncio.run(load_profiles(Settings(), demo_entries())))


@cli.command("load-synthetic")
def load_synthetic(
    count: Annotated[int, typer.Option(min=1, help="how many profiles")] = 10_000,
    seed: Annotated[int, typer.Option(help="the same seed gives the same profiles")] = 0,
) -> None:
    """Load generated, published profiles for benchmarks (stable ids per seed)."""
    _report(asyncio.run(load_profiles(Settings(), synthetic_entries(count, seed))))
