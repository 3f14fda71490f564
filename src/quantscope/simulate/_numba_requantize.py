"""The numba kernel of :class:`quantscope.simulate.fast.ScaleConv` (imported only
through :mod:`quantscope._compiled`: importing this module imports numba and loads or
compiles the kernel)."""

from __future__ import annotations

import math

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


@njit(nogil=True, cache=True)
def quantize_values(x, factor, mode, lo, hi, out):  # pragma: no cover - compiled
    """Eq. (2) at a power-of-two scale, one pass: ``out = clip(R(x * factor), lo, hi)``.

    ``x``: 1-D float32 or float64, contiguous; ``factor`` (``2**-exponent``), ``lo``,
    ``hi``: scalars of ``x``'s type; ``mode``: the rounding, 0 half away from zero, 1 half
    even, 2 floor, 3 toward zero (``fast.ROUNDING_MODES``); ``out``: 1-D integers of
    ``x``'s size. The product is exact where the caller chose ``x``'s type so
    (:func:`~quantscope.simulate.fast.quantize_pow2`), and each rounding is the exact one
    of :func:`~quantscope.quantize.numerics.round_values` (``|v| - floor(|v|)`` is exact);
    infinities saturate. Returns True (``out`` then undefined) when ``x`` holds a NaN.
    The loops have no branches, so that they vectorize.
    """
    half = x.dtype.type(0.5)
    one = x.dtype.type(1.0)
    zero = x.dtype.type(0.0)
    nan = False
    if mode == 0:
        for i in range(x.size):
            v = x[i] * factor
            nan |= v != v
            a = np.abs(v)
            f = np.floor(a)
            f += one if a - f >= half else zero
            out[i] = min(max(math.copysign(f, v), lo), hi)
    elif mode == 1:
        for i in range(x.size):
            v = x[i] * factor
            nan |= v != v
            out[i] = min(max(np.rint(v), lo), hi)
    elif mode == 2:
        for i in range(x.size):
            v = x[i] * factor
            nan |= v != v
            out[i] = min(max(np.floor(v), lo), hi)
    else:
        for i in range(x.size):
            v = x[i] * factor
            nan |= v != v
            out[i] = min(max(np.trunc(v), lo), hi)
    return nan


def warm_up() -> None:
    """Load (or compile) the kernels for their signatures."""
    for dtype in (np.float32, np.float64):
        for out in (np.int8, np.int16, np.int32):
            one = dtype(1.0)
            quantize_values(np.zeros(2, dtype), one, 0, -one, one, np.empty(2, out))
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
