"""Which clinician may open an intake that needs a clinician, and work on it (DOMAIN.md,
Privacy; decisions where it is silent). Pure: no I/O, no clock.

- Standing access: the clinicians on call at that moment (the on-call roster, the same
  one notifications alerts), the clinician who has claimed the intake, and, while an
  escalated intake awaits triage, the clinicians who were on call when it was escalated
  (notifications alerted them then: the alert must open what it is about after their shift
  ends). Without a roster configured every clinician counts as on call: the deployment has
  not scoped access, and crisis triage must never wait for configuration.
- Anybody else may open it only with a stated reason (emergency access). That grants
  access to that intake for `EMERGENCY_ACCESS_FOR`, is audited with the reason, flagged,
  and shown to the client in their access log.
- A claim says who is working on an intake: one clinician at a time. Another clinician
  may take it over only knowingly (`take_over`); triage and approval by anybody but the
  claimant are refused while the claim stands. An unclaimed intake may be worked by
  anybody with access (the claim is a courtesy, not a gate, for the first one there).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from contracts.oncall import OnCallRoster

EMERGENCY_ACCESS_FOR = timedelta(hours=12)
REASON_MIN_LENGTH = 10
REASON_MAX_LENGTH = 500

Standing = Literal["on_call", "alerted", "claimed", "emergency"]


@dataclass(frozen=True)
class Claim:
    clinician_id: uuid.UUID
    claimed_at: datetime


class AccessRefused(Exception):
    """The clinician has no standing access: a reason is needed (emergency access)."""

    code = "emergency_access_required"


class ClaimedByAnother(Exception):
    code = "claimed_by_another"

    def __init__(self, claim: Claim) -> None:
        super().__init__(
            f"Another clinician ({claim.clinician_id}) has claimed this intake since "
            f"{claim.claimed_at.isoformat()}; take it over knowingly or leave it to them"
        )
        self.claim = claim


def standing(
    clinician_id: uuid.UUID,
    at: datetime,
    roster: OnCallRoster | None,
    claim: Claim | None,
    emergency_until: datetime | None,
    alerted_at: datetime | None = None,
) -> Standing | None:
    """Why this clinician may open the intake now; None: only with a stated reason.
    `alerted_at`: when the clinicians then on call were alerted about it (an escalated
    intake still awaiting triage), else None."""
    if claim is not None and claim.clinician_id == clinician_id:
        return "claimed"
    if roster is None or clinician_id in roster.on_call(at):
        return "on_call"
    if alerted_at is not None and clinician_id in roster.on_call(alerted_at):
        return "alerted"
    if emergency_until is not None and at < emergency_until:
        return "emergency"
    return None


def may_open(
    clinician_id: uuid.UUID,
    at: datetime,
    roster: OnCallRoster | None,
    claim: Claim | None,
    emergency_until: datetime | None,
    alerted_at: datetime | None = None,
) -> Standing:
    found = standing(clinician_id, at, roster, claim, emergency_until, alerted_at)
    if found is None:
        raise AccessRefused(
            "This intake is for the on-call clinicians and the clinician who claimed it; "
            "to open it anyway, state a reason (emergency access): it is logged and the "
            "client sees it"
        )
    return found


def may_work(
    clinician_id: uuid.UUID,
    at: datetime,
    roster: OnCallRoster | None,
    claim: Claim | None,
    emergency_until: datetime | None,
    alerted_at: datetime | None = None,
) -> Standing:
    """Triage or decide a match: access, and no other clinician's claim in the way."""
    found = may_open(clinician_id, at, roster, claim, emergency_until, alerted_at)
    if claim is not None and claim.clinician_id != clinician_id:
        raise ClaimedByAnother(claim)
    return found


def may_claim(
    clinician_id: uuid.UUID,
    at: datetime,
    roster: OnCallRoster | None,
    claim: Claim | None,
    emergency_until: datetime | None,
    alerted_at: datetime | None = None,
    *,
    take_over: bool,
) -> Standing:
    found = may_open(clinician_id, at, roster, claim, emergency_until, alerted_at)
    if claim is not None and claim.clinician_id != clinician_id and not take_over:
        raise ClaimedByAnother(claim)
    return found
