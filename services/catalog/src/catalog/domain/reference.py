"""Reference data the catalog serves: treatment methods and the problem and focus areas.

Methods are data (`contracts.methods.METHODS`): a new method is a new entry there and shows
up here without code. Areas carry Swedish and English names so a frontend needs no table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from contracts.methods import METHODS, Method
from contracts.vocabulary import FocusArea, ProblemArea


@dataclass(frozen=True)
class Area:
    code: FocusArea
    name_sv: str
    name_en: str

    @property
    def ipt_problem_area(self) -> bool:
        """One of the four IPT problem areas a client picks from (others are focus areas)."""
        return self.code in get_args(ProblemArea)


AREAS: tuple[Area, ...] = (
    Area("grief", "Sorg och förlust", "Grief and loss"),
    Area("role_transition", "Livsförändringar", "Role transitions"),
    Area("interpersonal_dispute", "Konflikter i nära relationer", "Interpersonal disputes"),
    Area("interpersonal_deficits", "Ensamhet och isolering", "Loneliness and isolation"),
    Area("depression", "Nedstämdhet och depression", "Low mood and depression"),
    Area("anxiety", "Ångest", "Anxiety"),
    Area("stress", "Stress", "Stress"),
    Area("relationships", "Relationer", "Relationships"),
)


def area_view(area: Area) -> dict[str, Any]:
    return {
        "code": area.code,
        "kind": "problem_area" if area.ipt_problem_area else "focus_area",
        "name_sv": area.name_sv,
        "name_en": area.name_en,
    }


def method_view(method: Method) -> dict[str, Any]:
    """A method as clients and frontends read it: ranges, phases, who may offer it."""
    return {
        "code": method.code,
        "name_sv": method.name_sv,
        "name_en": method.name_en,
        "age_group": method.age_group,
        "min_age": method.min_age,
        "max_age": method.max_age,
        "sessions": {
            "min": method.min_sessions,
            "max": method.max_sessions,
            "default": method.default_sessions,
        },
        "session_minutes": {"min": method.min_minutes, "max": method.max_minutes},
        # The middle phase is whatever lies between the first and the last sessions.
        "phases": [
            {"phase": "initial", "sessions": method.initial_sessions},
            {"phase": "middle", "sessions": None},
            {"phase": "concluding", "sessions": method.concluding_sessions},
        ],
        "eligible_professions": sorted(method.eligible_professions),
        "certification_qualifies": True,
        "guardian_informed": method.guardian_informed,
    }


def methods_view() -> list[dict[str, Any]]:
    return [method_view(m) for m in METHODS.values()]


def areas_view() -> list[dict[str, Any]]:
    return [area_view(a) for a in AREAS]
