"""pytest plugin: a real Postgres and a real Kafka-protocol broker for the whole suite.

Each test session gets its own fresh database; each test gets its own topic
prefix so tests cannot see each other's events. Which infrastructure path was
taken is printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import pytest

from chassis.infra import (
    InfraSettings,
    KafkaServer,
    PostgresServer,
    provide_kafka,
    provide_postgres,
)
from chassis.settings import ServiceSettings

if TYPE_CHECKING:
    from chassis.app import ServiceDefinition

S = TypeVar("S", bound=ServiceSettings)

_paths_used: dict[str, str] = {}


async def create_database(server: PostgresServer, name: str) -> str:
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.dsn_for(name)


async def drop_database(server: PostgresServer, name: str) -> None:
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def infra_settings() -> InfraSettings:
    return InfraSettings()


@pytest.fixture(scope="session")
def postgres_server(infra_settings: InfraSettings) -> Iterator[PostgresServer]:
    server = provide_postgres(infra_settings)
    _paths_used["postgres"] = server.path
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A database of this test session's own, dropped at the end."""
    name = f"samtal_test_{uuid.uuid4().hex[:12]}"
    dsn = asyncio.run(create_database(postgres_server, name))
    try:
        yield dsn
    finally:
        asyncio.run(drop_database(postgres_server, name))


@pytest.fixture(scope="session")
def kafka_server(infra_settings: InfraSettings) -> Iterator[KafkaServer]:
    server = provide_kafka(infra_settings)
    _paths_used["kafka"] = server.path
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: KafkaServer) -> str:
    return kafka_server.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix of this test's own for every topic it touches."""
    return f"t{uuid.uuid4().hex[:10]}."


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _paths_used:
        used = ", ".join(f"{k}: {v}" for k, v in sorted(_paths_used.items()))
        terminalreporter.write_line(f"samtal infrastructure used -> {used}")


# --------------------------------------------------------------------------- services


@pytest.fixture(scope="session")
def jwt_keys() -> tuple[str, str]:
    """(private PEM, public PEM) of this test session."""
    from chassis.auth import generate_keypair

    return generate_keypair()


@pytest.fixture
def settings_for(
    database_dsn: str, kafka_server: KafkaServer, topic_prefix: str, jwt_keys: tuple[str, str]
) -> Callable[..., ServiceSettings]:
    """Build a service's settings pointed at the test infrastructure and this test's topics."""
    return _settings_maker(
        database_dsn, kafka_server.bootstrap, not kafka_server.embedded, topic_prefix, jwt_keys
    )


@pytest.fixture
def offline_settings_for(
    database_dsn: str, topic_prefix: str, jwt_keys: tuple[str, str]
) -> Callable[..., ServiceSettings]:
    """Like `settings_for`, for tests whose broker is in memory (`TestKafkaBroker`): no
    broker is started, and the bootstrap address is never dialled."""
    return _settings_maker(database_dsn, "127.0.0.1:9", False, topic_prefix, jwt_keys)


def _settings_maker(
    database_dsn: str,
    bootstrap: str,
    idempotence: bool,
    topic_prefix: str,
    jwt_keys: tuple[str, str],
) -> Callable[..., ServiceSettings]:
    def make(settings_class: type[S], **overrides: Any) -> S:
        values: dict[str, Any] = dict(
            database_url=database_dsn,
            kafka_bootstrap=bootstrap,
            kafka_idempotence=idempotence,
            kafka_fetch_max_wait_ms=10,
            topic_prefix=topic_prefix,
            jwt_public_keys=[jwt_keys[1]],
            consumer_backoff_s=0.05,
            consumer_backoff_max_s=0.2,
            outbox_poll_s=0.2,
            outbox_publish_timeout_s=10,
            outbox_takeover_grace_s=12,
            # Tests run several workers in one process, all on the same host and port.
            kafka_static_membership=False,
            startup_timeout_s=15,
            log_json=True,
            metrics_port=0,  # a free port: tests run many apps at once
        )
        values.update(overrides)
        return settings_class(**values)

    return make


_migrated: set[tuple[str, str]] = set()


@pytest.fixture
def migrated(
    settings_for: Callable[..., ServiceSettings], database_dsn: str
) -> Callable[..., Awaitable[ServiceSettings]]:
    """`await migrated(definition)`: the service's role, schema and migrations, once per session;
    returns its settings for this test."""
    return _migrator(settings_for, database_dsn)


@pytest.fixture
def migrated_offline(
    offline_settings_for: Callable[..., ServiceSettings], database_dsn: str
) -> Callable[..., Awaitable[ServiceSettings]]:
    """`migrated`, for tests with the broker in memory (no broker is started)."""
    return _migrator(offline_settings_for, database_dsn)


def _migrator(
    settings_for: Callable[..., ServiceSettings], database_dsn: str
) -> Callable[..., Awaitable[ServiceSettings]]:
    from chassis import db

    async def run(definition: ServiceDefinition, **overrides: Any) -> ServiceSettings:
        settings = settings_for(definition.settings_class, **overrides)
        if (database_dsn, settings.db_schema) not in _migrated:
            await db.bootstrap_role(
                database_dsn, settings.role, settings.db_password.get_secret_value()
            )
            await asyncio.to_thread(db.migrate, settings, definition.migrations)
            _migrated.add((database_dsn, settings.db_schema))
        return settings

    return run


@pytest.fixture
def serve() -> Callable[..., AbstractAsyncContextManager[Any]]:
    """`async with serve(app) as client`: run an ASGI app's lifespan and talk HTTP to it."""
    import contextlib

    import httpx
    from asgi_lifespan import LifespanManager

    @contextlib.asynccontextmanager
    async def run(app: Any, timeout: float = 30) -> AsyncIterator[Any]:
        async with LifespanManager(app, startup_timeout=timeout, shutdown_timeout=timeout) as m:
            transport = httpx.ASGITransport(app=m.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client

    return run
