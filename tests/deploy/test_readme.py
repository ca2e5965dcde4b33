"""README.md's promises stay true."""

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _settings_doc():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "samtal_settings_doc", ROOT / "deploy" / "settings_doc.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_lists_every_setting_with_its_default() -> None:
    doc = _settings_doc()
    readme = (ROOT / "README.md").read_text()
    assert doc.block(readme) == doc.render(), "run `uv run python deploy/settings_doc.py --write`"


def test_the_first_commands_are_make_run_and_make_test() -> None:
    first_block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_ci_runs_exactly_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [
        line
        for line in script.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]
