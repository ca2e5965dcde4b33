"""The intake a client submits (docs/domain.md, Intake and screening).

Validation errors here become HTTP 422s, so every message says what to fix.
Without both consents the model does not validate, so nothing can be stored.
"""

from __future__ import annotations

import uuid
from datetime import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.inputs import Text
from contracts.phq9 import PHQ9_ITEMS, PHQ9_MAX_ANSWER
from contracts.vocabulary import CityName, FocusArea, LanguageCode, PreferredMode

MIN_LANGUAGES = 1
MAX_LANGUAGES = 5
MIN_PROBLEM_AREAS = 1
MAX_PROBLEM_AREAS = 2
MAX_FREE_TEXT_CHARS = 2000
MAX_TIME_WINDOWS = 14
# Wide enough for any person; the age *rules* (under 12 refused) live in screening.
MIN_STATED_AGE = 0
MAX_STATED_AGE = 130
WEEKDAYS = 7  # 0 = Monday ... 6 = Sunday, like datetime.weekday()

Phq9Answer = Annotated[int, Field(ge=0, le=PHQ9_MAX_ANSWER)]


class WeeklyWindow(BaseModel):
    """A weekly time the client can meet, in the client's local time (Europe/Stockholm)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weekday: int = Field(ge=0, le=WEEKDAYS - 1, description="0 = Monday ... 6 = Sunday")
    start: time
    end: time

    @model_validator(mode="after")
    def _end_after_start(self) -> WeeklyWindow:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("a time window is in local time; give it without a time zone")
        if self.end <= self.start:
            raise ValueError(
                f"a time window must end after it starts ({self.start:%H:%M}-{self.end:%H:%M})"
            )
        return self

    def overlaps(self, other: WeeklyWindow) -> bool:
        return self.weekday == other.weekday and self.start < other.end and other.start < self.end

    def contains(self, weekday: int, moment: time) -> bool:
        # Half-open: a slot starting exactly at `end` is outside the window.
        return weekday == self.weekday and self.start <= moment < self.end


class Intake(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    age: int = Field(ge=MIN_STATED_AGE, le=MAX_STATED_AGE)
    languages: list[LanguageCode] = Field(
        min_length=MIN_LANGUAGES,
        max_length=MAX_LANGUAGES,
        description="ISO 639-1 codes, most preferred first",
    )
    preferred_mode: PreferredMode
    city: CityName | None = None
    problem_areas: list[FocusArea] = Field(
        min_length=MIN_PROBLEM_AREAS, max_length=MAX_PROBLEM_AREAS
    )
    phq9: list[Phq9Answer] = Field(min_length=PHQ9_ITEMS, max_length=PHQ9_ITEMS)
    free_text: Annotated[Text | None, Field(max_length=MAX_FREE_TEXT_CHARS)] = None
    time_windows: list[WeeklyWindow] = Field(default_factory=list, max_length=MAX_TIME_WINDOWS)
    direct_therapist_id: uuid.UUID | None = None
    consent_to_treatment: bool
    consent_to_health_data: bool

    @field_validator("languages")
    @classmethod
    def _distinct_languages(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each language may be listed only once")
        return value

    @field_validator("problem_areas")
    @classmethod
    def _distinct_areas(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each problem area may be chosen only once")
        return value

    @field_validator("free_text")
    @classmethod
    def _blank_text_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("time_windows")
    @classmethod
    def _no_overlapping_windows(cls, value: list[WeeklyWindow]) -> list[WeeklyWindow]:
        for i, first in enumerate(value):
            for second in value[i + 1 :]:
                if first.overlaps(second):
                    raise ValueError(
                        f"time windows on weekday {first.weekday} overlap "
                        f"({first.start:%H:%M}-{first.end:%H:%M} and "
                        f"{second.start:%H:%M}-{second.end:%H:%M})"
                    )
        return value

    @field_validator("consent_to_treatment")
    @classmethod
    def _treatment_consent(cls, value: bool) -> bool:
        if not value:
            raise ValueError("consent to treatment is required; without it nothing is stored")
        return value

    @field_validator("consent_to_health_data")
    @classmethod
    def _health_data_consent(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "consent to processing of health data is required; without it nothing is stored"
            )
        return value

    @model_validator(mode="after")
    def _city_for_in_person(self) -> Intake:
        if self.preferred_mode == "in_person" and not self.city:
            raise ValueError("a city is required when meeting in person")
        return self
