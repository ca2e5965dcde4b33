"""A therapist's profile as an admin creates and edits it, and the rules it must keep.

Rules (docs/domain.md, Therapists), each a named validator below:

- licence number: required for a licensed profession (psychologist, psychotherapist) and
  refused for `certified_staff`; normalised to upper case without blanks, 6-10 letters or
  digits (Swedish legitimation numbers are digits; a little slack for other registers);
- a method may be offered only by a profession eligible for it
  (`contracts.methods.Method.eligible_professions`) or by someone certified in it;
- age groups and methods agree: each offered method's age group must be served
  (IPT-A -> adolescents; IPT, KBT -> adults), and each served age group must have a
  method for it (serving adolescents without IPT-A would promise what matching never gives);
- languages: ISO 639-1, normalised to lower case, validated, no duplicates, at least one;
- in person: city and practice address are both required when `in_person` is offered
  (an address may stay on file while in person is off; it is then not published);
- bio at most 2000 characters (required only to publish), capacity 1-100,
  time zone a valid IANA name (default Europe/Stockholm).

Every error is a `PydanticCustomError` whose message names the field, so a 422 can be
shown as is. `ProfileInvalid` carries the same errors when a rule breaks outside a request
body (a therapist's own edit, re-validated against the whole profile).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from catalog.domain.errors import InvalidTransition, ProfileIncomplete, ProfileInvalid
from catalog.domain.values import (
    DEFAULT_TIME_ZONE,
    AgeGroupField,
    BlankIsNone,
    FocusField,
    Language,
    MethodField,
    ModeField,
    ProfessionField,
    TimeZone,
    non_empty,
    text,
    unique,
)
from contracts.events import TherapistProfilePublished
from contracts.inputs import ShortText, Text
from contracts.methods import LICENSED_PROFESSIONS, METHODS
from contracts.vocabulary import AgeGroup, MethodCode, Profession

NAME_MAX = 100
BIO_MAX = 2000
CITY_MAX = 60  # contracts.vocabulary.CityName
ADDRESS_MAX = 160  # contracts.events.PracticeAddress
LICENCE_MIN, LICENCE_MAX = 6, 10
CAPACITY_MIN, CAPACITY_MAX = 1, 100

PROFESSION_LABELS: dict[str, str] = {
    "psychologist": "A licensed psychologist",
    "psychotherapist": "A licensed psychotherapist",
    "certified_staff": "Staff without a licence",
}

Name = Annotated[Text, text("Name", max_length=NAME_MAX, required=True)]
Bio = Annotated[Text, text("Bio", max_length=BIO_MAX)]
City = Annotated[Text | None, BlankIsNone]
Address = Annotated[Text | None, BlankIsNone]
Languages = Annotated[
    list[Language], non_empty("Languages: list at least one language"), unique("Languages")
]
Modes = Annotated[
    list[ModeField],
    non_empty("Meeting modes: offer at least one (video or in person)"),
    unique("Meeting modes"),
]


def is_licensed(profession: Profession) -> bool:
    return profession in LICENSED_PROFESSIONS


def may_offer(profession: Profession, certifications: list[str], method: str) -> bool:
    """A method may be offered by an eligible profession or by someone certified in it."""
    return profession in METHODS[method].eligible_professions or method in certifications


def _required_place(value: str | None, info: ValidationInfo, label: str, limit: int) -> str | None:
    if value is not None:
        value = value.strip()
        if len(value) > limit:
            raise PydanticCustomError(
                "too_long",
                "{label} must be at most {max} characters (it has {n})",
                {"label": label, "max": limit, "n": len(value)},
            )
    if value is None and "in_person" in (info.data.get("modes") or []):
        raise PydanticCustomError(
            "required_for_in_person",
            "{label} is required when in-person meetings are offered",
            {"label": label},
        )
    return value


class TherapistProfile(BaseModel):
    """The whole profile, always valid. Field order matters: later rules read earlier fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name = Field(description="Display name")
    profession: ProfessionField
    licence_number: Annotated[ShortText | None, BlankIsNone] = Field(
        default=None, validate_default=True
    )
    certifications: Annotated[list[MethodField], unique("Certifications")] = Field(
        default_factory=list, description="Methods the person holds a certified training in"
    )
    methods: Annotated[
        list[MethodField], non_empty("Methods: offer at least one method"), unique("Methods")
    ]
    age_groups: Annotated[
        list[AgeGroupField], non_empty("Age groups: serve at least one"), unique("Age groups")
    ]
    focus_areas: Annotated[list[FocusField], unique("Focus areas")] = Field(default_factory=list)
    languages: Languages
    modes: Modes
    city: City = Field(default=None, validate_default=True)
    practice_address: Address = Field(default=None, validate_default=True)
    bio: Bio = ""
    capacity: int = Field(description="Max active courses")
    accepting_new_clients: bool = True
    time_zone: TimeZone = DEFAULT_TIME_ZONE

    @property
    def licensed(self) -> bool:
        return is_licensed(self.profession)

    @field_validator("licence_number")
    @classmethod
    def _licence(cls, value: str | None, info: ValidationInfo) -> str | None:
        profession = info.data.get("profession")
        if profession is None:  # the profession itself was refused; that error says enough
            return value
        if not is_licensed(profession):
            if value is not None:
                raise PydanticCustomError(
                    "licence_not_applicable",
                    "Licence number is recorded only for licensed psychologists and "
                    "psychotherapists; leave it empty for other staff",
                )
            return None
        if value is None:
            raise PydanticCustomError(
                "licence_required",
                "Licence number is required for a licensed psychologist or psychotherapist",
            )
        number = "".join(value.split()).upper()
        well_formed = number.isascii() and number.isalnum()
        if not (well_formed and LICENCE_MIN <= len(number) <= LICENCE_MAX):
            raise PydanticCustomError(
                "licence_format",
                "Licence number must be {min} to {max} letters or digits",
                {"min": LICENCE_MIN, "max": LICENCE_MAX},
            )
        return number

    @field_validator("methods")
    @classmethod
    def _qualified(cls, methods: list[MethodCode], info: ValidationInfo) -> list[MethodCode]:
        profession = info.data.get("profession")
        certifications = info.data.get("certifications")
        if profession is None or certifications is None:
            return methods
        for code in methods:
            if not may_offer(profession, certifications, code):
                raise PydanticCustomError(
                    "method_not_qualified",
                    "{who} may offer {method} only with a certified training in it: "
                    "add {method} to certifications or remove it from methods",
                    {"who": PROFESSION_LABELS[profession], "method": code},
                )
        return methods

    @field_validator("age_groups")
    @classmethod
    def _ages_match_methods(cls, groups: list[AgeGroup], info: ValidationInfo) -> list[AgeGroup]:
        methods: list[MethodCode] | None = info.data.get("methods")
        if methods is None:
            return groups
        for code in methods:
            needed = METHODS[code].age_group
            if needed not in groups:
                raise PydanticCustomError(
                    "age_group_required",
                    "Age groups: {method} is for {group}; add '{group}' to age groups "
                    "or remove {method} from methods",
                    {"method": code, "group": needed},
                )
        for group in groups:
            if not any(METHODS[code].age_group == group for code in methods):
                fitting = ", ".join(c for c, m in METHODS.items() if m.age_group == group)
                raise PydanticCustomError(
                    "age_group_without_method",
                    "Age groups: '{group}' is served but no method for {group} is offered; "
                    "add {fitting} to methods or remove '{group}'",
                    {"group": group, "fitting": fitting},
                )
        return groups

    @field_validator("city")
    @classmethod
    def _city(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _required_place(value, info, "City", CITY_MAX)

    @field_validator("practice_address")
    @classmethod
    def _address(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _required_place(value, info, "Practice address", ADDRESS_MAX)

    @field_validator("capacity", mode="wrap")
    @classmethod
    def _capacity(cls, value: Any, handler: Any) -> int:
        try:
            number: int = handler(value)
        except ValidationError:
            number = -1
        if not CAPACITY_MIN <= number <= CAPACITY_MAX:
            raise PydanticCustomError(
                "capacity_range",
                "Capacity must be a whole number of active courses from {min} to {max}",
                {"min": CAPACITY_MIN, "max": CAPACITY_MAX},
            )
        return number


# ----------------------------------------------------------------------------- errors


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as `{"field", "code", "message"}` (for `ProfileInvalid` and 422s)."""
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"])
        out.append({"field": field, "code": err["type"], "message": err["msg"]})
    return out


def validate_profile(data: dict[str, Any]) -> TherapistProfile:
    """Build a profile or raise `ProfileInvalid` listing every broken rule."""
    try:
        return TherapistProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileInvalid(validation_errors(exc)) from None


# ----------------------------------------------------------------------- self edit

SELF_EDITABLE: tuple[str, ...] = ("bio", "languages", "modes", "city", "practice_address")


class ProfileSelfEdit(BaseModel):
    """What a therapist may change on their own profile; fields left out stay as they are.

    `null` clears bio, city or address; languages and modes cannot be cleared. The edit is
    applied with `apply_self_edit`, which re-validates the whole profile.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bio: Bio | None = None
    languages: Languages | None = None
    modes: Modes | None = None
    city: City = None
    practice_address: Address = None

    @model_validator(mode="before")
    @classmethod
    def _only_own_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            other = sorted(str(k) for k in data if k not in SELF_EDITABLE)
            if other:
                raise PydanticCustomError(
                    "not_self_editable",
                    "{fields} can be changed only by an admin; you may edit bio, "
                    "languages, meeting modes, city and practice address",
                    {"fields": ", ".join(other)},
                )
        return data

    @field_validator("languages", "modes")
    @classmethod
    def _not_cleared(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            label = "Languages" if info.field_name == "languages" else "Meeting modes"
            raise PydanticCustomError(
                "required", "{label} cannot be removed; keep at least one", {"label": label}
            )
        return value


def apply_self_edit(profile: TherapistProfile, edit: ProfileSelfEdit) -> TherapistProfile:
    """The profile with the edit applied, re-validated as a whole (raises `ProfileInvalid`)."""
    changes = edit.model_dump(exclude_unset=True)
    if "bio" in changes and changes["bio"] is None:
        changes["bio"] = ""
    return validate_profile({**profile.model_dump(), **changes})


# --------------------------------------------------------------------------- status

ProfileStatus = Literal["draft", "published", "withdrawn"]

# (from, to): publishing again while published re-announces an edited profile (new version).
ALLOWED_TRANSITIONS: frozenset[tuple[ProfileStatus, ProfileStatus]] = frozenset(
    {
        ("draft", "published"),
        ("published", "published"),
        ("withdrawn", "published"),
        ("published", "withdrawn"),
    }
)


def completeness_problems(profile: TherapistProfile) -> list[str]:
    """What a valid profile still lacks before it can be published (empty: complete)."""
    problems = []
    if not profile.bio:
        problems.append("Bio: write a short bio before publishing")
    return problems


def publish(status: ProfileStatus, profile: TherapistProfile) -> ProfileStatus:
    """Publish (or re-publish) a complete profile valid under today's rules (one stored
    before a rule was tightened is read as stored); raises `ProfileInvalid` or
    `ProfileIncomplete`."""
    if (status, "published") not in ALLOWED_TRANSITIONS:
        raise InvalidTransition(f"A {status} profile cannot be published", code="cannot_publish")
    validate_profile(profile.model_dump())
    problems = completeness_problems(profile)
    if problems:
        raise ProfileIncomplete("; ".join(problems))
    return "published"


def withdraw(status: ProfileStatus) -> ProfileStatus:
    """Withdraw a published profile; raises `InvalidTransition` otherwise."""
    if (status, "withdrawn") not in ALLOWED_TRANSITIONS:
        raise InvalidTransition(
            f"Only a published profile can be withdrawn; this one is {status}",
            code="not_published",
        )
    return "withdrawn"


# ---------------------------------------------------------------------------- event


def to_published_event(
    profile: TherapistProfile,
    therapist_id: uuid.UUID,
    version: int,
    rating_average: float | None,
    rating_count: int,
) -> TherapistProfilePublished:
    """What matching and booking need: no name, no bio, no licence number.

    The practice address travels only while in-person meetings are offered.
    """
    in_person = "in_person" in profile.modes
    return TherapistProfilePublished(
        therapist_id=therapist_id,
        profession=profile.profession,
        licensed=profile.licensed,
        methods=list(profile.methods),
        focus_areas=list(profile.focus_areas),
        languages=list(profile.languages),
        modes=list(profile.modes),
        city=profile.city,
        practice_address=profile.practice_address if in_person else None,
        age_groups=list(profile.age_groups),
        capacity=profile.capacity,
        accepting_new_clients=profile.accepting_new_clients,
        time_zone=profile.time_zone,
        rating_average=rating_average,
        rating_count=rating_count,
        version=version,
    )
