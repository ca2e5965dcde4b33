"""The test infrastructure's own paths, each exercised where it can run here."""

import asyncio

import asyncpg
import pytest

from chassis.infra import (
    InfraSettings,
    docker_answers,
    kafka_answers,
    provide_kafka,
    provide_postgres,
    start_embedded_kafka,
    start_throwaway_postgres,
)


def test_postgres_from_settings_is_used_as_given() -> None:
    server = provide_postgres(InfraSettings(postgres_dsn="postgresql://u@db.example:5432/x"))
    assert server.path == "settings"
    assert server.admin_dsn == "postgresql://u@db.example:5432/x"
    assert server.dsn_for("other") == "postgresql://u@db.example:5432/other"


def test_kafka_from_settings_is_used_as_given() -> None:
    server = provide_kafka(InfraSettings(kafka_bootstrap="kafka.example:9092"))
    assert (server.path, server.bootstrap) == ("settings", "kafka.example:9092")


def test_without_docker_the_local_server_is_chosen(postgres_server) -> None:
    if docker_answers():
        pytest.skip("a Docker engine answers: the container path is taken instead")
    assert postgres_server.path in ("local", "throwaway", "settings")


async def test_the_session_database_is_fresh_and_our_own(database_dsn) -> None:
    conn = await asyncpg.connect(database_dsn)
    try:
        name = await conn.fetchval("select current_database()")
        tables = await conn.fetchval(
            "select count(*) from information_schema.tables where table_schema='public'"
        )
    finally:
        await conn.close()
    assert name.startswith("samtal_test_")
    assert tables == 0


def test_a_throwaway_cluster_starts_answers_and_is_removed() -> None:
    server = start_throwaway_postgres()
    try:

        async def probe() -> int:
            conn = await asyncpg.connect(server.admin_dsn)
            try:
                return await conn.fetchval("select 1")
            finally:
                await conn.close()

        assert asyncio.run(probe()) == 1
    finally:
        server.stop()

    async def gone() -> None:
        await asyncpg.connect(server.admin_dsn, timeout=2)

    with pytest.raises((OSError, asyncpg.PostgresError)):
        asyncio.run(gone())


def test_an_embedded_broker_starts_answers_and_stops() -> None:
    server = start_embedded_kafka()
    assert server.embedded
    assert asyncio.run(kafka_answers(server.bootstrap))
    server.stop()
    assert not asyncio.run(kafka_answers(server.bootstrap, timeout=1))


def test_the_session_broker_answers(kafka_server) -> None:
    assert asyncio.run(kafka_answers(kafka_server.bootstrap))


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers on this machine")
def test_containers_are_used_when_docker_answers() -> None:
    pg = provide_postgres(InfraSettings())
    kafka = provide_kafka(InfraSettings())
    try:
        assert (pg.path, kafka.path) == ("container", "container")
    finally:
        pg.stop()
        kafka.stop()


_prefixes_seen: list[str] = []


@pytest.mark.parametrize("round_", [1, 2, 3])
def test_topic_prefixes_differ_per_test(topic_prefix, round_) -> None:
    assert topic_prefix.startswith("t") and topic_prefix.endswith(".")
    assert topic_prefix not in _prefixes_seen
    _prefixes_seen.append(topic_prefix)
