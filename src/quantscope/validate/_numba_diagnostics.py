"""The numba kernel of :func:`quantscope.validate.measure.LayerError.update` (imported
only from there, on first use: importing this module imports numba and loads or
compiles the kernel)."""

from __future__ import annotations

import numpy as np
from numba import njit

#: grid modes
NONE, FLOAT32, FLOAT64 = 0, 1, 2


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def layer_sums(f, q, has_q, ints, qscale, qzero, mode, s, lo, hi):  # pragma: no cover - compiled
    """One pass over a layer's values: ``(signal, noise, grid_noise, saturated, flushed)``.

    ``f``: the float output, 1-D float32 or float64. ``q``: the int8 network's output,
    1-D, the same size: integers (``ints``) standing for ``(q - qzero) * qscale``, or
    real values; ignored unless ``has_q``. ``mode``: the output grid's arithmetic,
    NONE (no grid), FLOAT32 (a power-of-two scale ``s`` with round-to-nearest and
    saturation: ``t = f * (1/s)``, the rounding and the grid value ``g`` in float32, all
    exact) or FLOAT64 (``t = f / s`` and ``g = clip(rint(t), lo, hi) * s`` in float64);
    ``lo``, ``hi`` the grid's integer bounds less the zero point.

    Sums are float64 (``reassoc``: accumulated in vector lanes, a fixed order for one
    build); a NaN or infinity in ``f`` makes ``signal`` NaN or Inf (the caller then
    takes the careful path). No ``nnan``/``ninf``: NaN and Inf keep their meaning.
    """
    n = f.size
    signal = 0.0
    noise = 0.0
    grid = 0.0
    saturated = 0
    flushed = 0
    inv32 = np.float32(1.0 / s)
    s32 = np.float32(s)
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    top32 = np.float32(hi + 0.5)
    bottom32 = np.float32(lo - 0.5)
    half32 = np.float32(0.5)
    top = hi + 0.5
    bottom = lo - 0.5
    for i in range(n):
        xf = f[i]
        x = np.float64(xf)
        signal += x * x
        if has_q:
            if ints:
                d = (np.float64(q[i]) - qzero) * qscale
            else:
                d = np.float64(q[i])
            e = x - d
            noise += e * e
        if mode == 1:
            t = np.float32(xf) * inv32
            if t > top32 or t < bottom32:
                saturated += 1
            if t < half32 and t > -half32 and xf != 0:
                flushed += 1
            r = min(max(np.rint(t), lo32), hi32)
            g = np.float64(r * s32)
            e = x - g
            grid += e * e
        elif mode == 2:
            t = x / s
            if t > top or t < bottom:
                saturated += 1
            if abs(t) < 0.5 and x != 0:
                flushed += 1
            r = min(max(np.rint(t), lo), hi)
            e = x - r * s
            grid += e * e
    return signal, noise, grid, saturated, flushed


def warm_up() -> None:
    """Load (or compile) the kernel for the commonest types: float32 outputs against
    int8 integers, float32 values (a float layer) and float64 values (per channel)."""
    f = np.zeros(2, np.float32)
    for q in (np.zeros(2, np.int8), f, np.zeros(2, np.float64)):
        layer_sums(f, q, True, q.dtype == np.int8, 1.0, 0.0, 1, 1.0, -128.0, 127.0)
