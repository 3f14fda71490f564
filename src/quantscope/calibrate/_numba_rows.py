"""The numba kernel of :mod:`quantscope.calibrate.kernels` (imported only from there,
on first use: importing this module imports numba and loads or compiles the kernel)."""

from __future__ import annotations

import numpy as np
from numba import njit

from .stats import MANTISSA_BITS

_SHIFT = np.uint32(23 - MANTISSA_BITS)
_SIGN_MASK = np.int32(0x7FFFFFFF)
_THIRTY_ONE = np.int32(31)


@njit(nogil=True, cache=True, boundscheck=False)
def rows_stats(bits, stride, hist, keys):  # pragma: no cover - compiled
    """See :func:`quantscope.calibrate.kernels.compiled_rows_stats`."""
    n, m = bits.shape
    lo = keys[0]
    hi = keys[1]
    for r in range(n):
        row = bits[r]
        for j in range(m):  # every value: min and max of the ordering keys
            b = row[j]
            k = b ^ ((b >> _THIRTY_ONE) & _SIGN_MASK)
            lo = min(lo, k)
            hi = max(hi, k)
        for j in range(0, m, stride):  # the sampled positions: their histogram bins
            hist[np.uint32(row[j]) >> _SHIFT] += 1
    keys[0] = lo
    keys[1] = hi


def warm_up() -> None:
    """Load (or compile) the kernel for the types the statistics pass it."""
    rows_stats(np.zeros((1, 2), np.int32), 1, np.zeros(2 << (8 + MANTISSA_BITS), np.int64), np.zeros(2, np.int32))
