from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from notifications.domain.contacts import (
    ChannelPreferences,
    ContactDetails,
    ContactSettings,
    OnCallRoster,
    OnCallShift,
    delivery_channels,
    reached_outside_the_app,
)

PERSON = uuid.uuid4()


def contact(**kw: Any) -> ContactSettings:
    return ContactSettings(person_id=PERSON, **({"email": "ann@example.se"} | kw))


def error_types(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [e["type"] for e in exc.value.errors()]


@pytest.mark.parametrize(
    "raw", ["070-123 45 67", "0701234567", "+46 70 123 45 67", "0046701234567", " 070 1234567 "]
)
def test_phone_is_stored_as_e164(raw: str) -> None:
    assert contact(phone=raw).phone == "+46701234567"


def test_foreign_phone_keeps_its_country() -> None:
    assert contact(phone="+44 7911 123456").phone == "+447911123456"


@pytest.mark.parametrize("raw", ["abc", "070-12", "12345678901234567", "+46 00 000 00 00"])
def test_bad_phone_is_refused_with_a_clear_message(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        contact(phone=raw)
    assert error_types(exc) == ["phone_invalid"]
    assert "valid phone number" in exc.value.errors()[0]["msg"]
    assert exc.value.errors()[0]["loc"] == ("phone",)


@pytest.mark.parametrize(
    "raw", ["not-an-email", "ann@", "@example.se", "ann@@example.se", "a b@x.se"]
)
def test_bad_email_is_refused_with_a_clear_message(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        contact(email=raw)
    assert error_types(exc) == ["email_invalid"]
    assert exc.value.errors()[0]["msg"].startswith("Enter a valid e-mail address")
    assert exc.value.errors()[0]["loc"] == ("email",)


def test_email_is_normalised() -> None:
    assert contact(email="  Ann.Svensson@EXAMPLE.SE ").email == "Ann.Svensson@example.se"


def test_blank_addresses_mean_not_set() -> None:
    c = contact(email="", phone="  ", channels=ChannelPreferences(email=False))
    assert c.email is None
    assert c.phone is None


def test_language_defaults_to_swedish_and_accepts_english() -> None:
    assert contact().language == "sv"
    assert contact(language="en").language == "en"
    assert contact(language=" EN ").language == "en"


@pytest.mark.parametrize("raw", ["de", "", "svenska", 3])
def test_unsupported_language_is_refused(raw: object) -> None:
    with pytest.raises(ValidationError) as exc:
        contact(language=raw)
    assert error_types(exc) == ["language_unsupported"]
    assert "'sv'" in exc.value.errors()[0]["msg"]


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        contact(time_zone="Mars/Olympus_Mons")
    assert error_types(exc) == ["time_zone_unknown"]
    assert contact(time_zone="Europe/London").time_zone == "Europe/London"


def test_in_app_inbox_cannot_be_turned_off() -> None:
    with pytest.raises(ValidationError) as exc:
        ChannelPreferences(in_app=False)
    assert error_types(exc) == ["in_app_required"]


def test_default_preferences_email_on_sms_off() -> None:
    prefs = ChannelPreferences()
    assert (prefs.email, prefs.sms, prefs.in_app) == (True, False, True)


def test_sms_needs_a_mobile_number() -> None:
    with pytest.raises(ValidationError) as exc:
        contact(channels=ChannelPreferences(sms=True))
    assert error_types(exc) == ["phone_required"]
    with pytest.raises(ValidationError) as exc:
        contact(phone="08-123 456 78", channels=ChannelPreferences(sms=True))
    assert error_types(exc) == ["phone_not_mobile"]
    assert contact(phone="070-123 45 67", channels=ChannelPreferences(sms=True)).channels.sms


def test_email_channel_needs_an_address() -> None:
    with pytest.raises(ValidationError) as exc:
        ContactSettings(person_id=PERSON)
    assert error_types(exc) == ["email_required"]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        contact(nickname="Ann")


def test_normal_messages_follow_preferences_urgent_go_everywhere() -> None:
    c = contact(phone="070-123 45 67")  # sms preference off
    assert c.channels_for("normal") == ["in_app", "email"]
    assert c.channels_for("urgent") == ["in_app", "email", "sms"]
    quiet = contact(phone="070-123 45 67", channels=ChannelPreferences(email=False))
    assert quiet.channels_for("normal") == ["in_app"]
    assert quiet.channels_for("urgent") == ["in_app", "email", "sms"]
    landline = contact(phone="08-123 456 78")
    assert landline.channels_for("urgent") == ["in_app", "email"]


# --------------------------------------------------------------------------- roster

A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
NOON = datetime(2026, 3, 20, 12, tzinfo=UTC)


def test_without_shifts_every_clinician_is_on_call() -> None:
    assert OnCallRoster(clinician_ids=[A, B, A]).on_call(NOON) == [A, B]


def test_shifts_decide_who_is_on_call() -> None:
    roster = OnCallRoster(
        clinician_ids=[A, B, C],
        shifts=[
            OnCallShift(clinician_id=B, starts_at=NOON, ends_at=NOON + timedelta(hours=8)),
            OnCallShift(
                clinician_id=C,
                starts_at=NOON + timedelta(hours=8),
                ends_at=NOON + timedelta(hours=16),
            ),
        ],
    )
    assert roster.on_call(NOON) == [B]
    assert roster.on_call(NOON + timedelta(hours=8)) == [C]
    # Nobody's shift: the whole roster, never nobody.
    assert roster.on_call(NOON - timedelta(minutes=1)) == [A, B, C]


def test_roster_must_name_a_clinician() -> None:
    with pytest.raises(ValidationError):
        OnCallRoster(clinician_ids=[])


def test_shift_for_someone_off_the_roster_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        OnCallRoster(
            clinician_ids=[A],
            shifts=[OnCallShift(clinician_id=B, starts_at=NOON, ends_at=NOON + timedelta(hours=1))],
        )
    assert error_types(exc) == ["shift_unknown_clinician"]


def test_shift_must_end_after_it_starts() -> None:
    with pytest.raises(ValidationError):
        OnCallShift(clinician_id=A, starts_at=NOON, ends_at=NOON)


def test_what_a_person_sends_is_validated_like_their_settings() -> None:
    details = ContactDetails(email=" ann@EXAMPLE.se", phone="070-123 45 67")
    assert (details.email, details.phone) == ("ann@example.se", "+46701234567")
    with pytest.raises(ValidationError) as exc:
        ContactDetails(phone="070-123 45 67")
    assert error_types(exc) == ["email_required"]
    with pytest.raises(ValidationError):
        ContactDetails(email="ann@example.se", person_id=str(PERSON))  # no one else's id


def test_delivery_channels_without_contacts_or_sms_provider() -> None:
    assert delivery_channels(None, "urgent") == ["in_app"]
    c = contact(phone="070-123 45 67", channels=ChannelPreferences(sms=True))
    assert delivery_channels(c, "normal") == ["in_app", "email", "sms"]
    assert delivery_channels(c, "normal", sms_available=False) == ["in_app", "email"]


def test_a_crisis_alert_reaches_outside_the_app_only_on_a_saved_address() -> None:
    assert not reached_outside_the_app(None)  # nothing saved: the inbox only
    # E-mail switched off still gets an urgent message; SMS only with a provider.
    quiet = contact(channels=ChannelPreferences(email=False))
    assert reached_outside_the_app(quiet)
    mobile_only = contact(
        email=None, phone="070-123 45 67", channels=ChannelPreferences(email=False)
    )
    assert reached_outside_the_app(mobile_only)
    assert not reached_outside_the_app(mobile_only, sms_available=False)
    landline_only = contact(
        email=None, phone="08-123 456 78", channels=ChannelPreferences(email=False)
    )
    assert not reached_outside_the_app(landline_only)
