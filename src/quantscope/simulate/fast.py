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

:class:`FusedLayer` goes further for Conv layers and power-of-two Add: the whole
layer (accumulate, requantize, saturate, fused Relu/Clip) as one onnxruntime graph,
its accumulator in float32, used only where it is provably exact (docs/int8.md (12)).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._compiled import loaded
from ..quantize.numerics import Overflow, Rounding, check_accumulator
from . import reference
from .reference import bias_values, int64_values, operand_values, spatial_geometry

__all__ = ["KERNELS", "FusedLayer", "conv", "gemm", "matmul", "max_pool", "quantize_pow2"]

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
            x,
            w,
            b,
            auto_pad=auto_pad,
            dilations=dilations,
            group=group,
            kernel_shape=kernel_shape,
            pads=pads,
            strides=strides,
            x_zero_point=x_zero_point,
            w_zero_point=w_zero_point,
            overflow=overflow,
        )
    w64 = int64_values(w, "Conv weight")
    M, Cg, kh, kw = w64.shape
    wz = np.asarray(w_zero_point)
    if wz.ndim == 1:
        wz = wz.reshape(M, 1, 1, 1)
    wd = operand_values(w64, wz, "Conv weight").astype(np.float64)
    xd = operand_values(xa, x_zero_point, "Conv input")
    N, C, H, W = xd.shape
    group = int(group)
    if group < 1 or C != Cg * group or M % group:
        raise ValueError(f"Conv with group={group} needs C = {Cg} * group and M divisible by group; got C={C}, M={M}")
    if kernel_shape is not None and list(kernel_shape) != [kh, kw]:
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match the weight's {[kh, kw]}")
    s, d, pb, pe, (oh, ow) = spatial_geometry([H, W], [kh, kw], strides, pads, dilations, auto_pad)
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
        b64 = bias_values(b, "Conv bias")
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
    ad = operand_values(a, a_zero_point, "Gemm input A")
    b64 = int64_values(b, "Gemm input B")
    if ad.ndim != 2 or b64.ndim != 2:
        raise ValueError(f"Gemm inputs must be 2-D, got {ad.shape} and {b64.shape}")
    if trans_a:
        ad = ad.T
    if trans_b:
        b64 = b64.T
    bd = operand_values(b64, b_zero_point, "Gemm input B")
    if ad.shape[1] != bd.shape[0]:
        raise ValueError(f"Gemm inner dimensions differ: {ad.shape} @ {bd.shape}")
    acc = (ad.astype(np.float64) @ bd.astype(np.float64)).astype(np.int64)
    if c is not None:
        acc = acc + bias_values(c, "Gemm bias C")
    return check_accumulator(acc, overflow, what="Gemm accumulator")


def matmul(
    a: np.ndarray, b: np.ndarray, *, a_zero_point: Any = 0, b_zero_point: Any = 0, overflow: Overflow = Overflow.RAISE
) -> np.ndarray:
    """ONNX MatMul on integers via float64 BLAS; contract of :func:`reference.matmul`."""
    ad = operand_values(a, a_zero_point, "MatMul input A").astype(np.float64)
    bd = operand_values(b, b_zero_point, "MatMul input B").astype(np.float64)
    return check_accumulator(np.matmul(ad, bd).astype(np.int64), overflow, what="MatMul accumulator")


