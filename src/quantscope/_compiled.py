"""Compiled kernels (numba), loaded in the background on first use; numpy is every
kernel's fallback.

A kernel lives in a module of its subsystem that imports numba at its top
(``validate/_numba_diagnostics.py``), with a ``warm_up()`` that calls it once on tiny
arrays. Importing numba and loading a compiled kernel from numba's cache takes about
a second of Python work, so :func:`prepare` starts it in a background thread
(``import quantscope`` never loads numba), and :func:`kernel` waits for it;
:func:`loaded` does not wait (the caller runs numpy until the kernel is there). Where
numba cannot be imported, or with the environment variable
``QUANTSCOPE_KERNELS=numpy``, :func:`kernel` returns None and the caller runs its
numpy path.
"""

from __future__ import annotations

import importlib
import os
import threading

__all__ = ["disabled", "kernel", "loaded", "prepare"]

_lock = threading.Lock()
_loading: dict[tuple[str, str], threading.Thread] = {}
_loaded: dict[tuple[str, str], object] = {}


def disabled() -> bool:
    """``QUANTSCOPE_KERNELS=numpy``: every kernel's numpy path runs."""
    return os.environ.get("QUANTSCOPE_KERNELS", "").strip().lower() == "numpy"


def prepare(module: str, name: str) -> None:
    """Start loading the kernel ``name`` of ``module`` (a full module name) in a
    background thread, unless it is loaded or loading; returns at once."""
    if disabled():
        return
    key = (module, name)
    with _lock:
        if key in _loaded or key in _loading:
            return
        thread = threading.Thread(target=_load, args=(key,), name="quantscope-kernels", daemon=True)
        _loading[key] = thread
        thread.start()


def kernel(module: str, name: str):
    """The compiled function ``name`` of ``module`` (waiting for it to load), or None:
    numba unavailable, or ``QUANTSCOPE_KERNELS=numpy``."""
    if disabled():
        return None
    key = (module, name)
    if key not in _loaded:
        prepare(module, name)
        _loading[key].join()
    return _loaded[key]


def loaded(module: str, name: str):
    """The compiled function ``name`` of ``module`` if :func:`prepare` has loaded it,
    else None, without waiting or starting to load it: for a kernel whose numpy path
    gives the same results, run by numpy until the kernel is there."""
    if disabled():
        return None
    return _loaded.get((module, name))


def _load(key: tuple[str, str]) -> None:
    try:
        mod = importlib.import_module(key[0])
        fn = getattr(mod, key[1])
        warm_up = getattr(mod, "warm_up", None)
        if warm_up is not None:
            warm_up()
    except Exception:  # numba not installed, or not for this numpy: the numpy path runs
        fn = None
    _loaded[key] = fn
