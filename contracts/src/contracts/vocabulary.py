"""The domain's shared words: codes that travel on topics (docs/domain.md).

Events carry codes, never free text; every consumer turns codes into words itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from contracts.inputs import clean_text

MethodCode = Literal["IPT", "IPT-A", "KBT"]
# The four IPT problem areas; an intake may also name any other focus area.
ProblemArea = Literal["grief", "role_transition", "interpersonal_dispute", "interpersonal_deficits"]
RELATIONAL_AREAS: frozenset[str] = frozenset(
    {"grief", "role_transition", "interpersonal_dispute", "interpersonal_deficits", "relationships"}
)
FocusArea = Literal[
    "grief",
    "role_transition",
    "interpersonal_dispute",
    "interpersonal_deficits",
    "depression",
    "anxiety",
    "stress",
    "relationships",
]
Profession = Literal["psychologist", "psychotherapist", "certified_staff"]
MeetingMode = Literal["video", "in_person"]
PreferredMode = Literal["video", "in_person", "either"]
AgeGroup = Literal["adults", "adolescents"]
SeverityBand = Literal["minimal", "mild", "moderate", "moderately_severe", "severe"]
RiskLevel = Literal["standard", "high"]
Phase = Literal["initial", "middle", "concluding"]
Actor = Literal["client", "therapist", "clinician", "admin", "system"]
CourseOutcome = Literal["response", "remission", "neither"]

# Coarse, bounded strings: a code is never a place for prose.
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
CityName = Annotated[
    str, StringConstraints(min_length=1, max_length=60), AfterValidator(clean_text)
]
# The shape of every IANA name (the first part too may hold digits, '+' and '-': GMT0,
# EST5EDT, W-SU), so that each zone the forms accept (contracts.inputs) can be announced.
TimeZoneName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$", max_length=64),
]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=48)]
Score = Annotated[float, Field(ge=0, le=100)]
