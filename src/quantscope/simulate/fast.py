"""The fast integer kernels: Conv, Gemm and MatMul through float64 BLAS, exactly.

Why float64 is exact here: every operand is an integer with ``|x - z| <= 2^16``
(``reference.OPERAND_LIMIT``; int8 operands are at most 255 after a zero point),
so each product is below ``2^32`` in magnitude... in practice ``|product| <= 2^15``
for int8 data and ``K`` products sum to at most ``K * 2^15``. float64 represents
every integer below ``2^53`` exactly, and a sum of such integers stays exact as
long as every partial sum does: with ``K < 2^37`` terms of at most ``2^16`` each
(``2^53 / 2^16``), no partial sum can reach ``2^53``, whatever order BLAS adds
them in. The results are therefore the exact integers of
:mod:`quantscope.simulate.reference`, which the tests check bit for bit.

Every other kernel is the reference's own (already vectorized).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..quantize.numerics import Overflow, check_accumulator
from . import reference
from .reference import _bias, _ints, _operand, _spatial

__all__ = ["KERNELS", "conv", "gemm", "matmul"]

#: Largest number of im2col rows (output positions x batch) built at once.
_ROWS = 1 << 16
_EXACT_TERMS = 1 << 37


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
    """2-D ONNX Conv on integers via im2col + float64 GEMM; same contract as
    :func:`quantscope.simulate.reference.conv` (NCHW, ``(M, C/group, kH, kW)``
    weights, int32 bias, int64 accumulator). Other ranks use the reference."""
    xa = np.asarray(x)
    if xa.ndim != 4:
        return reference.conv(
            x, w, b, auto_pad=auto_pad, dilations=dilations, group=group, kernel_shape=kernel_shape,
            pads=pads, strides=strides, x_zero_point=x_zero_point, w_zero_point=w_zero_point, overflow=overflow,
        )
    w64 = _ints(w, "Conv weight")
    M, Cg, kh, kw = w64.shape
    wz = np.asarray(w_zero_point)
    if wz.ndim == 1:
        wz = wz.reshape(M, 1, 1, 1)
    wd = _operand(w64, wz, "Conv weight").astype(np.float64)
    xd = _operand(xa, x_zero_point, "Conv input")
    N, C, H, W = xd.shape
    group = int(group)
    if group < 1 or C != Cg * group or M % group:
        raise ValueError(f"Conv with group={group} needs C = {Cg} * group and M divisible by group; got C={C}, M={M}")
    if kernel_shape is not None and list(kernel_shape) != [kh, kw]:
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match the weight's {[kh, kw]}")
    s, d, pb, pe, (oh, ow) = _spatial([H, W], [kh, kw], strides, pads, dilations, auto_pad)
    if Cg * kh * kw >= _EXACT_TERMS:
        raise ValueError("Conv too large for exact float64 accumulation")
    xp = np.pad(xd, [(0, 0), (0, 0), (pb[0], pe[0]), (pb[1], pe[1])]).astype(np.float64)
    # windows: (N, C, OH, OW, kh, kw) as a strided view (dilation via the window span)
    span_h, span_w = d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1
    win = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))[:, :, :: s[0], :: s[1], :: d[0], :: d[1]]
    win = win[:, :, :oh, :ow]
    Mg = M // group
    out = np.empty((N, M, oh, ow), dtype=np.float64)
    if group == C and Cg == 1 and Mg == 1:
        # depthwise: one multiply-add per kernel position, all channels at once
        acc = np.zeros((N, C, oh, ow), dtype=np.float64)
        for i in range(kh):
            for j in range(kw):
                acc += win[..., i, j] * wd[:, 0, i, j].reshape(1, C, 1, 1)
        out[:] = acc
    else:
        rows_per_image = oh * ow
        step = max(1, _ROWS // max(rows_per_image, 1))
        for g in range(group):
            wg = wd[g * Mg : (g + 1) * Mg].reshape(Mg, Cg * kh * kw).T  # (K, Mg)
            for n0 in range(0, N, step):
                cols = win[n0 : n0 + step, g * Cg : (g + 1) * Cg]  # (n, Cg, OH, OW, kh, kw)
                cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(-1, Cg * kh * kw)
                res = cols @ wg  # (n*OH*OW, Mg), exact integers in float64
                out[n0 : n0 + step, g * Mg : (g + 1) * Mg] = res.reshape(-1, oh, ow, Mg).transpose(0, 3, 1, 2)
    acc = out.astype(np.int64)
    if b is not None:
        b64 = _bias(b, "Conv bias")
        if b64.shape != (M,):
            raise ValueError(f"Conv bias must have shape ({M},), got {b64.shape}")
        acc += b64.reshape(1, M, 1, 1)
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
    """ONNX Gemm on integers via float64 BLAS; contract of :func:`reference.gemm`."""
    if alpha != 1 or beta != 1:
        raise ValueError(f"integer Gemm needs alpha = beta = 1, got {alpha}, {beta}")
    ad = _operand(a, a_zero_point, "Gemm input A")
    b64 = _ints(b, "Gemm input B")
    if ad.ndim != 2 or b64.ndim != 2:
        raise ValueError(f"Gemm inputs must be 2-D, got {ad.shape} and {b64.shape}")
    if trans_a:
        ad = ad.T
    if trans_b:
        b64 = b64.T
    bd = _operand(b64, b_zero_point, "Gemm input B")
    if ad.shape[1] != bd.shape[0]:
        raise ValueError(f"Gemm inner dimensions differ: {ad.shape} @ {bd.shape}")
    acc = (ad.astype(np.float64) @ bd.astype(np.float64)).astype(np.int64)
    if c is not None:
        acc = acc + _bias(c, "Gemm bias C")
    return check_accumulator(acc, overflow, what="Gemm accumulator")


def matmul(a: np.ndarray, b: np.ndarray, *, a_zero_point: Any = 0, b_zero_point: Any = 0, overflow: Overflow = Overflow.RAISE) -> np.ndarray:
    """ONNX MatMul on integers via float64 BLAS; contract of :func:`reference.matmul`."""
    ad = _operand(a, a_zero_point, "MatMul input A").astype(np.float64)
    bd = _operand(b, b_zero_point, "MatMul input B").astype(np.float64)
    return check_accumulator(np.matmul(ad, bd).astype(np.int64), overflow, what="MatMul accumulator")


#: The fast kernel table: BLAS for the products, the reference for everything else.
KERNELS = {**reference.KERNELS, "Conv": conv, "Gemm": gemm, "MatMul": matmul}