def quantize_pow2(x: np.ndarray, exponent: int, bits: int, rounding: Rounding) -> np.ndarray:
    """Real values to ``bits``-bit integers at scale ``2**exponent``, saturating: the same
    integers as :func:`quantscope.quantize.numerics.quantize` (eq. (2)) with fewer
    passes and temporaries (in place; float32 where that is exact, else float64).

    ``x``: real values, any shape (float32 or float64). float32 ``x`` is computed in
    float32 (half the bytes of float64) but for ``Rounding.FLOOR`` with ``exponent > 0``.
    ``x * 2**-exponent`` is exact but where a float32 ``x`` scaled down (``exponent >
    0``) underflows below ``2**-126``: that value and the exact one are both below 1/2
    in magnitude with the same sign or zero, so half away, half even and toward zero
    give 0 for both (floor would not: ``-2**-150`` may become ``-0.0``, hence float64
    there). An overflow to +-Inf saturates as the exact value does. Each rounding is
    exact (the fraction ``|v| - floor(|v|)`` is exact), and the clip saturates (+-Inf
    included). NaN raises ``ValueError`` as the reference does.
    """
    from ..quantize.numerics import int_dtype, int_range, round_values

    x = np.asarray(x)
    exact32 = int(exponent) <= 0 or Rounding(rounding) is not Rounding.FLOOR
    dtype = np.float32 if x.dtype == np.float32 and exact32 else np.float64
    factor = dtype(2.0 ** -int(exponent))
    lo, hi = int_range(bits, True)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.size, int_dtype(bits, True))
    compiled = loaded(REQUANTIZE_MODULE, "quantize_values") if flat.dtype == dtype else None
    if compiled is not None:  # one pass (simulate/_numba_requantize.py), the same integers
        mode = ROUNDING_MODES[Rounding(rounding)]
        if compiled(flat, factor, mode, dtype(lo), dtype(hi), out):
            raise ValueError("quantize: the input holds NaN; find the layer that produced it")
        return out.reshape(np.shape(x))
    # a cache-sized piece at a time through one reused buffer: the rounding's temporaries
    # stay small and warm (2-3x faster than whole-array passes on a batch of images)
    buf = np.empty(min(_QUANTIZE_PIECE, flat.size), dtype)
    for start in range(0, flat.size, _QUANTIZE_PIECE):
        v = buf[: min(_QUANTIZE_PIECE, flat.size - start)]
        np.multiply(flat[start : start + _QUANTIZE_PIECE], factor, out=v, dtype=dtype)
        if np.isnan(v).any():  # after the scaling: a NaN stays NaN, finite values stay finite or +-Inf
            raise ValueError("quantize: the input holds NaN; find the layer that produced it")
        round_values(v, rounding, out=v)  # eq. (2a)-(2d), in place
        np.clip(v, lo, hi, out=v)
        out[start : start + _QUANTIZE_PIECE] = v
    return out.reshape(np.shape(x))


#: The ``mode`` of the compiled ``quantize_values`` for each rounding.
ROUNDING_MODES = {Rounding.HALF_AWAY: 0, Rounding.HALF_EVEN: 1, Rounding.FLOOR: 2, Rounding.ZERO: 3}

#: Values per piece of :func:`quantize_pow2`.
_QUANTIZE_PIECE = 1 << 16


def max_pool(x: np.ndarray, **attrs: Any) -> np.ndarray:
    """ONNX MaxPool on 8-bit integers through onnxruntime's float MaxPool: exact (a
    maximum of values that float32 holds exactly). Same keywords and contract as
    :func:`reference.max_pool`; other integer types use the reference."""
    xa = np.asarray(x)
    if xa.dtype not in (np.int8, np.uint8) or xa.ndim < 3:
        return reference.max_pool(xa, **attrs)
    key = tuple(
        sorted((k, v if v is None or isinstance(v, (str, int)) else tuple(int(i) for i in v)) for k, v in attrs.items())
    )
    return _max_pool_session(xa.dtype.str, xa.ndim, key, SESSION_THREADS.get())(xa)


@lru_cache(maxsize=256)
def _max_pool_session(dtype: str, ndim: int, items: tuple, threads: int) -> FusedLayer:
    from onnx import TensorProto, helper

    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in items if v is not None}
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("MaxPool", ["xf"], ["m"], **attrs),
        helper.make_node("Cast", ["m"], ["y"], to=elem),
    ]
    graph = helper.make_graph(
        nodes,
        "max_pool",
        [helper.make_tensor_value_info("x", elem, [None] * ndim)],
        [helper.make_tensor_value_info("y", elem, None)],
    )
    return FusedLayer(_session(graph))


@lru_cache(maxsize=1)
def _shared_arena() -> bool:
    """Register one onnxruntime CPU memory arena for the process, which the per-layer
    sessions share (they run one after another, so the arena holds the largest layer's
    buffers, not the sum of every layer's: 1.0 GiB instead of 4.7 GiB on MobileNetV2 at
    batch 25). False if this onnxruntime cannot register one: each session then keeps
    its own."""
    import onnxruntime as ort

    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        # max memory: no limit; extend by what is requested (not the next power of two)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))
    except Exception:  # noqa: BLE001 - any failure leaves the default per-session arenas
        return False
    return True


#: onnxruntime threads per operator of the layer sessions made in this context (0: its
#: default, one per core). Validation runs the float network beside the emulation and
#: gives each half of the cores (quantscope.validate.measure.BatchValidator): two
#: sessions with a thread per core each on the same cores wait on each other's threads.
SESSION_THREADS: ContextVar[int] = ContextVar("quantscope_session_threads", default=0)


