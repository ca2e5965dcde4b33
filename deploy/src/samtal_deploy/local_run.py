"""`make run`: the whole platform on one machine, behind the real gateway.

Infrastructure as the tests find it (chassis.infra): Postgres and Kafka from
SAMTAL_INFRA_POSTGRES_DSN / SAMTAL_INFRA_KAFKA_BOOTSTRAP when given, else a
container when Docker answers, else the local Postgres (or a throwaway cluster)
and the embedded Kafka-protocol broker. Then: roles, schemas and migrations of
every service, the demo catalog, each service's `api` (as many replicas as asked,
balanced by the gateway) and `worker`, a local mail catcher (a real SMTP server
writing a Maildir) and the Envoy gateway. Ctrl-C stops every process it started.

It says what it reuses: the database (and how much is in it), the key pair in
`<run-dir>/keys`, the mail already caught. `--fresh` starts from an empty database
(dropped and created again). Booking's demo clock starts at real time on every run.

    samtal-deploy run [--port 8080] [--run-dir .run] [--replicas 2]
        [--replicas matching=3,catalog=2] [--fresh]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from chassis.auth import generate_keypair
from chassis.infra import (
    KafkaServer,
    PostgresServer,
    free_port,
    port_open,
    provide_kafka,
    provide_postgres,
    run_blocking,
)
from samtal_deploy.gateway import render as gateway_render
from samtal_deploy.gateway import run as gateway_run
from samtal_deploy.services import SERVICES

# The on-call clinician of the local run (the demo mints their token).
ON_CALL_CLINICIAN = "00000000-0000-4000-8000-00000000c11c"
# Each service has a block of ten ports: api replica r on +1+2r (its metrics on the next
# port), the worker on +2 (after the first api, as before replicas existed).
MAX_REPLICAS = 4


def free_block(size: int = 50) -> int:
    """The first port of `size` free loopback ports, below the range the kernel hands out
    to outgoing connections (one of those could take a port between check and bind)."""
    import random
    import socket

    low = 20000
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_ephemeral = 32768
    for _ in range(100):
        base = random.randrange(low, max(low + 100, low_ephemeral - size), 100)
        try:
            for port in range(base, base + size):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def cli_of(service: str) -> str:
    return str(Path(sys.executable).parent / f"samtal-{service}")


@dataclass
class Platform:
    run_dir: Path
    gateway_url: str
    kafka_bootstrap: str
    database_url: str
    topic_prefix: str
    private_key: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    mail_dir: Path | None = None
    # The running Envoy: its counters say what the gateway retried.
    gateway: gateway_run.Gateway | None = None
    # How each process was started, to start it again (`restart`).
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    _stops: list[Callable[[], Any]] = field(default_factory=list, repr=False)

    def api_replicas(self, service: str) -> list[str]:
        return [n for n in self.processes if n.split("-api")[0] == service and "-api" in n]

    def kill(self, name: str) -> None:
        """Kill one process at once (SIGKILL), as a crash would."""
        process = self.processes[name]
        if process.poll() is None:
            process.kill()
            process.wait(10)

    def restart(self, name: str, timeout_s: float = 60) -> None:
        """Start a stopped process again with its command and settings; wait until ready."""
        command, env = self.commands[name]
        log = self.run_dir / "logs" / f"{name}.log"
        self.processes[name] = subprocess.Popen(
            command,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_ready(name, self.ports[name], self.processes[name], log, time.monotonic() + timeout_s)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        while self._stops:
            try:
                self._stops.pop()()
            except Exception as exc:  # keep stopping the rest
                print(f"  (while stopping: {exc})", file=sys.stderr)

    def state(self) -> dict[str, Any]:
        """What `make demo` needs to find the running platform."""
        return {
            "gateway_url": self.gateway_url,
            "kafka_bootstrap": self.kafka_bootstrap,
            "topic_prefix": self.topic_prefix,
            "private_key_file": str(self.run_dir / "keys" / "private.pem"),
            "mail_dir": str(self.mail_dir) if self.mail_dir else None,
            "on_call_clinician": ON_CALL_CLINICIAN,
        }


def _keys(run_dir: Path) -> tuple[str, str]:
    keys = run_dir / "keys"
    private, public = keys / "private.pem", keys / "public.pem"
    if not (private.exists() and public.exists()):
        keys.mkdir(parents=True, exist_ok=True)
        pem_private, pem_public = generate_keypair()
        private.write_text(pem_private)
        private.chmod(0o600)
        public.write_text(pem_public)
    return private.read_text(), public.read_text()


async def _drop_database(server: PostgresServer, name: str) -> None:
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _ensure_database(server: PostgresServer, name: str, *, fresh: bool) -> tuple[str, str]:
    """The database's DSN and what happened to it: created, emptied or reused."""
    conn = await asyncpg.connect(server.admin_dsn)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if exists and fresh:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not exists or fresh:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    what = "emptied (--fresh)" if exists and fresh else ("created" if not exists else "reused")
    return server.dsn_for(name), what


