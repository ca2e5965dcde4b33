"""Event consumers in FastStream's idiom: batches, inbox, retry, dead letters.

A service declares its handlers; the chassis turns each consumer group into one
FastStream batch subscriber on the worker's broker:

    consumers = EventConsumers("booking")

    @consumers.handler(TherapistMatched, name="course-opener", group="inbound")
    async def open_course(event: Envelope[TherapistMatched], conn: asyncpg.Connection) -> None:
        ...

A handler is typed by the envelope it takes, and runs on the batch's connection. What
else it needs it declares as FastStream `Context()` parameters, resolved from the
broker's context once a batch (`provide` puts the worker's settings, pool and dead-letter
publisher there). What it must wait for before it can decide at all (an index being
built) it names as `ready`, awaited before its records take a connection: a lane never
waits holding one (what it waits for may need one from the same pool):

    async def match(
        event: Envelope[IntakeSubmitted],
        conn: asyncpg.Connection,
        settings: Annotated[Settings, Context()],
    ) -> None: ...

What FastStream does: the consumer group and its Kafka consumer, fetching up to
`consumer_batch_size` records at once, committing offsets only after the subscriber
returned (`AckPolicy.NACK_ON_ERROR`: on an error the batch comes again), the AsyncAPI
document from these very subscribers, the context the subscriber's and the handlers'
dependencies come from (`Context()`, `Depends`), and `TestKafkaBroker` for fast tests
of the handlers (`chassis.testing.handlers`).

What the chassis adds — the extension point is `BatchApplier`, the subscriber's
handler: a batch is applied in ONE transaction with its inbox rows. Records run in
the order they came (so per partition, hence per key); each under a savepoint only
when the optimistic pass failed. A record that cannot succeed (it breaks its contract,
or raises `PermanentError`, or still fails after `consumer_max_attempts`) goes to the
service's dead-letter topic with its original bytes and the error while the rest
apply; a record failing for a moment holds back only the later records of its own
partition, which are retried with backoff after the rest committed. When the database is
away (a restart, a failover) the records wait in their lane with backoff, their attempts
uncounted: no record is dead-lettered for the database's absence. Dead letters are
published after the commit and before the offsets are: a crash in between means the
batch comes again and the inbox skips what was applied.
"""

import asyncio
import contextlib
import inspect
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Concatenate, ParamSpec, Protocol, TypeVar, get_type_hints

import asyncpg
import structlog
from faststream import AckPolicy, Context, ContextRepo
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.message import KafkaMessage
from prometheus_client import Counter, Gauge
from pydantic import WithJsonSchema
from structlog.contextvars import bound_contextvars

from chassis import db
from chassis.settings import ServiceSettings
from contracts import REGISTRY, ContractError, Envelope, EventPayload, decode, envelope_of

log = structlog.get_logger("chassis.consumer")

EVENTS_HANDLED = Counter(
    "samtal_events_handled_total", "Events consumed, by outcome", ["service", "consumer", "outcome"]
)
CONSUMER_LAG = Gauge(
    "samtal_consumer_lag",
    "Messages on a partition not yet consumed by the group",
    ["service", "group", "topic", "partition"],
)
DEAD_LETTERS = Counter(
    "samtal_dead_letters_total", "Messages dead-lettered", ["service", "consumer"]
)
BATCHES = Counter("samtal_consumer_batches_total", "Batches applied", ["service", "group"])
DATABASE_WAITS = Counter(
    "samtal_consumer_database_waits_total",
    "Passes of a consumer group's records that found the database away and waited for it",
    ["service", "group"],
)

E = TypeVar("E", bound=EventPayload)
P = ParamSpec("P")
# A handler: the record's envelope, the batch's connection, and its `Context()` parameters.
Handler = Callable[..., Awaitable[None]]
# What a handler waits for before its records take a connection (`ready=`).
Ready = Callable[[ServiceSettings], Awaitable[None]]
# What `Context()` gives: the marker a handler's dependency is annotated with.
_CONTEXT_MARKER = type(Context())

# The names under which `provide` puts the worker's dependencies in the broker's context.
SETTINGS_KEY = "settings"
POOL_KEY = "pool"
DEAD_LETTERS_KEY = "dead_letters"


