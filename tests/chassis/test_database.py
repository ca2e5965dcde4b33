"""Roles, schemas and migrations: each service sees its own tables only."""

import asyncpg
import pytest

from chassis import db
from tests.chassis.ledger import LEDGER, LedgerSettings


class OtherSettings(LedgerSettings):
    service: str = "ledger_neighbour"


async def test_migrations_land_in_the_services_schema_with_its_own_version_table(migrated) -> None:
    settings = await migrated(LEDGER)
    conn = await asyncpg.connect(db.service_dsn(settings))
    try:
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "select table_name from information_schema.tables where table_schema = $1",
                settings.db_schema,
            )
        }
        versions = [r["version"] for r in await conn.fetch("select version from schema_migrations")]
    finally:
        await conn.close()
    assert {"outbox", "inbox", "audit_log", "entries", "submissions", "schema_migrations"} <= tables
    assert "20260201000000" in versions and "20260101000001" in versions


async def test_migrate_twice_is_a_no_op(migrated) -> None:
    settings = await migrated(LEDGER)
    output = db.migrate(settings, LEDGER.migrations)
    assert "Applying" not in output


async def test_a_services_role_cannot_read_another_services_tables(
    migrated, settings_for, database_dsn
) -> None:
    ledger = await migrated(LEDGER)
    neighbour = settings_for(OtherSettings)
    await db.bootstrap_role(database_dsn, neighbour.role, "pw")
    own = await asyncpg.connect(db.service_dsn(neighbour))
    try:
        await own.execute("create table if not exists private_notes (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await own.fetch(f"select * from {ledger.db_schema}.entries")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await own.execute("create table public.sneaky (id int)")
    finally:
        await own.close()
    intruder = await asyncpg.connect(db.service_dsn(ledger))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await intruder.fetch(f"select * from {neighbour.db_schema}.private_notes")
    finally:
        await intruder.close()


async def test_a_pool_gives_up_loudly_when_postgres_is_away(settings_for) -> None:
    settings = settings_for(
        LedgerSettings, database_url="postgresql://postgres@127.0.0.1:1/none", startup_timeout_s=2
    )
    with pytest.raises((OSError, TimeoutError)):
        await db.create_pool(settings)