# What `make run` counts in a reused database, to say what state it starts from.
STATE_COUNTS = {
    "therapists": "catalog.therapists",
    "intakes": "matching.intakes",
    "courses": "booking.courses",
    "sessions": "booking.sessions",
    "contacts": "notifications.contacts",
    "messages": "notifications.messages",
}


async def _reused_state(database_url: str) -> tuple[dict[str, int], float]:
    """How many rows the main tables hold, and how far the demo clock had been moved
    (then set back to real time: every `make run` starts the demo clock now)."""
    conn = await asyncpg.connect(database_url)
    try:
        counts = {}
        for label, table in STATE_COUNTS.items():
            if await conn.fetchval("select to_regclass($1)", table):
                counts[label] = int(await conn.fetchval(f"select count(*) from {table}"))
        offset = 0.0
        if await conn.fetchval("select to_regclass('booking.demo_clock')"):
            offset = float(
                await conn.fetchval("select coalesce(sum(offset_s), 0) from booking.demo_clock")
            )
            await conn.execute("delete from booking.demo_clock")
        return counts, offset
    finally:
        await conn.close()


def _service_env(
    service: str,
    *,
    database_url: str,
    kafka: KafkaServer,
    public_key: str,
    topic_prefix: str,
    http_port: int,
    extra: dict[str, str],
) -> dict[str, str]:
    prefix = f"SAMTAL_{service.upper()}_"
    values = {
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "KAFKA_IDEMPOTENCE": "false" if kafka.embedded else "true",
        "TOPIC_PREFIX": topic_prefix,
        "JWT_PUBLIC_KEYS": json.dumps([public_key]),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "ROOT_PATH": f"/api/{service}",
        **extra,
    }
    return {**os.environ, **{prefix + k: v for k, v in values.items()}}


def _wait_ready(
    name: str, port: int, process: subprocess.Popen[bytes], log: Path, deadline: float
) -> None:
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{name} was not ready within the time allowed; see {log}")


