"""Bias absorption after cross-layer equalization (Nagel et al. 2019, section 4.1.2,
"Absorbing high biases"); docs/accuracy.md (3a)-(3c).

Equalization can leave a channel whose pre-activation ``x_i`` never falls below a
large positive value: the activation's range is then wide while most of it carries
nothing. Moving ``c_i`` out of the first layer's bias and into the next layer's,

    b1'_i = b1_i - c_i
    b2'   = b2 + W2 c          (Conv: b2'_o = b2_o + sum_{i, k} W2[o, i, k] c_i, within o's group)

leaves the network's function unchanged where the link lets the shift through:

- no activation (identity): ``W2 (x - c) + b2 + W2 c = W2 x + b2`` for any ``c``;
  ``c_i`` is the middle of channel ``i``'s range on the data, so that each channel
  is centred on 0 (its largest |value| halves for a one-sided channel);
- Relu: ``relu(x - c) = relu(x) - c`` where ``x >= c``: ``c_i = max(0, min x_i)``, the
  minimum over the calibration data, exact on every calibration sample (Nagel's
  ``beta - 3 gamma`` from batch normalization is not available after folding);
- Relu6 (equalization's ``Relu`` + per-channel ``Min``): the same, with the ceiling
  ``t_i`` becoming ``t_i - c_i`` and ``c_i <= t_i``.

The second layer must read the first's output only (equalization's pairs do) and, a
Conv, have no padding: a padded border stands for 0 before absorption and for
``c_i`` after it, so the outputs along the border would change. Such pairs (the
expansion -> depthwise pairs of MobileNetV2) are left as they are and ``notes`` says
so. Other links (LeakyRelu, PRelu, pooling, a Clip without a min of 0) are left too.

This module rewrites the graph given the measured per-channel ranges; measuring them
on data is :func:`quantscope.calibrate.absorb.absorb_biases`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ._util import const_array, float_attr, int_attr, int_list, new_initializer
from .equalize import EqualizedPair

__all__ = ["AbsorbedBias", "BiasTarget", "absorb_biases", "bias_targets"]


@dataclass(frozen=True)
class BiasTarget:
    """An equalized pair whose bias can be absorbed.

    Attributes:
        first, second: node names of the two layers.
        link: op types of the nodes between them: ``()``, ``("Relu",)`` or ``("Relu", "Min")``.
        value: name of the first layer's output (its pre-activation, ``(N, C, ...)``),
            whose per-channel minimum (and maximum) over the data sets ``c``.
        ceiling: name of the ``Min`` node holding the per-channel ceilings (Relu6), else None.
    """

    first: str
    second: str
    link: tuple[str, ...]
    value: str
    ceiling: str | None = None

    @property
    def identity(self) -> bool:
        return not self.link


@dataclass(frozen=True)
class AbsorbedBias:
    """One pair whose first layer's bias moved into the second layer's.

    Attributes:
        first, second: node names of the two layers.
        link: op types between them (``()``, ``("Relu",)``, ``("Relu", "Min")``).
        channels: channels with ``c_i != 0``; ``total``: the first layer's output channels.
        amount: the largest ``|c_i|`` moved, in the first layer's output units.
        range_before, range_after: the largest |value| of the first layer's activation
            (its output after the link) on the data, over all channels, before and
            after absorption.
    """

    first: str
    second: str
    link: tuple[str, ...]
    channels: int
    total: int
    amount: float
    range_before: float
    range_after: float

    def describe(self) -> str:
        via = f" through {'/'.join(self.link)}" if self.link else ""
        return (
            f"{self.first} -> {self.second}{via}: bias absorbed in {self.channels} of {self.total} channel(s), "
            f"up to {self.amount:.3g}; activation range {self.range_before:.3g} -> {self.range_after:.3g}"
        )


def bias_targets(model: ir.Model, pairs: list[EqualizedPair]) -> tuple[list[BiasTarget], list[str]]:
    """The equalized ``pairs`` of ``model`` whose bias can be absorbed, and a note for
    each that cannot (its link, or a padded second Conv)."""
    nodes = {node.name: node for node in model.graph}
    targets: list[BiasTarget] = []
    notes: list[str] = []
    padded: list[str] = []
    for pair in pairs:
        first, second = nodes.get(pair.first), nodes.get(pair.second)
        if first is None or second is None:
            continue
        link: list[ir.Node] = []
        value = first.outputs[0]
        ok = True
        while True:
            uses = value.uses()
            if len(uses) != 1 or value.is_graph_output():
                ok = False
                break
            node = uses[0].node
            if node is second:
                break
            link.append(node)
            value = node.outputs[0]
        ops = tuple(n.op_type for n in link)
        # no activation, a Relu, or a Relu then the Min of the ceilings equalization
        # made of a Relu6 (a Clip from 0)
        relu = len(link) >= 1 and link[0].op_type == "Relu"
        relu6 = relu and len(link) == 2 and link[1].op_type == "Min"
        if not ok or not (not link or (relu and len(link) == 1) or relu6):
            why = "its link " + ("/".join(ops) or "changed") if ok else "a value read twice"
            notes.append(
                f"bias of {pair.first} not absorbed into {pair.second}: {why} does not let a shift through "
                "(absorption needs no activation, Relu or Relu6)"
            )
            continue
        if second.op_type == "Conv" and _padded(second):
            padded.append(f"{pair.first} -> {pair.second}")
            continue
        if second.op_type == "Gemm" and len(second.inputs) > 2 and second.inputs[2] is not None:
            if float_attr(second, "beta", 1.0) == 0.0:
                continue  # its bias is ignored
        ceiling = link[1].name if relu6 else None
        targets.append(BiasTarget(pair.first, pair.second, ops, first.outputs[0].name, ceiling))
    if padded:
        notes.append(
            f"bias not absorbed into {len(padded)} padded convolution(s) ({', '.join(padded[:3])}"
            f"{', ...' if len(padded) > 3 else ''}): their zero padding would stand for the moved amount, "
            "changing the outputs along the border"
        )
    return targets, notes


def _padded(node: ir.Node) -> bool:
    auto = node.attributes.get("auto_pad")
    if auto is not None and str(auto.value) not in ("NOTSET", "VALID"):
        return True
    pads = int_list(node, "pads", 99)
    return bool(pads) and any(p != 0 for p in pads)


def amounts(target: BiasTarget, lo: np.ndarray, hi: np.ndarray, ceilings: np.ndarray | None) -> np.ndarray:
    """``c`` (float64, one per channel) for ``target`` from its pre-activation's
    per-channel minimum ``lo`` and maximum ``hi`` on the data (shape ``(C,)`` each)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if target.identity:
        c = (lo + hi) / 2.0
    else:
        c = np.maximum(lo, 0.0)
        if ceilings is not None:
            c = np.minimum(c, np.maximum(ceilings, 0.0))
    c[~np.isfinite(c)] = 0.0
    return c


