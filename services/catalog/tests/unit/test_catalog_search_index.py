"""The in-memory search index against a plain filter-and-sort of the same profiles.

Random profiles are listed, changed, withdrawn and added back; after every change, every
query of a fixed mix must give exactly what filtering and sorting a list gives: the same
total and the same page, in both orders, on every page.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from catalog.domain.search import SearchQuery, name_sort_key, rating_sort_key
from catalog.domain.search_index import SearchIndex, city_key, listed, places

METHODS = ["IPT", "IPT-A", "KBT"]
AREAS = ["grief", "depression", "stress", "anxiety"]
LANGUAGES = ["sv", "en", "ar", "fa"]
MODES = ["video", "in_person"]
AGES = ["adults", "adolescents"]
CITIES = ["Malmö", "Umeå", "Lund", None]


def row(rng: random.Random, therapist_id: uuid.UUID) -> dict[str, Any]:
    rated = rng.random() < 0.6
    return {
        "therapist_id": therapist_id,
        # Few names and ratings: ties must be broken the same way (by id).
        "name": rng.choice(["Anna Ek", "anna ek", "Bo Berg", "Örjan Al", "Åsa Li"]),
        "profession": "psychologist",
        "methods": rng.sample(METHODS, rng.randint(1, 2)),
        "focus_areas": rng.sample(AREAS, rng.randint(0, 2)),
        "languages": rng.sample(LANGUAGES, rng.randint(1, 2)),
        "modes": rng.sample(MODES, rng.randint(1, 2)),
        "city": rng.choice(CITIES),
        "age_groups": rng.sample(AGES, rng.randint(1, 2)),
        "accepting_new_clients": rng.random() < 0.7,
        "rating_average": round(rng.choice([3.0, 4.5, 5.0]), 2) if rated else None,
        "rating_count": 3 if rated else 0,
    }


QUERIES: list[dict[str, Any]] = [
    {},
    {"sort": "name"},
    {"method": "IPT"},
    {"method": "KBT", "language": "fa"},
    {"city": "MALMÖ", "sort": "name"},
    {"area": "grief", "accepting": "true"},
    {"mode": "in_person", "age_group": "adolescents", "page_size": "3", "page": "2"},
    {"sort": "name", "page": "3", "page_size": "7"},
    {"language": "sv", "page": "40"},
]


def expected(rows: dict[uuid.UUID, dict[str, Any]], query: SearchQuery) -> tuple[int, list[Any]]:
    def matches(r: dict[str, Any]) -> bool:
        return (
            all(
                value is None or value in r[column]
                for column, value in (
                    ("methods", query.method),
                    ("focus_areas", query.focus_area),
                    ("languages", query.language),
                    ("modes", query.mode),
                    ("age_groups", query.age_group),
                )
            )
            and (query.city is None or (r["city"] or "").casefold() == query.city.casefold())
            and query.accepting_new_clients in (None, r["accepting_new_clients"])
        )

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        if query.sort == "name":
            return (name_sort_key(r["name"]), r["therapist_id"])
        return (*rating_sort_key(r["rating_average"], r["name"]), r["therapist_id"])

    found = sorted((r for r in rows.values() if matches(r)), key=key)
    page = found[query.offset : query.offset + query.limit]
    return len(found), [r["therapist_id"] for r in page]


def answer(index: SearchIndex, query: SearchQuery) -> tuple[int, list[Any]]:
    total, items = index.search(query)
    return total, [item["therapist_id"] for item in items]


def test_index_answers_as_filtering_and_sorting_a_list_would_after_every_change() -> None:
    rng = random.Random(14)
    rows = {tid: row(rng, tid) for tid in (uuid.uuid4() for _ in range(120))}
    index = SearchIndex(listed(r) for r in rows.values())
    queries = [SearchQuery.model_validate(q) for q in QUERIES]
    for query in queries:
        assert answer(index, query) == expected(rows, query)
    withdrawn: dict[uuid.UUID, dict[str, Any]] = {}
    for step in range(150):
        roll = rng.random()
        if roll < 0.5:  # an edit, a new rating
            tid = rng.choice(list(rows))
            changed = row(rng, tid)
            if roll < 0.2:  # same name and rating: the same place in both orders
                changed.update(name=rows[tid]["name"], rating_average=rows[tid]["rating_average"])
            rows[tid] = changed
            index.put(tid, listed(rows[tid]))
        elif roll < 0.7 and rows:  # withdrawn
            tid = rng.choice(list(rows))
            withdrawn[tid] = rows.pop(tid)
            index.put(tid, None)
        elif roll < 0.85 and withdrawn:  # published again
            tid = rng.choice(list(withdrawn))
            rows[tid] = withdrawn.pop(tid)
            index.put(tid, listed(rows[tid]))
        else:  # a new profile; or the same change read twice, which changes nothing
            tid = uuid.uuid4() if roll < 0.95 else rng.choice(list(rows))
            rows[tid] = rows.get(tid) or row(rng, tid)
            index.put(tid, listed(rows[tid]))
        index.put(uuid.uuid4(), None)  # an unknown draft stays unknown
        for query in queries:
            assert answer(index, query) == expected(rows, query), (step, query)
    assert len(index) == len(rows)


def test_an_empty_catalog_finds_nothing() -> None:
    index = SearchIndex()
    assert index.search(SearchQuery()) == (0, [])
    tid = uuid.uuid4()
    index.put(tid, listed(row(random.Random(1), tid)))
    assert index.search(SearchQuery())[0] == 1
    index.put(tid, None)
    assert index.search(SearchQuery()) == (0, [])


def test_places_skip_and_take_across_steps() -> None:
    bits = [3, 511, 512, 513, 1500, 4000]
    mask = sum(1 << b for b in bits)
    assert places(mask, 0, 10) == bits
    assert places(mask, 2, 2) == [512, 513]
    assert places(mask, 4, 10) == [1500, 4000]
    assert places(mask, 6, 5) == []
    assert places(0, 0, 5) == []


def test_places_skip_whole_words_and_bits_within_a_step() -> None:
    bits = [b for b in range(1024) if b % 3 == 0 or 600 <= b < 700]
    mask = sum(1 << b for b in bits)
    for skip in (0, 1, 21, 22, 23, 170, 171, 199, 200, 250, 400, len(bits) - 1):
        for take in (1, 7, 50):
            assert places(mask, skip, take) == bits[skip : skip + take], (skip, take)


def test_a_filter_value_nobody_has_any_longer_is_forgotten() -> None:
    """A therapist who edits their city a thousand times (each a new value) leaves no
    bitset behind for the cities nobody has now: each one was kept, and every later change
    of a sort key went through all of them."""
    rng = random.Random(3)
    ids = [uuid.uuid4() for _ in range(20)]
    index = SearchIndex(listed(row(rng, i)) for i in ids)
    sizes = {order: len(o.bits) for order, o in index.orderings.items()}
    mover = row(rng, ids[0])
    for n in range(1000):
        mover = {**mover, "city": f"Ort {n}", "rating_count": n}  # a new place, each time
        index.put(ids[0], listed(mover))
    index.put(ids[0], listed({**mover, "city": CITIES[0]}))
    for order, ordering in index.orderings.items():
        assert len(ordering.bits) <= sizes[order] + 1, order
    index.put(ids[1], None)  # withdrawn: values only it had go too
    total, _ = index.search(SearchQuery.model_validate({"city": CITIES[0]}))
    in_malmo = sum(1 for e in index.entries.values() if ("city", city_key("Malmö")) in e.filters)
    assert total == in_malmo >= 1  # the mover at least: what is left still finds