def _session(graph):
    """An onnxruntime CPU session (opset 13, threads that do not spin, as many per
    operator as :data:`SESSION_THREADS` says) for ``graph``.

    Sessions are kept by the sha256 of the model's bytes, the most recently used
    first, up to :data:`SESSION_CACHE_BYTES` of models: another engine of the same
    plan (a second validation, the float-fallback search that validates plan after
    plan with most layers unchanged) runs the same layer graphs without building and
    initializing them again. A session is read-only and its runs are independent, so
    sharing one changes no result."""
    import hashlib

    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    data = model.SerializeToString()
    threads = SESSION_THREADS.get()
    key = hashlib.sha256(data).digest() + threads.to_bytes(4, "little")
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key][0]
    session = _new_session(data, threads)
    with _CACHE_LOCK:
        _CACHE[key] = (session, len(data))
        total = sum(size for _, size in _CACHE.values())
        while total > SESSION_CACHE_BYTES and len(_CACHE) > 1:
            total -= _CACHE.popitem(last=False)[1][1]
    return session


#: Bytes of layer models (their weights, mostly) whose sessions :func:`_session` keeps.
SESSION_CACHE_BYTES = 256 * 2**20
_CACHE: OrderedDict[bytes, tuple] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _new_session(model: bytes, threads: int = 0):
    """An onnxruntime session of the serialized layer ``model`` (see :func:`_session`)."""
    import onnxruntime as ort

    from ..calibrate.collector import session_options

    options = session_options(spinning=False, threads=threads, log_severity=3)
    if _shared_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------ fused power-of-two layers

#: The float32 path is used only when every partial sum of a layer, bias included, is
#: below this in magnitude (in units of the result's finest bit): 23 significant bits.
FLOAT32_EXACT = 1 << 23

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


