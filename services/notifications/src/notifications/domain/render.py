"""Rendering a planned message into words: subject, plain-text body and a short SMS.

Layout: one Jinja2 file per message per language, `templates/<lang>/<name>.txt.j2`,
holding three blocks: `subject`, `body` and `sms`. Each block is rendered on its
own, so a block may only use the context and the filters below (no top-level
`set`). StrictUndefined: a missing context key is an error, never an empty hole.
Times in the context are ISO 8601 strings in UTC; filters show them in the
recipient's zone. Pure: templates are read from the installed package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict

from notifications.domain.words import (
    ACTORS,
    AREAS,
    DATA_CATEGORIES,
    DEFAULT_TIME_ZONE,
    END_REASONS,
    LANGUAGES,
    METHODS,
    MODES,
    OUTCOMES,
    OUTCOMES_CLINICAL,
    RELAXED,
    WAITLIST_REASONS,
    Language,
    format_clock,
    format_short,
    format_when,
    language_name,
    reason_words,
    word,
)

BLOCKS = ("subject", "body", "sms")
# One GSM-7 segment. Templates are written to fit; a test holds them to it.
SMS_MAX_CHARS = 160


class UnknownTemplate(ValueError):
    pass


class RenderedMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    body: str
    sms: str


def _strict(fn: Callable[[Any], str]) -> Callable[[Any], str]:
    """A filter that fails on an undefined value, as StrictUndefined does elsewhere."""

    def apply(value: Any) -> str:
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return fn(value)

    return apply


@lru_cache(maxsize=32)
def _environment(language: Language, time_zone: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("notifications", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )

    def table(t: Mapping[Language, Mapping[str, str]]) -> Callable[[Any], str]:
        return lambda code: word(t, str(code), language)

    filters: dict[str, Callable[[Any], str]] = {
        "when": lambda v: format_when(v, language, time_zone),
        "short": lambda v: format_short(v, language, time_zone),
        "clock": lambda v: format_clock(v, time_zone),
        "reason": lambda r: reason_words(r, language, time_zone),
        "language_name": lambda c: language_name(str(c), language),
        "area": table(AREAS),
        "mode": table(MODES),
        "method": table(METHODS),
        "actor": table(ACTORS),
        "relaxed": table(RELAXED),
        "waitlist_reason": table(WAITLIST_REASONS),
        "end_reason": table(END_REASONS),
        "outcome": table(OUTCOMES),
        "outcome_clinical": table(OUTCOMES_CLINICAL),
        "ref": lambda v: str(v)[:8],
        "data_category": table(DATA_CATEGORIES),
    }
    env.filters.update({name: _strict(fn) for name, fn in filters.items()})
    return env


def template_names() -> list[str]:
    """Every message template, by name (the Swedish set is the reference)."""
    env = _environment("sv", DEFAULT_TIME_ZONE)
    return sorted(
        name.removeprefix("sv/").removesuffix(".txt.j2")
        for name in env.list_templates(extensions=["j2"])
        if name.startswith("sv/")
    )


def _tidy_body(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render(
    template: str,
    language: Language,
    context: Mapping[str, Any],
    *,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> RenderedMessage:
    """Render `template` in `language`; raises UnknownTemplate or jinja2.UndefinedError."""
    if language not in LANGUAGES:
        raise UnknownTemplate(f"no templates in language {language!r}")
    env = _environment(language, time_zone)
    try:
        tmpl = env.get_template(f"{language}/{template}.txt.j2")
    except jinja2.TemplateNotFound as exc:
        raise UnknownTemplate(f"no template {template!r} in {language!r}") from exc
    missing = [b for b in BLOCKS if b not in tmpl.blocks]
    if missing:
        raise UnknownTemplate(f"template {template!r} ({language}) lacks blocks {missing}")
    parts: dict[str, str] = {}
    for block in BLOCKS:
        ctx = tmpl.new_context(dict(context))
        parts[block] = "".join(tmpl.blocks[block](ctx))
    return RenderedMessage(
        subject=_one_line(parts["subject"]),
        body=_tidy_body(parts["body"]),
        sms=_one_line(parts["sms"]),
    )


class NotRendered(Exception):
    """A message no language's template could render; `tried` is why, per language."""

    def __init__(self, template: str, tried: list[tuple[Language, Exception]]) -> None:
        self.template, self.tried = template, tried
        why = "; ".join(f"{language}: {type(exc).__name__}: {exc}" for language, exc in tried)
        super().__init__(f"{template!r} renders in no language ({why})")


def render_in_any_language(
    template: str,
    language: Language,
    context: Mapping[str, Any],
    *,
    time_zone: str = DEFAULT_TIME_ZONE,
    render_one: Callable[..., RenderedMessage] = render,
) -> tuple[Language, RenderedMessage, list[tuple[Language, Exception]]]:
    """The message in the recipient's language or, when that template fails (a bug in
    one language's file), in the next language Samtal writes in: a reminder or a crisis
    message in English reaches a Swedish reader; one never written reaches nobody. Any
    failure counts, not only the template's own (a filter given a value it cannot show).
    Returns (the language written in, the message, the languages that failed and why);
    raises NotRendered when none could."""
    failed: list[tuple[Language, Exception]] = []
    for candidate in (language, *(other for other in LANGUAGES if other != language)):
        try:
            return candidate, render_one(template, candidate, context, time_zone=time_zone), failed
        except Exception as exc:  # whatever it was, the next language may do
            failed.append((candidate, exc))
    raise NotRendered(template, failed)
