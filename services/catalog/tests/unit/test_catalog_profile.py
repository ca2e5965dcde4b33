"""Profile rules: each rule with a failing and a passing case; messages name the field."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from catalog.domain.errors import InvalidTransition, ProfileIncomplete, ProfileInvalid
from catalog.domain.profile import (
    ProfileSelfEdit,
    TherapistProfile,
    apply_self_edit,
    publish,
    to_published_event,
    validate_profile,
    withdraw,
)
from chassis.http import status_of


def data(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Elin Bergqvist",
        "profession": "psychologist",
        "licence_number": "402117",
        "certifications": [],
        "methods": ["IPT"],
        "age_groups": ["adults"],
        "focus_areas": ["grief", "depression"],
        "languages": ["sv", "en"],
        "modes": ["video", "in_person"],
        "city": "Stockholm",
        "practice_address": "Götgatan 48, 118 26 Stockholm",
        "bio": "Legitimerad psykolog som arbetar med IPT.",
        "capacity": 12,
        "accepting_new_clients": True,
    }
    base.update(changes)
    return base


def refused(**changes: Any) -> dict[str, str]:
    """The {field: message} errors of an invalid profile."""
    with pytest.raises(ValidationError) as info:
        TherapistProfile.model_validate(data(**changes))
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}


def test_baseline_is_valid_and_defaults_apply() -> None:
    profile = TherapistProfile.model_validate(data())
    assert profile.time_zone == "Europe/Stockholm"
    assert profile.licensed is True


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"name": "   "}, "name", "name must not be empty"),
        ({"name": "x" * 101}, "name", "name must be at most 100"),
        ({"profession": "doctor"}, "profession", "profession must be one of"),
        ({"licence_number": None}, "licence_number", "licence number is required"),
        ({"licence_number": ""}, "licence_number", "licence number is required"),
        ({"licence_number": "12345"}, "licence_number", "licence number must be 6 to 10"),
        ({"licence_number": "12345678901"}, "licence_number", "licence number must be 6 to 10"),
        ({"licence_number": "123-456"}, "licence_number", "licence number must be 6 to 10"),
        ({"certifications": ["KBT", "KBT"]}, "certifications", "certifications lists 'kbt'"),
        ({"methods": []}, "methods", "methods: offer at least one"),
        ({"methods": ["EMDR"]}, "methods.0", "method must be one of: ipt, ipt-a, kbt"),
        ({"methods": ["IPT", "IPT"]}, "methods", "methods lists 'ipt' more than once"),
        ({"age_groups": []}, "age_groups", "age groups: serve at least one"),
        ({"age_groups": ["kids"]}, "age_groups.0", "age group must be one of"),
        ({"focus_areas": ["sleep"]}, "focus_areas.0", "focus area must be one of"),
        ({"focus_areas": ["grief", "grief"]}, "focus_areas", "focus areas lists 'grief'"),
        ({"languages": []}, "languages", "languages: list at least one"),
        ({"languages": ["xx"]}, "languages.0", "not a known iso 639-1 language"),
        ({"languages": ["swe"]}, "languages.0", "not a known iso 639-1 language"),
        ({"languages": ["sv", "SV"]}, "languages", "languages lists 'sv' more than once"),
        ({"modes": []}, "modes", "meeting modes: offer at least one"),
        ({"modes": ["phone"]}, "modes.0", "meeting mode must be one of"),
        ({"modes": ["video", "video"]}, "modes", "meeting modes lists 'video'"),
        ({"city": None}, "city", "city is required when in-person"),
        ({"city": "  "}, "city", "city is required when in-person"),
        ({"city": "x" * 61}, "city", "city must be at most 60"),
        ({"practice_address": None}, "practice_address", "practice address is required"),
        ({"practice_address": "x" * 161}, "practice_address", "practice address must be at most"),
        ({"bio": "x" * 2001}, "bio", "bio must be at most 2000"),
        ({"capacity": 0}, "capacity", "capacity must be a whole number"),
        ({"capacity": 101}, "capacity", "capacity must be a whole number"),
        ({"capacity": "many"}, "capacity", "capacity must be a whole number"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "not a known iana time zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone", "not a known iana time zone"),
        ({"time_zone": ""}, "time_zone", "not a known iana time zone"),
    ],
)
def test_each_rule_refuses_with_a_message_naming_the_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    errors = refused(**changes)
    assert field in errors, errors
    assert words in errors[field].lower()


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"name": "  Elin B  "}, "name", "Elin B"),
        ({"name": "x" * 100}, "name", "x" * 100),
        ({"licence_number": " ab 1234 "}, "licence_number", "AB1234"),
        ({"licence_number": "1234567890"}, "licence_number", "1234567890"),
        ({"languages": ["SV", " en "]}, "languages", ["sv", "en"]),
        (
            {"languages": ["ar", "fa", "so", "ti", "bs", "ku"]},
            "languages",
            ["ar", "fa", "so", "ti", "bs", "ku"],
        ),
        ({"modes": ["video"], "city": None, "practice_address": None}, "city", None),
        ({"modes": ["video"], "city": "Lund", "practice_address": ""}, "practice_address", None),
        ({"city": "x" * 60}, "city", "x" * 60),
        ({"bio": "x" * 2000}, "bio", "x" * 2000),
        ({"bio": ""}, "bio", ""),
        ({"capacity": 1}, "capacity", 1),
        ({"capacity": 100}, "capacity", 100),
        ({"time_zone": "America/New_York"}, "time_zone", "America/New_York"),
        ({"focus_areas": []}, "focus_areas", []),
        ({"certifications": ["KBT"]}, "certifications", ["KBT"]),
    ],
)
def test_each_rule_accepts_a_valid_value(
    changes: dict[str, Any], field: str, expected: Any
) -> None:
    profile = TherapistProfile.model_validate(data(**changes))
    assert getattr(profile, field) == expected


def test_unknown_field_is_refused() -> None:
    errors = refused(rating=5)
    assert "rating" in errors


def test_licence_is_not_recorded_for_certified_staff() -> None:
    errors = refused(profession="certified_staff", certifications=["IPT"])
    assert "licence_number" in errors
    assert "licensed psychologists and psychotherapists" in errors["licence_number"]
    ok = TherapistProfile.model_validate(
        data(profession="certified_staff", certifications=["IPT"], licence_number=None)
    )
    assert ok.licence_number is None
    assert ok.licensed is False


# ------------------------------------------------------------------ method qualification


def test_certified_staff_without_certification_cannot_offer_ipt() -> None:
    errors = refused(profession="certified_staff", licence_number=None, certifications=["KBT"])
    assert "methods" in errors
    message = errors["methods"]
    assert "IPT" in message and "certifications" in message


def test_certified_staff_with_certification_may_offer_ipt() -> None:
    profile = TherapistProfile.model_validate(
        data(profession="certified_staff", licence_number=None, certifications=["IPT"])
    )
    assert profile.methods == ["IPT"]


def test_certified_staff_needs_a_certification_for_every_method() -> None:
    errors = refused(
        profession="certified_staff",
        licence_number=None,
        certifications=["IPT"],
        methods=["IPT", "KBT"],
    )
    assert "KBT" in errors["methods"]


@pytest.mark.parametrize("profession", ["psychologist", "psychotherapist"])
def test_licensed_professions_qualify_for_every_method(profession: str) -> None:
    profile = TherapistProfile.model_validate(
        data(
            profession=profession,
            methods=["IPT", "IPT-A", "KBT"],
            age_groups=["adults", "adolescents"],
        )
    )
    assert set(profile.methods) == {"IPT", "IPT-A", "KBT"}


# ---------------------------------------------------------------------- age groups


def test_ipt_a_requires_serving_adolescents() -> None:
    errors = refused(methods=["IPT-A"], age_groups=["adults"])
    assert "age_groups" in errors
    assert "IPT-A" in errors["age_groups"] and "adolescents" in errors["age_groups"]
    ok = TherapistProfile.model_validate(data(methods=["IPT-A"], age_groups=["adolescents"]))
    assert ok.age_groups == ["adolescents"]


@pytest.mark.parametrize("method", ["IPT", "KBT"])
def test_adult_methods_require_serving_adults(method: str) -> None:
    errors = refused(methods=[method, "IPT-A"], age_groups=["adolescents"])
    assert method in errors["age_groups"] and "adults" in errors["age_groups"]


def test_serving_adolescents_requires_a_method_for_them() -> None:
    errors = refused(methods=["IPT"], age_groups=["adults", "adolescents"])
    assert "age_groups" in errors
    assert "IPT-A" in errors["age_groups"]


# ---------------------------------------------------------------------- transitions


def test_publish_from_every_status_when_complete() -> None:
    profile = TherapistProfile.model_validate(data())
    assert publish("draft", profile) == "published"
    assert publish("withdrawn", profile) == "published"
    assert publish("published", profile) == "published"


def test_publish_refuses_an_incomplete_profile() -> None:
    profile = TherapistProfile.model_validate(data(bio=""))
    with pytest.raises(ProfileIncomplete) as info:
        publish("draft", profile)
    assert info.value.code == "profile_incomplete"
    assert "bio" in info.value.message.lower()


def test_withdraw_only_a_published_profile() -> None:
    assert withdraw("published") == "withdrawn"
    for status in ("draft", "withdrawn"):
        with pytest.raises(InvalidTransition) as info:
            withdraw(status)  # type: ignore[arg-type]
        assert info.value.code == "not_published"
        assert status in info.value.message
        assert status_of(info.value) == 409


# ------------------------------------------------------------------------ self edit


def test_self_edit_changes_only_what_was_sent() -> None:
    profile = TherapistProfile.model_validate(data())
    edit = ProfileSelfEdit.model_validate({"bio": " Ny text ", "languages": ["sv", "AR"]})
    edited = apply_self_edit(profile, edit)
    assert edited.bio == "Ny text"
    assert edited.languages == ["sv", "ar"]
    assert edited.modes == profile.modes and edited.capacity == profile.capacity
    assert profile.languages == ["sv", "en"]  # the original is untouched


def test_self_edit_cannot_remove_the_last_language() -> None:
    with pytest.raises(ValidationError) as info:
        ProfileSelfEdit.model_validate({"languages": []})
    assert "languages" in str(info.value).lower()
    with pytest.raises(ValidationError) as info:
        ProfileSelfEdit.model_validate({"languages": None})
    assert "Languages cannot be removed" in str(info.value)


def test_self_edit_revalidates_the_whole_profile() -> None:
    profile = TherapistProfile.model_validate(
        data(modes=["video"], city=None, practice_address=None)
    )
    edit = ProfileSelfEdit.model_validate({"modes": ["video", "in_person"], "city": "Lund"})
    with pytest.raises(ProfileInvalid) as info:
        apply_self_edit(profile, edit)
    fields = {e["field"] for e in info.value.errors}
    assert fields == {"practice_address"}
    assert "Practice address is required" in info.value.message
    assert status_of(info.value) == 422

    fixed = ProfileSelfEdit.model_validate(
        {"modes": ["video", "in_person"], "city": "Lund", "practice_address": "Bangatan 11, Lund"}
    )
    assert apply_self_edit(profile, fixed).practice_address == "Bangatan 11, Lund"


def test_self_edit_cannot_touch_admin_fields() -> None:
    with pytest.raises(ValidationError) as info:
        ProfileSelfEdit.model_validate({"bio": "x", "capacity": 99, "methods": ["KBT"]})
    message = str(info.value)
    assert "capacity, methods can be changed only by an admin" in message


def test_self_edit_null_bio_clears_it() -> None:
    profile = TherapistProfile.model_validate(data())
    assert apply_self_edit(profile, ProfileSelfEdit.model_validate({"bio": None})).bio == ""


def test_validate_profile_collects_every_error() -> None:
    with pytest.raises(ProfileInvalid) as info:
        validate_profile(data(capacity=0, languages=[]))
    assert {e["field"] for e in info.value.errors} == {"capacity", "languages"}
    assert info.value.to_dict()["code"] == "profile_invalid"
    body = info.value.body()  # what the service's error handler sends
    assert body["code"] == "profile_invalid"
    assert {e["field"] for e in body["errors"]} == {"capacity", "languages"}


# ---------------------------------------------------------------------------- event


def test_published_event_carries_no_name_bio_or_licence() -> None:
    profile = TherapistProfile.model_validate(data(licence_number="987654"))
    therapist_id = uuid.uuid4()
    event = to_published_event(profile, therapist_id, 3, 4.5, 2)
    dumped = event.model_dump(mode="json")
    assert not {"name", "bio", "licence_number", "certifications"} & set(dumped)
    text = json.dumps(dumped, ensure_ascii=False)
    for secret in (profile.name, profile.bio, "987654"):
        assert secret not in text
    assert dumped["therapist_id"] == str(therapist_id)
    assert dumped["licensed"] is True
    assert dumped["version"] == 3
    assert dumped["rating_average"] == 4.5 and dumped["rating_count"] == 2
    assert dumped["city"] == "Stockholm"
    assert dumped["practice_address"] == "Götgatan 48, 118 26 Stockholm"
    assert dumped["methods"] == ["IPT"] and dumped["languages"] == ["sv", "en"]
    assert dumped["time_zone"] == "Europe/Stockholm"


def test_published_event_licensed_flag_and_address_only_in_person() -> None:
    profile = TherapistProfile.model_validate(
        data(
            profession="certified_staff",
            licence_number=None,
            certifications=["IPT"],
            modes=["video"],
        )
    )
    event = to_published_event(profile, uuid.uuid4(), 1, None, 0)
    assert event.licensed is False
    assert event.practice_address is None  # kept on file, not announced
    assert event.rating_average is None
