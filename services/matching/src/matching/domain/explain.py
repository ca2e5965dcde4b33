"""Codes into words a client understands, in Swedish and English (docs/domain.md, Matching).

Events carry codes only; this is where matching turns its own codes into text,
e.g. for the HTTP response. Times are shown in the client's time zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from contracts.events import MatchReason, RelaxedPreference, WaitlistReason
from matching.domain.lifecycle import IntakeStatus
from matching.domain.matcher import CLIENT_TIME_ZONE, ChoiceProblem, Match, Waitlist

Lang = Literal["sv", "en"]

# ISO 639-1 code -> (Swedish, English); Swedish names are lower case as in running text.
LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    "sv": ("svenska", "Swedish"),
    "en": ("engelska", "English"),
    "ar": ("arabiska", "Arabic"),
    "fa": ("persiska", "Persian"),
    "so": ("somaliska", "Somali"),
    "pl": ("polska", "Polish"),
    "es": ("spanska", "Spanish"),
    "ti": ("tigrinja", "Tigrinya"),
    "de": ("tyska", "German"),
    "fi": ("finska", "Finnish"),
    "tr": ("turkiska", "Turkish"),
    "ku": ("kurdiska", "Kurdish"),
    "bs": ("bosniska", "Bosnian"),
    "hr": ("kroatiska", "Croatian"),
    "sr": ("serbiska", "Serbian"),
    "fr": ("franska", "French"),
    "ru": ("ryska", "Russian"),
    "uk": ("ukrainska", "Ukrainian"),
    "no": ("norska", "Norwegian"),
    "da": ("danska", "Danish"),
}

AREA_NAMES: dict[str, tuple[str, str]] = {
    "grief": ("sorg", "grief"),
    "role_transition": ("livsförändringar", "life changes"),
    "interpersonal_dispute": ("konflikter i relationer", "conflicts with others"),
    "interpersonal_deficits": ("ensamhet och isolering", "loneliness and isolation"),
    "depression": ("depression", "depression"),
    "anxiety": ("ångest", "anxiety"),
    "stress": ("stress", "stress"),
    "relationships": ("relationer", "relationships"),
}

MODE_NAMES: dict[str, tuple[str, str]] = {
    "video": ("video", "video"),
    "in_person": ("möten på plats", "meeting in person"),
}

WEEKDAY_NAMES: tuple[tuple[str, str], ...] = (
    ("måndag", "Monday"),
    ("tisdag", "Tuesday"),
    ("onsdag", "Wednesday"),
    ("torsdag", "Thursday"),
    ("fredag", "Friday"),
    ("lördag", "Saturday"),
    ("söndag", "Sunday"),
)
MONTH_NAMES: tuple[tuple[str, str], ...] = (
    ("januari", "January"),
    ("februari", "February"),
    ("mars", "March"),
    ("april", "April"),
    ("maj", "May"),
    ("juni", "June"),
    ("juli", "July"),
    ("augusti", "August"),
    ("september", "September"),
    ("oktober", "October"),
    ("november", "November"),
    ("december", "December"),
)

_REASONS: dict[str, tuple[str, str]] = {
    # {value} is replaced by the value in words
    "speaks_language": ("talar {value}", "speaks {value}"),
    "works_with_area": ("arbetar med {value}", "works with {value}"),
    "first_free_time": ("första lediga tid {value}", "first free time {value}"),
    "offers_mode": ("erbjuder {value}", "offers {value}"),
    "in_your_city": ("finns i din stad", "is in your city"),
    "well_rated": (
        "får höga betyg av klienter ({value} av 5)",
        "well rated by clients ({value} of 5)",
    ),
    "has_room": ("har gott om plats för nya klienter", "has room for new clients"),
    "licensed_for_severity": (
        "legitimerad psykolog eller psykoterapeut",
        "a licensed psychologist or psychotherapist",
    ),
    "chosen_by_client": ("den terapeut du valde", "the therapist you chose"),
}

_RELAXED: dict[RelaxedPreference, tuple[str, str]] = {
    "language_rank": (
        "talar inte det språk du satte först",
        "does not speak the language you put first",
    ),
    "time_windows": (
        "har ingen ledig tid inom de tider du önskade",
        "has no free time within the times you asked for",
    ),
    "mode": ("kan inte mötas på det sätt du önskade", "cannot meet the way you asked for"),
    "problem_area_overlap": (
        "arbetar inte med alla områden du valde",
        "does not work with every area you chose",
    ),
    "direct_choice": (
        "terapeuten du valde kunde inte erbjudas",
        "the therapist you chose could not be offered",
    ),
}

_WAITLIST: dict[WaitlistReason, tuple[str, str]] = {
    "no_therapist_accepting": (
        "ingen passande terapeut tar emot nya klienter just nu",
        "no suitable therapist is taking new clients right now",
    ),
    "no_language_match": (
        "ingen ledig terapeut talar något av dina språk",
        "no available therapist speaks any of your languages",
    ),
    "no_mode_match": (
        "ingen ledig terapeut kan mötas på det sätt du önskade",
        "no available therapist can meet the way you asked for",
    ),
    "no_qualified_therapist": (
        "ingen ledig terapeut har rätt behörighet för din behandling",
        "no available therapist is qualified for your treatment",
    ),
    "chosen_therapist_unavailable": (
        "terapeuten du valde kan inte ta emot dig just nu",
        "the therapist you chose cannot take you right now",
    ),
    "no_candidate": (
        "det finns ingen terapeut att erbjuda just nu",
        "there is no therapist to offer right now",
    ),
}

_CHOICE: dict[ChoiceProblem, tuple[str, str]] = {
    "not_accepting": ("tar inte emot nya klienter just nu", "is not taking new clients right now"),
    "at_capacity": ("har fullt just nu", "is fully booked right now"),
    "method": (
        "erbjuder inte den behandling som passar dig",
        "does not offer the treatment that suits you",
    ),
    "licence": (
        "din situation behöver en legitimerad psykolog eller psykoterapeut",
        "your situation needs a licensed psychologist or psychotherapist",
    ),
    "age_group": ("arbetar inte med din åldersgrupp", "does not work with your age group"),
    "language": ("talar inget av dina språk", "does not speak any of your languages"),
    "mode": ("kan inte mötas på det sätt du önskade", "cannot meet the way you asked for"),
    "not_listed": ("finns inte tillgänglig på Samtal", "is not available on Samtal"),
    "excluded": ("är den terapeut du byter från", "is the therapist you are switching from"),
}


_STATUS: dict[IntakeStatus, tuple[str, str]] = {
    "matching": (
        "Vi letar efter en terapeut som passar dig.",
        "We are looking for a therapist who suits you.",
    ),
    "awaiting_triage": (
        "En behandlare går igenom din anmälan innan vi går vidare.",
        "A clinician is reviewing your intake before we go on.",
    ),
    "referred_elsewhere": (
        "En behandlare har bedömt att du får bäst hjälp någon annanstans och hör av sig.",
        "A clinician judged that you are best helped elsewhere and will be in touch.",
    ),
    "waitlisted": (
        "Du står i kö; du får en terapeut så snart någon som passar har plats.",
        "You are on the waiting list; you get a therapist as soon as a suitable one has room.",
    ),
    "awaiting_approval": (
        "Vi har föreslagit en terapeut; en behandlare godkänner förslaget innan du kan boka.",
        "We have proposed a therapist; a clinician approves the proposal before you can book.",
    ),
    "matched": (
        "Du har fått en terapeut och kan boka din första tid.",
        "You have a therapist and can book your first session.",
    ),
    "replaced": (
        "Den här anmälan ersattes av din senare anmälan, som vi går vidare med.",
        "This intake was replaced by your later one, which we go on with.",
    ),
}


def _pick(pair: tuple[str, str], lang: Lang) -> str:
    return pair[0] if lang == "sv" else pair[1]


def language_name(code: str, lang: Lang) -> str:
    return _pick(LANGUAGE_NAMES[code], lang) if code in LANGUAGE_NAMES else code


def area_name(code: str, lang: Lang) -> str:
    return _pick(AREA_NAMES[code], lang) if code in AREA_NAMES else code.replace("_", " ")


def local_time(moment: datetime, lang: Lang) -> str:
    """'tisdag 14:00 (4 mars)' / 'Tuesday 14:00 (4 March)' in the client's time zone."""
    local = moment.astimezone(CLIENT_TIME_ZONE)
    day = _pick(WEEKDAY_NAMES[local.weekday()], lang)
    month = _pick(MONTH_NAMES[local.month - 1], lang)
    return f"{day} {local:%H:%M} ({local.day} {month})"


