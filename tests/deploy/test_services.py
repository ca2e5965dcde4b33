"""The one list of services: each service's package declares its DEFINITION (entry point
group `samtal.services`), and everything in deploy/ reads that list."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from chassis.app import ServiceDefinition
from samtal_deploy import services
from samtal_deploy.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_package_declares_its_definition() -> None:
    packages = sorted(
        p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()
    )
    assert list(services.SERVICES) == packages
    for name in services.SERVICES:
        declared = services.definition(name)
        assert isinstance(declared, ServiceDefinition) and declared.name == name


def test_a_definition_of_another_service_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Point:
        value = "catalog.app:DEFINITION"

        def load(self) -> ServiceDefinition:
            from catalog.app import DEFINITION

            return DEFINITION

    monkeypatch.setattr(services, "entry_points", lambda **_: [Point()])
    services.definition.cache_clear()
    try:
        with pytest.raises(TypeError, match="not the ServiceDefinition of booking"):
            services.definition("booking")
    finally:
        services.definition.cache_clear()


def test_the_cli_lists_them_and_finds_nothing_stale() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["services"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.split() == list(services.SERVICES)
    checked = runner.invoke(app, ["generate", "--check"])
    assert checked.exit_code == 0, checked.output
