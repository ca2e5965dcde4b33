"""The curated demo catalog (`therapists.json`): fictional people, every entry a valid profile.

File shape: `{"description": str, "therapists": [{"id": uuid, "profile": {...}}]}`; the
profile is exactly what an admin would submit (`TherapistProfile`). Ids are fixed so a
re-seed updates rather than duplicates.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from importlib import resources

from catalog.domain.profile import TherapistProfile

DEMO_FILE = "therapists.json"


@dataclass(frozen=True)
class DemoTherapist:
    therapist_id: uuid.UUID
    profile: TherapistProfile


def demo_therapists() -> list[DemoTherapist]:
    """Every demo entry with its fixed id, validated (raises on a broken entry)."""
    raw = resources.files("catalog.demo").joinpath(DEMO_FILE).read_text(encoding="utf-8")
    doc = json.loads(raw)
    return [
        DemoTherapist(uuid.UUID(entry["id"]), TherapistProfile.model_validate(entry["profile"]))
        for entry in doc["therapists"]
    ]


def load_demo_profiles() -> list[TherapistProfile]:
    """The demo profiles, validated."""
    return [entry.profile for entry in demo_therapists()]
