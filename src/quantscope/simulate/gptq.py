"""Weight rounding with error compensation (GPTQ; docs/accuracy.md (8)-(10)).

Rounding each weight to its nearest integer minimizes each weight's own error, not
the error of the layer's output. For a layer ``y = W x`` (a Conv is one on its
input patches) and one output row ``w`` of ``W`` quantized to ``q`` on its fixed
grid ``s``, the output error over the calibration inputs is

    E||(w - s q) x||^2 = (w - s q) H (w - s q)^T,    H = E[x x^T]           (8)

GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", after Optimal Brain Quantization) rounds the
columns one at a time and moves each rounding error onto the columns not yet
rounded, the update that minimizes (8) given the columns fixed so far:

    q_i = sat(R(w_i / s)),   e_i = (w_i - s q_i) / U_ii,
    w_j <- w_j - e_i U_ij   (j > i)                                          (9)

with ``U`` the upper Cholesky factor of ``(H + lambda I)^-1`` (``H^-1 = U^T U``),
``lambda`` = 1% of the mean diagonal of ``H`` (damping), the columns taken in order
of decreasing ``H_ii``, and the update applied lazily in blocks of 128 columns (the
same arithmetic, as matrix products). Each row keeps the plan's scale (per channel
or per tensor, power of two or not) and the grid's bounds, so only the integers
change: the exported QDQ model, the FPGA weight images and both kernels carry them.
A layer keeps its nearest-rounding integers when (8) summed over its rows is not
lower with GPTQ's. The improvement is logged per layer as

    gain = 10 log10( tr(dW_round H dW_round^T) / tr(dW_gptq H dW_gptq^T) )  dB    (10)

``H`` comes from the float network's inputs to each layer on the calibration data:
a grouped Conv (a depthwise one: one group per channel) has one ``H`` per group
over its ``C/group * kH * kW`` patch values; a Gemm/MatMul fc layer one over its
``K`` inputs (every row of a ``(..., K)`` input is a sample).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..calibrate.collector import create_session, run_checked
from ..network import Network, OptimizedLayer
from ..network.network import batch_pieces
from ..quantize.numerics import FloatScale, Rounding, round_values
from ..quantize.plan import QuantPlan
from .bias_correction import DEFAULT_SAMPLES, calibration_samples, check_max_samples

__all__ = ["DAMPING", "DEFAULT_SAMPLES", "WeightRounder", "compensate_weights", "gptq_rows", "gptq_rows_reference"]

#: Damping added to the diagonal of ``H``, as a share of its mean (eq. (9)).
DAMPING = 0.01
#: Columns per lazy update block (eq. (9)).
_BLOCK = 128
#: Patch rows per matrix product when accumulating ``H`` (bounds the im2col copy).
_CHUNK = 1 << 15


def compensate_weights(
    plan: QuantPlan,
    data: Any,
    *,
    max_samples: int = DEFAULT_SAMPLES,
    batch_size: int = 16,
    layout: str = "NCHW",
) -> QuantPlan:
    """A copy of ``plan`` whose int8 conv/fc weights are rounded by GPTQ (eq. (8)-(10)
    of docs/accuracy.md) on the float network's inputs to each layer.

    Args:
        plan: the plan (left unchanged); its weight scales and bounds are kept.
        data: calibration data (anything :func:`quantscope.calibrate` takes); the first
            ``max_samples`` samples are used.
        max_samples: at most this many samples (default 256).
        batch_size: samples per run of the float network.

    Returns:
        the new plan; ``plan.weight_rounding`` maps each int8 conv/fc layer to the
        gain of eq. (10) in dB (0.0 where nearest rounding was kept).
    """
    return WeightRounder(data, max_samples=max_samples, batch_size=batch_size, layout=layout)(plan)


class WeightRounder:
    """:func:`compensate_weights` for plan after plan of one network on the same data
    (the float-fallback search validates one plan per step): each layer's integers are
    computed once per weight grid, and the data read once."""

    def __init__(self, data: Any, *, max_samples: int = DEFAULT_SAMPLES, batch_size: int = 16, layout: str = "NCHW"):
        check_max_samples(max_samples)
        self.data, self.max_samples, self.batch_size, self.layout = data, max_samples, batch_size, layout
        self._x = None
        self._done: dict[tuple, tuple[np.ndarray, float] | None] = {}  # layer and grid -> (integers, gain)

    def __call__(self, plan: QuantPlan) -> QuantPlan:
        network = plan.network
        done = dataclasses.replace(plan, weights=dict(plan.weights), weight_rounding={})
        todo = {}
        for layer in network.layers:
            if layer.kind in ("conv", "fc") and layer.name in plan.weights and plan.is_int(layer):
                form = _form(network, layer)
                if form is not None and self._key(plan, layer.name) not in self._done:
                    todo[layer.name] = form
        if todo:
            if self._x is None:
                self._x = calibration_samples(
                    plan, self.data, self.max_samples, self.batch_size, self.layout, "--gptq", "gptq"
                )
            for group in _groups(network, todo):
                hessians = _hessians(network, group, self._x, self.batch_size)
                for name, form in group.items():
                    self._done[self._key(plan, name)] = _round_layer(plan, name, form, hessians.pop(name))
        for layer in network.layers:
            key = self._key(plan, layer.name) if layer.name in plan.weights and plan.is_int(layer) else None
            result = self._done.get(key) if key is not None else None
            if result is not None:
                q, gain = result
                if gain > 0:
                    done.weights[layer.name] = (q, plan.weights[layer.name][1])
                done.weight_rounding[layer.name] = gain
        return done

    @staticmethod
    def _key(plan: QuantPlan, name: str) -> tuple:
        """A layer's weights on their grid: the same key, the same GPTQ integers."""
        qw, w_qp = plan.weights[name]
        scale = np.asarray(w_qp.scale, np.float64)
        return (id(plan.network), name, scale.tobytes(), scale.shape, w_qp.bits, plan.rounding, type(plan.scheme))


