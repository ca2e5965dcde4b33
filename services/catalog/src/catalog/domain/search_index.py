"""The published catalog as a search index: exact totals and a page without a scan.

Each published profile has a place in each sort order. For every filter value (a method,
a language, a city, ...) an int used as a bitset marks the places of the profiles that
have it, so a query ANDs one bitset per filter, counts the bits (the exact total) and
reads the places of its page. A changed profile leaves its places (every bitset closes the
gap) and takes its new ones (every bitset opens one): a few hundred operations on ints of
N bits, whatever the query mix.

Pure: the rows come from the store, the result goes to the api.
"""

from __future__ import annotations

import uuid
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from catalog.domain.search import SearchQuery, SortOrder, name_sort_key, rating_sort_key

SUMMARY_FIELDS = (
    "therapist_id", "name", "profession", "methods", "focus_areas", "languages", "modes",
    "city", "age_groups", "accepting_new_clients", "rating_average", "rating_count",
)  # fmt: skip
# (what is filtered, the value): ("methods", "IPT"), ("city", "malmö"), ("accepting", True).
FilterKey = tuple[str, object]
SortKey = tuple[Any, ...]

EVERYONE: FilterKey = ("published", True)
# Array columns of a profile and the query field that filters each.
_ARRAY_FILTERS = (
    ("methods", "method"),
    ("focus_areas", "focus_area"),
    ("languages", "language"),
    ("modes", "mode"),
    ("age_groups", "age_group"),
)
# Bits per step when looking for the page's places: whole steps before the page are
# skipped by their bit count, so a deep page costs about N / _STEP big-int operations;
# within the step where the page starts, whole words are skipped the same way.
_STEP = 512
_STEP_MASK = (1 << _STEP) - 1
_WORD = 64
_WORD_MASK = (1 << _WORD) - 1


def city_key(city: str) -> str:
    """Cities match whatever their case ("MALMÖ" finds "Malmö")."""
    return city.strip().casefold()


@dataclass(frozen=True)
class Listed:
    """One published profile as search shows and finds it."""

    therapist_id: uuid.UUID
    summary: dict[str, Any]  # what a hit shows
    filters: frozenset[FilterKey]
    sort_keys: Mapping[SortOrder, SortKey]


def listed(row: Mapping[str, Any]) -> Listed:
    """A published profile's row (the store's summary columns) as the index holds it."""
    summary = {column: row[column] for column in SUMMARY_FIELDS}
    therapist_id: uuid.UUID = summary["therapist_id"]
    rating = summary["rating_average"]
    rating = summary["rating_average"] = None if rating is None else float(rating)
    filters: set[FilterKey] = {EVERYONE, ("accepting", bool(row["accepting_new_clients"]))}
    for column, _ in _ARRAY_FILTERS:
        filters.update((column, value) for value in row[column])
    if row["city"]:
        filters.add(("city", city_key(row["city"])))
    # The id last: every key is unique, so pages never overlap or skip.
    return Listed(
        therapist_id=therapist_id,
        summary=summary,
        filters=frozenset(filters),
        sort_keys={
            "rating": (*rating_sort_key(rating, row["name"]), therapist_id),
            "name": (name_sort_key(row["name"]), therapist_id),
        },
    )


def query_filters(query: SearchQuery) -> list[FilterKey]:
    wanted: list[FilterKey] = [EVERYONE]
    for column, field in _ARRAY_FILTERS:
        value = getattr(query, field)
        if value is not None:
            wanted.append((column, value))
    if query.city is not None:
        wanted.append(("city", city_key(query.city)))
    if query.accepting_new_clients is not None:
        wanted.append(("accepting", query.accepting_new_clients))
    return wanted


def places(mask: int, skip: int, take: int) -> list[int]:
    """The positions of the set bits of `mask`, lowest first, after the first `skip`."""
    found: list[int] = []
    base = 0
    while mask and len(found) < take:
        step = mask & _STEP_MASK
        count = step.bit_count()
        if skip >= count:
            skip -= count
        else:
            at = base
            while step and len(found) < take:
                word = step & _WORD_MASK
                count = word.bit_count()
                if skip >= count:
                    skip -= count
                else:
                    while word and len(found) < take:
                        lowest = word & -word
                        if skip:
                            skip -= 1
                        else:
                            found.append(at + lowest.bit_length() - 1)
                        word ^= lowest
                step >>= _WORD
                at += _WORD
        mask >>= _STEP
        base += _STEP
    return found


