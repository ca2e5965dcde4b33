"""Rows into what a frontend shows: codes with their words in the reader's language."""

from __future__ import annotations

from typing import Any

import asyncpg

from matching import store
from matching.domain.explain import (
    Lang,
    explain_choice_problem,
    explain_match,
    explain_reason,
    explain_relaxed,
    explain_status,
    explain_waitlist,
)
from matching.domain.matcher import Waitlist
from matching.domain.screening import CRISIS_MESSAGE


def crisis() -> dict[str, str]:
    """What a high-risk client is told at once, in both languages."""
    return dict(CRISIS_MESSAGE)


def screening(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "phq9_total": row["phq9_total"],
        "severity_band": row["severity_band"],
        "risk_level": row["risk_level"],
        "method": row["method"],
        "age_group": row["age_group"],
        "requires_approval": row["requires_approval"],
    }


def intake(row: asyncpg.Record, current: asyncpg.Record | None, lang: Lang) -> dict[str, Any]:
    """The client's own intake: answers, status, match or waitlist, explained in words."""
    view: dict[str, Any] = {
        "intake_id": str(row["intake_id"]),
        "submitted_at": row["submitted_at"].isoformat(),
        "status": row["status"],
        "status_text": explain_status(row["status"], lang),
        "screening": screening(row),
        "answers": store.intake_of(row).model_dump(mode="json"),
        "crisis": crisis() if row["risk_level"] == "high" else None,
        "match": None,
        "alternatives": [],
        "waitlist": None,
        "explanation": [],
    }
    if current is not None:
        result = store.match_of(current)
        view["match"] = {
            "match_id": str(current["match_id"]),
            "therapist_id": str(current["therapist_id"]),
            "score": current["score"],
            "mode": current["mode"],
            "status": current["status"],
            "requires_approval": current["requires_approval"],
            "approved": current["status"] == "active" and current["requires_approval"],
            "previous_therapist_id": _str(current["previous_therapist_id"]),
            "reasons": [
                {"code": r.code, "value": r.value, "text": explain_reason(r, lang)}
                for r in result.reasons
            ],
            "relaxed": [{"code": c, "text": explain_relaxed(c, lang)} for c in result.relaxed],
            "choice_refused": [
                {"code": c, "text": explain_choice_problem(c, lang)} for c in result.choice_refused
            ],
        }
        view["alternatives"] = [a.model_dump(mode="json") for a in result.alternatives]
        view["explanation"] = explain_match(result, lang)
    elif row["status"] == "waitlisted":
        waiting = Waitlist(reasons=list(row["waitlist_reasons"]))
        view["waitlist"] = {
            "since": row["waitlisted_at"].isoformat(),
            "reasons": [{"code": c, "text": explain_waitlist(c, lang)} for c in waiting.reasons],
        }
        view["explanation"] = [r["text"] for r in view["waitlist"]["reasons"]]
    return view


def intake_summary(row: asyncpg.Record, lang: Lang) -> dict[str, Any]:
    return {
        "intake_id": str(row["intake_id"]),
        "submitted_at": row["submitted_at"].isoformat(),
        "status": row["status"],
        "status_text": explain_status(row["status"], lang),
        "severity_band": row["severity_band"],
        "risk_level": row["risk_level"],
        "method": row["method"],
        "match_id": _str(row["match_id"]),
        "therapist_id": _str(row["therapist_id"]),
    }


def queue_entry(row: asyncpg.Record) -> dict[str, Any]:
    """What a clinician needs to pick the next intake; answers and free text stay behind the
    audited detail read."""
    proposed = None
    if row["match_id"] is not None:
        proposed = {
            "match_id": str(row["match_id"]),
            "therapist_id": str(row["therapist_id"]),
            "score": row["score"],
            "mode": row["mode"],
        }
    return {
        "intake_id": str(row["intake_id"]),
        "client_id": str(row["client_id"]),
        "status": row["status"],
        "waiting_since": row["status_since"].isoformat(),
        "submitted_at": row["submitted_at"].isoformat(),
        "risk_level": row["risk_level"],
        "severity_band": row["severity_band"],
        "phq9_total": row["phq9_total"],
        "self_harm_answer": row["self_harm_answer"],
        "age_group": row["age_group"],
        "method": row["method"],
        "requires_approval": row["requires_approval"],
        "has_free_text": row["has_free_text"],
        "proposed_match": proposed,
        # Who is working on it (domain/access.py), so two clinicians do not unknowingly.
        "claimed_by": _str(row["claimed_by"]),
        "claimed_at": row["claimed_at"].isoformat() if row["claimed_at"] else None,
    }


def clinician_intake(
    row: asyncpg.Record, current: asyncpg.Record | None, lang: Lang
) -> dict[str, Any]:
    view = intake(row, current, lang)
    view["client_id"] = str(row["client_id"])
    view["triage"] = (
        {
            "decision": row["triage_decision"],
            "clinician_id": str(row["triaged_by"]),
            "at": row["triaged_at"].isoformat(),
        }
        if row["triaged_at"] is not None
        else None
    )
    return view


def audit_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "actor_id": entry["actor_id"],
        "actor_role": entry["actor_role"],
        "action": entry["action"],
        "resource": entry["resource"],
        "resource_id": entry["resource_id"],
        "at": entry["at"].isoformat(),
        # Emergency access is flagged, with the reason the clinician gave.
        "emergency": entry["emergency"],
        "reason_code": entry["reason_code"],
        "reason": entry["reason"],
    }


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)
