"""The int8 reference interpreter: one plain numpy function per ONNX operator.

This is the *definition* of quantscope's integer results:
slow, obvious, and exact. Every faster path must agree with it bit for bit. The
equations cited as "eq. (n)" are those of ``docs/int8.md``.

Conventions:

* Tensors are numpy integer arrays in ONNX layouts: NCHW (N-D: ``N, C, D1, D2...``)
  for images, ``(M, C/group, k1, k2...)`` for convolution weights. Kernels refuse
  float inputs (``TypeError``) instead of rounding them silently.
* Conv, Gemm and MatMul compute in int64 and return the exact accumulator as
  ``int64`` (eq. (4)); the accumulator is *defined* on int32, and
  :class:`~quantscope.quantize.numerics.Overflow` names what happens when it
  leaves that range (``RAISE`` by default, or ``WRAP``). Requantizing it to int8 is
  a separate step (``numerics.requantize_pow2``/``requantize_scale``, eq. (5), (9)).
* Element-wise, pooling and data-movement kernels keep their input's dtype.
* Arguments are named after the ONNX attributes (``strides``, ``pads``,
  ``group``...; ``transA`` is ``trans_a``) so an interpreter can pass a node's
  attributes through. Defaults are ONNX's.

``KERNELS`` maps each ONNX op type to its function.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..quantize.numerics import (
    AccumulatorOverflowError,
    Overflow,
    Rounding,
    Saturation,
    check_accumulator,
    divide_round,
    requantize_pow2,
    round_values,
    saturate,
    shift_round,
)

__all__ = [
    "KERNELS",
    "add",
    "average_pool",
    "bias_values",
    "clip",
    "concat",
    "conv",
    "flatten",
    "gemm",
    "global_average_pool",
    "int64_values",
    "leaky_relu",
    "matmul",
    "max_pool",
    "operand_values",
    "prelu",
    "relu",
    "reshape",
    "spatial_geometry",
    "transpose",
]

#: Operands of Conv/Gemm/MatMul (after the zero point is subtracted) must lie in
#: [-2**16, 2**16]: products then stay below 2**32 and any sum of fewer than
#: 2**31 of them is exact in int64. 8-bit and 16-bit data always qualify.
OPERAND_LIMIT = 1 << 16

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


# ------------------------------------------------------------------ helpers


def int64_values(x: Any, what: str) -> np.ndarray:
    """``x`` as an int64 array; float data is refused."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array (quantize it first), got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise AccumulatorOverflowError(f"{what} holds uint64 values beyond the int64 range")
    return arr.astype(np.int64)


def _int_scalar(v: Any, what: str) -> int:
    arr = np.asarray(v)
    if arr.dtype.kind not in "iu" or arr.size != 1:
        raise TypeError(
            f"{what} must be one integer, got {v!r}; convert real bounds to the tensor's "
            "integer grid first (for example 6 / 2**e with a named rounding)"
        )
    return int(arr.reshape(()))


def operand_values(x: Any, zero_point: Any, what: str) -> np.ndarray:
    """``x - zero_point`` in int64, checked against :data:`OPERAND_LIMIT` (eq. (4a))."""
    d = int64_values(x, what) - int64_values(zero_point, f"{what} zero point")
    if d.size and (d.min() < -OPERAND_LIMIT or d.max() > OPERAND_LIMIT):
        raise ValueError(
            f"{what} minus its zero point must lie in [-2**16, 2**16] (8- or 16-bit data), "
            f"got values in [{d.min()}, {d.max()}]"
        )
    return d


def bias_values(b: Any, what: str = "bias") -> np.ndarray:
    """``b`` as int64, checked to hold int32 values (eq. (3))."""
    b64 = int64_values(b, what)
    if b64.size and (b64.min() < _INT32_MIN or b64.max() > _INT32_MAX):
        raise ValueError(f"{what} must be int32 values (eq. (3)), got values in [{b64.min()}, {b64.max()}]")
    return b64


def _ints_list(v: Sequence[int] | None, n: int, default: int, what: str) -> list[int]:
    if v is None:
        return [default] * n
    out = [int(i) for i in v]
    if len(out) != n:
        raise ValueError(f"{what} must have {n} values, got {list(v)}")
    return out


