"""Where an intake stands, and which step may follow which (docs/domain.md, Intake and Matching).

submitted ─┬─ high risk ──> awaiting_triage ─┬─ resume_matching ──> matching
           │                                 └─ refer_elsewhere ──> referred_elsewhere
           └─ otherwise ──> matching
matching / waitlisted ──> matched | awaiting_approval (severe) | waitlisted
awaiting_approval ─┬─ approve ──> matched
                   └─ reject ──> matching again, the rejected therapist excluded
matched ── switch ──> matching again, the current therapist excluded

A client has one intake in progress at a time (IN_PROGRESS, or matched until its course
ends); a high-risk intake is always taken. A new intake replaces one still waiting for a
therapist (REPLACEABLE ──> replaced).
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Literal

from matching.domain.screening import Screening

IntakeStatus = Literal[
    "matching",  # waiting for the matcher
    "awaiting_triage",  # high risk: held until a clinician's triage
    "referred_elsewhere",  # the clinician referred the client elsewhere: never matched
    "waitlisted",  # nobody fits yet: retried first come, first served
    "awaiting_approval",  # severe: a proposed match waits for a clinician
    "matched",  # a match in force
    "replaced",  # a newer intake of the client's took its place while it waited
]
MatchStatus = Literal["proposed", "active", "rejected", "switched"]
TriageDecision = Literal["resume_matching", "refer_elsewhere"]

# The matcher takes an intake from these states only; anything else is skipped.
MATCHABLE: frozenset[IntakeStatus] = frozenset({"matching"})
RETRYABLE: frozenset[IntakeStatus] = frozenset({"waitlisted"})
# What the clinician queue shows.
AWAITING_CLINICIAN: tuple[IntakeStatus, ...] = ("awaiting_triage", "awaiting_approval")
CURRENT_MATCH: tuple[MatchStatus, ...] = ("proposed", "active")
# Therapists an intake is never matched with again: rejected by a clinician, switched from.
EXCLUDING_MATCH: tuple[MatchStatus, ...] = ("rejected", "switched")

TRIAGE_OUTCOME: dict[TriageDecision, IntakeStatus] = {
    "resume_matching": "matching",
    "refer_elsewhere": "referred_elsewhere",
}


class StepRefused(Exception):
    """A step the intake's status does not allow (HTTP 409); the message says why."""


# A new intake replaces the client's intake in one of these: still waiting for a therapist,
# it holds no place yet, and the newest answers win.
REPLACEABLE: tuple[IntakeStatus, ...] = ("matching", "waitlisted")
# An intake in one of these is in progress; so is a matched one until its course ends.
IN_PROGRESS: tuple[IntakeStatus, ...] = (
    "matching",
    "waitlisted",
    "awaiting_approval",
    "awaiting_triage",
)


class IntakeInProgress(Exception):
    """The client has an intake in progress (`intake_id`, when known) and may not submit
    another, nor send an older one back to matching."""

    code = "intake_in_progress"
    messages: ClassVar[dict[str, str]] = {
        "sv": "Du har redan en ansökan som pågår. Följ den under dina ansökningar, eller byt"
        " terapeut där när du har matchats.",
        "en": "You already have an intake in progress. Follow it under your intakes, or"
        " switch therapist there once you have been matched.",
    }

    def __init__(self, intake_id: uuid.UUID | None) -> None:
        super().__init__(self.messages["en"])
        self.intake_id = intake_id


def check_one_at_a_time(screening: Screening, in_progress: uuid.UUID | None) -> None:
    """One intake in progress per client: another would take a second therapist's place
    (and, while one awaits triage, would go round the clinician). A high-risk intake is
    always taken: a crisis must get through whatever else the client has open."""
    if in_progress is not None and not screening.escalate:
        raise IntakeInProgress(in_progress)


def status_on_submit(screening: Screening) -> IntakeStatus:
    """High risk is never matched automatically: it is held for the on-call clinician."""
    return "awaiting_triage" if screening.escalate else "matching"


def status_on_match(requires_approval: bool) -> IntakeStatus:
    return "awaiting_approval" if requires_approval else "matched"


def match_status_on_match(requires_approval: bool) -> MatchStatus:
    return "proposed" if requires_approval else "active"


def triage(status: str, decision: TriageDecision) -> IntakeStatus:
    if status != "awaiting_triage":
        raise StepRefused(f"this intake is not waiting for triage (it is {status})")
    return TRIAGE_OUTCOME[decision]


def decide_match(status: str, match_status: str) -> None:
    """A clinician approves or rejects only a proposed match of an intake awaiting approval."""
    if status != "awaiting_approval" or match_status != "proposed":
        raise StepRefused(f"this match is not waiting for approval (it is {match_status})")


def switch(status: str) -> None:
    if status != "matched":
        raise StepRefused(
            "you can switch therapist once you have been matched with one "
            f"(your intake is {status.replace('_', ' ')})"
        )
