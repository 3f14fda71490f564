"""The architecture holds: no import cycle between quantscope's modules (imports inside
functions included), and the stages depend one way (import-linter's contract in
pyproject.toml, also run by .ci/run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cycles(graph) -> list[tuple[str, str]]:
    """Pairs of modules that import each other, directly or through others."""
    found = set()
    for a in sorted(graph.modules):
        for b in graph.find_modules_directly_imported_by(a):
            if graph.find_shortest_chain(importer=b, imported=a):
                found.add(tuple(sorted((a, b))))
    return sorted(found)


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("quantscope", exclude_type_checking_imports=True)
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    graph = grimp.build_graph("quantscope", exclude_type_checking_imports=True)
    graph.add_import(importer="quantscope.calibrate.stats", imported="quantscope.calibrate.result")
    assert ("quantscope.calibrate.result", "quantscope.calibrate.stats") in _cycles(graph)


def test_stages_depend_one_way():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    run = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "1 kept, 0 broken" in run.stdout