def absorb_biases(
    model: ir.Model,
    targets: list[BiasTarget],
    ranges: dict[str, tuple[np.ndarray, np.ndarray]],
) -> list[AbsorbedBias]:
    """Absorb the biases of ``targets`` in ``model``, in place.

    Args:
        model: the equalized model the targets come from (:func:`bias_targets`).
        targets: the pairs to absorb.
        ranges: each target's ``value`` -> (per-channel minimum, maximum) of the
            first layer's pre-activation on the data, float arrays of shape ``(C,)``.

    Returns:
        one :class:`AbsorbedBias` per pair where some ``c_i != 0``.
    """
    graph = model.graph
    nodes = {node.name: node for node in graph}
    done: list[AbsorbedBias] = []
    for target in targets:
        if target.value not in ranges:
            continue
        lo, hi = (np.asarray(a, np.float64).reshape(-1) for a in ranges[target.value])
        first, second = nodes[target.first], nodes[target.second]
        minimum = nodes[target.ceiling] if target.ceiling else None
        ceilings = None
        if minimum is not None:
            t = const_array(minimum.inputs[1])
            if t is None:
                continue
            ceilings = np.broadcast_to(np.asarray(t, np.float64).reshape(-1), lo.shape).copy()
        c = amounts(target, lo, hi, ceilings)
        if not np.any(c != 0):
            continue
        if not _add_to_bias(graph, first, -c) or not _add_to_bias(graph, second, _through(second, c)):
            continue
        if minimum is not None and ceilings is not None:
            old = const_array(minimum.inputs[1])
            assert old is not None
            new = (ceilings - c).reshape(old.shape).astype(old.dtype)
            minimum.replace_input_with(1, new_initializer(graph, f"{minimum.name}_absorbed", new))
        if target.identity:
            before = np.maximum(np.abs(lo), np.abs(hi))
            after = np.maximum(np.abs(lo - c), np.abs(hi - c))
        else:
            top = np.maximum(hi, 0.0) if ceilings is None else np.clip(hi, 0.0, ceilings)
            before, after = top, np.maximum(top - c, 0.0)
        done.append(
            AbsorbedBias(
                first=target.first,
                second=target.second,
                link=target.link,
                channels=int(np.count_nonzero(c)),
                total=int(c.size),
                amount=float(np.abs(c).max()),
                range_before=float(before.max()),
                range_after=float(after.max()),
            )
        )
    return done


