"""Codes into words, and times into the recipient's local time (Swedish first, English).

Events carry codes (docs/domain.md, Privacy); every consumer turns codes into words
itself. These tables are the notifications service's words. An unknown code
never breaks a message: it falls back to a neutral phrase.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

Language = Literal["sv", "en"]
LANGUAGES: tuple[Language, ...] = ("sv", "en")
DEFAULT_LANGUAGE: Language = "sv"
DEFAULT_TIME_ZONE = "Europe/Stockholm"

_WEEKDAYS: dict[Language, tuple[str, ...]] = {
    "sv": ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS: dict[Language, tuple[str, ...]] = {
    "sv": (
        "januari", "februari", "mars", "april", "maj", "juni",
        "juli", "augusti", "september", "oktober", "november", "december",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
}  # fmt: skip


def parse_time(value: datetime | str) -> datetime:
    """An aware datetime from a datetime or an ISO 8601 string; naive values are taken as UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def local_time(value: datetime | str, time_zone: str = DEFAULT_TIME_ZONE) -> datetime:
    return parse_time(value).astimezone(ZoneInfo(time_zone))


def format_when(
    value: datetime | str, language: Language, time_zone: str = DEFAULT_TIME_ZONE
) -> str:
    """'tisdag 3 mars kl. 14:00' / 'Tuesday 3 March at 14:00' in the recipient's zone."""
    t = local_time(value, time_zone)
    weekday = _WEEKDAYS[language][t.weekday()]
    month = _MONTHS[language][t.month - 1]
    if language == "sv":
        return f"{weekday} {t.day} {month} kl. {t:%H:%M}"
    return f"{weekday} {t.day} {month} at {t:%H:%M}"


def format_short(
    value: datetime | str, language: Language, time_zone: str = DEFAULT_TIME_ZONE
) -> str:
    """For SMS: 'tis 3 mars 14:00' / 'Tue 3 Mar 14:00'."""
    t = local_time(value, time_zone)
    weekday = _WEEKDAYS[language][t.weekday()][:3]
    month = _MONTHS[language][t.month - 1]
    month = month if language == "sv" and len(month) <= 4 else month[:3]
    return f"{weekday} {t.day} {month} {t:%H:%M}"


def format_clock(value: datetime | str, time_zone: str = DEFAULT_TIME_ZONE) -> str:
    return f"{local_time(value, time_zone):%H:%M}"


LANGUAGE_NAMES: dict[Language, dict[str, str]] = {
    "sv": {
        "sv": "svenska", "en": "engelska", "ar": "arabiska", "fa": "persiska",
        "so": "somaliska", "ti": "tigrinja", "ku": "kurdiska", "tr": "turkiska",
        "fi": "finska", "pl": "polska", "es": "spanska", "de": "tyska", "fr": "franska",
        "ru": "ryska", "uk": "ukrainska", "bs": "bosniska", "hr": "kroatiska",
        "sr": "serbiska", "no": "norska", "da": "danska",
    },
    "en": {
        "sv": "Swedish", "en": "English", "ar": "Arabic", "fa": "Persian",
        "so": "Somali", "ti": "Tigrinya", "ku": "Kurdish", "tr": "Turkish",
        "fi": "Finnish", "pl": "Polish", "es": "Spanish", "de": "German", "fr": "French",
        "ru": "Russian", "uk": "Ukrainian", "bs": "Bosnian", "hr": "Croatian",
        "sr": "Serbian", "no": "Norwegian", "da": "Danish",
    },
}  # fmt: skip

AREAS: dict[Language, dict[str, str]] = {
    "sv": {
        "grief": "sorg och förlust",
        "role_transition": "förändringar i livet",
        "interpersonal_dispute": "konflikter i relationer",
        "interpersonal_deficits": "ensamhet och isolering",
        "depression": "nedstämdhet",
        "anxiety": "oro och ångest",
        "stress": "stress",
        "relationships": "relationer",
    },
    "en": {
        "grief": "grief and loss",
        "role_transition": "life changes",
        "interpersonal_dispute": "conflicts in relationships",
        "interpersonal_deficits": "loneliness and isolation",
        "depression": "low mood",
        "anxiety": "worry and anxiety",
        "stress": "stress",
        "relationships": "relationships",
    },
}

MODES: dict[Language, dict[str, str]] = {
    "sv": {"video": "via video", "in_person": "på mottagningen"},
    "en": {"video": "by video", "in_person": "in person at the practice"},
}

METHODS: dict[Language, dict[str, str]] = {
    "sv": {
        "IPT": "interpersonell terapi (IPT)",
        "IPT-A": "interpersonell terapi för unga (IPT-A)",
        "KBT": "kognitiv beteendeterapi (KBT)",
    },
    "en": {
        "IPT": "interpersonal therapy (IPT)",
        "IPT-A": "interpersonal therapy for adolescents (IPT-A)",
        "KBT": "cognitive behavioural therapy (CBT)",
    },
}

