"""The numba kernel of :meth:`quantscope.calibrate.stats.TensorStats.update` (imported
only through :mod:`quantscope._compiled`: importing this module imports numba and loads
or compiles the kernel)."""

from __future__ import annotations

import numpy as np
from numba import njit

#: ``bits >> SHIFT`` is a value's histogram bin (sign, exponent, top mantissa bits);
#: equal to ``stats._SHIFT`` (checked by the tests).
SHIFT = 20


#: Values per chunk of a row: min and max read a chunk from memory, the histogram
#: reads its sampled values again from the L1 cache.
CHUNK = 4096


@njit(nogil=True, cache=True)
def _min_max_keys(keys, lo, hi):  # pragma: no cover - compiled
    """``(min(lo, key), max(hi, key))`` over the sortable keys of the int32 bit
    patterns ``keys`` (vectorized: plain integer min and max)."""
    flip = np.int32(0x7FFFFFFF)
    for j in range(keys.size):
        v = keys[j]
        k = v ^ ((v >> 31) & flip)
        lo = min(lo, k)
        hi = max(hi, k)
    return lo, hi


@njit(nogil=True, cache=True)
def row_stats(rows, stride, hist):  # pragma: no cover - compiled
    """Min, max and histogram of ``rows`` in one read of memory.

    ``rows``: float32 ``(samples, values)``, C-contiguous. ``hist``: int64 of length
    ``2 * NUM_BINS``, incremented in place at the bins of values ``0, stride, 2 stride,
    ...`` of each row. Returns ``(lo, hi)``, the smallest and largest value as sortable
    int32 keys (``bits ^ ((bits >> 31) & 0x7FFFFFFF)`` of the float32 bit pattern:
    integer order is the float order, ``-0`` just below ``+0``, a positive NaN above
    ``+inf`` and a negative one below ``-inf``). Integer min and max vectorize where
    float ones (with NaN's meaning kept) do not: the pass runs at memory speed.
    """
    n, m = rows.shape
    keys = rows.view(np.int32)
    bits = rows.view(np.uint32)
    lo = np.int32(2**31 - 1)
    hi = np.int32(-(2**31))
    chunk = max(CHUNK // stride, 1) * stride  # a multiple of the stride: samples stay aligned
    for r in range(n):
        row_keys = keys[r]
        row_bits = bits[r]
        for a in range(0, m, chunk):
            e = min(a + chunk, m)
            lo, hi = _min_max_keys(row_keys[a:e], lo, hi)
            part = row_bits[a:e]
            for j in range(0, e - a, stride):
                hist[part[j] >> SHIFT] += 1
    return lo, hi


def warm_up() -> None:
    """Load (or compile) the kernel for its one signature."""
    row_stats(np.zeros((1, 2), dtype=np.float32), 1, np.zeros(4096, dtype=np.int64))