class PermanentError(Exception):
    """A failure that retrying cannot cure: dead-letter at once."""


def dead_letter_topic(service: str) -> str:
    return f"{service}.dead-letters.v1"


@dataclass(frozen=True)
class HandlerSpec:
    model: type[EventPayload]
    # The inbox key: this handler applies each event once.
    name: str
    func: Handler
    # The Kafka consumer group; handlers sharing one are fed by one multi-topic consumer.
    group: str
    # The handler's parameters beyond (event, conn) and their keys in the broker's context.
    dependencies: tuple[tuple[str, str], ...] = ()
    # Takes a list of envelopes (`batch_handler`): a batch's fresh records at once.
    batched: bool = False
    # Awaited (with the worker's settings) before a pass over its records takes a
    # connection: what the handler needs ready before it can decide.
    ready: Ready | None = None


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential, bounded: base, 2·base, 4·base … up to cap."""
    return float(min(cap, base * (2 ** (attempt - 1))))


class Record(Protocol):
    """What the chassis reads of a Kafka record (aiokafka's ConsumerRecord)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class DeadLetterSink(Protocol):
    """A FastStream publisher of the dead-letter topic (or a test double)."""

    async def publish(
        self, message: Any, *, key: bytes | None = ..., headers: dict[str, str] | None = ...
    ) -> Any: ...


def instance_name(settings: ServiceSettings) -> str | None:
    """This worker's static group membership name, when it has one (see settings)."""
    if not settings.kafka_static_membership:
        return None
    return settings.kafka_instance_id or f"{socket.gethostname()}:{settings.http_port}"


class EventConsumers:
    """A service's event handlers, grouped into Kafka consumer groups.

    Each consumer group joins on its own (about 5 s on the embedded broker), so
    handlers that may share a queue share a group; a handler that must never wait
    behind others (the matcher, crisis alerts) gets a group of its own.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.handlers: list[HandlerSpec] = []

    def handler(
        self, model: type[E], *, name: str, group: str | None = None, ready: Ready | None = None
    ) -> Callable[
        [Callable[Concatenate[Envelope[E], asyncpg.Connection, P], Awaitable[None]]],
        Callable[Concatenate[Envelope[E], asyncpg.Connection, P], Awaitable[None]],
    ]:
        """Registers `func(event: Envelope[model], conn, **dependencies)` under the inbox
        name `name`, in consumer group `group` (default: a group of its own); `ready(settings)`
        is awaited before its records take a connection."""

        def register(
            func: Callable[Concatenate[Envelope[E], asyncpg.Connection, P], Awaitable[None]],
        ) -> Callable[Concatenate[Envelope[E], asyncpg.Connection, P], Awaitable[None]]:
            needs = context_dependencies(func)
            self.handlers.append(HandlerSpec(model, name, func, group or name, needs, ready=ready))
            return func

        return register

    def batch_handler(
        self, model: type[E], *, name: str, group: str | None = None, ready: Ready | None = None
    ) -> Callable[
        [Callable[Concatenate[list[Envelope[E]], asyncpg.Connection, P], Awaitable[None]]],
        Callable[Concatenate[list[Envelope[E]], asyncpg.Connection, P], Awaitable[None]],
    ]:
        """Like `handler`, but `func(events: list[Envelope[model]], conn, **dependencies)`
        takes the fresh records of a batch at once, in the order they came (one call per
        lane, in the batch's transaction): set-based work instead of a round trip per
        record. Should the call fail, each record is applied alone (a list of one) under
        its own savepoint, as any handler's are. The journey ids of each event are the
        handler's to bind (`event_context`) while it writes what that event causes."""

        def register(
            func: Callable[Concatenate[list[Envelope[E]], asyncpg.Connection, P], Awaitable[None]],
        ) -> Callable[Concatenate[list[Envelope[E]], asyncpg.Connection, P], Awaitable[None]]:
            needs = context_dependencies(func)
            self.handlers.append(
                HandlerSpec(model, name, func, group or name, needs, batched=True, ready=ready)
            )
            return func

        return register

    def groups(self) -> dict[str, list[HandlerSpec]]:
        grouped: dict[str, list[HandlerSpec]] = {}
        for spec in self.handlers:
            grouped.setdefault(spec.group, []).append(spec)
        return grouped

    def subscribe(self, broker: KafkaBroker, settings: ServiceSettings) -> None:
        """One batch subscriber per consumer group, over the topics of its handlers. The
        settings shape the subscriptions; the pool and the dead-letter publisher come from
        the broker's context when a batch arrives (`provide`)."""
        member = instance_name(settings)
        for group, specs in self.groups().items():
            routes: dict[str, list[HandlerSpec]] = {}
            for spec in specs:
                routes.setdefault(settings.topic(REGISTRY.topic(spec.model)), []).append(spec)
            applier = BatchApplier(self.service, group, routes, settings, broker.context)
            subscriber = broker.subscriber(
                *routes,
                group_id=settings.group(group),
                batch=True,
                max_records=settings.consumer_batch_size,
                # How long one poll waits for records: it returns the moment some come.
                batch_timeout_ms=IDLE_POLL_MS,
                fetch_max_wait_ms=settings.fetch_max_wait_ms(group),
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                decoder=_records_of,
                session_timeout_ms=settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
                group_instance_id=f"{settings.group(group)}.{member}" if member else None,
                title=f"{settings.service}.{group}",
                description=" ".join(f"{s.name}: {(s.func.__doc__ or '').strip()}" for s in specs),
            )
            subscriber(applier.endpoint())
            _poll_without_pause(subscriber)


# A poll of an idle consumer group waits this long for records before it polls again.
IDLE_POLL_MS = 100


def _poll_without_pause(subscriber: Any) -> None:
    """FastStream's batch subscriber sleeps `batch_timeout_ms` after an empty poll, although
    the poll itself already waited that long for records: a record arriving meanwhile
    waits out the sleep. Its poll is replaced by one that only waits in the poll (which
    returns the moment records come); an empty poll that returned early (it should not)
    still waits out the rest, so nothing spins."""

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        timeout_ms = subscriber.batch_timeout_ms
        started = time.monotonic()
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=subscriber.max_records)
        if not batches:
            await asyncio.sleep(max(0.0, timeout_ms / 1000 - (time.monotonic() - started)))
            return ()
        return tuple(record for records in batches.values() for record in records)

    subscriber.get_msg = get_msg


def event_context(envelope: Envelope[Any]) -> Any:
    """The journey ids of a consumed event bound to the logs and to the events written
    meanwhile (their correlation and causation), as the chassis binds them per record."""
    return bound_contextvars(
        correlation_id=envelope.correlation_id,
        causation_id=envelope.causation_id,
        event_id=str(envelope.event_id),
        event_type=envelope.event_type,
    )


def context_dependencies(func: Callable[..., Any]) -> tuple[tuple[str, str], ...]:
    """A handler's parameters after (event, conn), each with its key in the broker's
    context: every one must be annotated `Annotated[T, Context()]` (FastStream's marker;
    `Context("key")` names another key than the parameter's)."""
    hints = get_type_hints(func, include_extras=True)
    found = []
    for parameter in list(inspect.signature(func).parameters)[2:]:
        markers = getattr(hints.get(parameter), "__metadata__", ())
        marker = next((m for m in markers if isinstance(m, _CONTEXT_MARKER)), None)
        if marker is None:
            raise TypeError(
                f"{func.__qualname__}: `{parameter}` must be `Annotated[..., Context()]`"
            )
        found.append((parameter, f"{marker.prefix}{marker.name or parameter}"))
    return tuple(found)


def provide(
    broker: KafkaBroker,
    *,
    settings: ServiceSettings | None = None,
    pool: asyncpg.Pool | None = None,
    dead_letters: DeadLetterSink | None = None,
) -> None:
    """Put the worker's dependencies in the broker's context, where the subscribers and
    the handlers' `Context()` parameters find them."""
    for name, value in (
        (SETTINGS_KEY, settings),
        (POOL_KEY, pool),
        (DEAD_LETTERS_KEY, dead_letters),
    ):
        if value is not None:
            broker.context.set_global(name, value)


def _records_of(message: KafkaMessage) -> list[Any]:
    """FastStream decoder: the batch's records as they came (the chassis decodes each one,
    so one malformed record is dead-lettered instead of failing the whole batch)."""
    raw = message.raw_message
    return list(raw) if isinstance(raw, (tuple, list)) else [raw]


def _envelope_schema(models: Sequence[type[EventPayload]]) -> dict[str, Any]:
    """JSON Schema of one record of these topics, self-contained (for AsyncAPI)."""

    def inlined(model: type[EventPayload]) -> dict[str, Any]:
        schema = envelope_of(model).model_json_schema()
        definitions = schema.pop("$defs", {})

        def inline(node: Any) -> Any:
            if isinstance(node, dict):
                if "$ref" in node:
                    return inline(dict(definitions[node["$ref"].rsplit("/", 1)[-1]]))
                return {k: inline(v) for k, v in node.items()}
            if isinstance(node, list):
                return [inline(v) for v in node]
            return node

        result: dict[str, Any] = inline(schema)
        return result

    unique = list(dict.fromkeys(models))
    if len(unique) == 1:
        return inlined(unique[0])
    return {"oneOf": [inlined(m) for m in unique]}


@dataclass
class _Unit:
    """One handler's work on one record."""

    record: Any
    spec: HandlerSpec
    envelope: Envelope[Any]
    attempts: int = 0

    @property
    def partition(self) -> tuple[str, int]:
        return (self.record.topic, self.record.partition)


@dataclass
class Batch:
    """What one batch is applied with, from the broker's context."""

    pool: asyncpg.Pool
    dead_letters: DeadLetterSink | None
    context: ContextRepo
    # Each handler's resolved dependencies, once a batch (the context does not change
    # while a batch is applied; resolving per record would cost more than some handlers).
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)

    def dependencies(self, spec: HandlerSpec) -> dict[str, Any]:
        found = self.resolved.get(spec.name)
        if found is None:
            found = {name: self.context.resolve(key) for name, key in spec.dependencies}
            self.resolved[spec.name] = found
        return found


