"""One registry: event type -> topic, key field, compaction, partitions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from contracts.envelope import ContractError, Envelope, EventPayload, envelope_of, first_error
from contracts.events import ALL_EVENTS


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


@dataclass(frozen=True)
class EventSpec:
    model: type[EventPayload]

    @property
    def event_type(self) -> str:
        return self.model.event_type

    @property
    def topic(self) -> str:
        """`<service>.<event-name>.v<major>`."""
        name = self.model.topic_name or _kebab(self.model.event_type)
        return f"{self.model.producer}.{name}.v{self.model.schema_version}"

    @property
    def key_field(self) -> str:
        return self.model.key_field

    @property
    def compacted(self) -> bool:
        return self.model.compacted

    @property
    def partitions(self) -> int:
        return self.model.partitions

    @property
    def snapshot_name(self) -> str:
        return f"{self.event_type}.v{self.model.schema_version}.json"


@dataclass(frozen=True)
class Registry:
    specs: tuple[EventSpec, ...]
    by_type: dict[str, EventSpec] = field(init=False)
    by_topic: dict[str, EventSpec] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_type", {s.event_type: s for s in self.specs})
        object.__setattr__(self, "by_topic", {s.topic: s for s in self.specs})

    def spec(self, model: type[EventPayload] | str) -> EventSpec:
        name = model if isinstance(model, str) else model.event_type
        return self.by_type[name]

    def topic(self, model: type[EventPayload] | str) -> str:
        return self.spec(model).topic


REGISTRY = Registry(tuple(EventSpec(model) for model in ALL_EVENTS))


def topic_of(model: type[EventPayload] | str) -> str:
    return REGISTRY.topic(model)


P = TypeVar("P", bound=EventPayload)


def decode(raw: bytes | str | dict[str, Any], expected: type[P] | None = None) -> Envelope[Any]:
    """Validate a message into its typed envelope or raise ContractError naming the field."""
    if isinstance(raw, dict):
        data = raw
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError("(message)", f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError("(message)", "an event must be a JSON object")
    event_type = data.get("event_type")
    spec = REGISTRY.by_type.get(event_type) if isinstance(event_type, str) else None
    if spec is None:
        raise ContractError("event_type", f"unknown event type {event_type!r}")
    if expected is not None and spec.model is not expected:
        raise ContractError("event_type", f"expected {expected.event_type!r}, got {event_type!r}")
    if data.get("schema_version") != spec.model.schema_version:
        raise ContractError(
            "schema_version",
            f"{event_type} v{data.get('schema_version')!r} is not served on {spec.topic}",
        )
    try:
        return envelope_of(spec.model).model_validate(data)
    except ValidationError as exc:
        raise first_error(exc) from exc
