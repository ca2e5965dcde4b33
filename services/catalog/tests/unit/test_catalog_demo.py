"""The demo catalog file and the synthetic generator."""

from __future__ import annotations

from catalog.demo import demo_therapists, load_demo_profiles, synthetic_profiles
from catalog.demo.synthetic import synthetic_therapist_id
from catalog.domain.profile import TherapistProfile, publish


def test_demo_file_is_large_valid_and_varied() -> None:
    profiles = load_demo_profiles()
    assert len(profiles) >= 40
    assert all(isinstance(p, TherapistProfile) for p in profiles)
    assert len({lang for p in profiles for lang in p.languages}) >= 8
    assert len({p.city for p in profiles if p.city}) >= 6
    assert {m for p in profiles for m in p.methods} == {"IPT", "IPT-A", "KBT"}
    professions = [p.profession for p in profiles]
    assert {"psychologist", "psychotherapist", "certified_staff"} <= set(professions)
    assert professions.count("certified_staff") < len(profiles) / 2  # mostly licensed
    assert {m for p in profiles for m in p.modes} == {"video", "in_person"}
    assert {a for p in profiles for a in p.age_groups} == {"adults", "adolescents"}
    assert all(3 <= p.capacity <= 25 for p in profiles)
    assert {p.accepting_new_clients for p in profiles} == {True, False}
    for profile in profiles:  # every entry can go live
        assert publish("draft", profile) == "published"


def test_demo_ids_and_names_are_unique() -> None:
    entries = demo_therapists()
    assert len({e.therapist_id for e in entries}) == len(entries)
    assert len({e.profile.name for e in entries}) == len(entries)


def test_synthetic_profiles_are_deterministic_and_valid() -> None:
    first = synthetic_profiles(300, seed=7)
    again = synthetic_profiles(300, seed=7)
    other = synthetic_profiles(300, seed=8)
    assert len(first) == 300
    assert first == again
    assert first != other
    assert synthetic_profiles(10, seed=7) == first[:10]
    for profile in first:  # re-validate from a plain dump
        assert TherapistProfile.model_validate(profile.model_dump()) == profile
    assert {m for p in first for m in p.methods} == {"IPT", "IPT-A", "KBT"}
    assert len({p.city for p in first}) >= 6
    assert synthetic_therapist_id(3, 7) == synthetic_therapist_id(3, 7)
    assert synthetic_therapist_id(3, 7) != synthetic_therapist_id(4, 7)


def test_synthetic_generator_makes_ten_thousand_distinct_ids() -> None:
    # No timing asserted (a shared machine makes that flaky); the benchmark loads these.
    profiles = synthetic_profiles(10_000)
    assert len(profiles) == 10_000
    assert len({synthetic_therapist_id(i, 0) for i in range(10_000)}) == 10_000