@dataclass
class _Pass:
    applied: list[_Unit] = field(default_factory=list)
    duplicates: list[_Unit] = field(default_factory=list)
    deferred: list[_Unit] = field(default_factory=list)
    dead: list[tuple[Any, str, str, int]] = field(default_factory=list)


class BatchApplier:
    """The handler of one consumer group's subscriber: applies a batch of records."""

    def __init__(
        self,
        service: str,
        group: str,
        routes: dict[str, list[HandlerSpec]],
        settings: ServiceSettings,
        context: ContextRepo,
    ) -> None:
        self.service = service
        self.group = group
        self.routes = routes
        self.settings = settings
        # The broker's context: the pool and dead-letter publisher are looked up in it per
        # batch (not in the endpoint's signature: under FastStreamAPI the worker's
        # subscribers are resolved the FastAPI way, elsewhere the FastStream way).
        self.context = context

    def endpoint(self) -> Callable[..., Awaitable[None]]:
        """The FastStream handler; its body annotation is what AsyncAPI shows per record."""
        models = [spec.model for specs in self.routes.values() for spec in specs]
        body = Annotated[list[Any], WithJsonSchema(_envelope_schema(models))]

        async def apply(records: Any) -> None:
            # Plain FastStream passes what the decoder made; under FastStreamAPI (the
            # worker's ASGI app) handlers resolve like FastAPI routes and get the message.
            batch = records if isinstance(records, list) else _records_of(records)
            await self.apply(batch, self.batch())

        apply.__annotations__ = {"records": body, "return": None}
        apply.__name__ = f"apply_{self.group.replace('-', '_')}"
        apply.__doc__ = " ".join(
            f"{s.name}: {(s.func.__doc__ or '').strip()}"
            for specs in self.routes.values()
            for s in specs
        )
        return apply

    def batch(self) -> Batch:
        """What the next batch is applied with, from the broker's context."""
        pool = self.context.get(POOL_KEY)
        if pool is None:
            raise RuntimeError(
                "no database pool in the broker's context (chassis.consumer.provide)"
            )
        return Batch(pool, self.context.get(DEAD_LETTERS_KEY), self.context)

    def _count(self, unit: _Unit | HandlerSpec, outcome: str) -> None:
        spec = unit.spec if isinstance(unit, _Unit) else unit
        EVENTS_HANDLED.labels(self.service, spec.name, outcome).inc()

    async def apply(self, records: Sequence[Any], batch: Batch) -> None:
        units: list[_Unit] = []
        rejected: list[tuple[Any, str, str, int]] = []
        for record in records:
            for spec in self.routes.get(record.topic, ()):
                try:
                    envelope = decode(record.value or b"", expected=spec.model)
                except ContractError as exc:
                    rejected.append((record, spec.name, f"invalid: {exc}", 1))
                    continue
                units.append(_Unit(record, spec, envelope))
        await self._dead_letter(batch, rejected)
        # Partitions are independent (order is per partition): a few lanes, each its own
        # connection and transaction, apply them side by side.
        lanes: dict[int, list[_Unit]] = {}
        width = self.settings.consumer_lanes
        for unit in units:
            lanes.setdefault(hash(unit.partition) % width, []).append(unit)
        await asyncio.gather(*(self._apply_lane(batch, lane) for lane in lanes.values()))

    async def _apply_lane(self, batch: Batch, units: list[_Unit]) -> None:
        optimistic = True
        away = 0  # passes in a row that found the database away
        while units:
            for ready in {u.spec.ready for u in units if u.spec.ready is not None}:
                await ready(self.settings)  # (holding no connection: see the module's text)
            attempts = [u.attempts for u in units]
            try:
                done = await self._pass(batch, units, careful=not optimistic)
            except Exception as exc:
                if not db.database_away(exc):
                    raise
                # Not the records' fault: they wait here for the database, their attempts
                # untouched (none is dead-lettered for it), with backoff, instead of going
                # back to FastStream, which would fetch them again at once, in a loop.
                for unit, attempted in zip(units, attempts, strict=True):
                    unit.attempts = attempted
                away += 1
                delay = backoff(
                    away, self.settings.consumer_backoff_s, self.settings.consumer_backoff_max_s
                )
                DATABASE_WAITS.labels(self.service, self.group).inc()
                log.warning(
                    "database away; records wait",
                    count=len(units),
                    delay=delay,
                    error=type(exc).__name__,
                )
                await asyncio.sleep(delay)
                continue
            away = 0
            if done is None:  # the optimistic pass failed somewhere: again, record by record
                optimistic = False
                continue
            BATCHES.labels(self.service, self.group).inc()
            for unit in done.applied:
                self._count(unit, "handled")
            for unit in done.duplicates:
                self._count(unit, "duplicate")
            await self._dead_letter(batch, done.dead)
            units = done.deferred
            if units:
                attempt = max(u.attempts for u in units)
                delay = backoff(
                    attempt, self.settings.consumer_backoff_s, self.settings.consumer_backoff_max_s
                )
                for unit in units:
                    self._count(unit, "retried")
                log.warning("records failed; retrying", count=len(units), delay=delay)
                await asyncio.sleep(delay)

    async def _pass(self, batch: Batch, units: list[_Unit], *, careful: bool) -> _Pass | None:
        """Apply what can be applied in one transaction. Optimistic (the inbox rows of the
        whole batch in one statement, no savepoints): None when anything failed, and
        nothing was written. Careful: each record under a savepoint with its inbox row."""
        outcome = _Pass()
        blocked: set[tuple[str, int]] = set()
        async with batch.pool.acquire() as conn:
            try:
                claim_with_begin = not careful and isinstance(conn, db.Connection)
                if claim_with_begin:
                    transaction = conn.transaction_after_begin(_inbox_insert(units))
                else:
                    transaction = conn.transaction()
                async with transaction:
                    if careful:
                        fresh = None
                    elif claim_with_begin:
                        fresh = await self._claimed(conn, units)
                    else:
                        fresh = await self._claim_all(conn, units)
                    # Fresh records of one batch handler, applied together (optimistic only).
                    gathered: list[_Unit] = []
                    for unit in units:
                        if unit.partition in blocked:
                            outcome.deferred.append(unit)
                            continue
                        if fresh is not None and unit.spec.batched:
                            if gathered and gathered[0].spec is not unit.spec:
                                await self._apply_together(batch, conn, gathered, outcome)
                                gathered = []
                            key = (unit.spec.name, unit.envelope.event_id)
                            if key in fresh:
                                fresh.discard(key)  # the same event twice in a batch: once
                                gathered.append(unit)
                            else:
                                outcome.duplicates.append(unit)
                            continue
                        if gathered:
                            await self._apply_together(batch, conn, gathered, outcome)
                            gathered = []
                        error = await self._run(batch, conn, unit, outcome, fresh)
                        if error is None:
                            continue
                        if not careful:
                            raise _Retry()
                        self._settle_failure(unit, error, outcome, blocked)
                    if gathered:
                        await self._apply_together(batch, conn, gathered, outcome)
            except _Retry:
                return None
        return outcome

    async def _apply_together(
        self, batch: Batch, conn: asyncpg.Connection, units: list[_Unit], outcome: _Pass
    ) -> None:
        """One call of a batch handler with these fresh records; any failure fails the
        optimistic pass (then each record goes alone)."""
        spec = units[0].spec
        try:
            with bound_contextvars(consumer=spec.name):
                await spec.func([u.envelope for u in units], conn, **batch.dependencies(spec))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("batch handler failed; records go one by one", error=repr(exc))
            raise _Retry() from exc
        outcome.applied.extend(units)

    async def _claimed(self, conn: db.Connection, units: list[_Unit]) -> set[tuple[str, uuid.UUID]]:
        """What the inbox insert sent with BEGIN claimed: all of the batch when it inserted
        a row per distinct event, else (a redelivery) the rows this transaction inserted."""
        keys = {(u.spec.name, u.envelope.event_id) for u in units}
        if conn.after_begin_status == f"INSERT 0 {len(keys)}":
            return keys
        rows = await conn.fetch(
            "SELECT consumer, event_id FROM inbox WHERE event_id = ANY($1::uuid[])"
            " AND xmin = pg_current_xact_id()::xid",
            list({event_id for _, event_id in keys}),
        )
        return {(r["consumer"], r["event_id"]) for r in rows}

    async def _claim_all(
        self, conn: asyncpg.Connection, units: list[_Unit]
    ) -> set[tuple[str, uuid.UUID]]:
        rows = await conn.fetch(
            "INSERT INTO inbox (consumer, event_id, event_type)"
            " SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[])"
            " ON CONFLICT DO NOTHING RETURNING consumer, event_id",
            [u.spec.name for u in units],
            [u.envelope.event_id for u in units],
            [u.envelope.event_type for u in units],
        )
        return {(r["consumer"], r["event_id"]) for r in rows}

    async def _run(
        self,
        batch: Batch,
        conn: asyncpg.Connection,
        unit: _Unit,
        outcome: _Pass,
        fresh: set[tuple[str, uuid.UUID]] | None,
    ) -> BaseException | None:
        envelope = unit.envelope
        with bound_contextvars(
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            consumer=unit.spec.name,
        ):
            try:
                if fresh is None:  # careful: the inbox row and the effect under one savepoint
                    async with conn.transaction():
                        first = await conn.fetchval(
                            "INSERT INTO inbox (consumer, event_id, event_type)"
                            " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
                            unit.spec.name,
                            envelope.event_id,
                            envelope.event_type,
                        )
                        if first:
                            await self._call(batch, unit, conn)
                else:
                    key = (unit.spec.name, envelope.event_id)
                    first = key in fresh
                    fresh.discard(key)  # the same event twice in a batch: once
                    if first:
                        await self._call(batch, unit, conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return exc
            log.info("event handled" if first else "duplicate event ignored")
        (outcome.applied if first else outcome.duplicates).append(unit)
        return None

    @staticmethod
    async def _call(batch: Batch, unit: _Unit, conn: asyncpg.Connection) -> None:
        event: Any = [unit.envelope] if unit.spec.batched else unit.envelope
        if unit.spec.dependencies:
            await unit.spec.func(event, conn, **batch.dependencies(unit.spec))
        else:
            await unit.spec.func(event, conn)

    def _settle_failure(
        self, unit: _Unit, error: BaseException, outcome: _Pass, blocked: set[tuple[str, int]]
    ) -> None:
        unit.attempts += 1
        if isinstance(error, PermanentError):
            outcome.dead.append((unit.record, unit.spec.name, f"rejected: {error}", unit.attempts))
        elif unit.attempts >= self.settings.consumer_max_attempts:
            outcome.dead.append(
                (
                    unit.record,
                    unit.spec.name,
                    f"failed: {type(error).__name__}: {error}",
                    unit.attempts,
                )
            )
        else:
            # Later records of this partition wait for it: per-key order holds.
            blocked.add(unit.partition)
            outcome.deferred.append(unit)
            log.warning(
                "handler failed; will retry",
                consumer=unit.spec.name,
                attempt=unit.attempts,
                error=str(error),
            )

    async def _dead_letter(self, batch: Batch, letters: list[tuple[Any, str, str, int]]) -> None:
        for record, consumer, error, attempts in letters:
            headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
            headers.update(
                {
                    "x-dead-letter-error": error[:1000],
                    "x-dead-letter-consumer": consumer,
                    "x-dead-letter-attempts": str(attempts),
                    "x-original-topic": record.topic,
                    "x-original-partition": str(record.partition),
                    "x-original-offset": str(record.offset),
                }
            )
            if batch.dead_letters is None:
                raise RuntimeError("no dead-letter publisher: the worker provides one")
            await batch.dead_letters.publish(record.value or b"", key=record.key, headers=headers)
            DEAD_LETTERS.labels(self.service, consumer).inc()
            EVENTS_HANDLED.labels(self.service, consumer, "dead_lettered").inc()
            log.error("event dead-lettered", consumer=consumer, error=error, attempts=attempts)


def _inbox_insert(units: list[_Unit]) -> str:
    """The batch's inbox rows as one INSERT of literals, sent with the transaction's BEGIN
    (`db.Connection.transaction_after_begin`): handler names, event ids and registered
    event types (`decode` refused any other)."""
    rows = ", ".join(
        f"({db.literal(u.spec.name)}, '{u.envelope.event_id}', {db.literal(u.envelope.event_type)})"
        for u in units
    )
    insert = f"INSERT INTO inbox (consumer, event_id, event_type) VALUES {rows}"
    return insert + " ON CONFLICT DO NOTHING"


class _Retry(Exception):
    """Leaves the optimistic pass's transaction (rolled back) to go record by record."""


def dead_letter_publisher(broker: KafkaBroker | KafkaRouter, settings: ServiceSettings) -> Any:
    """The service's dead-letter topic, declared as a FastStream publisher."""
    return broker.publisher(
        settings.topic(dead_letter_topic(settings.service)),
        title=f"{settings.service}.dead-letters",
        description="Records a consumer could not apply: original bytes, key and headers,"
        " plus x-dead-letter-error/-consumer/-attempts and x-original-topic/-partition/-offset.",
    )


async def observe_lag(broker: KafkaBroker, service: str, every_s: float = 5.0) -> None:
    """Export each subscriber's lag (high-water mark minus position) until cancelled."""
    exported: set[tuple[str, str, str, str]] = set()
    try:
        while True:
            for subscriber in broker.subscribers:
                consumer = getattr(subscriber, "consumer", None)
                if consumer is None:
                    continue
                group = str(getattr(subscriber, "group_id", None) or "-")
                for tp in consumer.assignment():
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    try:
                        position = await consumer.position(tp)
                    except Exception:  # a rebalance moved the partition away meanwhile
                        continue
                    labels = (service, group, tp.topic, str(tp.partition))
                    CONSUMER_LAG.labels(*labels).set(max(0, highwater - position))
                    exported.add(labels)
            await asyncio.sleep(every_s)
    finally:
        # A stopped worker reports no lag: its partitions are someone else's now.
        for labels in exported:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(*labels)
