"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"; MATLAB's
``equalizeLayers``), function-preserving in float.

For two layers joined through a positively homogeneous link, a Conv/Gemm whose
output channel ``i`` feeds only input channel ``i`` of the next Conv/Gemm, dividing
output channel ``i`` of the first (weights and bias) by ``s_i > 0`` and multiplying
the weights that read input channel ``i`` in the second by ``s_i`` leaves the
network's function unchanged (docs/accuracy.md (1)-(3)). With ``r1_i`` the largest
|weight| of output channel ``i`` of the first layer and ``r2_i`` the largest |weight|
reading input channel ``i`` in the second,

    s_i = sqrt(r1_i / r2_i)

makes both ``sqrt(r1_i r2_i)``: the channels of each layer become as alike as the
pair allows, which is what one per-tensor scale needs. Chains (a depthwise
convolution between two pointwise ones) are swept pair by pair until no scale
moves by more than ``tolerance`` (relative), at most ``iterations`` sweeps.

Links that allow it, between the two layers (each value read by the next node only):
any chain of positively homogeneous nodes (the op table's ``homogeneous``: Relu,
LeakyRelu, PRelu, MaxPool, AveragePool; ``f(x / s) = f(x) / s`` for ``s > 0``), and at
most one Clip with ``min = 0`` (Relu6) or no ``min``: ``clip(x / s, 0, c) = clip(x, 0,
c s) / s``, so the ceiling becomes ``c / s_i`` per channel. ONNX's Clip takes one
ceiling, so the Clip becomes ``Relu`` (when ``min = 0``) followed by ``Min`` with a
constant of one ceiling per channel, shape ``(C, 1, 1)`` (``(C,)`` after a Gemm): the
same function. A Clip with another ``min`` is not positively homogeneous with one pair
of bounds; such a link is left alone and ``notes`` says so.

