"""Retention in notifications: finished messages and reminder changes after a year, the
access log after ten years; what is younger, and messages still to send, stay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from chassis import db, retention
from notifications import service
from notifications.app import DEFINITION as NOTIFICATIONS

YEAR_AND_A_DAY = timedelta(days=366)
ELEVEN_YEARS = timedelta(days=11 * 366)


async def test_a_round_purges_what_is_past_retention_and_keeps_the_rest(migrated) -> None:
    settings = await migrated(NOTIFICATIONS)
    pool = await db.create_pool(settings)
    now = datetime.now(UTC)
    old, recent = now - YEAR_AND_A_DAY, now - timedelta(days=30)
    messages = {name: uuid.uuid4() for name in ("old", "recent", "old_scheduled")}
    changes = {name: f"session:{uuid.uuid4()}" for name in ("old", "recent")}
    logged = {name: uuid.uuid4() for name in ("old", "recent")}
    try:
        async with pool.acquire() as conn:
            for name, at, state in (
                ("old", old, "delivered"),
                ("recent", recent, "delivered"),
                ("old_scheduled", old, "scheduled"),  # (never due: not finished, kept)
            ):
                await conn.execute(
                    "INSERT INTO messages (id, dedup_key, event_id, event_type, occurred_at,"
                    " recipient_id, recipient_role, template, purpose, priority, context,"
                    " due_at, state, delivered_at, created_at)"
                    " VALUES ($1, $2, gen_random_uuid(), 'SessionBooked', $3,"
                    " gen_random_uuid(), 'client', 'session_booked', 'booking', 'normal', '{}',"
                    " $3, $4, CASE WHEN $4 = 'delivered' THEN $3::timestamptz END, $3)",
                    messages[name],
                    f"retention:{messages[name]}",
                    at,
                    state,
                )
            for name, at in (("old", old), ("recent", recent)):
                await conn.execute(
                    "INSERT INTO reminder_changes (key_prefix, event_id, occurred_at, reason)"
                    " VALUES ($1, gen_random_uuid(), $2, 'cancelled')",
                    changes[name],
                    at,
                )
            for name, at in (("old", now - ELEVEN_YEARS), ("recent", old)):
                await conn.execute(
                    "INSERT INTO access_log (entry_id, subject_id, service, actor_id,"
                    " actor_role, action, resource, at)"
                    " VALUES (gen_random_uuid(), $1, 'matching', 'x', 'clinician', 'read',"
                    " 'intake', $2)",
                    logged[name],
                    at,
                )

        done = await retention.run_round(pool, settings.db_schema, service.purge_expired)
        assert done is not None
        assert done["messages"] >= 1 and done["reminder_changes"] >= 1
        assert done["access_log"] >= 1

        async def there(sql: str, value: object) -> bool:
            return bool(await pool.fetchval(f"SELECT EXISTS ({sql})", value))

        message = "SELECT FROM messages WHERE id = $1"
        assert not await there(message, messages["old"])
        assert await there(message, messages["recent"])
        assert await there(message, messages["old_scheduled"])
        change = "SELECT FROM reminder_changes WHERE key_prefix = $1"
        assert not await there(change, changes["old"])
        assert await there(change, changes["recent"])
        entry = "SELECT FROM access_log WHERE subject_id = $1"
        assert not await there(entry, logged["old"])
        assert await there(entry, logged["recent"])
    finally:
        await pool.close()
