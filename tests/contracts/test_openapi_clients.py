"""Every service's OpenAPI document is a typed contract a frontend can generate a client from:
each route names its response model and its error answers, and openapi-python-client turns
the document into a client without a warning."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

SERVICES = ("catalog", "matching", "booking", "notifications")
METHODS = ("get", "put", "post", "patch", "delete")
ERROR_MODELS = {"Problem", "ValidationProblem", "AccessProblem"}


def openapi_of(service: str) -> dict[str, Any]:
    """The document of the service's own routes (the api process adds only operations)."""
    definition = importlib.import_module(f"{service}.app").DEFINITION
    app = FastAPI(title=f"Samtal {service}", version="1")
    for router in definition.routers:
        app.include_router(router)
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def json_schema(answer: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = answer.get("content", {}).get("application/json", {}).get("schema", {})
    return schema


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def is_typed(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    """A named model with declared fields, or a list of them."""
    if schema.get("type") == "array":
        return is_typed(schema.get("items", {}), components)
    name = ref_name(schema)
    return name is not None and bool(components.get(name, {}).get("properties"))


def untyped_answers(document: dict[str, Any]) -> list[str]:
    components = document.get("components", {}).get("schemas", {})
    problems = []
    for name, operation in operations(document):
        success = [
            (status, answer)
            for status, answer in operation["responses"].items()
            if status.startswith("2")
        ]
        for status, answer in success:
            if not is_typed(json_schema(answer), components):
                problems.append(f"{name} {status}: no response model")
        errors = {
            status: ref_name(
                answer.get("content", {}).get("application/json", {}).get("schema", {})
            )
            for status, answer in operation["responses"].items()
            if status.startswith("4")
        }
        takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
        if takes_input and "422" not in errors:
            problems.append(f"{name}: no 422 answer declared")
        if operation.get("parameters") or operation.get("requestBody") or errors:
            wrong = {s: m for s, m in errors.items() if m not in ERROR_MODELS}
            if wrong:
                problems.append(f"{name}: error answers without an error model: {wrong}")
    return problems


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_declares_its_answers(service: str) -> None:
    document = openapi_of(service)
    assert operations(document), f"{service} has no routes"
    assert untyped_answers(document) == []


def test_the_check_finds_an_untyped_route() -> None:
    """It can fail: a route answering a bare dict, and one with no declared errors."""
    app = FastAPI()

    @app.get("/loose/{thing_id}")
    async def loose(thing_id: int) -> dict[str, Any]:
        return {}

    found = untyped_answers(app.openapi())
    assert "GET /loose/{thing_id} 200: no response model" in found
    assert any("error answers without an error model" in f for f in found)


@pytest.mark.parametrize("service", SERVICES)
def test_a_typed_client_generates_without_warnings(service: str, tmp_path: Path) -> None:
    spec = tmp_path / f"{service}.json"
    spec.write_text(json.dumps(openapi_of(service)))
    out = tmp_path / "client"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(out),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr
    # The generated package imports, with one module per operation.
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib, pkgutil, client, client.api, client.models;"
            "mods = [m.name for m in pkgutil.walk_packages(client.api.__path__, 'client.api.')];"
            "[importlib.import_module(m) for m in mods];"
            "print(len(mods))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert int(check.stdout.split()[-1]) >= len(operations(openapi_of(service)))
