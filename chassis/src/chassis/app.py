"""The app factory: from a service's definition and settings, its `api` and its `worker`.

Both are ASGI apps served by uvicorn, so both answer /healthz and /readyz and
publish their AsyncAPI document:
- api: the service's HTTP routes; it writes events to the outbox only. Its /metrics
  is on a port of its own (`metrics_port`), which the gateway never routes to;
- worker: the service's event handlers, the outbox relay and any background tasks;
  /metrics on its only port (the gateway never routes to a worker).
Start-up fails loudly within `startup_timeout_s` when Postgres or Kafka do not answer.

An unexpected error answers 500 (503 when the database is away for now) and leaves the
connection open: the exception stops in the chassis (`UnexpectedErrors`) instead of reaching
uvicorn, which would close the connection under the gateway's next request on it (a
collateral 503 for somebody else).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from faststream_fastapi import FastStreamAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from pydantic.json_schema import models_json_schema
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, clear_contextvars

from chassis import db, observability
from chassis.consumer import EventConsumers, dead_letter_publisher, observe_lag, provide
from chassis.errors import DomainError
from chassis.http import ValidationProblem, status_of
from chassis.infra import kafka_answers
from chassis.outbox import OutboxRelay
from chassis.settings import ServiceSettings
from chassis.topics import ensure_topics
from contracts import REGISTRY, EventPayload, envelope_of
from contracts.envelope import JOURNEY_ID_MAX

log = structlog.get_logger("chassis.app")

HTTP_REQUESTS = Counter(
    "samtal_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "samtal_http_request_seconds", "HTTP request latency", ["service", "method", "route"]
)

Process = Literal["api", "worker"]


@dataclass
class Runtime:
    """What a running process holds; routes reach it as `request.app.state.runtime`."""

    settings: ServiceSettings
    broker: KafkaBroker
    pool: asyncpg.Pool | None = None
    relay: OutboxRelay | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # Where the api's /metrics answers (None: on the process's own port, as a worker's).
    metrics_port: int | None = None


BackgroundTask = Callable[[Runtime], Coroutine[Any, Any, None]]


@dataclass
class ServiceDefinition:
    name: str
    settings_class: type[ServiceSettings]
    migrations: Path
    routers: Sequence[APIRouter] = ()
    consumers: EventConsumers | None = None
    # Long-running worker tasks beyond the relay (e.g. a message sender).
    worker_tasks: Sequence[BackgroundTask] = ()
    # Pool connections those tasks hold for as long as they run (a LISTEN each), beside
    # the relay's lock: the worker's pool must leave room for work besides them.
    worker_connections_held: int = 0
    # The events this service publishes (through its outbox). Unset: every event the
    # registry names this service the producer of, so the declaration cannot drift. The
    # worker creates their topics, the AsyncAPI document lists them, and the relay refuses
    # to publish anything else.
    publishes: Sequence[type[EventPayload]] | None = None
    description: str = ""

    def published(self) -> list[type[EventPayload]]:
        if self.publishes is not None:
            return list(self.publishes)
        return [s.model for s in REGISTRY.specs if s.model.producer == self.name]


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    middlewares: list[Any] = []
    if observability.configure_tracing(settings):
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

        middlewares.append(KafkaTelemetryMiddleware())
    return KafkaBroker(
        settings.kafka_bootstrap,
        enable_idempotence=settings.kafka_idempotence,
        acks="all",
        client_id=f"samtal-{settings.service}",
        middlewares=middlewares,
        log_level=logging.DEBUG,
        graceful_timeout=10,
    )


async def _bounded(what: str, awaitable: Awaitable[Any], seconds: float) -> Any:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except Exception as exc:
        raise RuntimeError(f"{what} did not answer within {seconds:g}s: {exc!r}") from exc


UNEXPECTED = {
    "code": "internal",
    "detail": "Something went wrong on our side; please try again in a moment.",
}
DATABASE_AWAY_ANSWER = {
    "code": "unavailable",
    "detail": "We could not reach our records just now; please try again in a moment.",
}
# How long a client should wait before asking again when the database was away (seconds).
RETRY_AFTER_DATABASE_AWAY = "1"


class ProblemResponse(JSONResponse):
    """An error answer, written in ASCII: a field name or message carrying an unpaired
    surrogate (which UTF-8 cannot encode) still gives a valid body, not a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def where_it_failed(exc: BaseException) -> list[str]:
    """The frames of an exception as file:line function, without its message: a
    database error's message may quote the value that failed, and a value may be
    health or personal data."""
    frames = traceback.extract_tb(exc.__traceback__)
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames][-12:]


