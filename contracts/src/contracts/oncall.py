"""The on-call clinician roster: who triages escalated intakes at a given moment.

Shared by notifications (whom a crisis alert reaches) and matching (who may open an
escalated intake and its free text without stating a reason). Each service reads the
same roster from its own settings (`SAMTAL_<SERVICE>_ON_CALL_CLINICIANS` and
`..._ON_CALL_SHIFTS`); a deployment names the same roster for both.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError


class OnCallShift(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clinician_id: uuid.UUID
    starts_at: AwareDatetime
    ends_at: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> OnCallShift:
        if self.ends_at <= self.starts_at:
            raise PydanticCustomError("shift_order", "A shift must end after it starts")
        return self

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


class OnCallRoster(BaseModel):
    """The clinicians who triage escalated intakes (the list comes from settings).

    `shifts` optionally says who is on call when. Whoever's shift covers the moment
    is on call; when no shift covers it (or none are configured) every clinician on
    the roster is: an escalation must never alert nobody.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    clinician_ids: list[uuid.UUID] = Field(min_length=1)
    shifts: list[OnCallShift] = Field(default_factory=list)

    @field_validator("clinician_ids")
    @classmethod
    def _unique(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _shifts_are_for_roster(self) -> OnCallRoster:
        unknown = {s.clinician_id for s in self.shifts} - set(self.clinician_ids)
        if unknown:
            raise PydanticCustomError(
                "shift_unknown_clinician", "A shift names a clinician who is not on the roster"
            )
        return self

    def on_call(self, at: datetime) -> list[uuid.UUID]:
        """Clinicians on call at `at`, in roster order, never empty."""
        covering = {s.clinician_id for s in self.shifts if s.covers(at)}
        if not covering:
            return list(self.clinician_ids)
        return [c for c in self.clinician_ids if c in covering]
