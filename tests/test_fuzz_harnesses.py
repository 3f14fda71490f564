"""The fuzzing harnesses (fuzz/) work: each one's seed files go through its reader
with a result or a quantscope error, and a damaged file gives a quantscope error.
The fuzzing itself runs in .ci/run (``python -m fuzz --seconds 30``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import quantscope as qs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("atheris")
HARNESSES = importlib.import_module("fuzz.__main__").HARNESSES


@pytest.mark.parametrize("name", HARNESSES)
def test_each_harness_reads_its_seeds_and_refuses_damage(name):
    harness = importlib.import_module(f"fuzz.{name}")
    seeds = harness.seeds()
    assert seeds
    for seed in seeds:
        try:
            harness.test_one(seed)
        except qs.QuantscopeError:
            pass
    for damaged in (b"", seeds[0][: len(seeds[0]) // 2], b"\xff" * 9):
        try:
            harness.test_one(damaged)
        except qs.QuantscopeError:
            pass