def _round_layer(plan: QuantPlan, name: str, form: _Form, h: np.ndarray) -> tuple[np.ndarray, float] | None:
    """GPTQ's integers for one layer and the gain of eq. (10) (0.0, with the nearest
    integers, where eq. (8) is not lower); None for weights with a zero point."""
    network = plan.network
    qw, w_qp = plan.weights[name]
    if np.any(np.asarray(w_qp.zero_point) != 0):
        return None
    w = form.rows(network.constant(network.layer(name).weight).astype(np.float64))
    scale = np.broadcast_to(np.asarray(w_qp.scale, np.float64).reshape(-1), (w.shape[0] * w.shape[1],))
    scale = scale.reshape(w.shape[0], w.shape[1])
    if isinstance(plan.scheme, FloatScale):
        qmin, qmax = -plan.scheme.weight_qmax, plan.scheme.weight_qmax
    else:
        qmin, qmax = w_qp.qmin, w_qp.qmax
    q = gptq_rows(w, h, scale, qmin, qmax, plan.rounding)
    before, after = _error(w, form.rows(qw.astype(np.float64)), scale, h), _error(w, q, scale, h)
    if after < before:
        gain = float(10 * np.log10(before / after)) if after > 0 else float("inf")
        return form.unrows(q, qw.shape).astype(qw.dtype), gain
    return qw, 0.0


#: Bytes of ``H`` held at once: layers beyond it wait for another run of the float network.
_H_BYTES = 512 << 20


def _groups(network: Network, forms: dict[str, _Form]):
    """The layers in network order, in groups whose ``H`` together fit in ``_H_BYTES``."""
    group: dict[str, _Form] = {}
    held = 0
    for name, form in forms.items():
        shape = network.constant(network.layer(name).weight).shape
        size = form.hessian_bytes(shape)
        if group and held + size > _H_BYTES:
            yield group
            group, held = {}, 0
        group[name] = form
        held += size
    if group:
        yield group


# ---------------------------------------------------------------- eq. (9)


def _factor(h: np.ndarray) -> np.ndarray:
    """``U`` of eq. (9) for a stack of ``H`` (G, K, K): damped, upper Cholesky factor of the inverse."""
    h = h.copy()
    k = h.shape[-1]
    idx = np.arange(k)
    diag = h[:, idx, idx]
    dead = diag <= 0  # an input that is 0 on every sample: its weight rounds alone
    h[:, idx, idx] = np.where(dead, 1.0, diag)
    mean = h[:, idx, idx].mean(axis=1)
    for damp in (DAMPING, 0.1, 1.0, 10.0):
        try:
            damped = h.copy()
            damped[:, idx, idx] += (damp * mean)[:, None]
            inverse = np.linalg.inv(damped)
            inverse = (inverse + inverse.transpose(0, 2, 1)) / 2
            return np.linalg.cholesky(inverse).transpose(0, 2, 1)
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("H is not positive definite even with damping")


