"""What a request may carry: text and whole numbers every store can hold.

Every string a request brings (body, query, path) is `Text` or narrower: no NUL
character (Postgres refuses it), no unpaired surrogate (UTF-8 cannot encode it),
and a length bound. Whole numbers are bounded too, so that no value overflows a
Postgres `integer`/`bigint` or asks for an absurd page. Errors are
`PydanticCustomError`s whose message never repeats the value (it may be health or
personal data), so a 422 names the field and says what is wrong, nothing more.

    name: Annotated[Text, Field(max_length=100)]
    page: PageNumber = 1
"""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

# The longest text any request may carry; fields narrow it with Field(max_length=...).
TEXT_MAX = 10_000
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
PAGE_MAX = 10_000
OFFSET_MAX = 1_000_000
TIME_ZONE_MAX = 64


def clean_text(value: str) -> str:
    """The text itself, or an error when it holds a NUL or an unpaired surrogate."""
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "Text must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(
            "text_surrogate", "Text must be valid Unicode (it has an unpaired surrogate)"
        ) from None
    return value


# The length bound comes first: a huge text is refused before anything reads it.
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX), AfterValidator(clean_text)]
# A name, code or key: one line, at most 200 characters.
ShortText = Annotated[str, StringConstraints(max_length=200), AfterValidator(clean_text)]

# Whole numbers a request may carry: a Postgres integer/bigint holds any of them.
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
RowId = Annotated[int, Field(ge=1, le=INT64_MAX, description="a stored row's number")]
PageNumber = Annotated[int, Field(ge=1, le=PAGE_MAX)]
Offset = Annotated[int, Field(ge=0, le=OFFSET_MAX)]
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]


@cache
def known_time_zones() -> frozenset[str]:
    """The IANA names this machine knows, read once: checking a name never opens a file
    (a name is not a path, and a long one must not reach the file system)."""
    return frozenset(zoneinfo.available_timezones())


def is_time_zone(name: str) -> bool:
    return len(name) <= TIME_ZONE_MAX and name in known_time_zones()


def _time_zone(value: Any) -> Any:
    if isinstance(value, str):
        name = value.strip()
        if not is_time_zone(name):
            raise PydanticCustomError(
                "time_zone_unknown", "Choose a known time zone such as Europe/Stockholm"
            )
        return name
    return value


# An IANA time zone name, trimmed, checked against the known names without a file read.
TimeZoneName = Annotated[
    str, BeforeValidator(_time_zone), StringConstraints(max_length=TIME_ZONE_MAX)
]
