"""Waitlist order: first come, first served (docs/domain.md, Matching)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class WaitingIntake:
    intake_id: uuid.UUID
    waitlisted_at: datetime  # aware


def waitlist_order(waiting: Iterable[WaitingIntake]) -> list[WaitingIntake]:
    """Earliest waitlisted first; the intake id breaks ties so the order is total."""
    return sorted(waiting, key=lambda w: (w.waitlisted_at, w.intake_id))