def _start_mail_catcher(mail_dir: Path) -> tuple[int, Callable[[], None]]:
    """A real SMTP server on loopback that keeps every message in a Maildir."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Mailbox

    port = free_port()
    controller = Controller(Mailbox(mail_dir), hostname="127.0.0.1", port=port)
    controller.start()
    return port, controller.stop


@contextlib.contextmanager
def throwaway_platform(
    run_dir: Path,
    *,
    postgres: PostgresServer,
    kafka: KafkaServer,
    name: str,
    **options: Any,
) -> Iterator[Platform]:
    """A whole platform for a test module: free ports, its own database and topics (named
    after `name`), stopped and its database dropped when the block ends."""
    base = free_block()
    database = f"samtal_{name}_{uuid.uuid4().hex[:8]}"
    platform = start_platform(
        run_dir,
        postgres=postgres,
        kafka=kafka,
        database=database,
        gateway_port=base,
        base_port=base,
        topic_prefix=f"{name}{uuid.uuid4().hex[:6]}.",
        progress=lambda line: print(f"[platform] {line}"),
        **options,
    )
    try:
        yield platform
    finally:
        platform.stop()
        run_blocking(_drop_database(postgres, database))


def start_platform(
    run_dir: Path,
    *,
    postgres: PostgresServer,
    kafka: KafkaServer,
    database: str = "samtal",
    gateway_port: int = 8080,
    base_port: int = 8100,
    topic_prefix: str = "",
    rate_limit_per_s: int = 200,
    progress: Callable[[str], None] = print,
    ready_timeout_s: float = 120,
    replicas: int | Mapping[str, int] = 1,
    fresh: bool = False,
) -> Platform:
    counts_of = replicas if isinstance(replicas, Mapping) else dict.fromkeys(SERVICES, replicas)
    api_replicas = {s: int(counts_of.get(s, 1)) for s in SERVICES}
    if not all(1 <= n <= MAX_REPLICAS for n in api_replicas.values()):
        raise ValueError(f"replicas must be 1 to {MAX_REPLICAS} per service: {api_replicas}")
    run_dir.mkdir(parents=True, exist_ok=True)
    logs = run_dir / "logs"
    logs.mkdir(exist_ok=True)
    keys_existed = (run_dir / "keys" / "private.pem").exists()
    private_key, public_key = _keys(run_dir)
    if keys_existed:
        progress(f"keys: reused {run_dir / 'keys'} (tokens minted earlier stay valid)")
    else:
        progress(f"keys: created {run_dir / 'keys'}")
    database_url, what = run_blocking(_ensure_database(postgres, database, fresh=fresh))
    progress(
        f"postgres ({postgres.path}) database {database}: {what}; "
        f"kafka ({kafka.path}) {kafka.bootstrap}"
    )

    mail_dir = run_dir / "mail"
    caught = len(list((mail_dir / "new").glob("*"))) if (mail_dir / "new").exists() else 0
    if caught:
        progress(f"mail: {caught} message(s) caught earlier are kept in {mail_dir}")
    smtp_port, stop_smtp = _start_mail_catcher(mail_dir)
    platform = Platform(
        run_dir=run_dir,
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        kafka_bootstrap=kafka.bootstrap,
        database_url=database_url,
        topic_prefix=topic_prefix,
        private_key=private_key,
        mail_dir=mail_dir,
    )
    platform._stops.append(stop_smtp)
    extra = {
        # The demo holds a 12-week course in a minute by moving booking's clock forward.
        "booking": {"DEMO_CLOCK": "true"},
        # The on-call clinician opens escalated intakes; any other only with a reason.
        "matching": {"ON_CALL_CLINICIANS": json.dumps([ON_CALL_CLINICIAN])},
        "notifications": {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "ON_CALL_CLINICIANS": json.dumps([ON_CALL_CLINICIAN]),
            # A person's export as one document: the other parts come through the gateway.
            "EXPORT_PARTS_URL": f"http://127.0.0.1:{gateway_port}/api/{{service}}",
        },
    }
    try:
        envs: dict[str, dict[str, str]] = {}
        metrics_ports: dict[str, int] = {}
        for i, service in enumerate(SERVICES):
            block = base_port + 10 * i
            envs[service] = _service_env(
                service,
                database_url=database_url,
                kafka=kafka,
                public_key=public_key,
                topic_prefix=topic_prefix,
                http_port=block + 1,
                extra=extra.get(service, {}),
            )
            platform.ports[f"{service}-worker"] = block + 2
            for r in range(api_replicas[service]):
                name = f"{service}-api" if r == 0 else f"{service}-api-{r + 1}"
                platform.ports[name] = block + 1 + 2 * r + (1 if r else 0)
                metrics_ports[name] = platform.ports[name] + (2 if r == 0 else 1)
        busy = [
            p
            for p in [gateway_port, *platform.ports.values(), *metrics_ports.values()]
            if port_open("127.0.0.1", p)
        ]
        if busy:
            raise RuntimeError(f"ports already in use: {busy} (another `make run`?)")
        # Each service migrates its own schema: all four at once.
        migrations = {
            s: subprocess.Popen(
                [cli_of(s), "migrate"],
                env=envs[s],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for s in SERVICES
        }
        for service, migration in migrations.items():
            output, _ = migration.communicate(timeout=180)
            if migration.returncode != 0:
                raise RuntimeError(f"{service} migrate failed:\n{output.decode(errors='replace')}")
            progress(f"{service}: role, schema and migrations ready")
        counts, offset = run_blocking(_reused_state(database_url))
        if any(counts.values()):
            progress("reusing: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
            progress("  (to start from an empty database: make run FRESH=1)")
        if offset:
            progress(
                f"booking: demo clock set back to real time (it was {offset / 3600:.1f} h ahead)"
            )
        subprocess.run(
            [cli_of("catalog"), "load-demo"], env=envs["catalog"], check=True, capture_output=True
        )
        progress("catalog: demo therapists loaded (kept as they are when already there)")

        for service in SERVICES:
            names = [n for n in platform.ports if n.startswith(f"{service}-")]
            for name in names:
                kind = "worker" if name.endswith("-worker") else "api"
                env = envs[service]
                if kind == "api":
                    prefix = f"SAMTAL_{service.upper()}_"
                    env = {**env, f"{prefix}METRICS_PORT": str(metrics_ports[name])}
                command = [cli_of(service), kind, "--port", str(platform.ports[name])]
                platform.commands[name] = (command, env)
                log = logs / f"{name}.log"
                platform.processes[name] = subprocess.Popen(
                    command,
                    env=env,
                    stdout=log.open("ab"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        deadline = time.monotonic() + ready_timeout_s
        for name, process in platform.processes.items():
            _wait_ready(name, platform.ports[name], process, logs / f"{name}.log", deadline)
            progress(f"{name}: ready on 127.0.0.1:{platform.ports[name]}")

        admin_port = free_port()
        config = gateway_render.render(
            {
                s: [("127.0.0.1", platform.ports[n]) for n in platform.api_replicas(s)]
                for s in SERVICES
            },
            gateway_render.pem_to_jwks(public_key),
            gateway_port,
            listen_host="127.0.0.1",
            admin_port=admin_port,
            rate_limit_per_s=rate_limit_per_s,
        )
        (run_dir / "envoy.json").write_text(config)
        platform.gateway = gateway_run.start_gateway(config)
        platform._stops.append(platform.gateway.stop)
        progress(f"gateway: Envoy on {platform.gateway_url}")
        (run_dir / "state.json").write_text(json.dumps(platform.state(), indent=2))
        return platform
    except BaseException:
        platform.stop()
        raise


def parse_replicas(text: str) -> int | dict[str, int]:
    """'2' (every service) or 'matching=2,catalog=3' (the others one)."""
    text = text.strip() or "1"
    if "=" not in text:
        return int(text)
    counts: dict[str, int] = {}
    for part in text.split(","):
        service, _, count = part.partition("=")
        if service.strip() not in SERVICES:
            raise SystemExit(f"--replicas: unknown service {service.strip()!r}")
        counts[service.strip()] = int(count)
    return counts


def main(
    *,
    port: int = 8080,
    base_port: int = 8100,
    run_dir: Path = Path(".run"),
    replicas: str = "1",
    fresh: bool = False,
) -> None:
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {line}", flush=True)

    say("starting infrastructure")
    postgres = provide_postgres()
    kafka = provide_kafka()
    platform = None
    try:
        platform = start_platform(
            run_dir,
            postgres=postgres,
            kafka=kafka,
            gateway_port=port,
            base_port=base_port,
            progress=say,
            replicas=parse_replicas(replicas),
            fresh=fresh,
        )
        url = platform.gateway_url
        say(f"Samtal is ready in {time.monotonic() - started:.1f}s at {url}")
        print("\n  everything behind one address:")
        for service in SERVICES:
            print(
                f"    {service:14} API {url}/api/{service}/   OpenAPI {url}/api/{service}/docs"
                f"   AsyncAPI {url}/api/{service}/asyncapi"
            )
        print(f"\n  mail sent by notifications: {platform.mail_dir}")
        print(
            f"  logs: {run_dir / 'logs'}   tokens: uv run samtal token --role client "
            f"--key-file {run_dir / 'keys' / 'private.pem'}"
        )
        print("  try: make demo          stop: Ctrl-C\n", flush=True)
        stop = False

        def on_signal(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop:
            for name, process in platform.processes.items():
                if process.poll() is not None:
                    say(f"{name} exited ({process.returncode}); see {run_dir}/logs")
                    stop = True
            time.sleep(0.5)
    finally:
        say("stopping")
        if platform:
            platform.stop()
        kafka.stop()
        postgres.stop()
        (run_dir / "state.json").unlink(missing_ok=True)
        say("stopped")