def spatial_geometry(
    in_shape: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int] | None,
    pads: Sequence[int] | None,
    dilations: Sequence[int] | None,
    auto_pad: str,
    ceil_mode: int = 0,
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Resolve strides, dilations, pads (begin, end) and the output size per spatial axis.

    ONNX rules: ``out = floor((in + pb + pe - d*(k-1) - 1) / s) + 1`` (``ceil`` with
    ``ceil_mode``, where the last window must still start inside the input or its
    begin padding); ``SAME_UPPER``/``SAME_LOWER`` give ``out = ceil(in / s)`` with
    the odd pad at the end/begin; ``VALID`` pads nothing.
    """
    nd = len(in_shape)
    s = _ints_list(strides, nd, 1, "strides")
    d = _ints_list(dilations, nd, 1, "dilations")
    if min(s, default=1) < 1 or min(d, default=1) < 1:
        raise ValueError(f"strides and dilations must be >= 1, got {s} and {d}")
    if auto_pad in ("NOTSET", "", None):
        p = _ints_list(pads, 2 * nd, 0, "pads")
    elif auto_pad == "VALID":
        p = [0] * (2 * nd)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if ceil_mode:
            raise ValueError("ceil_mode is not defined with auto_pad SAME_*")
        begin, end = [], []
        for i in range(nd):
            out = -(-in_shape[i] // s[i])
            total = max((out - 1) * s[i] + d[i] * (kernel[i] - 1) + 1 - in_shape[i], 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
        p = begin + end
    else:
        raise ValueError(f"auto_pad must be NOTSET, VALID, SAME_UPPER or SAME_LOWER, got {auto_pad!r}")
    if min(p, default=0) < 0:
        raise ValueError(f"negative pads are not supported, got {p}")
    pb, pe = p[:nd], p[nd:]
    out_shape = []
    for i in range(nd):
        span = in_shape[i] + pb[i] + pe[i] - d[i] * (kernel[i] - 1) - 1
        if span < 0:
            raise ValueError(
                f"the kernel (size {kernel[i]}, dilation {d[i]}) does not fit spatial axis {i} "
                f"of size {in_shape[i]} with pads {pb[i]}, {pe[i]}"
            )
        o = (-(-span // s[i]) if ceil_mode else span // s[i]) + 1
        if ceil_mode and (o - 1) * s[i] >= in_shape[i] + pb[i]:
            o -= 1
        out_shape.append(o)
    return s, d, pb, pe, out_shape


def _windows(
    padded_shape: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out_shape: Sequence[int],
):
    """Yield, per kernel offset, the slices that pick that offset of every window.

    ``padded_shape`` is the spatial shape of the padded input; the slices index the
    spatial axes of an ``(N, C, *padded_shape)`` array and give ``(N, C, *out_shape)``.
    """
    for kidx in itertools.product(*(range(k) for k in kernel)):
        yield (
            kidx,
            tuple(
                slice(kidx[i] * dilations[i], kidx[i] * dilations[i] + strides[i] * (out_shape[i] - 1) + 1, strides[i])
                for i in range(len(kernel))
            ),
        )


# ------------------------------------------------------------- Conv, Gemm, MatMul


def conv(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    x_zero_point: Any = 0,
    w_zero_point: Any = 0,
    overflow: Overflow = Overflow.RAISE,
) -> np.ndarray:
    """ONNX Conv on integers: the exact accumulator, eq. (4).

    ``x``: int8 (or any 8/16-bit integers), ``(N, C, D1, ..., Dn)``, NCHW for 2-D.
    ``w``: int8, ``(M, C / group, k1, ..., kn)``. ``b``: int32, ``(M,)``, at the
    accumulator's exponent ``e_w + e_x`` (eq. (3)). ``pads``: ``[x1_begin,
    x2_begin, ..., x1_end, x2_end, ...]`` (``[top, left, bottom, right]`` in 2-D);
    ``group``: ``C`` and ``M`` divisible by it (``group = C`` is depthwise).
    ``x_zero_point`` (scalar) and ``w_zero_point`` (scalar or ``(M,)``) are
    subtracted first, as ONNX ConvInteger does; padding adds real zeros.

    Returns ``A = sum((x - zx) * (w - zw)) + b`` as int64, ``(N, M, O1, ..., On)``,
    checked against the int32 range with ``overflow`` (eq. (4b)).
    """
    w64 = int64_values(w, "Conv weight")
    if w64.ndim < 3:
        raise ValueError(f"Conv weight must be (M, C/group, k1, ...), got shape {w64.shape}")
    M = w64.shape[0]
    wz = np.asarray(w_zero_point)
    if wz.ndim == 1:
        wz = wz.reshape((M,) + (1,) * (w64.ndim - 1))
    wd = operand_values(w64, wz, "Conv weight")
    xd = operand_values(x, x_zero_point, "Conv input")
    if xd.ndim != wd.ndim:
        raise ValueError(f"Conv input {xd.shape} and weight {wd.shape} must have the same rank")
    N, C, *in_sp = xd.shape
    _, Cg, *kernel = wd.shape
    if kernel_shape is not None and list(kernel_shape) != kernel:
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match the weight's {kernel}")
    group = int(group)
    if group < 1 or C != Cg * group or M % group:
        raise ValueError(f"Conv with group={group} needs C = {Cg} * group and M divisible by group; got C={C}, M={M}")
    s, d, pb, pe, out_sp = spatial_geometry(in_sp, kernel, strides, pads, dilations, auto_pad)
    xp = np.pad(xd, [(0, 0), (0, 0)] + list(zip(pb, pe)))  # padding is a real zero, eq. (4a)
    Mg = M // group
    acc = np.zeros((N, group, Mg, *out_sp), dtype=np.int64)
    for kidx, sl in _windows(xp.shape[2:], kernel, s, d, out_sp):
        patch = xp[(slice(None), slice(None), *sl)].reshape(N, group, Cg, *out_sp)
        wk = wd[(slice(None), slice(None), *kidx)].reshape(group, Mg, Cg)
        acc += np.einsum("gmc,ngc...->ngm...", wk, patch)
    acc = acc.reshape(N, M, *out_sp)
    if b is not None:
        b64 = bias_values(b, "Conv bias")
        if b64.shape != (M,):
            raise ValueError(f"Conv bias must have shape ({M},), got {b64.shape}")
        acc = acc + b64.reshape((1, M) + (1,) * len(out_sp))
    return check_accumulator(acc, overflow, what="Conv accumulator")


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    trans_a: int = 0,
    trans_b: int = 0,
    a_zero_point: Any = 0,
    b_zero_point: Any = 0,
    overflow: Overflow = Overflow.RAISE,
) -> np.ndarray:
    """ONNX Gemm on integers: ``A = a' @ b' + c``, the exact accumulator, eq. (4).

    ``a``: int8, ``(M, K)`` (``(K, M)`` with ``trans_a``). ``b``: int8 weights,
    ``(K, N)`` (``(N, K)`` with ``trans_b``, PyTorch's Linear). ``c``: int32 bias
    broadcasting to ``(M, N)``. ``a_zero_point`` is a scalar; ``b_zero_point`` a
    scalar or ``(N,)`` (per output column). ``alpha`` and ``beta`` must be 1: fold
    them into the scales. Returns int64 ``(M, N)``, checked with ``overflow``.
    """
    if alpha != 1 or beta != 1:
        raise ValueError(f"integer Gemm needs alpha = beta = 1 (fold them into the scales), got {alpha}, {beta}")
    ad = operand_values(a, a_zero_point, "Gemm input A")
    b64 = int64_values(b, "Gemm input B")
    if ad.ndim != 2 or b64.ndim != 2:
        raise ValueError(f"Gemm inputs must be 2-D, got {ad.shape} and {b64.shape}")
    if trans_a:
        ad = ad.T
    if trans_b:
        b64 = b64.T
    bd = operand_values(b64, b_zero_point, "Gemm input B")  # (K, N) - zp per column
    if ad.shape[1] != bd.shape[0]:
        raise ValueError(f"Gemm inner dimensions differ: {ad.shape} @ {bd.shape}")
    acc = ad @ bd
    if c is not None:
        c64 = bias_values(c, "Gemm bias C")
        if np.broadcast_shapes(c64.shape, acc.shape) != acc.shape:
            raise ValueError(f"Gemm bias of shape {c64.shape} does not broadcast to {acc.shape}")
        acc = acc + c64
    return check_accumulator(acc, overflow, what="Gemm accumulator")


def matmul(
    a: np.ndarray,
    b: np.ndarray,
    *,
    a_zero_point: Any = 0,
    b_zero_point: Any = 0,
    overflow: Overflow = Overflow.RAISE,
) -> np.ndarray:
    """ONNX MatMul (numpy ``matmul`` broadcasting) on integers, the exact accumulator, eq. (4).

    ``a``: int8 ``(..., M, K)``; ``b``: int8 ``(..., K, N)``; 1-D operands as in
    numpy. Zero points as in ONNX MatMulInteger: ``a_zero_point`` scalar,
    ``b_zero_point`` scalar or ``(N,)``. No bias (a following Add adds it).
    Returns int64, checked with ``overflow``.
    """
    ad = operand_values(a, a_zero_point, "MatMul input A")
    bd = operand_values(b, b_zero_point, "MatMul input B")
    return check_accumulator(np.matmul(ad, bd), overflow, what="MatMul accumulator")


# ------------------------------------------------------------------ activations


def _to_dtype(y: np.ndarray, dtype: np.dtype, saturation: Saturation) -> np.ndarray:
    """Integer-valued float64 ``y`` into ``dtype``, saturating or wrapping to its range."""
    bits = dtype.itemsize * 8
    if bits <= 32:
        return saturate(y, bits, dtype.kind == "i", saturation).astype(dtype)
    if y.size and np.abs(y).max() >= 2.0**53:
        raise AccumulatorOverflowError("an activation on int64 data left the range where float64 is exact (2**53)")
    return y.astype(dtype)


def relu(x: np.ndarray, *, zero_point: Any = 0) -> np.ndarray:
    """ONNX Relu on integers: ``max(q, z)``, eq. (8a). Keeps ``x``'s dtype."""
    x64 = int64_values(x, "Relu input")
    dtype = np.asarray(x).dtype
    z = _int_scalar(zero_point, "Relu zero point")
    if not np.iinfo(dtype).min <= z <= np.iinfo(dtype).max:
        raise ValueError(f"Relu zero point {z} does not fit the input's {dtype}")
    return np.maximum(x64, z).astype(dtype)


def clip(x: np.ndarray, min_value: Any = None, max_value: Any = None) -> np.ndarray:
    """ONNX Clip with integer bounds: ``min(max(q, lo), hi)``, eq. (8b).

    The bounds are integers on ``x``'s grid (Relu6 at exponent e: ``hi =
    R(6 / 2**e)``, rounded by the caller with a named rounding) and must fit
    ``x``'s dtype. ``None`` is no bound. As in ONNX, ``lo > hi`` gives ``hi``
    everywhere. Keeps ``x``'s dtype.
    """
    x64 = int64_values(x, "Clip input")
    dtype = np.asarray(x).dtype
    info = np.iinfo(dtype)
    y = x64
    if min_value is not None:
        lo = _int_scalar(min_value, "Clip min")
        if not info.min <= lo <= info.max:
            raise ValueError(f"Clip min {lo} does not fit the input's {dtype}")
        y = np.maximum(y, lo)
    if max_value is not None:
        hi = _int_scalar(max_value, "Clip max")
        if not info.min <= hi <= info.max:
            raise ValueError(f"Clip max {hi} does not fit the input's {dtype}")
        y = np.minimum(y, hi)
    return y.astype(dtype)


def _negative_slope(
    x: np.ndarray,
    slope: np.ndarray,
    rounding: Rounding,
    zero_point: Any,
    saturation: Saturation,
    what: str,
) -> np.ndarray:
    dtype = np.asarray(x).dtype
    z = _int_scalar(zero_point, f"{what} zero point")
    dx = int64_values(x, f"{what} input") - z
    scaled = round_values(dx.astype(np.float64) * slope, rounding)  # eq. (8c): fl64(alpha * q), then R
    y = np.where(dx < 0, scaled, dx.astype(np.float64)) + z
    return _to_dtype(y, dtype, saturation)


def leaky_relu(
    x: np.ndarray,
    alpha: float = 0.01,
    *,
    rounding: Rounding = Rounding.HALF_AWAY,
    zero_point: Any = 0,
    saturation: Saturation = Saturation.SATURATE,
) -> np.ndarray:
    """ONNX LeakyRelu on integers, eq. (8c): ``q`` if ``q >= z``, else ``z + R(alpha * (q - z))``.

    The product is taken in float64 and rounded once with ``rounding``; for a
    float32 ``alpha`` (an ONNX attribute) and |q| < 2**29 it is exact, so the
    named rounding is the only one. The result is brought back to ``x``'s dtype
    with ``saturation`` (a slope outside [0, 1] can leave it). Input and output
    share one scale and zero point.
    """
    a = float(alpha)
    if not np.isfinite(a):
        raise ValueError(f"LeakyRelu alpha must be finite, got {alpha!r}")
    return _negative_slope(x, np.float64(a), rounding, zero_point, saturation, "LeakyRelu")


def prelu(
    x: np.ndarray,
    slope: np.ndarray,
    *,
    rounding: Rounding = Rounding.HALF_AWAY,
    zero_point: Any = 0,
    saturation: Saturation = Saturation.SATURATE,
) -> np.ndarray:
    """ONNX PRelu on integers, eq. (8c) with a slope per element.

    ``slope``: real, broadcasting to ``x`` (ONNX unidirectional broadcasting;
    per channel of NCHW data it is ``(C, 1, 1)``). Otherwise as :func:`leaky_relu`.
    """
    sl = np.asarray(slope, dtype=np.float64)
    xs = np.shape(x)
    if np.broadcast_shapes(sl.shape, xs) != tuple(xs):
        raise ValueError(f"PRelu slope of shape {sl.shape} does not broadcast to the input's {xs}")
    if not np.all(np.isfinite(sl)):
        raise ValueError("PRelu slope must be finite")
    return _negative_slope(x, sl, rounding, zero_point, saturation, "PRelu")


# ------------------------------------------------------------------------ pooling


def _pool_setup(x, kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, what):
    x64 = int64_values(x, f"{what} input")
    if x64.ndim < 3:
        raise ValueError(f"{what} input must be (N, C, D1, ...), got shape {x64.shape}")
    in_sp = list(x64.shape[2:])
    if kernel_shape is None or len(kernel_shape) != len(in_sp):
        raise ValueError(f"{what} needs kernel_shape with {len(in_sp)} values, got {kernel_shape}")
    kernel = [int(k) for k in kernel_shape]
    s, d, pb, pe, out_sp = spatial_geometry(in_sp, kernel, strides, pads, dilations, auto_pad, ceil_mode)
    # the last window of ceil_mode may overhang the padded input: extend by 'extra', never counted
    extra = [
        max((out_sp[i] - 1) * s[i] + d[i] * (kernel[i] - 1) + 1 - (in_sp[i] + pb[i] + pe[i]), 0)
        for i in range(len(in_sp))
    ]
    widths = [(0, 0), (0, 0)] + [(pb[i], pe[i] + extra[i]) for i in range(len(in_sp))]
    xp = np.pad(x64, widths)
    inside = np.pad(np.ones(in_sp, dtype=bool), widths[2:])  # a real input element
    counted = np.pad(
        np.ones([in_sp[i] + pb[i] + pe[i] for i in range(len(in_sp))], dtype=bool), [(0, e) for e in extra]
    )  # input or explicit padding
    return x64, xp, inside, counted, kernel, s, d, out_sp


def max_pool(
    x: np.ndarray,
    *,
    kernel_shape: Sequence[int],
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    storage_order: int = 0,
    strides: Sequence[int] | None = None,
) -> np.ndarray:
    """ONNX MaxPool on integers (output ``Y`` only), eq. (6a): exact.

    ``x``: integers, ``(N, C, D1, ...)``. Padding never wins (it is minus
    infinity, as in ONNX); a window holding no input element is an error.
    ``storage_order`` concerns only the Indices output and is ignored. Keeps
    ``x``'s dtype.
    """
    x64, xp, inside, _, kernel, s, d, out_sp = _pool_setup(
        x, kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, "MaxPool"
    )
    lowest = np.iinfo(np.int64).min
    y = np.full(x64.shape[:2] + tuple(out_sp), lowest, dtype=np.int64)
    any_inside = np.zeros(out_sp, dtype=bool)
    for _, sl in _windows(xp.shape[2:], kernel, s, d, out_sp):
        ok = inside[sl]
        y = np.maximum(y, np.where(ok, xp[(slice(None), slice(None), *sl)], lowest))
        any_inside |= ok
    if not any_inside.all():
        raise ValueError("MaxPool: a window covers only padding; reduce pads")
    return y.astype(np.asarray(x).dtype)


def average_pool(
    x: np.ndarray,
    *,
    kernel_shape: Sequence[int],
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    dilations: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    rounding: Rounding = Rounding.HALF_AWAY,
) -> np.ndarray:
    """ONNX AveragePool on integers, eq. (6b): ``R(S / n)`` in integers.

    ``S`` is the window's sum in int64 (padding adds 0). ``n`` counts the window's
    input elements; with ``count_include_pad=1`` also its explicit (or auto_pad)
    padding. Positions past the padded input, which only ``ceil_mode``'s last
    window reaches, are never counted. The quotient is rounded with ``rounding``
    by :func:`~quantscope.quantize.numerics.divide_round` (no floats), so the
    result stays within ``x``'s range and keeps its dtype. Input and output share
    one scale.
    """
    total, n = average_pool_sums(
        x,
        kernel_shape=kernel_shape,
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        dilations=dilations,
        pads=pads,
        strides=strides,
    )
    return divide_round(total, n, rounding).astype(np.asarray(x).dtype)


def average_pool_sums(
    x: np.ndarray,
    *,
    kernel_shape: Sequence[int],
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    dilations: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The window sums ``S`` (int64, ``(N, C, *out)``) and counts ``n`` (int64,
    ``out``) of :func:`average_pool`, eq. (6b), before the division."""
    x64, xp, inside, counted, kernel, s, d, out_sp = _pool_setup(
        x, kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, "AveragePool"
    )
    total = np.zeros(x64.shape[:2] + tuple(out_sp), dtype=np.int64)
    n = np.zeros(out_sp, dtype=np.int64)
    mask = counted if count_include_pad else inside
    for _, sl in _windows(xp.shape[2:], kernel, s, d, out_sp):
        total += xp[(slice(None), slice(None), *sl)]
        n += mask[sl]
    if n.min(initial=1) < 1:
        raise ValueError("AveragePool: a window covers only padding; reduce pads")
    return total, n


def global_average_pool(x: np.ndarray, *, rounding: Rounding = Rounding.HALF_AWAY) -> np.ndarray:
    """ONNX GlobalAveragePool on integers, eq. (6c): ``R(S / (D1 * ... * Dn))`` per (n, c).

    ``x``: ``(N, C, D1, ...)``. Returns ``(N, C, 1, ..., 1)`` in ``x``'s dtype.
    """
    total, count = global_average_pool_sums(x)
    return divide_round(total, count, rounding).astype(np.asarray(x).dtype)


def global_average_pool_sums(x: np.ndarray) -> tuple[np.ndarray, int]:
    """The sums ``S`` (int64, ``(N, C, 1, ..., 1)``) and the count ``D1 * ... * Dn``
    of :func:`global_average_pool`, eq. (6c), before the division."""
    x64 = int64_values(x, "GlobalAveragePool input")
    if x64.ndim < 3:
        raise ValueError(f"GlobalAveragePool input must be (N, C, D1, ...), got shape {x64.shape}")
    axes = tuple(range(2, x64.ndim))
    return x64.sum(axis=axes, keepdims=True), int(np.prod(x64.shape[2:]))


# ---------------------------------------------------------------- Add and Concat


def add(
    a: np.ndarray,
    b: np.ndarray,
    e_a: int,
    e_b: int,
    e_out: int,
    *,
    bits: int = 8,
    rounding: Rounding = Rounding.HALF_AWAY,
    saturation: Saturation = Saturation.SATURATE,
) -> np.ndarray:
    """ONNX Add of two power-of-two tensors, eq. (7a).

    ``a`` at exponent ``e_a`` and ``b`` at ``e_b`` (integers, numpy broadcasting)
    are aligned to the finer exponent ``e_m = min(e_a, e_b)`` by exact left
    shifts in int64 and added; the exact sum is then requantized once to
    ``e_out`` (eq. (5)): ``R((a * 2**e_a + b * 2**e_b) / 2**e_out)``, saturated to
    ``bits``. Returns the ``bits``-bit storage type (int8).
    """
    a64 = int64_values(a, "Add input A")
    b64 = int64_values(b, "Add input B")
    e_m = min(int(e_a), int(e_b))
    total = shift_round(a64, e_m - int(e_a), rounding) + shift_round(b64, e_m - int(e_b), rounding)
    return requantize_pow2(total, e_m, e_out, bits, rounding, saturation)


def concat(
    inputs: Sequence[np.ndarray],
    exponents: Sequence[int],
    e_out: int,
    *,
    axis: int,
    bits: int = 8,
    rounding: Rounding = Rounding.HALF_AWAY,
    saturation: Saturation = Saturation.SATURATE,
) -> np.ndarray:
    """ONNX Concat of power-of-two tensors, eq. (7b).

    Input ``i`` (integers at exponent ``exponents[i]``) is requantized to
    ``e_out`` by eq. (5), then all are joined along ``axis``. Inputs already at
    ``e_out`` are copied unchanged. Returns the ``bits``-bit storage type.
    """
    if len(inputs) == 0 or len(inputs) != len(exponents):
        raise ValueError(
            f"Concat needs one exponent per input, got {len(inputs)} inputs and {len(exponents)} exponents"
        )
    parts = [
        requantize_pow2(int64_values(t, f"Concat input {i}"), e, e_out, bits, rounding, saturation)
        for i, (t, e) in enumerate(zip(inputs, exponents))
    ]
    return np.concatenate(parts, axis=axis)


# ------------------------------------------------------------------ data movement


def flatten(x: np.ndarray, *, axis: int = 1) -> np.ndarray:
    """ONNX Flatten: ``(d0 * ... * d(axis-1), d(axis) * ... * dn)``. Keeps dtype."""
    arr = np.asarray(x)
    axis = int(axis)
    if not -arr.ndim <= axis <= arr.ndim:
        raise ValueError(f"Flatten axis {axis} is out of range for a {arr.ndim}-D tensor")
    if axis < 0:
        axis += arr.ndim
    outer = int(np.prod(arr.shape[:axis], dtype=np.int64))
    inner = int(np.prod(arr.shape[axis:], dtype=np.int64))
    return arr.reshape(outer, inner)


def reshape(x: np.ndarray, shape: Sequence[int] | np.ndarray, *, allowzero: int = 0) -> np.ndarray:
    """ONNX Reshape: ``0`` copies the input's dimension (unless ``allowzero``), ``-1`` is inferred."""
    arr = np.asarray(x)
    target = [int(v) for v in np.asarray(shape).reshape(-1)]
    if not allowzero:
        for i, v in enumerate(target):
            if v == 0:
                if i >= arr.ndim:
                    raise ValueError(f"Reshape: shape {target} copies dimension {i}, which the input lacks")
                target[i] = arr.shape[i]
    return arr.reshape(target)


def transpose(x: np.ndarray, *, perm: Sequence[int] | None = None) -> np.ndarray:
    """ONNX Transpose; no ``perm`` reverses the axes. Keeps dtype."""
    arr = np.asarray(x)
    return np.transpose(arr, None if perm is None else [int(p) for p in perm])


def slice_(
    x: np.ndarray,
    starts: Sequence[int] | np.ndarray,
    ends: Sequence[int] | np.ndarray,
    axes: Sequence[int] | np.ndarray | None = None,
    steps: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """ONNX Slice (opset 10+): ``x[starts:ends:steps]`` along ``axes`` (all, in order,
    by default), ends clamped as Python slices clamp them. Keeps dtype."""
    arr = np.asarray(x)
    starts = [int(v) for v in np.ravel(starts)]
    ends = [int(v) for v in np.ravel(ends)]
    axes = list(range(len(starts))) if axes is None else [int(v) % arr.ndim for v in np.ravel(axes)]
    steps = [1] * len(starts) if steps is None else [int(v) for v in np.ravel(steps)]
    index = [slice(None)] * arr.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = slice(start, end, step)
    return arr[tuple(index)]


#: The integer kernels, keyed by ONNX op type.
KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "Conv": conv,
    "Gemm": gemm,
    "MatMul": matmul,
    "Relu": relu,
    "Clip": clip,
    "LeakyRelu": leaky_relu,
    "PRelu": prelu,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "Add": add,
    "Concat": concat,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Slice": slice_,
}
