"""Retention: what a service may no longer keep is deleted by a periodic worker task.

Every service keeps clinical records (and the audit log of who read them) for
`CLINICAL_RETENTION` after a person's last entry (Patientdatalagen 3 kap. 17 §: at least
ten years), the inbox's dedup rows for `inbox_retention_days` (longer than any
redelivery), and sent outbox rows for `outbox_retention_hours` (the relay cleans those).
One worker of a service does a round at a time (a transaction-level advisory lock):
the work is shared, never done twice at once, and a crashed round is simply done again.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from chassis.app import BackgroundTask, Runtime
from chassis.periodic import periodic

log = structlog.get_logger("chassis.retention")

CLINICAL_RETENTION = timedelta(days=3653)  # ten years, leap days included
INBOX_RETENTION = timedelta(days=30)
EVERY = timedelta(hours=1)

# A service's own purge: deletes what has passed its retention, returns counts by kind.
Purge = Callable[[asyncpg.Connection, datetime], Awaitable[dict[str, int]]]


def _count(status: str) -> int:
    return int(status.split()[-1])


async def purge_chassis_tables(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """The inbox's dedup rows, audit entries and remembered erasures past their retention."""
    return {
        "inbox": _count(
            await conn.execute("DELETE FROM inbox WHERE processed_at < $1", now - INBOX_RETENTION)
        ),
        "audit_log": _count(
            await conn.execute("DELETE FROM audit_log WHERE at < $1", now - CLINICAL_RETENTION)
        ),
        # An erasure is remembered only against events still in flight: as long as the inbox.
        "erasures": _count(
            await conn.execute("DELETE FROM erasures WHERE erased_at < $1", now - INBOX_RETENTION)
        ),
    }


async def run_round(
    pool: asyncpg.Pool, schema: str, purge: Purge | None, now: datetime | None = None
) -> dict[str, int] | None:
    """One retention round; None when another worker is doing it right now."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        lock = zlib.crc32(f"samtal-retention-{schema}".encode())
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock):
            return None
        done = await purge_chassis_tables(conn, now)
        if purge is not None:
            done.update(await purge(conn, now))
    if any(done.values()):
        log.info("retention round", **done)
    return done


def retention_task(purge: Purge | None = None) -> BackgroundTask:
    """A worker task (ServiceDefinition.worker_tasks) running a round every hour (one that
    fails, the database away, is caught up by the next)."""

    async def round_of_retention(runtime: Runtime) -> None:
        assert runtime.pool is not None
        await run_round(runtime.pool, runtime.settings.db_schema, purge)

    return periodic("retention", lambda _: EVERY.total_seconds(), round_of_retention)