class FusedLayer:
    """An int8 layer as one onnxruntime graph, exactly: power-of-two Conv and Add in
    float32 (:meth:`conv`, :meth:`add`), float-scale Conv with its accumulator in
    float32 and its requantization in float64 (:meth:`conv_scale`).

    The power-of-two graphs compute ``v``, the layer's exact result scaled to the
    output's grid (``v = acc * 2**-shift``, an integer multiple of ``2**-shift``), then
    ``clip(R(v), lo, hi)`` as int8: the rounding shift of eq. (5), the saturation and
    any fused Relu/Clip (a chain of clamps is one clamp, whose bounds the caller
    computes with the reference kernels). Every constructor returns None where
    exactness is not proven (the caller then uses the exact int64/float64 kernels).

    Why float32 is exact: every operand is scaled by a power of two (exact), and each
    partial sum is an integer multiple of ``2**-shift`` below ``2**23 * 2**-shift`` in
    magnitude, so it has at most 23 significant bits and is represented exactly,
    whatever order onnxruntime adds in.

    The rounding (docs/int8.md (12)). The clamp to the integer bounds ``lo``/``hi``
    comes first (it commutes with every rounding, and onnxruntime fuses it into the
    Conv). Half even is ``QuantizeLinear`` with scale 1 (round half to even, then
    int8). Half away from zero moves every value by ``sign(v) * 2**-(shift+1)``
    (``clip(v / 2, -2**-(shift+1), 2**-(shift+1))``, 24 bits, exact), which turns each
    tie into a non-tie on its far side and moves no other value across a
    half-integer, then rounds half even; when ``lo >= 0`` every value that matters is
    non-negative and the move is the constant ``+2**-(shift+1)``, added to the Conv's
    bias (a value below 0 ends at ``lo`` either way). Floor is ``Floor``; toward
    zero is the truncating ``Cast``.
    """

    def __init__(self, session):
        self._session = session
        self._inputs = [i.name for i in session.get_inputs()]

    def __call__(self, *xs: np.ndarray) -> np.ndarray:
        """The layer's output integers (int8) for integer inputs ``xs``."""
        return self._session.run(["y"], {n: np.ascontiguousarray(x) for n, x in zip(self._inputs, xs)})[0]

    @classmethod
    def conv(
        cls,
        w: np.ndarray,
        b: np.ndarray | None,
        attrs: dict,
        x_dtype: np.dtype,
        shift: int,
        rounding: Rounding,
        lo: int,
        hi: int,
    ) -> FusedLayer | None:
        """Conv + bias (eq. (4)), requantized by ``shift`` bits. ``x``: integers
        ``(N, C, H, W)`` of ``x_dtype`` with zero point 0; ``w``: ``(M, C/group, kH, kW)``
        integers; ``b``: ``(M,)`` int32 or None. Exact when ``max|x| * max_m sum|w_m| +
        max|b| < 2**23``."""
        from onnx import TensorProto, helper

        x_dtype = np.dtype(x_dtype)
        if x_dtype.kind not in "iu" or np.ndim(w) != 4:
            return None
        info = np.iinfo(x_dtype)
        w64 = np.asarray(w, dtype=np.int64)
        b64 = np.zeros(w64.shape[0], np.int64) if b is None else np.asarray(b, dtype=np.int64)
        x_max = max(abs(int(info.min)), abs(int(info.max)))
        l1 = int(np.abs(w64).reshape(len(w64), -1).sum(axis=1).max(initial=0))
        if x_max * l1 + int(np.abs(b64).max(initial=0)) >= FLOAT32_EXACT:
            return None
        scale = 2.0 ** -int(shift)
        nodes = [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Conv", ["xf", "w", "b"], ["v"], **{k: v for k, v in attrs.items() if k in _CONV_ATTRS}),
        ]
        channels = w64.shape[1] * int(attrs.get("group", 1))
        bias = b64 * scale
        if shift > 0 and rounding is Rounding.HALF_AWAY and lo >= 0:
            bias = bias + 2.0 ** -(int(shift) + 1)  # the tie-breaking move, for v >= 0
            rounding = Rounding.HALF_EVEN
        consts = {"w": w64 * scale, "b": bias}
        return cls._build(nodes, [("x", x_dtype, [None, channels, None, None])], consts, shift, rounding, lo, hi)

    @classmethod
    def conv_scale(
        cls,
        w: np.ndarray,
        w_zero_point: Any,
        b: np.ndarray | None,
        attrs: dict,
        x_dtype: np.dtype,
        x_zero_point: int,
        multiplier: Any,
        zero_point: int,
        rounding: Rounding,
        lo: int,
        hi: int,
    ) -> FusedLayer | None:
        """Float-scale Conv (eq. (4), (9)): ``clip(R((acc + b) * multiplier) + zero_point,
        lo, hi)`` as int8, ``acc`` the exact accumulator of ``x - x_zero_point`` and
        ``w - w_zero_point``; ``multiplier``: a scalar or one per output channel.

        The accumulator is a float32 Conv, exact under the bound (12a); from there the
        graph is float64 as :func:`~quantscope.quantize.numerics.requantize_scale` is
        (the same IEEE products, ``Round`` is half even), so the integers are the same.
        Rounding half even or floor; ``acc + b`` provably inside int32 (so the overflow
        policy never acts). Otherwise None: the float64 kernel runs."""
        from onnx import TensorProto, helper

        x_dtype = np.dtype(x_dtype)
        if x_dtype.kind not in "iu" or np.ndim(w) != 4 or rounding not in (Rounding.HALF_EVEN, Rounding.FLOOR):
            return None
        if lo > hi or not -128 <= lo <= hi <= 127:
            return None
        w64 = np.asarray(w, dtype=np.int64)
        wz = np.asarray(w_zero_point, dtype=np.int64)
        w64 = w64 - (wz.reshape(-1, 1, 1, 1) if wz.ndim == 1 else wz)
        b64 = np.zeros(w64.shape[0], np.int64) if b is None else np.asarray(b, dtype=np.int64)
        info = np.iinfo(x_dtype)
        x_max = max(abs(int(info.min) - int(x_zero_point)), abs(int(info.max) - int(x_zero_point)))
        bound = x_max * int(np.abs(w64).reshape(len(w64), -1).sum(axis=1).max(initial=0))
        if bound + int(np.abs(b64).max(initial=0)) >= 2**31:
            return None  # the int32 accumulator could overflow: the exact kernel decides
        compiled = ScaleConv.build(w64, b64, attrs, x_dtype, x_zero_point, multiplier, zero_point, rounding, lo, hi)
        if compiled is not None or bound >= FLOAT32_EXACT:
            return compiled  # None: not exact in float32
        m = np.asarray(multiplier, dtype=np.float64)
        if m.ndim == 1:
            m = m.reshape(1, -1, 1, 1)
        nodes = [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["xf", "zx"], ["xd"]),
            helper.make_node("Conv", ["xd", "w"], ["acc"], **{k: v for k, v in attrs.items() if k in _CONV_ATTRS}),
            helper.make_node("Cast", ["acc"], ["acc64"], to=TensorProto.DOUBLE),
            helper.make_node("Add", ["acc64", "b"], ["total"]),
            helper.make_node("Mul", ["total", "m"], ["v"]),
            helper.make_node("Round" if rounding is Rounding.HALF_EVEN else "Floor", ["v"], ["r"]),
            helper.make_node("Add", ["r", "z"], ["q"]),
            helper.make_node("Clip", ["q", "lo", "hi"], ["c"]),
            helper.make_node("Cast", ["c"], ["y"], to=TensorProto.INT8),
        ]
        consts = {
            "zx": np.array(x_zero_point, np.float32),
            "w": w64.astype(np.float32),
            "b": b64.astype(np.float64).reshape(1, -1, 1, 1),
            "m": m,
            "z": np.array(zero_point, np.float64),
            "lo": np.array(lo, np.float64),
            "hi": np.array(hi, np.float64),
        }
        channels = w64.shape[1] * int(attrs.get("group", 1))
        return cls(_session(_graph(nodes, [("x", x_dtype, [None, channels, None, None])], consts)))

    @classmethod
    def add(
        cls,
        a_dtype: np.dtype,
        b_dtype: np.dtype,
        e_a: int,
        e_b: int,
        e_out: int,
        rounding: Rounding,
        lo: int,
        hi: int,
    ) -> FusedLayer | None:
        """Add of integers at exponents ``e_a`` and ``e_b`` (eq. (7a)), requantized to
        ``e_out``. Exact when both aligned operands fit 23 bits: ``|e_a - e_b| <= 14``
        for 8-bit inputs."""
        from onnx import helper

        dtypes = [np.dtype(a_dtype), np.dtype(b_dtype)]
        if any(d.kind not in "iu" or d.itemsize > 1 for d in dtypes):
            return None
        e_m = min(int(e_a), int(e_b))
        shift = int(e_out) - e_m
        # |a| * 2**(e_a - e_m) + |b| * 2**(e_b - e_m), in units of 2**e_m
        if 256 * (2 ** (int(e_a) - e_m) + 2 ** (int(e_b) - e_m)) >= FLOAT32_EXACT:
            return None
        to_float = helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))
        nodes = [
            helper.make_node("Cast", ["a"], ["af"], to=to_float),
            helper.make_node("Cast", ["b"], ["bf"], to=to_float),
            helper.make_node("Mul", ["af", "sa"], ["as"]),
            helper.make_node("Mul", ["bf", "sb"], ["bs"]),
            helper.make_node("Add", ["as", "bs"], ["v"]),
        ]
        consts = {"sa": np.array(2.0 ** (int(e_a) - int(e_out))), "sb": np.array(2.0 ** (int(e_b) - int(e_out)))}
        return cls._build(nodes, [("a", dtypes[0], None), ("b", dtypes[1], None)], consts, shift, rounding, lo, hi)

    @classmethod
    def requantize(
        cls, dtype: np.dtype, e_in: int, e_out: int, rounding: Rounding, lo: int, hi: int
    ) -> FusedLayer | None:
        """8-bit integers at exponent ``e_in`` moved to exponent ``e_out`` (eq. (5):
        ``clip(R(q * 2**(e_in - e_out)), lo, hi)`` as int8), the integers of
        :func:`~quantscope.quantize.numerics.requantize_pow2`. Exact: ``q * 2**(e_in -
        e_out)`` has at most 8 significant bits in float32 (shifts up to 100 bits)."""
        from onnx import helper

        dtype = np.dtype(dtype)
        if dtype.kind not in "iu" or dtype.itemsize > 1:
            return None
        nodes = [
            helper.make_node("Cast", ["x"], ["xf"], to=helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))),
            helper.make_node("Mul", ["xf", "s"], ["v"]),
        ]
        consts = {"s": np.array(2.0 ** (int(e_in) - int(e_out)))}
        return cls._build(nodes, [("x", dtype, None)], consts, int(e_out) - int(e_in), rounding, lo, hi)

    @classmethod
    def _build(cls, nodes, inputs, consts, shift, rounding, lo, hi) -> FusedLayer | None:
        """Append the rounding tail to ``nodes`` (which compute ``v``) and open the session;
        the layer keeps its recipe (:func:`chain` joins layers from it)."""
        recipe = (list(nodes), list(inputs), dict(consts), int(shift), rounding, int(lo), int(hi))
        tail = _tail("", int(shift), rounding, int(lo), int(hi), as_float=False)
        if tail is None:
            return None
        tail_nodes, tail_consts = tail
        layer = cls(_session(_graph([*nodes, *tail_nodes], inputs, _consts({**consts, **tail_consts}))))
        layer.recipe = recipe
        return layer