class _Ordering:
    """The listed profiles in one sort order, and one bitset per filter value over it."""

    def __init__(self, order: SortOrder, entries: list[Listed]) -> None:
        self.order = order
        ranked = sorted(entries, key=lambda e: e.sort_keys[order])
        self.keys: list[SortKey] = [e.sort_keys[order] for e in ranked]
        self.ids: list[uuid.UUID] = [e.therapist_id for e in ranked]
        # Built from bytes: setting N bits one by one would copy the int N times.
        raw: dict[FilterKey, bytearray] = {}
        size = (len(ranked) + 7) // 8
        for place, entry in enumerate(ranked):
            for key in entry.filters:
                bits = raw.get(key)
                if bits is None:
                    bits = raw[key] = bytearray(size)
                bits[place >> 3] |= 1 << (place & 7)
        self.bits: dict[FilterKey, int] = {
            key: int.from_bytes(bits, "little") for key, bits in raw.items()
        }

    def remove(self, entry: Listed) -> None:
        place = bisect_left(self.keys, entry.sort_keys[self.order])
        del self.keys[place]
        del self.ids[place]
        below = (1 << place) - 1
        for key, mask in list(self.bits.items()):
            closed = (mask & below) | ((mask >> (place + 1)) << place)
            if closed:
                self.bits[key] = closed
            else:  # nobody has this value now (a city edited away): not kept, not walked
                del self.bits[key]

    def add(self, entry: Listed) -> None:
        sort_key = entry.sort_keys[self.order]
        insort(self.keys, sort_key)
        place = bisect_left(self.keys, sort_key)
        self.ids.insert(place, entry.therapist_id)
        below = (1 << place) - 1
        for key, mask in self.bits.items():
            self.bits[key] = (mask & below) | ((mask >> place) << (place + 1))
        for key in entry.filters:
            self.bits[key] = self.bits.get(key, 0) | (1 << place)

    def refilter(self, old: Listed, entry: Listed) -> None:
        """The same place (its sort key unchanged, say a new language): only the filters
        that differ change, one bit each, instead of every bitset closing and opening."""
        bit = 1 << bisect_left(self.keys, entry.sort_keys[self.order])
        for key in old.filters - entry.filters:
            if not (left := self.bits[key] & ~bit):
                del self.bits[key]
            else:
                self.bits[key] = left
        for key in entry.filters - old.filters:
            self.bits[key] = self.bits.get(key, 0) | bit

    def find(self, wanted: list[FilterKey], skip: int, take: int) -> tuple[int, list[uuid.UUID]]:
        mask = -1
        for key in wanted:
            mask &= self.bits.get(key, 0)
        return mask.bit_count(), [self.ids[p] for p in places(mask, skip, take)]


class SearchIndex:
    """Every published profile, searchable by any combination of filters, in both orders."""

    def __init__(self, entries: Iterable[Listed] = ()) -> None:
        self.entries: dict[uuid.UUID, Listed] = {e.therapist_id: e for e in entries}
        values = list(self.entries.values())
        self.orderings = {order: _Ordering(order, values) for order in get_args(SortOrder)}

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, therapist_id: uuid.UUID, entry: Listed | None) -> None:
        """The profile as it now is: listed, or None when it is not (or no longer) published."""
        old = self.entries.get(therapist_id)
        if old == entry:
            return  # seen already (a change is read again until no transaction predates it)
        for order, ordering in self.orderings.items():
            if old is not None and entry is not None:
                if old.sort_keys[order] == entry.sort_keys[order]:
                    ordering.refilter(old, entry)
                    continue
            if old is not None:
                ordering.remove(old)
            if entry is not None:
                ordering.add(entry)
        if entry is None:
            self.entries.pop(therapist_id, None)
        else:
            self.entries[therapist_id] = entry

    def search(self, query: SearchQuery) -> tuple[int, list[dict[str, Any]]]:
        """(exact total, the page's summaries)."""
        total, ids = self.orderings[query.sort].find(
            query_filters(query), query.offset, query.limit
        )
        return total, [self.entries[i].summary for i in ids]
