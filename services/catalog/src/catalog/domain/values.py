"""Small validated value types shared by the catalog's models.

Every error is a `PydanticCustomError` with a stable `type` (a code) and a message
written for a person, so a 422 from these models can be shown by a frontend as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar, get_args

import pycountry
from pydantic import AfterValidator, BeforeValidator, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

from contracts.inputs import clean_text, is_time_zone
from contracts.vocabulary import AgeGroup, FocusArea, MeetingMode, MethodCode, Profession

T = TypeVar("T")

DEFAULT_TIME_ZONE = "Europe/Stockholm"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def friendly_choice(label: str, allowed: Iterable[str]) -> WrapValidator:
    """Replace pydantic's literal error by '<label> must be one of: a, b (got 'x')'."""
    choices = ", ".join(allowed)

    def _wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "invalid_choice",
                "{label} must be one of: {choices} (got {got})",
                {"label": label, "choices": choices, "got": _show(value)},
            ) from None

    return WrapValidator(_wrap)


def unique(label: str) -> AfterValidator:
    """Refuse a list that names the same item twice."""

    def _check(items: list[T]) -> list[T]:
        seen: set[Any] = set()
        for item in items:
            if item in seen:
                raise PydanticCustomError(
                    "duplicate",
                    "{label} lists {item} more than once",
                    {"label": label, "item": _show(item)},
                )
            seen.add(item)
        return items

    return AfterValidator(_check)


def text(label: str, *, max_length: int, required: bool = False) -> AfterValidator:
    """Trim a text and bound its length, with a message naming the field."""

    def _check(value: str) -> str:
        value = clean_text(value).strip()
        if required and not value:
            raise PydanticCustomError("required", "{label} must not be empty", {"label": label})
        if len(value) > max_length:
            raise PydanticCustomError(
                "too_long",
                "{label} must be at most {max} characters (it has {n})",
                {"label": label, "max": max_length, "n": len(value)},
            )
        return value

    return AfterValidator(_check)


def non_empty(message: str) -> AfterValidator:
    """Refuse an empty list with the given message."""

    def _check(items: list[T]) -> list[T]:
        if not items:
            raise PydanticCustomError("required", message)
        return items

    return AfterValidator(_check)


def blank_to_none(value: Any) -> Any:
    """An empty or blank form field means 'not given'."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


BlankIsNone = BeforeValidator(blank_to_none)


def _language(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "language_code", "A language must be a two-letter ISO 639-1 code such as 'sv'"
        )
    code = value.strip().lower()
    found = None
    if len(code) == 2 and code.isascii() and code.isalpha():
        try:
            found = pycountry.languages.get(alpha_2=code)
        except (KeyError, LookupError):  # older pycountry raises instead of returning None
            found = None
    if found is None:
        raise PydanticCustomError(
            "language_code",
            "{got} is not a known ISO 639-1 language code (two letters, such as 'sv' or 'en')",
            {"got": _show(value)},
        )
    return code


def is_valid_time_zone(name: str) -> bool:
    # Checked against the names read once at start-up: a name never reaches the file system.
    return is_time_zone(name)


def _time_zone(value: Any) -> str:
    if not isinstance(value, str) or not is_valid_time_zone(value.strip()):
        raise PydanticCustomError(
            "time_zone", "Time zone is not a known IANA time zone (such as 'Europe/Stockholm')"
        )
    return value.strip()


# Accepts any case and surrounding blanks; stored lowercase (ISO 639-1, validated by pycountry).
Language = Annotated[str, BeforeValidator(_language)]
TimeZone = Annotated[str, BeforeValidator(_time_zone)]

MethodField = Annotated[MethodCode, friendly_choice("Method", get_args(MethodCode))]
FocusField = Annotated[FocusArea, friendly_choice("Focus area", get_args(FocusArea))]
ModeField = Annotated[MeetingMode, friendly_choice("Meeting mode", get_args(MeetingMode))]
AgeGroupField = Annotated[AgeGroup, friendly_choice("Age group", get_args(AgeGroup))]
ProfessionField = Annotated[Profession, friendly_choice("Profession", get_args(Profession))]
