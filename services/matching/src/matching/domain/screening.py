"""Screening: PHQ-9, risk, severity and the method an intake is matched for (docs/domain.md).

Every threshold is a named constant; every rule a small function so it can be
table-tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from contracts.methods import METHODS
from contracts.phq9 import PHQ9_ITEMS, PHQ9_MAX_ANSWER, severity_band
from contracts.vocabulary import RELATIONAL_AREAS, AgeGroup, MethodCode, RiskLevel, SeverityBand
from matching.domain.intake import Intake

MIN_AGE = METHODS["IPT-A"].min_age  # 12: younger clients are refused
ADULT_AGE = METHODS["IPT"].min_age  # 18
ADOLESCENT_METHOD: MethodCode = "IPT-A"
RELATIONAL_ADULT_METHOD: MethodCode = "IPT"
DEFAULT_ADULT_METHOD: MethodCode = "KBT"
SELF_HARM_ITEM = 9  # PHQ-9 item 9: thoughts of being better off dead or of self-harm
HIGH_RISK_ABOVE = 0  # any answer above this on item 9 is high risk
APPROVAL_FROM_TOTAL = 20  # "severe": a clinician approves the match; licensed only

CRISIS_MESSAGE: dict[str, str] = {
    "sv": (
        "Om du har tankar på att skada dig själv: ring 112 eller åk till närmaste "
        "akutmottagning nu. Vill du ha råd om vart du ska vända dig kan du ringa 1177 "
        "dygnet runt. Vår jourhavande behandlare har fått veta om din anmälan."
    ),
    "en": (
        "If you are having thoughts of harming yourself: call 112 or go to the nearest "
        "emergency department now. For advice on where to turn, call 1177 at any time of "
        "day or night. Our on-call clinician has been told about your intake."
    ),
}


def crisis_message(language: str) -> str:
    """The crisis text for a high-risk intake; Swedish unless the client reads English."""
    return CRISIS_MESSAGE["en" if language == "en" else "sv"]


class ScreeningRefused(Exception):
    """An intake the platform cannot take at all; `code` is stable, messages are for people."""

    def __init__(self, code: Literal["under_minimum_age"], message_sv: str, message_en: str):
        super().__init__(message_en)
        self.code = code
        self.message_sv = message_sv
        self.message_en = message_en

    @property
    def message(self) -> str:
        return self.message_en


@dataclass(frozen=True)
class Screening:
    total: int
    band: SeverityBand
    risk_level: RiskLevel
    requires_approval: bool
    method: MethodCode
    age_group: AgeGroup

    @property
    def requires_licensed(self) -> bool:
        # Same threshold as approval: severe cases need a licensed psychologist/psychotherapist.
        return self.requires_approval

    @property
    def escalate(self) -> bool:
        """High risk is never matched automatically: the on-call clinician triages first."""
        return self.risk_level == "high"


def phq9_total(answers: Sequence[int]) -> int:
    if len(answers) != PHQ9_ITEMS:
        raise ValueError(f"PHQ-9 has {PHQ9_ITEMS} answers, not {len(answers)}")
    if any(not 0 <= a <= PHQ9_MAX_ANSWER for a in answers):
        raise ValueError(f"each PHQ-9 answer is 0-{PHQ9_MAX_ANSWER}")
    return sum(answers)


def risk_level(answers: Sequence[int]) -> RiskLevel:
    return "high" if answers[SELF_HARM_ITEM - 1] > HIGH_RISK_ABOVE else "standard"


def requires_approval(total: int) -> bool:
    return total >= APPROVAL_FROM_TOTAL


def age_group_for(age: int) -> AgeGroup:
    if age < MIN_AGE:
        raise ScreeningRefused(
            "under_minimum_age",
            message_sv=(
                f"Samtal tar emot personer från {MIN_AGE} år. Prata med en vuxen du litar på, "
                "elevhälsan eller ring 1177 för råd. Vid fara: ring 112."
            ),
            message_en=(
                f"Samtal can help people aged {MIN_AGE} and over. Talk to an adult you trust, "
                "your school health service, or call 1177 for advice. In an emergency: call 112."
            ),
        )
    return "adults" if age >= ADULT_AGE else "adolescents"


def method_for(age: int, problem_areas: Iterable[str]) -> MethodCode:
    if age_group_for(age) == "adolescents":
        return ADOLESCENT_METHOD
    if any(area in RELATIONAL_AREAS for area in problem_areas):
        return RELATIONAL_ADULT_METHOD
    return DEFAULT_ADULT_METHOD


def screen(age: int, phq9: Sequence[int], problem_areas: Iterable[str]) -> Screening:
    """Raises ScreeningRefused for an age the platform does not serve."""
    age_group = age_group_for(age)
    total = phq9_total(phq9)
    return Screening(
        total=total,
        band=severity_band(total),
        risk_level=risk_level(phq9),
        requires_approval=requires_approval(total),
        method=method_for(age, problem_areas),
        age_group=age_group,
    )


def screen_intake(intake: Intake) -> Screening:
    return screen(intake.age, intake.phq9, intake.problem_areas)
