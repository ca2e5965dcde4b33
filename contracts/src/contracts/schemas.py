"""JSON Schema snapshots of every event, and the compatibility check against them.

`python -m contracts.schemas` rewrites the snapshots (`make schemas`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsoncompat

from contracts.envelope import envelope_of
from contracts.registry import REGISTRY, EventSpec

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_of(spec: EventSpec) -> dict[str, Any]:
    """The schema of the full envelope of one event type, as a consumer reads it."""
    schema = envelope_of(spec.model).model_json_schema(mode="validation")
    schema["title"] = f"{spec.event_type} v{spec.model.schema_version}"
    schema["x-topic"] = spec.topic
    schema["x-key"] = spec.key_field
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def _closed(schema: object) -> object:
    """The schema of what our producers actually wrote: no fields beyond the declared ones."""
    if isinstance(schema, dict):
        closed = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def is_compatible(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when a change to an event keeps its current major version readable.

    Two questions, both answered by jsoncompat:
    - can consumers built on `old` read what the `new` model produces
      (serializer role: a removed or renamed field or a changed type fails)?
    - can consumers built on `new` read the messages already on the topic,
      which the old model wrote with exactly its declared fields (deserializer
      role on the closed schemas: an optional field made required fails)?
    Adding an optional field passes both.
    """
    strip = ("title", "x-topic", "x-key")
    old_body = {k: v for k, v in old.items() if k not in strip}
    new_body = {k: v for k, v in new.items() if k not in strip}
    readable_by_old = jsoncompat.check_compat(
        json.dumps(old_body), json.dumps(new_body), "serializer"
    )
    old_readable_by_new = jsoncompat.check_compat(
        json.dumps(_closed(old_body)), json.dumps(_closed(new_body)), "deserializer"
    )
    return readable_by_old and old_readable_by_new


def write_snapshots(directory: Path = SNAPSHOT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in REGISTRY.specs:
        path = directory / spec.snapshot_name
        path.write_text(render(schema_of(spec)))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_snapshots():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    sys.exit(0)
