"""One envelope for every event (docs/architecture.md, Events).

`Envelope.wrap` builds one around a payload; `decode` turns bytes from a topic
back into a typed envelope, rejecting unknown event types and malformed
payloads with an error that names the field.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator


class EventPayload(BaseModel):
    """Base of every event payload.

    Payloads ignore fields they do not know, so adding an optional field is a
    minor change that older consumers survive (docs/architecture.md, Events).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    producer: ClassVar[str]
    # The aggregate whose events must stay ordered: the Kafka key.
    key_field: ClassVar[str]
    compacted: ClassVar[bool] = False
    partitions: ClassVar[int] = 6
    # The event's part of the topic name when it is not the kebab-cased event type: events
    # every service publishes alike (e.g. `booking.access-recorded.v1`).
    topic_name: ClassVar[str | None] = None

    def key(self) -> str:
        return str(getattr(self, self.key_field))


P = TypeVar("P", bound=EventPayload)

# The longest correlation or causation id an envelope carries (a request's own ids are cut
# to it where they come in: chassis.app.JourneyIds).
JOURNEY_ID_MAX = 100


class Envelope(BaseModel, Generic[P]):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID
    event_type: str
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, max_length=40)
    correlation_id: str = Field(min_length=1, max_length=JOURNEY_ID_MAX)
    causation_id: str | None = Field(default=None, max_length=JOURNEY_ID_MAX)
    payload: P

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @classmethod
    def wrap(
        cls,
        payload: P,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        event_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope[P]:
        event_id = event_id or uuid.uuid4()
        return envelope_of(type(payload))(
            event_id=event_id,
            event_type=payload.event_type,
            schema_version=payload.schema_version,
            occurred_at=occurred_at or datetime.now(UTC),
            producer=payload.producer,
            # A journey that starts with this event is its own correlation.
            correlation_id=correlation_id or str(event_id),
            causation_id=causation_id,
            payload=payload,
        )

    @property
    def key(self) -> str:
        return self.payload.key()

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class ContractError(ValueError):
    """A message that does not honour its contract. `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def first_error(error: ValidationError, prefix: str = "") -> ContractError:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(root)"
    return ContractError(prefix + field, first["msg"])


@functools.cache
def envelope_of(model: type[P]) -> type[Envelope[P]]:
    """The envelope class of one payload model, parameterised at run time (what
    `Envelope[model]` means when `model` is a variable). Kept here: pydantic caches
    parameterised classes only weakly, so without a reference the garbage collector drops
    them and every `wrap` builds the class again (most of the cost of writing an event)."""
    return cast("type[Envelope[P]]", Envelope.__class_getitem__(model))
