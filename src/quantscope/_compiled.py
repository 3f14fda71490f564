"""Compiled kernels (numba), loaded on first use; numpy is every kernel's fallback.

A kernel lives in a module of its subsystem that imports numba at its top
(``calibrate/_numba_rows.py``, ``validate/_numba_diagnostics.py``); :func:`kernel`
imports it the first time it is asked for, so ``import quantscope`` never loads numba.
Where numba cannot be imported, or with the environment variable
``QUANTSCOPE_KERNELS=numpy``, :func:`kernel` returns None and the caller runs its
numpy path, which gives the same results (each kernel is tested against it).
"""

from __future__ import annotations

import importlib
import os

__all__ = ["kernel"]

_loaded: dict[tuple[str, str], object] = {}


def kernel(module: str, name: str):
    """The compiled function ``name`` of ``module`` (a full module name), or None."""
    if os.environ.get("QUANTSCOPE_KERNELS", "").strip().lower() == "numpy":
        return None
    key = (module, name)
    if key not in _loaded:
        try:
            _loaded[key] = getattr(importlib.import_module(module), name)
        except Exception:  # numba not installed, or not for this numpy: the numpy path runs
            _loaded[key] = None
    return _loaded[key]
