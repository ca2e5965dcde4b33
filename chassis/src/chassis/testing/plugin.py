"""pytest plugin: a real Postgres and a real Kafka-protocol broker for the whole suite.

Each test session gets its own fresh database; each test gets its own topic
prefix so tests cannot see each other's events. Which infrastructure path was
taken is printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from chassis.infra import (
    InfraSettings,
    KafkaServer,
    PostgresServer,
    provide_kafka,
    provide_postgres,
)

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