def _consts(consts: dict) -> dict:
    """Constants as the graphs hold them: int8 stays int8, everything else float32."""
    return {
        k: (np.asarray(c) if np.asarray(c).dtype == np.int8 else np.asarray(c, np.float32)) for k, c in consts.items()
    }


def _tail(prefix: str, shift: int, rounding: Rounding, lo: int, hi: int, as_float: bool):
    """The rounding tail of a fused layer (see :class:`FusedLayer`), from ``{prefix}v``:
    ``(nodes, consts)`` ending in ``{prefix}y``, int8, or with ``as_float`` the same
    integers as float32 (``Round`` is half even, as ``QuantizeLinear`` with scale 1; the
    value is inside ``[lo, hi]`` already); None where the rounding has no exact tail
    (or, as float, toward zero). onnxruntime has no blocked-layout kernel for ``Round``
    (nor for an ``Add`` of a constant): inside a chain the values leave that layout
    for the rounding and come back, still cheaper than a graph per layer."""
    from onnx import TensorProto, helper

    if abs(shift) > 100 or lo > hi or not -128 <= lo <= hi <= 127:
        return None
    p = prefix
    consts = {f"{p}lo": np.array(lo), f"{p}hi": np.array(hi)}
    nodes = [helper.make_node("Clip", [f"{p}v", f"{p}lo", f"{p}hi"], [f"{p}c"])]
    v = f"{p}c"
    if shift > 0 and rounding is Rounding.HALF_AWAY:
        step = 2.0 ** -(shift + 1)
        consts.update({f"{p}half": np.array(0.5), f"{p}neg_step": np.array(-step), f"{p}step": np.array(step)})
        nodes += [
            helper.make_node("Mul", [v, f"{p}half"], [f"{p}v_half"]),
            helper.make_node("Clip", [f"{p}v_half", f"{p}neg_step", f"{p}step"], [f"{p}nudge"]),
            helper.make_node("Add", [v, f"{p}nudge"], [f"{p}v_nudged"]),
        ]
        v = f"{p}v_nudged"
    elif shift > 0 and rounding is Rounding.FLOOR:
        nodes.append(helper.make_node("Floor", [v], [f"{p}v_floor"]))
        v = f"{p}v_floor"
    elif shift > 0 and rounding not in (Rounding.HALF_EVEN, Rounding.ZERO):
        return None
    if shift > 0 and rounding is Rounding.ZERO:
        if as_float:
            return None
        nodes.append(helper.make_node("Cast", [v], [f"{p}y"], to=TensorProto.INT8))  # truncates
    elif as_float:
        nodes.append(helper.make_node("Round", [v], [f"{p}y"]))
    else:
        consts.update({f"{p}one": np.array(1.0), f"{p}zero": np.array(0, np.int8)})
        nodes.append(helper.make_node("QuantizeLinear", [v, f"{p}one", f"{p}zero"], [f"{p}y"]))
    return nodes, consts