def _order(h: np.ndarray) -> np.ndarray:
    """Per group, the columns in order of decreasing ``H_ii`` (stable)."""
    k = h.shape[-1]
    return np.argsort(-h[:, np.arange(k), np.arange(k)], axis=1, kind="stable")


def _round(v: np.ndarray, s: np.ndarray, qmin: int, qmax: int, rounding: Rounding) -> np.ndarray:
    return np.clip(round_values(v / s, rounding), qmin, qmax)


def gptq_rows_reference(
    w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmin: int, qmax: int, rounding: Rounding
) -> np.ndarray:
    """Eq. (9), one group, one column at a time (the reference for :func:`gptq_rows`).

    ``w`` (G, R, K) float64 weights, ``h`` (G, K, K), ``scale`` (G, R) the grid step of
    each row; returns the integers (G, R, K) as float64."""
    g_count, _, k = w.shape
    out = np.zeros_like(w)
    order = _order(h)
    for g in range(g_count):
        perm = order[g]
        u = _factor(h[g : g + 1][:, perm][:, :, perm])[0]
        ww = w[g][:, perm].copy()
        s = scale[g]
        q = np.zeros_like(ww)
        for i in range(k):
            q[:, i] = _round(ww[:, i], s, qmin, qmax, rounding)
            err = (ww[:, i] - q[:, i] * s) / u[i, i]
            ww[:, i + 1 :] -= np.outer(err, u[i, i + 1 :])
        out[g][:, perm] = q
    return out


def gptq_rows(w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmin: int, qmax: int, rounding: Rounding) -> np.ndarray:
    """Eq. (9) for all groups at once, the update applied lazily in blocks of columns:
    the same integers as :func:`gptq_rows_reference`. Shapes as there."""
    g_count, r_count, k = w.shape
    order = _order(h)
    rows = np.arange(g_count)[:, None]
    hp = h[rows[:, :, None], order[:, :, None], order[:, None, :]]
    u = _factor(hp)
    ww = np.take_along_axis(w, order[:, None, :], axis=2).copy()
    s = scale
    q = np.zeros_like(ww)
    for b0 in range(0, k, _BLOCK):
        b1 = min(b0 + _BLOCK, k)
        block = ww[:, :, b0:b1].copy()
        errs = np.zeros_like(block)
        ub = u[:, b0:b1, b0:b1]
        for i in range(b1 - b0):
            qi = _round(block[:, :, i], s, qmin, qmax, rounding)
            q[:, :, b0 + i] = qi
            err = (block[:, :, i] - qi * s) / ub[:, i, i][:, None]
            block[:, :, i + 1 :] -= err[:, :, None] * ub[:, None, i, i + 1 :]
            errs[:, :, i] = err
        if b1 < k:
            ww[:, :, b1:] -= np.matmul(errs, u[:, b0:b1, b1:])
    out = np.empty_like(q)
    np.put_along_axis(out, order[:, None, :], q, axis=2)
    return out


def _error(w: np.ndarray, q: np.ndarray, scale: np.ndarray, h: np.ndarray) -> float:
    """Eq. (8) summed over rows and groups."""
    d = w - q * scale[:, :, None]
    return float(np.sum(np.matmul(d, h) * d))


# ---------------------------------------------------------------- the layers' rows and H