Second layers: a Conv of any ``group`` (depthwise included) or a Gemm reading the
first's output directly. The weights are computed in float64 and stored as float32.
This pass needs no data and keeps the function for every input. Bias absorption
(moving part of a bias into the next layer, Nagel's section 4.1.2) is not part of it:
through a ReLU-family link it is exact only where the pre-activation stays above the
moved amount, which depends on the data, so it is a separate step on the calibration
data after this one (:mod:`quantscope.passes.absorb`, ``quantscope.absorb_biases``,
``--absorb-bias``; docs/accuracy.md (3a)-(3c)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ..ops import info
from ._util import const_array, int_attr, new_initializer, unique_name

__all__ = ["EqualizePass", "EqualizedPair"]


@dataclass(frozen=True)
class EqualizedPair:
    """One equalized pair of layers.

    Attributes:
        first, second: node names of the two layers (first's outputs scaled by ``1/s``,
            second's inputs by ``s``).
        link: the nodes between them, e.g. ``("Clip",)`` or ``()``.
        scale_min, scale_max: the smallest and largest ``s_i`` (all sweeps together).
        spread_before, spread_after: the largest over the median channel range
            (``max|w|``) of the first layer's output channels, before and after.
        ceiling: for a Clip link, the name of the ``Min`` node that now holds the
            per-channel ceilings, else None.
        added: the name of a node the pass added beside the original ones (the
            ``Min`` after the ``Relu`` that took a Clip's name), else None; layer names
            leave it out, so they are the same with and without equalization.
    """

    first: str
    second: str
    link: tuple[str, ...]
    scale_min: float
    scale_max: float
    spread_before: float
    spread_after: float
    ceiling: str | None = None
    added: str | None = None

    def describe(self) -> str:
        via = f" through {'/'.join(self.link)}" if self.link else ""
        return (
            f"{self.first} -> {self.second}{via}: scales {self.scale_min:.3g}..{self.scale_max:.3g}, "
            f"channel spread of {self.first} {self.spread_before:.3g} -> {self.spread_after:.3g}"
        )


@dataclass
class _Layer:
    """A Conv/Gemm node with float64 working copies of its weights and bias."""

    node: ir.Node
    w: np.ndarray
    b: np.ndarray | None
    out_axis: int  # axis of the output channels in w

    @property
    def out_channels(self) -> int:
        return self.w.shape[self.out_axis]

    def out_ranges(self) -> np.ndarray:
        w = np.moveaxis(np.abs(self.w), self.out_axis, 0)
        return w.reshape(w.shape[0], -1).max(axis=1)


@dataclass
class _Pair:
    first: _Layer
    second: _Layer
    link: list[ir.Node]
    clip: ir.Node | None  # a Clip whose ceiling becomes per channel
    clip_min: float | None
    clip_max: float | None
    scales: np.ndarray  # product of the scales applied so far, float64 (C,)
    spread_before: float = math.nan


def _spread(ranges: np.ndarray) -> float:
    median = float(np.median(ranges)) if ranges.size else 0.0
    return float(ranges.max() / median) if median > 0 else math.inf


class EqualizePass(InPlacePass):
    """Equalize every chain of Conv/Gemm layers joined by a positively homogeneous link.

    After the pass, ``pairs`` lists each equalized :class:`EqualizedPair` and
    ``notes`` says why a Conv/Gemm followed by another was not equalized.
    """

    def __init__(self, iterations: int = 100, tolerance: float = 1e-6) -> None:
        super().__init__()
        self.iterations = iterations
        self.tolerance = tolerance
        self.pairs: list[EqualizedPair] = []
        self.notes: list[str] = []
        self.sweeps = 0

    # ------------------------------------------------------------------ finding pairs
    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        layers: dict[int, _Layer] = {}
        pairs: list[_Pair] = []
        for node in graph:
            first = self._layer(node, layers)
            if first is None:
                continue
            pair = self._pair(first, layers)
            if pair is not None:
                pairs.append(pair)
        if not pairs:
            return PassResult(model, False)
        for pair in pairs:
            pair.spread_before = _spread(pair.first.out_ranges())
        self._sweep(pairs)
        self._write(graph, pairs, layers)
        return PassResult(model, True)

    def _layer(self, node: ir.Node, cache: dict[int, _Layer]) -> _Layer | None:
        """``node`` as a layer with constant float weights (and bias), else None."""
        if id(node) in cache:
            return cache[id(node)]
        if node.domain not in ("", "ai.onnx") or not info(node.op_type).takes_bias or len(node.inputs) < 2:
            return None
        w = const_array(node.inputs[1])
        if w is None or w.dtype.kind != "f" or w.size == 0:
            return None
        bias_value = node.inputs[2] if len(node.inputs) > 2 else None
        b = const_array(bias_value)
        if bias_value is not None and (b is None or b.dtype.kind != "f"):
            return None
        if node.op_type == "Conv":
            out_axis = 0
        else:
            if w.ndim != 2 or int_attr(node, "transA", 0):
                return None
            out_axis = 0 if int_attr(node, "transB", 0) else 1
        if b is not None and b.size != w.shape[out_axis]:
            return None  # a broadcast bias
        layer = _Layer(
            node,
            w.astype(np.float64),
            None if b is None else b.astype(np.float64).reshape(-1),
            out_axis,
        )
        cache[id(node)] = layer
        return layer

    def _pair(self, first: _Layer, cache: dict[int, _Layer]) -> _Pair | None:
        """The pair starting at ``first``, or None (a note says why when a layer follows)."""
        value = first.node.outputs[0]
        link: list[ir.Node] = []
        clip: ir.Node | None = None
        clip_min = clip_max = None
        while True:
            uses = value.uses()
            if len(uses) != 1 or value.is_graph_output():
                return None  # read twice (a residual), or an output: nothing to equalize with
            node = uses[0].node
            if node.domain not in ("", "ai.onnx") or node.inputs[0] is not value:
                return None
            if info(node.op_type).takes_bias:
                break
            if info(node.op_type).homogeneous:
                if any(v is not None and const_array(v) is None for v in node.inputs[1:]):
                    return None  # a PRelu's computed slope
            elif node.op_type == "Clip" and clip is None:
                bounds = _clip_bounds(node)
                if bounds is None:
                    return None
                lo, hi = bounds
                if lo not in (None, 0.0):
                    self.notes.append(
                        f"{first.node.name} not equalized with the layer after it: Clip {node.name!r} has "
                        f"min {lo:g}, and only a Clip from 0 (Relu6) or without a min keeps the network's "
                        "function when its ceiling is scaled per channel"
                    )
                    return None
                clip, clip_min, clip_max = node, lo, hi
            else:
                return None
            link.append(node)
            value = node.outputs[0]
        second = self._layer(node, cache)
        if second is None:
            return None
        channels = first.out_channels
        if node.op_type == "Conv":
            group = int_attr(node, "group", 1)
            if second.w.shape[1] * group != channels or second.w.shape[0] % group:
                return None
        elif second.w.shape[1 - second.out_axis] != channels:
            return None
        if first.node.op_type == "Gemm" and node.op_type == "Conv":
            return None
        if any(const_array(v) is None for n in link for v in n.inputs[1:] if v is not None):
            return None
        return _Pair(first, second, link, clip, clip_min, clip_max, np.ones(channels))

    # ------------------------------------------------------------------ scaling
    def _sweep(self, pairs: list[_Pair]) -> None:
        for sweep in range(self.iterations):
            moved = 0.0
            for pair in pairs:
                r1 = pair.first.out_ranges()
                r2 = _in_ranges(pair.second, pair.first.out_channels)
                ok = (r1 > 0) & (r2 > 0)
                s = np.ones_like(r1)
                s[ok] = np.sqrt(r1[ok] / r2[ok])
                _scale_out(pair.first, 1.0 / s)
                _scale_in(pair.second, s)
                pair.scales *= s
                moved = max(moved, float(np.max(np.abs(s - 1.0))))
            self.sweeps = sweep + 1
            if moved <= self.tolerance:
                break

    # ------------------------------------------------------------------ the graph
    def _write(self, graph: ir.Graph, pairs: list[_Pair], layers: dict[int, _Layer]) -> None:
        for layer in layers.values():
            if not any(layer is p.first or layer is p.second for p in pairs):
                continue
            node = layer.node
            node.replace_input_with(1, new_initializer(graph, f"{node.name}_W_equalized", layer.w.astype(np.float32)))
            if layer.b is not None:
                node.replace_input_with(
                    2, new_initializer(graph, f"{node.name}_B_equalized", layer.b.astype(np.float32))
                )
        for pair in pairs:
            ceiling = added = None
            if pair.clip is not None and pair.clip_max is not None:
                ceiling, added = self._per_channel_ceiling(graph, pair)
            s = pair.scales
            self.pairs.append(
                EqualizedPair(
                    first=pair.first.node.name,
                    second=pair.second.node.name,
                    link=tuple(n.op_type for n in pair.link),
                    scale_min=float(s.min()),
                    scale_max=float(s.max()),
                    spread_before=pair.spread_before,
                    spread_after=_spread(pair.first.out_ranges()),
                    ceiling=ceiling,
                    added=added,
                )
            )

    def _per_channel_ceiling(self, graph: ir.Graph, pair: _Pair) -> tuple[str, str | None]:
        """Replace the pair's Clip by Relu (min 0) and Min with one ceiling per channel.
        Returns the Min node's name and that of the node added beside the Clip's name
        (the Min when a Relu takes the Clip's name), so that layer names stay as they were."""
        clip = pair.clip
        assert clip is not None and pair.clip_max is not None
        ceilings = pair.clip_max / pair.scales
        rank = 1 if pair.first.node.op_type == "Gemm" else len(pair.first.w.shape) - 1
        ceilings = ceilings.reshape((-1,) + (1,) * (rank - 1)).astype(np.float32)
        out = clip.outputs[0]
        name, x = clip.name, clip.inputs[0]
        values = {v.name for n in graph for v in n.outputs} | {v.name for v in graph.inputs}
        relu = None
        if pair.clip_min is not None:
            relu = ir.Node("", "Relu", [x])
            graph.insert_before(clip, relu)
            relu.outputs[0].name = unique_name(f"{out.name}_relu", values)
            relu.outputs[0].shape, relu.outputs[0].type = x.shape, x.type
            x = relu.outputs[0]
        bound = new_initializer(graph, f"{name}_ceilings", ceilings)
        minimum = ir.Node("", "Min", [x, bound])
        graph.insert_before(clip, minimum)
        new = minimum.outputs[0]
        value_name = out.name
        new.shape, new.type = out.shape, out.type
        out.replace_all_uses_with(new, replace_graph_outputs=True)
        graph.remove(clip, safe=True)
        new.name = value_name
        if relu is None:
            minimum.name = name
            return name, None
        relu.name = name
        minimum.name = unique_name(f"{name}_ceilings", {n.name for n in graph if n is not minimum})
        return minimum.name, minimum.name


def _clip_bounds(node: ir.Node) -> tuple[float | None, float | None] | None:
    """A Clip's constant (min, max), None for an absent bound; None when a bound is computed."""
    if "min" in node.attributes or "max" in node.attributes:  # opset < 11
        lo = node.attributes.get("min")
        hi = node.attributes.get("max")
        return (
            None if lo is None else float(lo.value),
            None if hi is None else float(hi.value),
        )
    bounds: list[float | None] = []
    for index in (1, 2):
        value = node.inputs[index] if len(node.inputs) > index else None
        if value is None:
            bounds.append(None)
            continue
        arr = const_array(value)
        if arr is None or arr.size != 1:
            return None
        bounds.append(float(arr.reshape(-1)[0]))
    return bounds[0], bounds[1]


def _in_ranges(layer: _Layer, channels: int) -> np.ndarray:
    """Largest |weight| reading each input channel of ``layer`` (Conv of any group, Gemm)."""
    w = np.abs(layer.w)
    if layer.node.op_type == "Gemm":
        axis = 1 - layer.out_axis
        return np.moveaxis(w, axis, 0).reshape(channels, -1).max(axis=1)
    group = int_attr(layer.node, "group", 1)
    per_group_in = w.shape[1]
    per_group_out = w.shape[0] // group
    # (group, out per group, in per group, k...) -> max over out and k, per (group, in)
    g = w.reshape(group, per_group_out, per_group_in, -1).max(axis=(1, 3))
    return g.reshape(channels)


def _scale_out(layer: _Layer, factor: np.ndarray) -> None:
    shape = [1] * layer.w.ndim
    shape[layer.out_axis] = -1
    layer.w = layer.w * factor.reshape(shape)
    if layer.b is not None:
        layer.b = layer.b * factor


def _scale_in(layer: _Layer, factor: np.ndarray) -> None:
    w = layer.w
    if layer.node.op_type == "Gemm":
        shape = [1, 1]
        shape[1 - layer.out_axis] = -1
        layer.w = w * factor.reshape(shape)
        return
    group = int_attr(layer.node, "group", 1)
    per_group_in = w.shape[1]
    per_group_out = w.shape[0] // group
    scaled = w.reshape(group, per_group_out, per_group_in, -1) * factor.reshape(group, 1, per_group_in, 1)
    layer.w = scaled.reshape(w.shape)
