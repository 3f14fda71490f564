"""What every harness shares: a scratch folder, and the rule for exceptions."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

SCRATCH = Path(tempfile.mkdtemp(prefix="quantscope-fuzz-"))


def write(name: str, data: bytes) -> Path:
    """``data`` as the file ``name`` in the scratch folder (replaced each time)."""
    path = SCRATCH / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def run(test_one: Callable[[bytes], None]) -> None:
    """Fuzz ``test_one``: a :class:`quantscope.QuantscopeError` is an accepted answer,
    anything else propagates and libFuzzer reports it as a crash."""
    from quantscope import QuantscopeError

    with atheris.instrument_imports(include=["quantscope"]):
        try:  # one call imports (and so instruments) every quantscope module the harness reaches
            test_one(b"")
        except Exception:  # noqa: BLE001 - only the imports matter here
            pass

    def one(data: bytes) -> None:
        try:
            test_one(data)
        except QuantscopeError:
            pass

    atheris.Setup(sys.argv, one)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    atheris.Fuzz()
