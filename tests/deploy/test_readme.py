"""README.md's promises stay true."""

import re
from pathlib import Path

from samtal_deploy import settings_doc

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_lists_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_doc.block(readme) == settings_doc.render(), (
        "run `samtal-deploy settings-doc --write` (make docs)"
    )


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
