"""The pre-commit hooks run exactly what `make lint` runs, and the config is valid."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUN = "python3 -m uv run --frozen --all-packages"


def lint_commands() -> list[str]:
    """The recipe of the Makefile's `lint` target, with $(RUN) and $(wildcard) expanded."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("lint:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        command = line.strip().replace("$(RUN)", RUN)
        command = re.sub(
            r"\$\(wildcard ([^)]+)\)",
            lambda m: " ".join(sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(m.group(1)))),
            command,
        )
        recipe.append(command)
    return recipe


def hook_commands() -> list[str]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    return [hook["entry"] for repo in config["repos"] for hook in repo["hooks"]]


def test_pre_commit_runs_what_make_lint_runs() -> None:
    assert lint_commands(), "no lint recipe found in the Makefile"
    assert hook_commands() == lint_commands()


def test_pre_commit_config_is_valid() -> None:
    binary = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    assert binary, "pre-commit is a dev dependency"
    result = subprocess.run(
        [binary, "validate-config", ".pre-commit-config.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
