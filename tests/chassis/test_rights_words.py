"""The words of an export part's summary: a count agrees with its noun."""

from __future__ import annotations

from chassis.rights import counted


def test_one_is_singular_and_any_other_count_plural() -> None:
    assert counted(1, "omdöme", "omdömen") == "1 omdöme"
    assert counted(0, "omdöme", "omdömen") == "0 omdömen"
    assert counted(12, "session", "sessions") == "12 sessions"