@dataclasses.dataclass(frozen=True)
class _Form:
    """How a layer's weights become rows (G, R, K) and its input becomes samples (G, M, K)."""

    op: str
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] | None = (0, 0, 0, 0)  # top, left, bottom, right; None: auto_pad SAME
    same_upper: bool = True
    spatial_1d: bool = False
    transposed: bool = False  # Gemm transB=0 / MatMul: the weight is (K, N)
    input_transposed: bool = False  # Gemm transA=1

    def hessian_bytes(self, w_shape: tuple[int, ...]) -> int:
        """Bytes of this layer's ``H`` (float64)."""
        if self.op == "Conv":
            k = int(np.prod(w_shape[1:]))
            return 8 * self.groups * k * k
        k = w_shape[0] if self.transposed else w_shape[1]
        return 8 * k * k

    def rows(self, w: np.ndarray) -> np.ndarray:
        if self.op == "Conv":
            return w.reshape(self.groups, w.shape[0] // self.groups, -1)
        w2 = w.T if self.transposed else w
        return w2[None]

    def unrows(self, q: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.op == "Conv":
            return q.reshape(shape)
        return q[0].T if self.transposed else q[0].reshape(shape)

    def samples(self, x: np.ndarray):
        """The layer's input ``x`` as samples (G, M, K), in chunks of rows."""
        if self.op != "Conv":
            x = x.T if self.input_transposed else x
            x = x.reshape(-1, x.shape[-1])
            for start in range(0, len(x), _CHUNK):
                yield x[None, start : start + _CHUNK]
            return
        if self.spatial_1d:
            x = x[:, :, None, :]
        kh, kw = self.kernel
        dh, dw = self.dilations
        sh, sw = self.strides
        ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        if self.pads is None:  # SAME: output = ceil(input / stride)
            pads = []
            for size, stride, extent in ((x.shape[2], sh, ekh), (x.shape[3], sw, ekw)):
                total = max(0, (-(-size // stride) - 1) * stride + extent - size)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if self.same_upper else (big, small))
            (top, bottom), (left, right) = pads
        else:
            top, left, bottom, right = self.pads
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        for n in range(len(x)):
            v = sliding_window_view(x[n], (ekh, ekw), axis=(1, 2))[:, ::sh, ::sw, ::dh, ::dw]
            c, oh, ow = v.shape[:3]
            cg = c // self.groups
            v = v.reshape(self.groups, cg, oh * ow, kh, kw).transpose(0, 2, 1, 3, 4).reshape(self.groups, oh * ow, -1)
            for start in range(0, oh * ow, _CHUNK):
                yield v[:, start : start + _CHUNK]


def _form(network: Network, layer: OptimizedLayer) -> _Form | None:
    """How to read ``layer``'s weights and inputs, or None for a layer GPTQ leaves alone
    (a Conv of 3 or more spatial axes, a weight that is not the second input)."""
    node = layer.nodes[0] if layer.nodes else None
    if node is None or len(node.inputs) < 2 or node.inputs[1] is None or node.inputs[1].name != layer.weight:
        return None
    op = layer.op_types[0]
    attrs = network.node_attributes(layer.members[0])
    w_shape = network.constant(layer.weight).shape
    if op == "Conv":
        if len(w_shape) not in (3, 4):
            return None
        one = len(w_shape) == 3

        def pair(key, default):
            v = list(attrs.get(key, [default] * (2 if not one else 1)))
            return (default, v[0]) if one else (v[0], v[1])

        auto = attrs.get("auto_pad", "NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = None
        elif auto == "VALID":
            pads = (0, 0, 0, 0)
        else:
            p = list(attrs.get("pads", [0] * (2 if one else 4)))
            pads = (0, p[0], 0, p[1]) if one else (p[0], p[1], p[2], p[3])
        kernel = (1, w_shape[2]) if one else (w_shape[2], w_shape[3])
        return _Form(
            "Conv",
            groups=int(attrs.get("group", 1)),
            kernel=kernel,
            strides=pair("strides", 1),
            dilations=pair("dilations", 1),
            pads=pads,
            same_upper=auto != "SAME_LOWER",
            spatial_1d=one,
        )
    if len(w_shape) != 2:
        return None
    if op == "Gemm":
        return _Form("Gemm", transposed=not attrs.get("transB", 0), input_transposed=bool(attrs.get("transA", 0)))
    if op == "MatMul":
        return _Form("MatMul", transposed=True)
    return None


def _hessians(network: Network, forms: dict[str, _Form], x, batch_size: int) -> dict[str, np.ndarray]:
    """Each layer's ``H`` (G, K, K) float64: the mean of ``x x^T`` over its input samples."""
    inputs = {name: network.layer(name).nodes[0].inputs[0].name for name in forms}
    graph_inputs = set(network.input_names)
    fetch = sorted({v for v in inputs.values() if v not in graph_inputs})
    session = create_session(network.to_proto(fetch).SerializeToString(), spinning=False)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    fixed = network.fixed_batch
    size = fixed or batch_size
    for piece, count in batch_pieces(x, size, fixed=fixed is not None):
        feeds = network.feeds(piece)
        values = dict(zip(fetch, run_checked(lambda feeds=feeds: session.run(fetch, feeds)))) if fetch else {}
        values.update(feeds)
        n = len(piece)
        for name, form in forms.items():
            value = values[inputs[name]]
            value = value[:count] if count < n and len(value) == n else value
            for part in form.samples(np.asarray(value, np.float32)):
                part = np.ascontiguousarray(part, np.float32)
                add = np.matmul(part.transpose(0, 2, 1), part).astype(np.float64)
                sums[name] = sums[name] + add if name in sums else add
                counts[name] = counts.get(name, 0) + part.shape[1]
    return {name: sums[name] / max(counts[name], 1) for name in sums}
