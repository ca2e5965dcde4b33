"""No payload field can carry what docs/domain.md keeps off topics.

Two checks over every event in the registry, both on the JSON Schema a
consumer sees: no field is named like free text, a name, contact details or
questionnaire answers; and every string is bounded to a code (enum, pattern,
format, or at most 60 characters), so prose has nowhere to go. The public
practice address and meeting link are the only listed exceptions.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
from pydantic import Field

from contracts import REGISTRY, EventPayload
from contracts.events import PUBLIC_PRACTICE_FIELDS
from contracts.registry import EventSpec
from contracts.schemas import schema_of

FORBIDDEN = re.compile(
    r"(^|_)(name|names|first|last|email|e_mail|phone|mobile|address|text|freetext|bio|note|notes|"
    r"comment|comments|message|body|answer|answers|phq9_items|item|items|description|story)($|_)"
)
MAX_CODE_LENGTH = 60


def _resolve(schema: dict, node: dict) -> dict:
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[-1]] if ref else node


def violations(spec: EventSpec) -> list[str]:
    schema = schema_of(spec)
    found: list[str] = []

    def walk(node: dict, path: str, top_field: str | None) -> None:
        node = _resolve(schema, node)
        for option in node.get("anyOf", []) + node.get("oneOf", []):
            walk(option, path, top_field)
        if "items" in node:
            walk(node["items"], path + "[]", top_field)
        for name, child in node.get("properties", {}).items():
            allowed = (spec.event_type, name) in PUBLIC_PRACTICE_FIELDS and top_field is None
            if FORBIDDEN.search(name) and not allowed:
                found.append(f"{path}{name}: name suggests private data")
            if not allowed:
                walk(child, f"{path}{name}.", top_field or name)
        if node.get("type") == "string" and not (
            "enum" in node
            or "const" in node
            or "format" in node
            or "pattern" in node
            or node.get("maxLength", 10**9) <= MAX_CODE_LENGTH
        ):
            found.append(f"{path.rstrip('.')}: unbounded string")

    payload = schema["$defs"][spec.model.__name__]
    walk(payload, "", None)
    if "additionalProperties" in payload and payload["additionalProperties"] not in (False,):
        found.append("payload accepts arbitrary extra fields")
    return found


@pytest.mark.parametrize("spec", REGISTRY.specs, ids=lambda s: s.event_type)
def test_no_event_can_carry_private_data(spec: EventSpec) -> None:
    assert violations(spec) == []


class _LeakyNote(EventPayload):
    event_type: ClassVar[str] = "LeakyNote"
    producer: ClassVar[str] = "booking"
    key_field: ClassVar[str] = "course_id"
    course_id: str = Field(pattern=r"^[0-9a-f-]{36}$")
    session_notes: str


class _LeakyContact(EventPayload):
    event_type: ClassVar[str] = "LeakyContact"
    producer: ClassVar[str] = "matching"
    key_field: ClassVar[str] = "intake_id"
    intake_id: str = Field(pattern=r"^[0-9a-f-]{36}$")
    client_email: str = Field(max_length=40)
    summary: str


def test_the_check_catches_free_text_and_contact_details() -> None:
    assert violations(EventSpec(_LeakyNote)) == [
        "session_notes: name suggests private data",
        "session_notes: unbounded string",
    ]
    found = violations(EventSpec(_LeakyContact))
    assert "client_email: name suggests private data" in found
    assert "summary: unbounded string" in found
