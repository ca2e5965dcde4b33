"""Methods and areas as the catalog serves them."""

from __future__ import annotations

from typing import get_args

from catalog.domain.reference import AREAS, areas_view, methods_view
from contracts.methods import METHODS
from contracts.vocabulary import FocusArea, ProblemArea


def test_every_method_is_served_from_the_reference_data() -> None:
    served = {m["code"]: m for m in methods_view()}
    assert set(served) == set(METHODS)
    kbt = served["KBT"]
    assert kbt["sessions"] == {"min": 8, "max": 20, "default": 8}
    assert [p["phase"] for p in kbt["phases"]] == ["initial", "middle", "concluding"]
    assert kbt["phases"][2]["sessions"] == METHODS["KBT"].concluding_sessions
    assert served["IPT-A"]["min_age"] == 12 and served["IPT-A"]["max_age"] == 17
    assert served["IPT-A"]["guardian_informed"] is True


def test_every_focus_area_has_names_and_the_ipt_problem_areas_are_marked() -> None:
    assert [a.code for a in AREAS] == list(get_args(FocusArea))
    problem = {a["code"] for a in areas_view() if a["kind"] == "problem_area"}
    assert problem == set(get_args(ProblemArea))
    assert all(a["name_sv"] and a["name_en"] for a in areas_view())


def test_withdrawal_reasons_are_the_contracts() -> None:
    from catalog.service import WithdrawalReason
    from contracts.events import TherapistProfileWithdrawn

    contract = TherapistProfileWithdrawn.model_fields["reason"].annotation
    assert set(get_args(WithdrawalReason)) == set(get_args(contract))