class JourneyIds:
    """Each request's ids (x-request-id, x-correlation-id: taken when given, made when not),
    bound to its log lines and echoed in the answer; its metrics and one log line when answered.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware`) runs the
    rest of the app in a task group and streams the body through a queue, which cost about a
    third of a request's CPU on the hot paths."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        # A client's own ids (the gateway keeps them) are cut to what an event's envelope
        # carries: longer, every write of the request failed when its events were made.
        request_id = (headers.get("x-request-id") or str(uuid.uuid4()))[:JOURNEY_ID_MAX]
        correlation_id = (headers.get("x-correlation-id") or request_id)[:JOURNEY_ID_MAX]
        clear_contextvars()
        bind_contextvars(service=self.service, request_id=request_id, correlation_id=correlation_id)
        started = time.perf_counter()
        status = 0

        async def with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                answer = MutableHeaders(scope=message)
                answer["x-request-id"] = request_id
                answer["x-correlation-id"] = correlation_id
            await send(message)

        # An exception goes on to UnexpectedErrors, unlogged here (as with call_next).
        await self.app(scope, receive, with_ids)
        path = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels(self.service, method, path, status).inc()
        HTTP_LATENCY.labels(self.service, method, path).observe(elapsed)
        log.info(
            "request handled", method=method, route=path, status=status, ms=round(elapsed * 1000, 1)
        )


class UnexpectedErrors:
    """The outermost middleware: an exception answers 500 here and goes no further (503
    with Retry-After when it says the database is away for now: `db.database_away`).

    Starlette's own error middleware re-raises after answering, and uvicorn then
    closes the connection; behind the gateway the next request on that pooled
    connection fails (503) though it has nothing to do with this one. The log line
    names the exception type and where it happened, never its message.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            headers = dict(scope.get("headers") or [])
            request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:JOURNEY_ID_MAX]
            away = db.database_away(exc)
            (log.warning if away else log.error)(
                "database away" if away else "unexpected error",
                error_type=type(exc).__name__,
                where=where_it_failed(exc),
                method=scope.get("method"),
                route=getattr(scope.get("route"), "path", "unmatched"),
                request_id=request_id or None,
            )
            if started:  # half an answer is out: only closing the connection can end it
                raise
            # The database away: a 503 says "try again" (a frontend does; the writes that must
            # not happen twice carry idempotency keys, as a commit cut off may have landed).
            if away:
                response = JSONResponse(DATABASE_AWAY_ANSWER, status_code=503)
                response.headers["retry-after"] = RETRY_AFTER_DATABASE_AWAY
            else:
                response = JSONResponse(UNEXPECTED, status_code=500)
            if request_id:
                response.headers["x-request-id"] = request_id
            await response(scope, receive, send)