class FusedChain:
    """Consecutive fused power-of-two Conv layers, each reading only the one before, as
    one onnxruntime graph (:func:`chain`): the same float32 operations on the same
    values, so the same integers, in one run, without the int8 casts between layers.
    Called with the first layer's input integers; returns the int8 outputs of the
    layers asked for, the last one always last."""

    def __init__(self, session, outputs: list[str]):
        self._session = session
        self._outputs = outputs

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self._session.run(self._outputs, {"x": np.ascontiguousarray(x)})


def chain(layers: list[FusedLayer], keep: list[bool]) -> FusedChain | None:
    """One graph of the fused Conv ``layers`` (each made by :meth:`FusedLayer.conv`, each
    reading the one before): layer ``i``'s integers go on to layer ``i + 1`` as float32
    (its input ``Cast`` dropped); ``keep[i]``: also output layer ``i``'s int8 integers
    (``y{i}``; the last layer's always). None where a layer has no float tail."""
    from onnx import TensorProto, helper

    nodes, consts, outputs = [], {}, []
    inputs = None
    previous = None  # the float32 integers of the layer before
    for i, layer in enumerate(layers):
        recipe = getattr(layer, "recipe", None)
        if recipe is None:
            return None
        layer_nodes, layer_inputs, layer_consts, shift, rounding, lo, hi = recipe
        if layer_nodes[0].op_type != "Cast" or [n for n, _, _ in layer_inputs] != ["x"]:
            return None
        last = i == len(layers) - 1
        tail = _tail(f"l{i}_", shift, rounding, lo, hi, as_float=not last)
        if tail is None:
            return None
        p = f"l{i}_"

        def named(name: str, p=p, first=(i == 0), before=previous) -> str:
            if name == "x":
                return "x"
            if name == "xf" and not first:
                return before
            return p + name

        body = layer_nodes if i == 0 else layer_nodes[1:]  # later layers read float32 already
        for node in body:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes.append(
                helper.make_node(node.op_type, [named(n) for n in node.input], [named(n) for n in node.output], **attrs)
            )
        consts.update({p + k: c for k, c in layer_consts.items()})
        tail_nodes, tail_consts = tail
        nodes += tail_nodes
        consts.update(tail_consts)
        if i == 0:
            inputs = layer_inputs
        if last:
            nodes.append(helper.make_node("Identity", [f"{p}y"], ["y"]))
        else:
            previous = f"{p}y"
            if keep[i]:
                nodes.append(helper.make_node("Cast", [previous], [f"y{i}"], to=TensorProto.INT8))
                outputs.append(f"y{i}")
    outputs.append("y")
    return FusedChain(_session(_graph(nodes, inputs, _consts(consts), outputs)), outputs)


