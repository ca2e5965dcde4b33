"""Screening rules, table by table (docs/domain.md, Intake and screening)."""

from __future__ import annotations

import pytest

from matching.domain.screening import (
    APPROVAL_FROM_TOTAL,
    CRISIS_MESSAGE,
    MIN_AGE,
    ScreeningRefused,
    age_group_for,
    crisis_message,
    method_for,
    phq9_total,
    requires_approval,
    risk_level,
    screen,
)


def answers_totalling(total: int, item9: int = 0) -> list[int]:
    """Nine answers (0-3) with the given total and item 9."""
    rest = total - item9
    items = []
    for _ in range(8):
        take = min(3, rest)
        items.append(take)
        rest -= take
    assert rest == 0, "total not reachable"
    return [*items, item9]


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_band_edges(total: int, band: str) -> None:
    s = screen(30, answers_totalling(total, item9=min(total, 3) if total == 27 else 0), ["grief"])
    assert s.total == total
    assert s.band == band


@pytest.mark.parametrize(("total", "approval"), [(0, False), (19, False), (20, True), (27, True)])
def test_severe_requires_approval_and_licence(total: int, approval: bool) -> None:
    assert requires_approval(total) is approval
    s = screen(30, answers_totalling(total, item9=3 if total == 27 else 0), ["stress"])
    assert s.requires_approval is approval
    assert s.requires_licensed is approval
    assert APPROVAL_FROM_TOTAL == 20


@pytest.mark.parametrize(("item9", "risk"), [(0, "standard"), (1, "high"), (3, "high")])
def test_item_nine_decides_risk(item9: int, risk: str) -> None:
    answers = [0] * 8 + [item9]
    assert risk_level(answers) == risk
    s = screen(30, answers, ["grief"])
    assert s.risk_level == risk
    assert s.escalate is (risk == "high")


def test_other_items_do_not_raise_risk() -> None:
    assert risk_level([3] * 8 + [0]) == "standard"


@pytest.mark.parametrize(
    ("age", "group", "method"),
    [
        (12, "adolescents", "IPT-A"),
        (17, "adolescents", "IPT-A"),
        (18, "adults", "IPT"),
        (80, "adults", "IPT"),
    ],
)
def test_age_decides_group_and_method(age: int, group: str, method: str) -> None:
    s = screen(age, [0] * 9, ["grief"])
    assert s.age_group == group
    assert s.method == method


@pytest.mark.parametrize("age", [0, 11])
def test_under_twelve_is_refused_with_code_and_message(age: int) -> None:
    with pytest.raises(ScreeningRefused) as refused:
        screen(age, [0] * 9, ["grief"])
    assert refused.value.code == "under_minimum_age"
    assert str(MIN_AGE) in refused.value.message_sv
    assert str(MIN_AGE) in refused.value.message_en
    assert "112" in refused.value.message_sv


def test_age_group_for_boundaries() -> None:
    assert age_group_for(12) == "adolescents"
    assert age_group_for(18) == "adults"
    with pytest.raises(ScreeningRefused):
        age_group_for(11)


@pytest.mark.parametrize(
    ("areas", "method"),
    [
        (["grief"], "IPT"),
        (["role_transition"], "IPT"),
        (["interpersonal_dispute"], "IPT"),
        (["interpersonal_deficits"], "IPT"),
        (["relationships"], "IPT"),
        (["anxiety", "relationships"], "IPT"),
        (["depression"], "KBT"),
        (["anxiety"], "KBT"),
        (["stress", "anxiety"], "KBT"),
    ],
)
def test_adult_method_follows_relational_areas(areas: list[str], method: str) -> None:
    assert method_for(30, areas) == method


@pytest.mark.parametrize("areas", [["anxiety"], ["grief"]])
def test_adolescents_always_get_ipt_a(areas: list[str]) -> None:
    assert method_for(15, areas) == "IPT-A"


@pytest.mark.parametrize("answers", [[0] * 8, [0] * 10, [4] + [0] * 8, [-1] + [0] * 8])
def test_phq9_total_rejects_malformed_answers(answers: list[int]) -> None:
    with pytest.raises(ValueError):
        phq9_total(answers)


def test_crisis_text_names_112_emergency_and_1177_in_both_languages() -> None:
    sv, en = CRISIS_MESSAGE["sv"], CRISIS_MESSAGE["en"]
    assert "ring 112" in sv and "akutmottagning" in sv and "1177" in sv
    assert "call 112" in en and "emergency department" in en and "1177" in en
    assert crisis_message("en") == en
    assert crisis_message("sv") == sv
    assert crisis_message("ar") == sv  # Swedish first
