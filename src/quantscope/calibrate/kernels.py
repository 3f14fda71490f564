"""The statistics' hot loop as one compiled kernel (numba), numpy as the fallback.

Calibration spends its time beyond onnxruntime's in reading every activation once
more for its statistics. With numpy that read is three passes over each layer
output (``min``, ``max``, then the sampled values' bin indices and ``bincount``);
:func:`rows_stats` does it in one: per sample row, the running min and max of every
value, then the histogram bins of the sampled positions ``0, s, 2s, ...``.

Min and max are taken on integer keys, not on floats: a float32's bit pattern ``b``
read as int32 maps to ``b ^ ((b >> 31) & 0x7FFFFFFF)``, which orders every float32
as the floats are ordered (``-0.0`` just below ``+0.0``) and puts NaN patterns
outside ``[-inf, +inf]``. The loop is then plain integer work the compiler
vectorizes, NaN is detected exactly (no fast-math), and the min and max are the
exact float32 values numpy gives. Tested equal to the numpy path
(``tests/test_stats.py``).

numba is a dependency of quantscope (a wheel from the package registry), imported on
first use (:mod:`quantscope._compiled`); where it cannot be imported, or with the
environment variable ``QUANTSCOPE_KERNELS=numpy``, the numpy path runs instead, with
the same results.
"""

from __future__ import annotations

import numpy as np

from .._compiled import kernel, prepare

__all__ = ["KEY_MAX", "KEY_MIN", "compiled_rows_stats", "key_to_float", "prepare_rows_stats"]

#: Start values of the running min key and max key.
KEY_MIN = np.int32(np.iinfo(np.int32).min)
KEY_MAX = np.int32(np.iinfo(np.int32).max)
#: Keys of +inf and -inf: a max key above the first or a min key below the second is NaN.
_KEY_POS_INF = 0x7F800000
_KEY_NEG_INF = int(np.array([0xFF800000], np.uint32).view(np.int32)[0] ^ 0x7FFFFFFF)


def key_to_float(key: int) -> float:
    """The float32 value (as a Python float) of an ordering key; NaN for a key outside
    the keys of ``[-inf, +inf]``."""
    if key > _KEY_POS_INF or key < _KEY_NEG_INF:
        return float("nan")
    k = np.int32(key)
    bits = k ^ ((k >> np.int32(31)) & np.int32(0x7FFFFFFF))
    return float(np.array([bits], np.int32).view(np.float32)[0])


def compiled_rows_stats(wait: bool = False):
    """The compiled kernel, or None where numba is unavailable,
    ``QUANTSCOPE_KERNELS=numpy``, or (``wait=False``, the default) while it is still
    loading in the background (:mod:`quantscope._compiled`; the numpy path gives the
    same statistics meanwhile).

    ``kernel(bits, stride, hist, keys)``:

    - ``bits``: int32 ``(samples, values)``, C-contiguous, the float32 values' bit
      patterns (``rows.view(np.int32)``);
    - ``stride``: histogram every ``stride``-th value of each row, from position 0;
    - ``hist``: int64 ``(2 * NUM_BINS,)``, incremented in place;
    - ``keys``: int32 ``(2,)``, the running min key and max key, updated in place
      (start from ``[KEY_MAX, KEY_MIN]``).

    It releases the GIL while it runs.
    """
    return kernel(_MODULE, "rows_stats", wait=wait)


def prepare_rows_stats() -> None:
    """Start loading the kernel in the background (a calibration does at its start)."""
    prepare(_MODULE, "rows_stats")


_MODULE = "quantscope.calibrate._numba_rows"