def _value_words(reason: MatchReason, lang: Lang) -> str:
    value = reason.value or ""
    if reason.code == "speaks_language":
        return language_name(value, lang)
    if reason.code == "works_with_area":
        return area_name(value, lang)
    if reason.code == "first_free_time":
        return local_time(datetime.fromisoformat(value), lang)
    if reason.code == "offers_mode":
        return _pick(MODE_NAMES[value], lang) if value in MODE_NAMES else value
    if reason.code == "well_rated" and lang == "sv":
        return value.replace(".", ",")  # Swedish decimal comma
    return value


def explain_reason(reason: MatchReason, lang: Lang) -> str:
    template = _pick(_REASONS[reason.code], lang)
    return template.format(value=_value_words(reason, lang))


def explain_relaxed(code: RelaxedPreference, lang: Lang) -> str:
    return _pick(_RELAXED[code], lang)


def explain_waitlist(code: WaitlistReason, lang: Lang) -> str:
    return _pick(_WAITLIST[code], lang)


def explain_choice_problem(code: ChoiceProblem, lang: Lang) -> str:
    return _pick(_CHOICE[code], lang)


def explain_status(status: IntakeStatus, lang: Lang) -> str:
    return _pick(_STATUS[status], lang)


def explain_match(result: Match, lang: Lang) -> list[str]:
    """Every reason, then every relaxed preference and refusal, as client-facing lines."""
    return (
        [explain_reason(r, lang) for r in result.reasons]
        + [explain_relaxed(r, lang) for r in result.relaxed]
        + [explain_choice_problem(p, lang) for p in result.choice_refused]
    )


def explain_waitlisted(result: Waitlist, lang: Lang) -> list[str]:
    return [explain_waitlist(r, lang) for r in result.reasons]
