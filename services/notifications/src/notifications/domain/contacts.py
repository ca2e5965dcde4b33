"""A person's contact settings and the on-call clinician roster (docs/domain.md, Notifications).

Contact details belong to this service: people set their own; events carry only
person ids. Validation errors are `PydanticCustomError`s with a stable `type`
(e.g. `email_invalid`) a frontend can translate, and an English message that
reads well as is; FastAPI turns them into a 422.

Rules (decisions where docs/domain.md is silent):
- An empty or blank e-mail/phone means "not set" (None), so a form can clear it.
- The in-app inbox is always on: it is where every message is kept and where the
  frontends read. Asking to turn it off is a validation error, not silently ignored.
- SMS is opt-in (default off): an SMS shows on a lock screen, which matters for
  a therapy service. E-mail is on by default.
- A channel can only be on when its address is set; SMS needs a mobile number.
- Urgent messages (crisis) go on every channel the person has an address for,
  whatever the preferences: preferences cannot mute a crisis message.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contracts.inputs import ShortText, TimeZoneName, clean_text

# The on-call roster is shared with matching (who may open an escalated intake).
from contracts.oncall import OnCallRoster as OnCallRoster
from contracts.oncall import OnCallShift as OnCallShift
from notifications.domain.words import DEFAULT_LANGUAGE, DEFAULT_TIME_ZONE, LANGUAGES, Language

DEFAULT_PHONE_REGION = "SE"
Channel = Literal["email", "sms", "in_app"]
Priority = Literal["urgent", "normal"]

_MOBILE_TYPES = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def normalise_email(value: str) -> str:
    """The normalised address, or PydanticCustomError `email_invalid`."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        # Not the validator's reason: it quotes the address, which is personal data.
        raise PydanticCustomError(
            "email_invalid", "Enter a valid e-mail address, like name@example.se"
        ) from exc


def normalise_phone(value: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """The number in E.164 ('070-123 45 67' -> '+46701234567'), or `phone_invalid`."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise PydanticCustomError(
            "phone_invalid",
            "Enter a valid phone number, like 070-123 45 67 or +46 70 123 45 67",
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise PydanticCustomError(
            "phone_invalid",
            "Enter a valid phone number, like 070-123 45 67 or +46 70 123 45 67",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _bounded(value: str, max_length: int) -> str:
    # Checked before the address is parsed: no parser sees a NUL or an endless text.
    if len(value) > max_length:
        raise PydanticCustomError(
            "too_long", "must be at most {max} characters long", {"max": max_length}
        )
    return clean_text(value)


def is_mobile(e164: str) -> bool:
    return phonenumbers.number_type(phonenumbers.parse(e164)) in _MOBILE_TYPES


class ChannelPreferences(BaseModel):
    """Which channels a person wants for normal messages. The in-app inbox is always on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: bool = True
    sms: bool = False
    in_app: bool = True

    @field_validator("in_app")
    @classmethod
    def _in_app_always_on(cls, value: bool) -> bool:
        if not value:
            raise PydanticCustomError(
                "in_app_required",
                "The in-app inbox cannot be turned off: every message is kept there",
            )
        return value


class ContactDetails(BaseModel):
    """What a person sets about themselves (the body of PUT /contacts/me)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: Annotated[ShortText | None, Field(max_length=320)] = None
    phone: Annotated[ShortText | None, Field(max_length=40)] = None
    language: Language = DEFAULT_LANGUAGE
    time_zone: TimeZoneName = DEFAULT_TIME_ZONE
    channels: ChannelPreferences = Field(default_factory=ChannelPreferences)

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = _bounded(value, 320).strip()
            return normalise_email(value) if value else None
        return value

    @field_validator("phone", mode="before")
    @classmethod
    def _phone(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = _bounded(value, 40).strip()
            return normalise_phone(value) if value else None
        return value

    @field_validator("language", mode="before")
    @classmethod
    def _language(cls, value: Any) -> Any:
        code = value.strip().lower() if isinstance(value, str) else value
        if code not in LANGUAGES:
            raise PydanticCustomError(
                "language_unsupported",
                "Choose a language Samtal writes in: 'sv' (svenska) or 'en' (English)",
            )
        return code

    @model_validator(mode="after")
    def _channels_need_addresses(self) -> ContactDetails:
        if self.channels.email and self.email is None:
            raise PydanticCustomError(
                "email_required",
                "Add an e-mail address, or turn e-mail notifications off",
            )
        if self.channels.sms:
            if self.phone is None:
                raise PydanticCustomError(
                    "phone_required", "Add a mobile number, or turn SMS notifications off"
                )
            if not is_mobile(self.phone):
                raise PydanticCustomError(
                    "phone_not_mobile", "SMS needs a mobile number; this one is a landline"
                )
        return self

    def channels_for(self, priority: Priority) -> list[Channel]:
        """Where a message of this priority goes: in-app always; urgent on every address."""
        channels: list[Channel] = ["in_app"]
        urgent = priority == "urgent"
        if self.email is not None and (urgent or self.channels.email):
            channels.append("email")
        if self.phone is not None and (urgent or self.channels.sms) and is_mobile(self.phone):
            channels.append("sms")
        return channels


class ContactSettings(ContactDetails):
    """A person's contact details, with whose they are."""

    person_id: uuid.UUID


def reached_outside_the_app(
    contacts: ContactSettings | ContactDetails | None, *, sms_available: bool = True
) -> bool:
    """Whether an urgent message reaches the person anywhere but the in-app inbox (which
    an on-call clinician may not be looking at): by e-mail or SMS."""
    return delivery_channels(contacts, "urgent", sms_available=sms_available) != ["in_app"]


def delivery_channels(
    contacts: ContactSettings | ContactDetails | None,
    priority: Priority,
    *,
    sms_available: bool = True,
) -> list[Channel]:
    """The channels a message goes on, decided when it is delivered (contacts as they are
    then): in-app only for a person who has set no contacts; no SMS without a provider."""
    if contacts is None:
        return ["in_app"]
    channels = contacts.channels_for(priority)
    return channels if sms_available else [c for c in channels if c != "sms"]
