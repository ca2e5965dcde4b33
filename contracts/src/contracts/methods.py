"""Treatment methods as reference data (docs/domain.md, Methods).

The catalog owns and serves them; matching and booking read the same table, so it
lives here once. A new method is a new entry, not new code.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.vocabulary import AgeGroup, MethodCode, Phase, Profession

LICENSED_PROFESSIONS: frozenset[Profession] = frozenset({"psychologist", "psychotherapist"})


@dataclass(frozen=True)
class Method:
    code: MethodCode
    name_sv: str
    name_en: str
    age_group: AgeGroup
    min_age: int
    max_age: int | None
    min_sessions: int
    max_sessions: int
    min_minutes: int
    max_minutes: int
    initial_sessions: int
    concluding_sessions: int
    # Professions that qualify without a method certification.
    eligible_professions: frozenset[Profession]
    guardian_informed: bool = False

    @property
    def default_sessions(self) -> int:
        return self.min_sessions

    @property
    def default_minutes(self) -> int:
        return self.min_minutes

    def phase_of(self, number: int, planned_sessions: int) -> Phase:
        """Initial: the first sessions; concluding: the last ones; middle: the rest."""
        if number <= self.initial_sessions:
            return "initial"
        if number > planned_sessions - self.concluding_sessions:
            return "concluding"
        return "middle"


METHODS: dict[str, Method] = {
    "IPT": Method(
        code="IPT",
        name_sv="Interpersonell terapi",
        name_en="Interpersonal therapy",
        age_group="adults",
        min_age=18,
        max_age=None,
        min_sessions=12,
        max_sessions=16,
        min_minutes=45,
        max_minutes=60,
        initial_sessions=3,
        concluding_sessions=3,
        eligible_professions=LICENSED_PROFESSIONS,
    ),
    "IPT-A": Method(
        code="IPT-A",
        name_sv="Interpersonell terapi för ungdomar",
        name_en="Interpersonal therapy for adolescents",
        age_group="adolescents",
        min_age=12,
        max_age=17,
        min_sessions=12,
        max_sessions=16,
        min_minutes=45,
        max_minutes=60,
        initial_sessions=3,
        concluding_sessions=3,
        eligible_professions=LICENSED_PROFESSIONS,
        guardian_informed=True,
    ),
    "KBT": Method(
        code="KBT",
        name_sv="Kognitiv beteendeterapi",
        name_en="Cognitive behavioural therapy",
        age_group="adults",
        min_age=18,
        max_age=None,
        min_sessions=8,
        max_sessions=20,
        min_minutes=45,
        max_minutes=60,
        initial_sessions=3,
        concluding_sessions=3,
        eligible_professions=LICENSED_PROFESSIONS,
    ),
}


def method(code: str) -> Method:
    return METHODS[code]
