"""The repository explains itself: every relative link in its Markdown resolves inside it,
and no file points at anything outside it (a fresh clone has nothing beside it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# [text](target) and [text]: target; images too. Targets with a scheme or only an anchor
# are not files.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
OUTSIDE = re.compile(r"\.\./shared\b|/work/shared\b|shared/design/")


def tracked_files() -> list[Path]:
    try:
        names = (
            subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
            .stdout.decode()
            .split("\0")
        )
        return [ROOT / name for name in names if name and (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        skip = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        return [
            p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
        ]


MARKDOWN = sorted(p for p in tracked_files() if p.suffix == ".md")


def links(text: str) -> list[str]:
    prose = FENCE.sub("", text)
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target)) or target.startswith("#")


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path.read_text(encoding="utf-8")):
        if is_external(target):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:
            continue
        resolved = (
            (ROOT / file_part.lstrip("/"))
            if file_part.startswith("/")
            else (path.parent / file_part)
        )
        resolved = resolved.resolve()
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            problems.append(f"{target} (no such file)")
    return problems


def test_the_docs_exist() -> None:
    for name in (
        "README.md",
        "CONTRIBUTING.md",
        "CHANGELOG.md",
        "docs/architecture.md",
        "docs/domain.md",
        "docs/adr/README.md",
    ):
        assert (ROOT / name).is_file(), name
    records = sorted((ROOT / "docs/adr").glob("[0-9][0-9][0-9][0-9]-*.md"))
    assert len(records) >= 5
    index = (ROOT / "docs/adr/README.md").read_text(encoding="utf-8")
    missing = [r.name for r in records if r.name not in index]
    assert not missing, f"decision records missing from docs/adr/README.md: {missing}"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert not broken_links(path)


def test_no_file_refers_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        if path.resolve() == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not offenders


def test_the_checker_finds_a_broken_link(tmp_path: Path) -> None:
    """The link check can fail: a missing file and a path leaving the repository."""
    page = ROOT / "docs" / "_probe_for_link_test.md"
    page.write_text("[gone](no-such-file.md) [out](../../outside.md) [ok](architecture.md)")
    try:
        problems = broken_links(page)
    finally:
        page.unlink()
    assert problems == [
        "no-such-file.md (no such file)",
        "../../outside.md (outside the repository)",
    ]