def _through(second: ir.Node, c: np.ndarray) -> np.ndarray:
    """What a constant input ``c`` (one per input channel) adds to each output channel
    of ``second``: ``W2 c`` (Gemm, with its ``alpha / beta``), or the sum over kernel
    positions and the input channels of each group (Conv)."""
    w = const_array(second.inputs[1])
    assert w is not None
    w = np.asarray(w, np.float64)
    if second.op_type == "Gemm":
        wc = (w @ c) if int_attr(second, "transB", 0) else (w.T @ c)
        return wc * float_attr(second, "alpha", 1.0) / float_attr(second, "beta", 1.0)
    group = int_attr(second, "group", 1)
    out, per_in = w.shape[0], w.shape[1]
    per_out = out // group
    k = w.reshape(group, per_out, per_in, -1).sum(axis=3)  # (group, out per group, in per group)
    return np.einsum("goi,gi->go", k, c.reshape(group, per_in)).reshape(out)


def _add_to_bias(graph: ir.Graph, node: ir.Node, delta: np.ndarray) -> bool:
    """Add ``delta`` (one per output channel) to ``node``'s output through its bias
    (a zero bias is added where there is none). False when the bias cannot take it."""
    w = const_array(node.inputs[1])
    assert w is not None
    value = node.inputs[2] if len(node.inputs) > 2 else None
    scale = 1.0
    if node.op_type == "Gemm":
        scale = float_attr(node, "beta", 1.0)
        if value is not None and scale == 0.0:
            return False
        if value is None:
            scale = 1.0
    if value is None:
        b = np.zeros(delta.shape, np.float64)
        dtype = w.dtype
    else:
        arr = const_array(value)
        if arr is None or arr.size != delta.size:
            return False
        b, dtype = np.asarray(arr, np.float64).reshape(-1), arr.dtype
    new = (b + delta / scale).astype(dtype)
    if value is None and node.op_type == "Gemm":
        node.attributes.pop("beta", None)  # a new C: beta 1
    bias = new_initializer(graph, f"{node.name}_B_absorbed", new)
    if len(node.inputs) > 2:
        node.replace_input_with(2, bias)
    else:
        node.resize_inputs(3)
        node.replace_input_with(2, bias)
    return True