ACTORS: dict[Language, dict[str, str]] = {
    "sv": {
        "client": "klienten",
        "therapist": "terapeuten",
        "clinician": "en kliniker",
        "admin": "administratören",
        "system": "Samtal",
    },
    "en": {
        "client": "the client",
        "therapist": "the therapist",
        "clinician": "a clinician",
        "admin": "the administrator",
        "system": "Samtal",
    },
}

RELAXED: dict[Language, dict[str, str]] = {
    "sv": {
        "language_rank": "terapeuten talar inte ditt förstahandsspråk",
        "time_windows": "de första lediga tiderna ligger utanför dina önskade tider",
        "mode": "mötesformen är inte den du helst ville ha",
        "problem_area_overlap": "terapeuten har inte alla dina områden som fokus",
        "direct_choice": "terapeuten du valde kunde inte ta emot dig",
    },
    "en": {
        "language_rank": "the therapist does not speak your first language",
        "time_windows": "the first free times are outside your preferred times",
        "mode": "the way of meeting is not the one you preferred",
        "problem_area_overlap": "the therapist does not focus on all of your areas",
        "direct_choice": "the therapist you chose could not take you on",
    },
}

WAITLIST_REASONS: dict[Language, dict[str, str]] = {
    "sv": {
        "no_therapist_accepting": "just nu tar ingen passande terapeut emot nya klienter",
        "no_language_match": "ingen ledig terapeut talar något av dina språk",
        "no_mode_match": "ingen ledig terapeut erbjuder den mötesform du valde",
        "no_qualified_therapist": "ingen ledig terapeut har rätt utbildning för dina behov",
        "chosen_therapist_unavailable": "terapeuten du valde kan inte ta emot dig just nu",
        "no_candidate": "vi hittade ingen ledig terapeut som passar",
    },
    "en": {
        "no_therapist_accepting": "no suitable therapist is taking new clients right now",
        "no_language_match": "no available therapist speaks one of your languages",
        "no_mode_match": "no available therapist offers the way of meeting you chose",
        "no_qualified_therapist": "no available therapist has the right training for your needs",
        "chosen_therapist_unavailable": "the therapist you chose cannot take you on right now",
        "no_candidate": "we found no available therapist who fits",
    },
}

END_REASONS: dict[Language, dict[str, str]] = {
    "sv": {
        "client_withdrew": "klienten valde att avsluta",
        "therapist_ended": "terapeuten avslutade behandlingen",
        "switched_therapist": "byte av terapeut",
        "referred_elsewhere": "hänvisning till annan vård",
        "no_shows": "flera uteblivna besök",
        "other": "annat skäl",
    },
    "en": {
        "client_withdrew": "the client chose to stop",
        "therapist_ended": "the therapist ended the course",
        "switched_therapist": "a change of therapist",
        "referred_elsewhere": "a referral to other care",
        "no_shows": "several missed sessions",
        "other": "another reason",
    },
}

OUTCOMES: dict[Language, dict[str, str]] = {
    "sv": {
        "remission": "Dina skattningar ligger nu på en nivå med inga eller få besvär.",
        "response": "Dina besvär har minskat med minst hälften sedan starten.",
        "neither": (
            "Dina skattningar har inte förändrats så mycket som vi hoppats. "
            "Prata gärna med din terapeut eller 1177 om vad som kan hjälpa dig vidare."
        ),
    },
    "en": {
        "remission": "Your ratings are now at a level with few or no symptoms.",
        "response": "Your symptoms have fallen by at least half since the start.",
        "neither": (
            "Your ratings have not changed as much as we hoped. "
            "Do talk to your therapist or 1177 about what could help you further."
        ),
    },
}

# For the therapist: the clinical terms.
OUTCOMES_CLINICAL: dict[Language, dict[str, str]] = {
    "sv": {
        "remission": "remission (slutlig PHQ-9 under 5)",
        "response": "respons (PHQ-9 minskade med minst hälften)",
        "neither": "varken respons eller remission",
    },
    "en": {
        "remission": "remission (final PHQ-9 below 5)",
        "response": "response (PHQ-9 fell by at least half)",
        "neither": "neither response nor remission",
    },
}

_FALLBACK: dict[Language, str] = {"sv": "annat", "en": "other"}


def word(table: Mapping[Language, Mapping[str, str]], code: str, language: Language) -> str:
    """The words for a code; a neutral word when the code is unknown (never a crash)."""
    return table[language].get(code, _FALLBACK[language])


def language_name(code: str, language: Language) -> str:
    return LANGUAGE_NAMES[language].get(code, code)


