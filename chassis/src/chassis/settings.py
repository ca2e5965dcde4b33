"""Settings every service shares; each service subclasses with its own env prefix.

class Settings(ServiceSettings):
    model_config = service_config("booking")   # SAMTAL_BOOKING_*
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def service_config(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=f"SAMTAL_{service.upper()}_", env_nested_delimiter="__", extra="ignore"
    )


# Postgres's `plan_cache_mode` values (`ServiceSettings.db_plan_cache_mode`).
PlanCacheMode = Literal["auto", "force_generic_plan", "force_custom_plan"]


class ServiceSettings(BaseSettings):
    model_config = service_config("service")

    service: str = "service"
    # Postgres. `database_url` names the server and database; the service connects as
    # its own role (`db_role`) and sees only its own schema, named like the role.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/samtal"
    db_role: str | None = None
    db_password: SecretStr = SecretStr("samtal-local")
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    # How Postgres plans the pool's prepared statements (its `plan_cache_mode`): "auto" plans
    # a statement afresh for its parameters until a generic plan looks no costlier, and may
    # never settle; "force_generic_plan" plans each statement once per connection.
    db_plan_cache_mode: PlanCacheMode = "auto"
    # A statement unanswered this long fails (TimeoutError) and its connection is dropped.
    # A connection that died without closing (a network partition, a database failover)
    # would otherwise hold whoever waits on it until the kernel gives up, some 15 minutes.
    db_command_timeout_s: float = Field(default=60, gt=0)
    # The same, sooner, for a connection a task holds for as long as it runs (the outbox
    # relay's lock, a LISTEN): it only answers small statements, and while it is silent the
    # relay publishes nothing and a listener hears nothing.
    db_held_timeout_s: float = Field(default=10, gt=0)
    # Kafka.
    kafka_bootstrap: str = "127.0.0.1:9092"
    # On for real Kafka; the embedded broker (Tansu) fails the idempotent producer.
    kafka_idempotence: bool = True
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=1, le=5000)
    # The same per consumer group (the name a handler's `group` gives, e.g. "matcher"), for
    # a group whose records must not wait: a broker that holds an empty fetch for its whole
    # wait (the embedded one does, even when records come meanwhile) delays each record by
    # up to this much. Shorter costs more fetches while idle.
    kafka_group_fetch_max_wait_ms: dict[str, Annotated[int, Field(ge=1, le=5000)]] = Field(
        default_factory=dict
    )
    kafka_group_prefix: str = ""
    # A broker notices a worker that died without leaving its groups after the session
    # timeout; only then are its partitions given to others (or to it, restarted).
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # Static group membership (KIP-345): a worker restarted with the same instance id takes
    # its partitions back without waiting for its old session to expire. The id must be
    # unique among the live replicas and stable across a restart: `kafka_instance_id`, else
    # host name and HTTP port (a pod's name survives a container restart; replicas on one
    # host differ by port).
    kafka_static_membership: bool = True
    kafka_instance_id: str | None = None
    # Prepended to every topic and group; tests use it to stay apart.
    topic_prefix: str = ""
    # Consumers: attempts before a message is dead-lettered, and the backoff between.
    consumer_max_attempts: int = Field(default=5, ge=1, le=50)
    consumer_backoff_s: float = Field(default=0.2, ge=0)
    consumer_backoff_max_s: float = Field(default=5.0, ge=0)
    # Records a consumer group takes at once and applies in one transaction.
    consumer_batch_size: int = Field(default=200, ge=1, le=10_000)
    # A batch's partitions are applied side by side on this many connections at most.
    consumer_lanes: int = Field(default=4, ge=1, le=64)
    # Outbox relay.
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_s: float = Field(default=0.25, gt=0)
    # While rows keep coming, the relay claims at most once per linger (bigger batches, less
    # CPU per event; for a machine short of CPU); the first rows after a quiet spell go at
    # once. Off by default: on the 2-core bench 5 ms doubled p99 for no measurable rate.
    outbox_linger_s: float = Field(default=0.0, ge=0)
    outbox_retention_hours: float = Field(default=72, ge=0)
    # How long the relay waits for the broker to acknowledge a batch before it starts over.
    outbox_publish_timeout_s: float = Field(default=10.0, gt=0)
    # A new leader waits this long for its predecessor to mark what it had in flight before
    # publishing those rows again; longer than the publish timeout, so a live predecessor
    # always finishes first.
    outbox_takeover_grace_s: float = Field(default=30.0, gt=0)
    # Auth: PEM public keys (several during rotation) and the expected issuer/audience.
    jwt_public_keys: list[str] = Field(default_factory=list)
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    jwt_issuer: str = "samtal"
    jwt_audience: str = "samtal"
    # The longest a token may live (exp - iat) per role; a longer-lived token is refused
    # here and (with the longest of these) at the gateway. Tokens must carry exp and iat.
    jwt_max_lifetime_s: dict[str, int] = Field(
        default_factory=lambda: {
            "client": 24 * 3600,
            "therapist": 12 * 3600,
            "clinician": 12 * 3600,
            "admin": 8 * 3600,
        }
    )
    # Observability.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    otlp_endpoint: str | None = None
    # Start-up: give up loudly when the database or broker do not answer by then.
    startup_timeout_s: float = Field(default=20, gt=0)
    # Where the gateway mounts the service (e.g. /api/booking), for the OpenAPI docs.
    root_path: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # The api serves /metrics only on this port (never routed by the gateway); 0 picks a
    # free one. A worker serves /metrics on its own port, which is never routed either.
    metrics_host: str | None = None  # default: http_host
    metrics_port: int = Field(default=9400, ge=0, le=65535)

    def fetch_max_wait_ms(self, group: str) -> int:
        """How long a fetch of this consumer group may wait at the broker."""
        return self.kafka_group_fetch_max_wait_ms.get(group, self.kafka_fetch_max_wait_ms)

    @property
    def db_schema(self) -> str:
        return self.db_role or self.service

    @property
    def role(self) -> str:
        return self.db_role or self.service

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def group(self, consumer: str) -> str:
        return f"{self.topic_prefix}{self.kafka_group_prefix}{self.service}.{consumer}"
