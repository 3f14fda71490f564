"""The numba kernel of :meth:`quantscope.calibrate.stats.TensorStats.update` (imported
only through :mod:`quantscope._compiled`: importing this module imports numba and loads
or compiles the kernel)."""

from __future__ import annotations

import numpy as np
from numba import njit

#: ``bits >> SHIFT`` is a value's histogram bin (sign, exponent, top mantissa bits);
#: equal to ``stats._SHIFT`` (checked by the tests).
SHIFT = 20


@njit(nogil=True, cache=True)
def row_stats(rows, stride, hist):  # pragma: no cover - compiled
    """Min, max and histogram of ``rows`` in one compiled call.

    ``rows``: float32 ``(samples, values)``, C-contiguous. ``hist``: int64 of length
    ``2 * NUM_BINS``, incremented in place at the bins of values ``0, stride, 2 stride,
    ...`` of each row. Returns ``(lo, hi)``, the smallest and largest value as sortable
    int32 keys (``bits ^ ((bits >> 31) & 0x7FFFFFFF)`` of the float32 bit pattern:
    integer order is the float order, ``-0`` just below ``+0``, a positive NaN above
    ``+inf`` and a negative one below ``-inf``).

    Each row is read twice: every value for min and max, then every ``stride``-th one
    for the histogram, mostly from the cache the first pass filled. Integer min and max
    vectorize where float ones (with NaN's meaning kept) do not, as long as every
    value stays int32 (a Python int in the expression widens it to int64, and the loop
    no longer vectorizes: 2x slower, measured); a loop over a whole row vectorizes
    better than one over chunks of it.
    """
    n, m = rows.shape
    keys = rows.view(np.int32)
    bits = rows.view(np.uint32)
    lo = np.int32(2**31 - 1)
    hi = np.int32(-(2**31))
    flip = np.int32(0x7FFFFFFF)
    sign = np.int32(31)
    for r in range(n):
        row_keys = keys[r]
        for j in range(m):
            v = row_keys[j]
            k = np.int32(v ^ ((v >> sign) & flip))
            lo = np.int32(min(lo, k))
            hi = np.int32(max(hi, k))
        row_bits = bits[r]
        for j in range(0, m, stride):
            hist[row_bits[j] >> SHIFT] += 1
    return lo, hi


def warm_up() -> None:
    """Load (or compile) the kernel for its one signature."""
    row_stats(np.zeros((1, 2), dtype=np.float32), 1, np.zeros(4096, dtype=np.int64))
