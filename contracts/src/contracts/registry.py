"""One registry: event type -> topic, key field, compaction, partitions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from contracts.envelope import EventPayload
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
        return f"{self.model.producer}.{_kebab(self.model.event_type)}.v{self.model.schema_version}"

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