def _declare_our_422(app: FastAPI) -> None:
    """FastAPI documents its own 422 body (`detail` as a list) on routes that declare no
    422; the chassis answers `ValidationProblem`, so the OpenAPI says that everywhere: a
    client (and the fuzzer) can trust it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = generate()
        schemas = document.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas:
            _, defs = models_json_schema(
                [(ValidationProblem, "validation")], ref_template="#/components/schemas/{model}"
            )
            schemas.update(defs["$defs"])
            schemas["HTTPValidationError"] = defs["$defs"]["ValidationProblem"]
            schemas.pop("ValidationError", None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _field_of(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body", "query", "path", "header"))


def _message_of(error: Mapping[str, Any]) -> str:
    """Pydantic's message, reworded where it speaks of 'items' for a text's length.
    Never the input: it may be health or personal data."""
    ctx = error.get("ctx") or {}
    if error.get("type") == "too_long" and ctx.get("field_type") == "Value":
        return f"must be at most {ctx.get('max_length')} characters long"
    return str(error.get("msg", "is not valid"))


def _install_http_basics(app: FastAPI, runtime: Runtime) -> None:
    service = runtime.settings.service
    app.add_middleware(JourneyIds, service=service)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return ProblemResponse(exc.body(), status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = _field_of(first.get("loc", ()))
        message = f"{where}: {_message_of(first)}" if where else _message_of(first)
        details = [
            {
                "loc": list(e.get("loc", ())),
                "field": _field_of(e.get("loc", ())),
                "msg": _message_of(e),
                "type": e.get("type"),
            }
            for e in errors
        ]
        return ProblemResponse(
            {"code": "invalid_request", "detail": message, "errors": details}, status_code=422
        )

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        checks = {"database": False, "broker": False}
        with contextlib.suppress(Exception):
            if runtime.pool is not None:
                async with runtime.pool.acquire(timeout=2) as conn:
                    checks["database"] = await conn.fetchval("select true")
        with contextlib.suppress(Exception):
            checks["broker"] = await asyncio.wait_for(_broker_answers(runtime.broker), 3)
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", **checks},
            status_code=200 if ready else 503,
        )

    if runtime.metrics_port is None:

        @app.get("/metrics", tags=["operations"], include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _broker_answers(broker: KafkaBroker) -> bool:
    """A metadata round trip on the broker's own admin client (the embedded broker does
    not answer DescribeCluster, which `broker.ping` asks)."""
    await broker.config.admin_client.list_topics()
    return True


def worker_pool_floor(definition: ServiceDefinition) -> int:
    """The fewest pool connections a worker can run on: those held for good (the relay's
    lock, the worker tasks' listeners) and one for everything else (handlers, the relay's
    marks, the tasks' own statements), which all take turns on it; with fewer, the rest
    would wait for a connection forever."""
    return 1 + definition.worker_connections_held + 1


def build(definition: ServiceDefinition, settings: ServiceSettings, process: Process) -> Any:
    """The ASGI app of one process kind."""
    floor = worker_pool_floor(definition)
    if process == "worker" and settings.db_pool_max < floor:
        held = floor - 1
        raise ValueError(
            f"SAMTAL_{settings.service.upper()}_DB_POOL_MAX is {settings.db_pool_max}: the"
            f" {definition.name} worker holds {held} connection(s) for as long as it runs and"
            f" needs one more for its work; set it to {floor} or more"
        )
    observability.configure_logging(settings)
    broker = make_broker(settings)
    runtime = Runtime(
        settings=settings,
        broker=broker,
        metrics_port=settings.metrics_port if process == "api" else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.pool = await _bounded(
            "Postgres", db.create_pool(settings), settings.startup_timeout_s
        )
        # The subscribers and handlers take it from the broker's context (FastStream's DI).
        provide(broker, pool=runtime.pool)
        metrics_server = None
        try:
            if runtime.metrics_port is not None:
                metrics_server, _ = start_http_server(
                    runtime.metrics_port, settings.metrics_host or settings.http_host
                )
                runtime.metrics_port = int(metrics_server.server_address[1])
            if process == "worker":
                consumed = (
                    [h.model for h in definition.consumers.handlers] if definition.consumers else []
                )
                await _bounded(
                    "Kafka",
                    ensure_topics(settings, [*definition.published(), *consumed]),
                    settings.startup_timeout_s,
                )
                runtime.relay = OutboxRelay(
                    settings, runtime.pool, publishes=definition.published()
                )
                runtime.relay.start()
                for task in definition.worker_tasks:
                    runtime.tasks.append(asyncio.create_task(task(runtime)))
                runtime.tasks.append(
                    asyncio.create_task(observe_lag(broker, settings.service, every_s=1.0))
                )
            clear_contextvars()
            bind_contextvars(service=settings.service)
            log.info("started", process=process)
            yield
        finally:
            for running in runtime.tasks:
                running.cancel()
            for running in runtime.tasks:
                with contextlib.suppress(BaseException):
                    await running
            if runtime.relay:
                await runtime.relay.stop()
            if metrics_server is not None:
                await asyncio.to_thread(metrics_server.shutdown)
                metrics_server.server_close()
            await runtime.pool.close()

    app = FastAPI(
        title=f"Samtal {definition.name} ({process})",
        description=definition.description,
        lifespan=lifespan,
        # Behind the gateway the service lives under /api/<service>; the docs must know.
        root_path=settings.root_path,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    _install_http_basics(app, runtime)
    _declare_our_422(app)
    # Added last, so outermost: nothing raised inside reaches uvicorn.
    app.add_middleware(UnexpectedErrors, service=settings.service)
    if settings.otlp_endpoint:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app)
    if process == "api":
        for router in definition.routers:
            app.include_router(router)

    async def connect(b: KafkaBroker) -> None:
        # Bounded: reaching the broker. Not bounded: joining consumer groups, which after a
        # restart may wait for the previous member's session to expire.
        if not await kafka_answers(settings.kafka_bootstrap, settings.startup_timeout_s):
            raise RuntimeError(
                f"Kafka at {settings.kafka_bootstrap} did not answer within "
                f"{settings.startup_timeout_s:g}s"
            )
        await start_subscribers_together(b)

    # The worker's document comes from its own subscribers and publishers; the api, which
    # consumes nothing, describes the same service from the same declarations on a broker
    # it never starts.
    if process == "worker":
        provide(broker, settings=settings, dead_letters=declare(definition, settings, broker))
        specification = AsyncAPI(
            broker, title=f"Samtal {definition.name}", description=definition.description
        )
    else:
        specification = describe(definition, settings)
    asgi = FastStreamAPI(
        broker,
        application=app,
        specification=specification,
        # The broker's own context, where FastStream puts the message being handled.
        context=broker.context,
        asyncapi_path="/asyncapi",
        safe_connection=True,
        connection_hook=connect,
    )
    # Subscribed after the wrap: FastStreamAPI would resolve the handlers like FastAPI
    # routes; ours take the records as FastStream decodes them.
    if process == "worker" and definition.consumers is not None:
        definition.consumers.subscribe(broker, settings)
    return asgi


async def start_subscribers_together(broker: KafkaBroker) -> None:
    """KafkaBroker.start, with the subscribers started side by side.

    Each consumer group waits for its join (about 5 s on the embedded broker, the
    initial rebalance delay on Kafka); FastStream starts them one after another, so a
    worker with several groups would take that many times longer to come up.
    """
    await broker.connect()
    await asyncio.gather(*(subscriber.start() for subscriber in broker.subscribers))
    for publisher in broker.publishers:
        await publisher.start()


def declare(definition: ServiceDefinition, settings: ServiceSettings, broker: KafkaBroker) -> Any:
    """Declare what the service publishes on `broker` (its events and its dead letters);
    returns the dead-letter publisher."""
    for model in definition.published():
        broker.publisher(
            settings.topic(REGISTRY.topic(model)),
            title=model.event_type,
            description=(model.__doc__ or "").strip() or None,
            schema=envelope_of(model),
        )
    return dead_letter_publisher(broker, settings)


def describe(definition: ServiceDefinition, settings: ServiceSettings) -> AsyncAPI:
    """The service's AsyncAPI document for a process that does not consume (the api):
    the same declarations as the worker's, on a broker that is never started."""
    paper = KafkaBroker(settings.kafka_bootstrap)
    declare(definition, settings, paper)
    if definition.consumers is not None:
        definition.consumers.subscribe(paper, settings)
    return AsyncAPI(
        paper,
        title=f"Samtal {definition.name}",
        description=definition.description,
    )


def _pool(runtime: Runtime) -> asyncpg.Pool:
    if runtime.pool is None:
        raise RuntimeError("the database pool is not open yet")
    return runtime.pool


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def pool_of(request: Request) -> asyncpg.Pool:
    return _pool(runtime_of(request))
