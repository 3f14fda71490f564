"""The repository's docs stand on their own: every Markdown document a file cites is
in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CITED = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def _files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / f for f in listed if f.endswith((".py", ".md", ".sh", ".toml", ".txt")) and (ROOT / f).is_file()]


def _missing_citations(files: list[Path]) -> list[str]:
    names = {p.name for p in files} | {p.name for p in ROOT.rglob("*.md")}
    missing = []
    for path in files:
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for cited in _CITED.findall(line):
                if "://" in line and f"/{cited}" in line:
                    continue  # part of a web address
                if f"--markdown {cited}" in line:
                    continue  # an output file named on a command line
                found = (ROOT / cited).exists() if "/" in cited else cited in names
                if not found and "/" in cited:
                    found = any(str(p).endswith(cited) for p in ROOT.rglob(Path(cited).name))
                if not found:
                    missing.append(f"{path.relative_to(ROOT)}:{lineno} cites {cited}")
    return missing


def test_every_cited_document_is_in_the_repository():
    assert _missing_citations([f for f in _files() if f != Path(__file__).resolve()]) == []


def test_the_citation_check_can_fail(tmp_path):
    stray = ROOT / "docs" / "_stray_for_test.py"
    stray.write_text("# see " + "SPEC" + ".md section 2 and docs/" + "nowhere.md\n")
    try:
        found = _missing_citations([stray])
        assert any("SPEC" + ".md" in m for m in found) and any("docs/" + "nowhere.md" in m for m in found)
    finally:
        stray.unlink()
