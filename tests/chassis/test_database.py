"""Roles, schemas and migrations: each service sees its own tables only."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import asyncpg
import pytest

from chassis import db
from chassis.testing.network import SilentHop
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


async def test_a_pooled_connection_goes_back_without_a_reset_unless_it_kept_session_state(
    migrated,
) -> None:
    settings = await migrated(LEDGER, db_pool_min=1, db_pool_max=1)
    pool = await db.create_pool(settings)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: sent.append(record.query))
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 1234")
        assert not any("RESET" in q or "UNLISTEN" in q for q in sent), sent

        async with pool.acquire() as conn:
            conn.keep_session_state()
            await conn.execute("SET synchronous_commit = off")
            await conn.execute("LISTEN ledger_test_wake")
            await conn.execute("SELECT pg_advisory_lock(4242)")
        assert any("RESET ALL" in q for q in sent), sent

        # the same (only) connection: nothing of the session was kept
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
            held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            held += " AND pid = pg_backend_pid()"
            assert not await conn.fetchval(held)
            sent.clear()
        assert not any("RESET" in q for q in sent), sent  # the mark lasted one use
    finally:
        await pool.close()


async def test_a_connection_on_demand_is_taken_when_first_needed_and_given_back(
    migrated,
) -> None:
    settings = await migrated(LEDGER, db_pool_min=1, db_pool_max=1)
    pool = await db.create_pool(settings)
    try:
        async with db.OnDemand(pool):
            # never asked for: the pool's only connection stays free for others meanwhile
            async with pool.acquire() as other:
                assert await other.fetchval("SELECT 1") == 1
        async with db.OnDemand(pool) as conn:
            first = await conn()
            assert await conn() is first  # one connection for the whole block
            assert pool.get_idle_size() == 0
        assert pool.get_idle_size() == 1
        with pytest.raises(ZeroDivisionError):
            async with db.OnDemand(pool) as conn:
                assert await (await conn()).fetchval("SELECT 2") == 2
                raise ZeroDivisionError
        assert pool.get_idle_size() == 1  # given back when the block failed too
    finally:
        await pool.close()


async def test_a_connection_listened_on_wakes_its_waiter_when_it_closes(migrated) -> None:
    settings = await migrated(LEDGER, db_pool_min=1, db_pool_max=2)
    pool = await db.create_pool(settings)
    heard: list[str] = []
    wake = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        heard.append(payload)
        wake.set()

    try:
        async with (
            pool.acquire() as conn,
            db.listening(conn, {"ledger_test_feed": on_notify}, wake, answer_within=5) as feed,
        ):
            await pool.execute("SELECT pg_notify('ledger_test_feed', 'hello')")
            await asyncio.wait_for(wake.wait(), 5)
            assert heard == ["hello"]
            feed.check()  # open: nothing to say
            wake.clear()
            await pool.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
            await asyncio.wait_for(wake.wait(), 5)  # woken by the close itself
            with pytest.raises(ConnectionError):
                feed.check()
        # Gone back to the pool without a word; the pool opens a new one next time.
        assert await pool.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
    finally:
        await pool.close()


async def client_port_of(admin: asyncpg.Pool, conn: asyncpg.Connection) -> int:
    """The port Postgres sees a connection come from (through a hop: the hop's link)."""
    port: int = await admin.fetchval(
        "SELECT client_port FROM pg_stat_activity WHERE pid = $1", conn.get_server_pid()
    )
    return port


async def finished_within(seconds: float, work: Coroutine[Any, Any, None]) -> None:
    """Runs `work`, failing if it still waits after `seconds`: waiting on a silent connection
    may be past cancelling (asyncpg shields the release of a pool's connection)."""
    task = asyncio.create_task(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        raise AssertionError(f"still waiting after {seconds:g} s")
    task.result()


@contextlib.asynccontextmanager
async def through_silent_hop(
    migrated: Any, **overrides: Any
) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool, SilentHop]]:
    """(a pool straight to Postgres, one through the hop, the hop), for LEDGER."""
    settings = await migrated(LEDGER, **overrides)
    admin = await db.create_pool(settings)
    try:
        async with SilentHop.to(settings.database_url) as hop:
            through = settings.model_copy(update={"database_url": hop.dsn(settings.database_url)})
            pool = await db.create_pool(through)
            try:
                yield admin, pool, hop
            finally:
                pool.terminate()  # (a silent link: nothing to close politely)
    finally:
        await admin.close()


async def test_a_listened_connection_that_stops_answering_is_found_dead_and_closed(
    migrated,
) -> None:
    """A connection that died without closing (a partition, a failover) says nothing: a
    waiter's probe goes unanswered, and within `answer_within` the connection is closed and
    the waiter told to listen again, instead of waiting on it for good."""
    wake = asyncio.Event()

    async def listen_until_silent(admin: asyncpg.Pool, pool: asyncpg.Pool, hop: SilentHop) -> None:
        async with (
            pool.acquire() as conn,
            db.listening(conn, {"ledger_test_feed": print}, wake, answer_within=0.5) as feed,
        ):
            assert await feed.wait(0.05) is False  # quiet, and answering
            feed.check()
            hop.silence(await client_port_of(admin, conn))
            assert await feed.wait(0.05) is False
            with pytest.raises(ConnectionError):
                feed.check()
        # Closed, it went back to the pool at once; the pool opens another.
        async with pool.acquire() as other:
            assert await other.fetchval("SELECT 1") == 1

    async with through_silent_hop(migrated, db_pool_min=1, db_pool_max=2) as hopping:
        await finished_within(5, listen_until_silent(*hopping))


async def test_a_statement_on_a_connection_that_stopped_answering_fails_within_the_timeout(
    migrated,
) -> None:
    """Every statement on a service's pool is bounded (`db_command_timeout_s`): one whose
    connection went silent fails, the connection is dropped, and the next one works. And
    Postgres is told to end the session of a client gone silent within about a minute."""

    async def ask_until_silent(admin: asyncpg.Pool, pool: asyncpg.Pool, hop: SilentHop) -> None:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW tcp_keepalives_idle") == "30"
            assert await conn.fetchval("SHOW tcp_user_timeout") == "60000"
            hop.silence(await client_port_of(admin, conn))
            with pytest.raises(TimeoutError):
                await conn.fetchval("SELECT 1")
        # Back in the pool (its reset not waited for forever), and the pool's only
        # connection is a new one.
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1

    overrides = {"db_pool_min": 1, "db_pool_max": 1, "db_command_timeout_s": 0.5}
    async with through_silent_hop(migrated, **overrides) as hopping:
        await finished_within(5, ask_until_silent(*hopping))
