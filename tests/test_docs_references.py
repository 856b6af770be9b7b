"""The repository stands on its own: every section citation resolves to a heading of
docs/algorithms.md, and no file points to design notes that live outside the repository.

Files are those git knows (tracked, plus untracked files that are not ignored), minus ``results/``
(run outputs) and binary files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = "docs/algorithms.md"
SECTION = "\u00a7"  # the section sign, spelled out so this file cites nothing itself
CITATION = re.compile(SECTION + r"\s?(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+" + SECTION + r"(\d+(?:\.\d+)*)(?=\s|$)", re.MULTILINE)
# notes outside the repository (split so that this file does not match itself)
FORBIDDEN = tuple(a + b for a, b in [
    ("DESIGN", ".md"),
    ("shared/", "spec"),
    ("spec/", "algorithms.md"),
    ("spec/", "stack.md"),
    ("house-", "style.md"),
    ("slurm-", "local.md"),
])
EXCLUDED_PREFIXES = ("results/",)
MAX_BYTES = 8 * 1024 * 1024


def repo_text_files() -> dict[str, str]:
    """Path (relative to the root) -> text of every text file git knows, outside the exclusions."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the file list comes from git ls-files")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout
    files: dict[str, str] = {}
    for raw in sorted(set(out.split(b"\0"))):
        rel = raw.decode("utf-8", "surrogateescape")
        if not rel or rel.startswith(EXCLUDED_PREFIXES):
            continue
        path = ROOT / rel
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue  # deleted in the working tree, or a large binary
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            files[rel] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return files


def algorithm_headings() -> list[str]:
    path = ROOT / ALGORITHMS
    assert path.is_file(), f"{ALGORITHMS} is missing: every section citation points there"
    return HEADING.findall(path.read_text(encoding="utf-8"))


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def test_section_headings_are_unique():
    headings = algorithm_headings()
    assert headings, f"{ALGORITHMS} has no numbered headings ('## {SECTION}1 ...')"
    duplicates = sorted({h for h in headings if headings.count(h) > 1})
    assert not duplicates, f"{ALGORITHMS}: section numbers used by more than one heading: {duplicates}"


def test_every_section_citation_has_a_heading():
    headings = set(algorithm_headings())
    dangling = [
        f"{rel}:{line_of(text, m.start())}: {SECTION}{m.group(1)}"
        for rel, text in repo_text_files().items()
        for m in CITATION.finditer(text)
        if m.group(1) not in headings
    ]
    assert not dangling, (
        f"section citations without a heading in {ALGORITHMS} (add the heading or fix the number):\n  "
        + "\n  ".join(dangling)
    )


def test_files_that_cite_sections_name_the_reference():
    """A bare section number is only followable when the file says which document it numbers."""
    unnamed = [
        rel for rel, text in repo_text_files().items()
        if rel != ALGORITHMS and CITATION.search(text) and "algorithms.md" not in text
    ]
    assert not unnamed, f"files citing {SECTION}x.y without naming {ALGORITHMS}: {unnamed}"


def test_no_reference_to_notes_outside_the_repository():
    hits = [
        f"{rel}:{line_of(text, m.start())}: {m.group(0)}"
        for rel, text in repo_text_files().items()
        for m in re.finditer("|".join(map(re.escape, FORBIDDEN)), text)
    ]
    assert not hits, (
        "references to design notes outside the repository (point to docs/ instead):\n  " + "\n  ".join(hits)
    )
