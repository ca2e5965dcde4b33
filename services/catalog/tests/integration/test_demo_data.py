"""`samtal-catalog load-demo` and `load-synthetic`: through the store and the outbox, idempotent."""

from __future__ import annotations

import uuid

import asyncpg
from typer.testing import CliRunner

from catalog.app import DEFINITION, cli
from catalog.demo import demo_therapists, synthetic_therapist_id
from chassis.infra import run_blocking


async def _published(settings, ids: list[uuid.UUID]) -> tuple[int, int]:
    """(published profiles, TherapistProfilePublished events written) among these ids."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        profiles = await conn.fetchval(
            "SELECT count(*) FROM catalog.therapists"
            " WHERE status = 'published' AND therapist_id = any($1::uuid[])",
            ids,
        )
        events = await conn.fetchval(
            "SELECT count(*) FROM catalog.outbox"
            " WHERE event_type = 'TherapistProfilePublished' AND key = any($1::text[])",
            [str(i) for i in ids],
        )
    finally:
        await conn.close()
    return profiles, events


def test_the_demo_catalog_loads_once_and_again_changes_nothing(migrated) -> None:
    # A plain test: the command runs its own event loop, as on a command line.
    settings = run_blocking(migrated(DEFINITION))
    env = {"SAMTAL_CATALOG_DATABASE_URL": settings.database_url, "SAMTAL_CATALOG_LOG_JSON": "0"}
    demo_ids = [t.therapist_id for t in demo_therapists()]
    runner = CliRunner()

    first = runner.invoke(cli, ["load-demo"], env=env)
    assert first.exit_code == 0, first.output
    assert f"created {len(demo_ids)}, updated 0, unchanged 0" in first.output
    assert run_blocking(_published(settings, demo_ids)) == (len(demo_ids), len(demo_ids))

    again = runner.invoke(cli, ["load-demo"], env=env)
    assert again.exit_code == 0, again.output
    assert f"created 0, updated 0, unchanged {len(demo_ids)}" in again.output
    assert run_blocking(_published(settings, demo_ids)) == (len(demo_ids), len(demo_ids))

    seed = 4242
    synthetic = runner.invoke(
        cli, ["load-synthetic", "--count", "25", "--seed", str(seed)], env=env
    )
    assert synthetic.exit_code == 0, synthetic.output
    assert "created 25, updated 0, unchanged 0" in synthetic.output
    ids = [synthetic_therapist_id(i, seed) for i in range(25)]
    assert run_blocking(_published(settings, ids)) == (25, 25)
    refused = runner.invoke(cli, ["load-synthetic", "--count", "0"], env=env)
    assert refused.exit_code != 0
