"""The numba kernel of :class:`quantscope.simulate.fast.ScaleConv` (imported only
through :mod:`quantscope._compiled`: importing this module imports numba and loads or
compiles the kernel)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def requantize_conv(acc, border, bias, multiplier, zero_point, lo, hi, floor, out):  # pragma: no cover - compiled
    """Eq. (9) on a float-scale Conv's accumulator, one pass, the integers of
    :func:`~quantscope.quantize.numerics.requantize_scale` then the clamp to ``[lo, hi]``.

    ``acc``: ``(N, M, P)`` float32, the Conv of the raw input integers (padding 0), exact
    integers; ``border``: ``(M, P)`` float32, what the input's zero point changes at each
    output position (``x_zero_point * sum of the weights the window covers``, exact
    integers), or ``(M, 0)`` where that is the same everywhere and is in ``bias``;
    ``bias``: ``(M,)`` float64 integers; ``multiplier``: ``(M,)`` float64. The true
    accumulator ``acc - border + bias`` is an exact integer in float64, multiplied by
    the channel's multiplier (one IEEE product, as numpy's), rounded half even
    (``floor``: down), plus ``zero_point`` and clamped. ``out``: ``(N, M, P)`` int8.
    """
    n_images, channels, positions = acc.shape
    has_border = border.shape[1] > 0
    for n in range(n_images):
        for c in range(channels):
            m = multiplier[c]
            b = bias[c]
            for p in range(positions):
                total = np.float64(acc[n, c, p]) + b
                if has_border:
                    total -= np.float64(border[c, p])
                v = total * m
                r = np.floor(v) if floor else np.rint(v)
                r += zero_point
                if r < lo:
                    r = lo
                elif r > hi:
                    r = hi
                out[n, c, p] = np.int8(r)


def warm_up() -> None:
    """Load (or compile) the kernel for its one signature."""
    acc = np.zeros((1, 1, 2), np.float32)
    requantize_conv(
        acc,
        np.zeros((1, 0), np.float32),
        np.zeros(1),
        np.ones(1),
        0.0,
        -128.0,
        127.0,
        False,
        np.empty((1, 1, 2), np.int8),
    )