def reason_words(
    reason: Mapping[str, Any], language: Language, time_zone: str = DEFAULT_TIME_ZONE
) -> str:
    """A TherapistMatched reason ({code, value}) in words a client understands."""
    code = str(reason.get("code", ""))
    value = reason.get("value")
    sv = language == "sv"
    if code == "speaks_language" and value:
        name = language_name(str(value), language)
        return f"talar {name}" if sv else f"speaks {name}"
    if code == "works_with_area" and value:
        area = word(AREAS, str(value), language)
        return f"arbetar med {area}" if sv else f"works with {area}"
    if code == "first_free_time" and value:
        try:
            when = format_when(str(value), language, time_zone)
        except ValueError:
            return "har en ledig tid snart" if sv else "has a free time soon"
        return f"första lediga tid {when}" if sv else f"first free time {when}"
    if code == "offers_mode" and value:
        mode = word(MODES, str(value), language)
        return f"kan träffa dig {mode}" if sv else f"can meet you {mode}"
    if code == "in_your_city" and value:
        return f"finns i {value}" if sv else f"is in {value}"
    if code == "well_rated":
        try:
            rating = float(str(value))
        except ValueError:
            return "får höga betyg av klienter" if sv else "is well rated by clients"
        if sv:
            return f"får höga betyg av klienter ({rating:.1f} av 5)".replace(".", ",")
        return f"is well rated by clients ({rating:.1f} of 5)"
    simple: dict[str, tuple[str, str]] = {
        "has_room": ("har plats för nya klienter", "has room for new clients"),
        "licensed_for_severity": (
            "är legitimerad psykolog eller psykoterapeut",
            "is a licensed psychologist or psychotherapist",
        ),
        "chosen_by_client": ("är den terapeut du valde", "is the therapist you chose"),
        "speaks_language": ("talar ditt språk", "speaks your language"),
        "works_with_area": ("arbetar med det du beskrev", "works with what you described"),
        "first_free_time": ("har en ledig tid snart", "has a free time soon"),
        "offers_mode": ("erbjuder den mötesform du valde", "offers the way of meeting you chose"),
        "in_your_city": ("finns nära dig", "is near you"),
    }
    sv_words, en_words = simple.get(code, ("passar dina önskemål", "fits your wishes"))
    return sv_words if sv else en_words


# What a service exported, erased or keeps of a person's data (RightsRequestHandled codes).
DATA_CATEGORIES: dict[Language, dict[str, str]] = {
    "sv": {
        "intakes": "dina förfrågningar",
        "matches": "matchningar med terapeuter",
        "emergency_access": "när en kliniker öppnat din förfrågan i nödfall",
        "access_log": "vem som läst dina uppgifter",
        "audit_log": "loggen över vem som läst eller ändrat dina uppgifter",
        "intake_free_text": "fritexten i dina förfrågningar",
        "intake_city": "ort i dina förfrågningar",
        "intake_time_windows": "tider som passar dig",
        "intake_meeting_preference": "hur du ville mötas (video eller på plats)",
        "intake_screening": "screeningen (PHQ-9-svar, summa och risknivå)",
        "triage": "klinikerns bedömning",
        "courses": "behandlingar",
        "sessions": "bokade sessioner",
        "attendance": "närvaro",
        "phq9_totals": "PHQ-9-summor",
        "booking_request_replies": "sparade svar på bokningsförfrågningar",
        "unopened_match_proposals": "matchningsförslag som aldrig blev en behandling",
        "reviews": "omdömen",
        "review_text": "omdömestext",
        "review_rights": "rätten att lämna omdömen",
        "contacts": "e-postadress och telefonnummer",
        "channel_preferences": "val av kanaler (e-post, sms)",
        "messages": "meddelanden till dig",
    },
    "en": {
        "intakes": "your intakes",
        "matches": "matches with therapists",
        "emergency_access": "when a clinician opened your intake in an emergency",
        "access_log": "who read your data",
        "audit_log": "the log of who read or changed your data",
        "intake_free_text": "the free text of your intakes",
        "intake_city": "the city in your intakes",
        "intake_time_windows": "the times that suit you",
        "intake_meeting_preference": "how you wanted to meet (video or in person)",
        "intake_screening": "the screening (PHQ-9 answers, total and risk level)",
        "triage": "the clinician's assessment",
        "courses": "treatment courses",
        "sessions": "booked sessions",
        "attendance": "attendance",
        "phq9_totals": "PHQ-9 totals",
        "booking_request_replies": "stored replies to booking requests",
        "unopened_match_proposals": "match proposals that never became a course",
        "reviews": "reviews",
        "review_text": "review text",
        "review_rights": "the right to review",
        "contacts": "e-mail address and phone number",
        "channel_preferences": "channel choices (e-mail, SMS)",
        "messages": "messages to you",
    },
}
