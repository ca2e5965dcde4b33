"""The configuration reference of README.md, generated from the settings classes.

samtal-deploy settings-doc --write    # rewrite README.md's settings block (make docs)
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from chassis.infra import InfraSettings
from chassis.settings import ServiceSettings
from samtal_deploy import ROOT
from samtal_deploy.services import SERVICES

README = ROOT / "README.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def _default(field: FieldInfo) -> str:
    value: Any
    if field.default_factory is not None:
        value = field.get_default(call_default_factory=True, validated_data={})
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None:
        return "unset"
    if value == "":
        return "(empty)"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def _rows(fields: dict[str, FieldInfo], prefix: str) -> list[str]:
    rows = []
    for name, field in fields.items():
        if name == "service":
            continue
        rows.append(f"| `{prefix}{name.upper()}` | {_default(field)} |")
    return rows


def render() -> str:
    lines = [
        "Every service reads the shared settings with its own prefix, `SAMTAL_<SERVICE>_`"
        " (for example `SAMTAL_BOOKING_DATABASE_URL`):",
        "",
        "| setting | default |",
        "|---|---|",
        *_rows(ServiceSettings.model_fields, "SAMTAL_<SERVICE>_"),
        "",
    ]
    for service in SERVICES:
        settings = importlib.import_module(f"{service}.settings").Settings
        shared = ServiceSettings.model_fields
        own = {  # its own settings, and the shared ones it gives another default
            k: v
            for k, v in settings.model_fields.items()
            if k != "service" and (k not in shared or _default(v) != _default(shared[k]))
        }
        if own:
            lines += [f"Only {service}:", "", "| setting | default |", "|---|---|"]
            lines += [*_rows(own, f"SAMTAL_{service.upper()}_"), ""]
    lines += [
        "Where `make run` and the tests find infrastructure:",
        "",
        "| setting | default |",
        "|---|---|",
        *_rows(InfraSettings.model_fields, "SAMTAL_INFRA_"),
    ]
    return "\n".join(lines)


def block(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def write() -> None:
    """Rewrite README.md's settings block."""
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(text[:start] + "\n" + render() + "\n" + text[end:])