class ScaleConv:
    """A float-scale Conv layer (eq. (4), (9)) in two steps, exactly: onnxruntime's
    float32 Conv of the raw input integers (its blocked-layout kernels), written into a
    reused buffer, then one compiled pass (``simulate/_numba_requantize.py``) that
    corrects for the input's zero point, adds the bias and requantizes in float64 as
    :func:`~quantscope.quantize.numerics.requantize_scale` does. Three to four times
    less memory traffic than the all-onnxruntime graph of
    :meth:`FusedLayer.conv_scale`, whose float64 tail it replaces where numba loads.

    Why it is exact: ``conv(x - zx, w) = conv(x, w) - zx * S`` where ``S[m, p]`` sums the
    weights of channel ``m`` that the window at output position ``p`` covers inside the
    input (padding adds 0 to ``x - zx``, so its taps count in neither); ``conv(x, w)``
    has partial sums below ``max|x| * max_m sum|w_m| < 2**23`` (integers, exact in
    float32 in any order), and ``zx * S`` and the bias are integers below ``2**53``.
    """

    def __init__(self, session, requant, w, bias, attrs, zx, multiplier, zero_point, floor, lo, hi):
        self._session = session
        self._requant = requant
        self._w = w  # (M, C/group, kH, kW) int64, zero point removed
        self._bias = bias  # (M,) int64
        self._attrs = attrs
        self._zx = int(zx)
        self._m = np.ascontiguousarray(np.broadcast_to(np.asarray(multiplier, np.float64), (len(w),)))
        self._z, self._lo, self._hi, self._floor = float(zero_point), float(lo), float(hi), bool(floor)
        self._borders: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, w64, b64, attrs, x_dtype, x_zero_point, multiplier, zero_point, rounding, lo, hi):
        """The layer, or None: numba unavailable (or ``QUANTSCOPE_KERNELS=numpy``), not a
        2-D Conv, or a raw partial sum that float32 might not hold exactly. Arguments as
        :meth:`FusedLayer.conv_scale`'s, the weights' zero point already removed."""
        from onnx import TensorProto, helper, numpy_helper

        from .._compiled import kernel

        info = np.iinfo(x_dtype)
        l1 = int(np.abs(w64).reshape(len(w64), -1).sum(axis=1).max(initial=0))
        if max(abs(int(info.min)), abs(int(info.max))) * l1 >= FLOAT32_EXACT:
            return None
        requant = kernel(REQUANTIZE_MODULE, "requantize_conv")
        if requant is None:
            return None
        attrs = {k: v for k, v in attrs.items() if k in _CONV_ATTRS}
        nodes = [
            helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
            helper.make_node("Conv", ["xf", "w"], ["acc"], **attrs),
        ]
        channels = w64.shape[1] * int(attrs.get("group", 1))
        elem = helper.np_dtype_to_tensor_dtype(x_dtype)
        graph = helper.make_graph(
            nodes,
            "scale_conv",
            [helper.make_tensor_value_info("x", elem, [None, channels, None, None])],
            [helper.make_tensor_value_info("acc", TensorProto.FLOAT, None)],
            initializer=[numpy_helper.from_array(w64.astype(np.float32), "w")],
        )
        floor = Rounding(rounding) is Rounding.FLOOR
        return cls(_session(graph), requant, w64, b64, attrs, x_zero_point, multiplier, zero_point, floor, lo, hi)

    def _border(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``(border, bias)`` for ``height x width`` inputs (see the kernel): ``zx * S``
        as ``(M, OH*OW)`` float32, or ``(M, 0)`` with ``-zx * S`` in the bias where ``S``
        is the same at every position; computed once per input size."""
        key = (height, width)
        with self._lock:
            if key not in self._borders:
                w = self._w
                ones = np.ones((1, w.shape[1] * int(self._attrs.get("group", 1)), height, width), np.int8)
                s = conv(ones, w, **self._attrs).reshape(len(w), -1)  # exact int64 sums
                bias = self._bias.astype(np.float64)
                if self._zx == 0 or np.all(s == s[:, :1]):
                    border = np.zeros((len(w), 0), np.float32)
                    bias = bias - float(self._zx) * s[:, 0].astype(np.float64)
                else:
                    border = (self._zx * s).astype(np.float32)  # |zx * S| < 2**24: exact
                self._borders[key] = (border, bias)
            return self._borders[key]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The layer's output integers (int8, ``(N, M, OH, OW)``) for integer inputs
        ``x`` ``(N, C, H, W)``."""
        x = np.ascontiguousarray(x)
        n, _, height, width = x.shape
        kh, kw = self._w.shape[2:]
        a = self._attrs
        *_, (oh, ow) = spatial_geometry(
            [height, width], [kh, kw], a.get("strides"), a.get("pads"), a.get("dilations"), a.get("auto_pad", "NOTSET")
        )
        border, bias = self._border(height, width)
        shape = (n, len(self._w), oh * ow)
        acc = _scratch(shape)
        binding = self._session.io_binding()
        binding.bind_cpu_input("x", x)
        binding.bind_output("acc", "cpu", 0, np.float32, [n, len(self._w), oh, ow], acc.ctypes.data)
        self._session.run_with_iobinding(binding)
        out = np.empty(shape, np.int8)
        self._requant(acc, border, bias, self._m, self._z, self._lo, self._hi, self._floor, out)
        return out.reshape(n, len(self._w), oh, ow)


#: The compiled requantization's module (loaded by quantscope._compiled).
REQUANTIZE_MODULE = "quantscope.simulate._numba_requantize"
_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of ``shape`` over this thread's reused buffer (grown as needed):
    an accumulator that lives only until it is requantized, so the pages are not
    mapped afresh for every layer. :func:`release_scratch` frees it."""
    size = int(np.prod(shape))
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < size:
        buf = _SCRATCH.buf = np.empty(size, np.float32)
    return buf[:size].reshape(shape)


def release_scratch() -> None:
    """Free this thread's accumulator buffer (the engine does after each batch)."""
    _SCRATCH.__dict__.pop("buf", None)


def _graph(nodes, inputs, consts, outputs=("y",)):
    """A graph of ``nodes`` with ``inputs`` ``[(name, dtype, shape)]``, the constants
    ``{name: array}`` (their own dtypes) and the int8 ``outputs`` (``y``)."""
    from onnx import TensorProto, helper, numpy_helper

    return helper.make_graph(
        nodes,
        "fused_layer",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(d)), shape)
            for n, d, shape in inputs
        ],
        [helper.make_tensor_value_info(name, TensorProto.INT8, None) for name in outputs],
        initializer=[numpy_helper.from_array(np.asarray(c), name) for name, c in consts.items()],
    )


#: The fast kernel table: BLAS for the products, onnxruntime for MaxPool, the
#: reference for everything else.
KERNELS = {**reference.KERNELS, "Conv": conv, "Gemm": gemm, "MatMul": matmul, "MaxPool": max_pool}
