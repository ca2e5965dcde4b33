"""The public browse/search query over published therapists, validated.

Filters are optional and combine with AND. `focus_area` also accepts the names `area` and
`problem` (an IPT problem area is a focus area); `accepting_new_clients` also `accepting`.
Sort `rating`: highest average first, unrated last, then by name; sort `name`: by display
name. Paging: page >= 1, page size 1..50.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from catalog.domain.values import (
    AgeGroupField,
    BlankIsNone,
    FocusField,
    Language,
    MethodField,
    ModeField,
    friendly_choice,
)
from contracts.inputs import PAGE_MAX, Text

PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 50
CITY_MAX = 60

SortOrder = Literal["rating", "name"]
# Other names a query string may use for a filter.
ALIASES = ("area", "problem", "accepting")


def _whole(label: str, value: Any, handler: Any, low: int, high: int | None) -> int:
    try:
        number: int = handler(value)
    except ValidationError:
        number = low - 1
    if number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise PydanticCustomError(
            "out_of_range",
            "{label} must be a whole number {bounds}",
            {"label": label, "bounds": bounds},
        )
    return number


class SearchQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    method: Annotated[MethodField | None, BlankIsNone] = None
    focus_area: Annotated[FocusField | None, BlankIsNone] = Field(
        default=None, validation_alias=AliasChoices("focus_area", "area", "problem")
    )
    language: Annotated[Language | None, BlankIsNone] = None
    mode: Annotated[ModeField | None, BlankIsNone] = None
    city: Annotated[Text | None, BlankIsNone] = None
    age_group: Annotated[AgeGroupField | None, BlankIsNone] = None
    accepting_new_clients: bool | None = Field(
        default=None, validation_alias=AliasChoices("accepting_new_clients", "accepting")
    )
    sort: Annotated[SortOrder, friendly_choice("Sort", get_args(SortOrder))] = "rating"
    page: int = 1
    page_size: int = PAGE_SIZE_DEFAULT

    @model_validator(mode="before")
    @classmethod
    def _known_filters(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = {*cls.model_fields, *ALIASES}
            unknown = sorted(str(k) for k in data if k not in known)
            if unknown:
                raise PydanticCustomError(
                    "unknown_parameter",
                    "Unknown search parameter {names}; use {known}",
                    {"names": ", ".join(unknown), "known": ", ".join(sorted(known))},
                )
        return data

    @field_validator("accepting_new_clients", mode="wrap")
    @classmethod
    def _accepting(cls, value: Any, handler: Any) -> bool | None:
        try:
            result: bool | None = handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "invalid_boolean", "Accepting new clients must be true or false"
            ) from None
        return result

    @field_validator("city")
    @classmethod
    def _city(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if len(value) > CITY_MAX:
            raise PydanticCustomError(
                "too_long", "City must be at most {max} characters", {"max": CITY_MAX}
            )
        return value

    @field_validator("page", mode="wrap")
    @classmethod
    def _page(cls, value: Any, handler: Any) -> int:
        return _whole("Page", value, handler, 1, PAGE_MAX)

    @field_validator("page_size", mode="wrap")
    @classmethod
    def _page_size(cls, value: Any, handler: Any) -> int:
        return _whole("Page size", value, handler, 1, PAGE_SIZE_MAX)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @property
    def limit(self) -> int:
        return self.page_size


def rating_sort_key(rating_average: float | None, name: str) -> tuple[int, float, str]:
    """Sort key for `sort=rating`: best average first, unrated last, then by name."""
    if rating_average is None:
        return (1, 0.0, name.casefold())
    return (0, -rating_average, name.casefold())


def name_sort_key(name: str) -> str:
    return name.casefold()
