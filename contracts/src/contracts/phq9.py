"""PHQ-9 scoring shared by matching (screening) and booking (course outcome)."""

from __future__ import annotations

from contracts.vocabulary import CourseOutcome, SeverityBand

PHQ9_ITEMS = 9
PHQ9_MAX_ANSWER = 3
# Upper bound (inclusive) of each band's total.
BANDS: tuple[tuple[int, SeverityBand], ...] = (
    (4, "minimal"),
    (9, "mild"),
    (14, "moderate"),
    (19, "moderately_severe"),
    (27, "severe"),
)
REMISSION_BELOW = 5


def severity_band(total: int) -> SeverityBand:
    if not 0 <= total <= PHQ9_ITEMS * PHQ9_MAX_ANSWER:
        raise ValueError(f"a PHQ-9 total is 0-27, not {total}")
    return next(band for upper, band in BANDS if total <= upper)


def course_outcome(start_total: int, final_total: int) -> CourseOutcome:
    """Remission: final below 5. Response: fell by at least half. Remission wins when both hold."""
    if final_total < REMISSION_BELOW:
        return "remission"
    if start_total > 0 and final_total <= start_total / 2:
        return "response"
    return "neither"
