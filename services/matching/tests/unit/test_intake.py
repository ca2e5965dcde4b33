"""Intake validation: what a client gets back as a 422 (docs/domain.md, Intake and screening)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from matching.domain.intake import Intake


def valid(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "age": 34,
        "languages": ["sv", "ar"],
        "preferred_mode": "video",
        "problem_areas": ["grief"],
        "phq9": [1, 1, 1, 1, 1, 1, 1, 1, 0],
        "time_windows": [{"weekday": 1, "start": "13:00", "end": "17:00"}],
        "consent_to_treatment": True,
        "consent_to_health_data": True,
    }
    data.update(changes)
    return data


def errors(**changes: Any) -> str:
    with pytest.raises(ValidationError) as exc:
        Intake.model_validate(valid(**changes))
    return str(exc.value)


def test_valid_intake_keeps_every_answer_and_order() -> None:
    intake = Intake.model_validate(
        valid(direct_therapist_id=str(uuid.UUID(int=5)), free_text="  hej  ")
    )
    assert intake.phq9 == [1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert intake.languages == ["sv", "ar"]
    assert intake.direct_therapist_id == uuid.UUID(int=5)
    assert intake.free_text == "hej"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"phq9": [0] * 8}, "phq9"),
        ({"phq9": [0] * 10}, "phq9"),
        ({"phq9": [4] + [0] * 8}, "phq9.0"),
        ({"phq9": [0] * 8 + [-1]}, "phq9.8"),
        ({"problem_areas": ["grief", "stress", "anxiety"]}, "problem_areas"),
        ({"problem_areas": []}, "problem_areas"),
        ({"problem_areas": ["loneliness"]}, "problem_areas.0"),
        ({"languages": []}, "languages"),
        ({"languages": ["sv", "en", "ar", "fa", "so", "pl"]}, "languages"),
        ({"languages": ["swe"]}, "languages.0"),
        ({"preferred_mode": "phone"}, "preferred_mode"),
        ({"free_text": "x" * 2001}, "free_text"),
        ({"age": -1}, "age"),
    ],
)
def test_malformed_fields_are_refused(changes: dict[str, Any], field: str) -> None:
    assert field in errors(**changes)


def test_duplicate_language_is_refused() -> None:
    assert "each language may be listed only once" in errors(languages=["sv", "sv"])


def test_duplicate_area_is_refused() -> None:
    assert "only once" in errors(problem_areas=["grief", "grief"])


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("consent_to_treatment", "consent to treatment is required"),
        ("consent_to_health_data", "consent to processing of health data is required"),
    ],
)
def test_both_consents_are_required(field: str, message: str) -> None:
    assert message in errors(**{field: False})


def test_missing_consent_is_refused() -> None:
    data = valid()
    del data["consent_to_health_data"]
    with pytest.raises(ValidationError):
        Intake.model_validate(data)


def test_in_person_needs_a_city() -> None:
    assert "a city is required when meeting in person" in errors(preferred_mode="in_person")
    assert "city" in errors(preferred_mode="in_person", city="   ")
    assert Intake.model_validate(valid(preferred_mode="in_person", city="Malmö")).city == "Malmö"


def test_either_does_not_need_a_city() -> None:
    assert Intake.model_validate(valid(preferred_mode="either")).city is None


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([{"weekday": 7, "start": "09:00", "end": "10:00"}], "weekday"),
        ([{"weekday": -1, "start": "09:00", "end": "10:00"}], "weekday"),
        ([{"weekday": 0, "start": "10:00", "end": "09:00"}], "must end after it starts"),
        ([{"weekday": 0, "start": "10:00", "end": "10:00"}], "must end after it starts"),
        ([{"weekday": 0, "start": "25:00", "end": "26:00"}], "start"),
        ([{"weekday": 0, "start": "09:00+01:00", "end": "10:00+01:00"}], "without a time zone"),
        (
            [
                {"weekday": 2, "start": "09:00", "end": "12:00"},
                {"weekday": 2, "start": "11:00", "end": "13:00"},
            ],
            "overlap",
        ),
        (
            [
                {"weekday": d % 7, "start": f"{8 + d // 7}:00", "end": f"{8 + d // 7}:30"}
                for d in range(15)
            ],
            "time_windows",
        ),
    ],
)
def test_malformed_time_windows_are_refused(windows: list[dict[str, Any]], message: str) -> None:
    assert message in errors(time_windows=windows)


def test_adjacent_and_other_day_windows_are_fine() -> None:
    intake = Intake.model_validate(
        valid(
            time_windows=[
                {"weekday": 2, "start": "09:00", "end": "12:00"},
                {"weekday": 2, "start": "12:00", "end": "13:00"},
                {"weekday": 3, "start": "09:00", "end": "12:00"},
            ]
        )
    )
    assert len(intake.time_windows) == 3


def test_unknown_fields_are_refused() -> None:
    assert "extra" in errors(name="Anna").lower()
