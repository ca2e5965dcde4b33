"""The public search query: filters, sort and paging, with clear 422 messages."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from catalog.domain.search import SearchQuery, name_sort_key, rating_sort_key


def refused(**params: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        SearchQuery.model_validate(params)
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}


def test_defaults() -> None:
    query = SearchQuery()
    assert (query.sort, query.page, query.page_size) == ("rating", 1, 20)
    assert (query.offset, query.limit) == (0, 20)
    assert query.method is None and query.accepting_new_clients is None


def test_all_filters_parse_from_query_strings() -> None:
    query = SearchQuery.model_validate(
        {
            "method": "IPT-A",
            "problem": "grief",
            "language": " AR ",
            "mode": "in_person",
            "city": " Malmö ",
            "age_group": "adolescents",
            "accepting_new_clients": "true",
            "sort": "name",
            "page": "3",
            "page_size": "50",
        }
    )
    assert query.method == "IPT-A" and query.focus_area == "grief"
    assert query.language == "ar" and query.city == "Malmö"
    assert query.accepting_new_clients is True
    assert (query.offset, query.limit) == (100, 50)
    assert SearchQuery.model_validate({"focus_area": "stress"}).focus_area == "stress"


def test_short_names_from_the_public_url() -> None:
    query = SearchQuery.model_validate({"area": "grief", "accepting": "false"})
    assert query.focus_area == "grief"
    assert query.accepting_new_clients is False
    assert "area" in refused(area="sleep")


def test_blank_filters_mean_no_filter() -> None:
    query = SearchQuery.model_validate({"method": "", "city": " ", "language": ""})
    assert (query.method, query.city, query.language) == (None, None, None)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"method": "EMDR"}, "method", "Method must be one of: IPT, IPT-A, KBT"),
        ({"problem": "sleep"}, "problem", "Focus area must be one of"),
        ({"focus_area": "sleep"}, "focus_area", "Focus area must be one of"),
        ({"language": "xx"}, "language", "ISO 639-1 language code"),
        ({"mode": "phone"}, "mode", "Meeting mode must be one of"),
        ({"city": "x" * 61}, "city", "City must be at most 60"),
        ({"age_group": "kids"}, "age_group", "Age group must be one of"),
        ({"accepting_new_clients": "maybe"}, "accepting_new_clients", "Accepting new clients"),
        ({"sort": "price"}, "sort", "Sort must be one of: rating, name"),
        ({"page": 0}, "page", "Page must be a whole number from 1 to 10000"),
        ({"page": 2**63}, "page", "Page must be a whole number from 1 to 10000"),
        ({"page": "two"}, "page", "Page must be a whole number"),
        ({"page_size": 0}, "page_size", "Page size must be a whole number from 1 to 50"),
        ({"page_size": 51}, "page_size", "Page size must be a whole number from 1 to 50"),
    ],
)
def test_bad_values_are_refused_with_clear_messages(
    params: dict[str, Any], field: str, words: str
) -> None:
    errors = refused(**params)
    assert field in errors, errors
    assert words in errors[field]


def test_unknown_parameter_is_named() -> None:
    errors = refused(price="cheap")
    assert any("Unknown search parameter price" in msg for msg in errors.values())


def test_bounds_are_inclusive() -> None:
    assert SearchQuery(page_size=1).page_size == 1
    assert SearchQuery(page_size=50).page_size == 50
    assert SearchQuery(page=1).page == 1


def test_rating_sort_puts_best_first_and_unrated_last() -> None:
    rows = [("Ö", None), ("B", 4.2), ("A", None), ("C", 4.9), ("D", 4.2)]
    ordered = sorted(rows, key=lambda r: rating_sort_key(r[1], r[0]))
    assert [name for name, _ in ordered] == ["C", "B", "D", "A", "Ö"]
    assert sorted(["b", "A", "c"], key=name_sort_key) == ["A", "b", "c"]
