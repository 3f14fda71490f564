"""Fold a constant Add after a Conv into the Conv's bias.

Paddle2ONNX (and other exporters) write a convolution's bias as ``Conv`` without
bias followed by ``Add(y, c)`` with ``c`` a constant of shape ``(1, M, 1, 1)``,
``(M, 1, 1)`` or one value. Left alone, the Add is a layer of its own: the int8
network quantizes the Conv's output before the bias is added, runs the Add (and the
activation after it) apart, and the Conv has no int32 bias for bias correction.
Folded, ``b' = b + c`` (float64, stored as float32): the same float function, and
the Conv + activation become one layer as with any other exporter.

The Add is folded only where the Conv's output has no other use and ``c`` broadcasts
to one value per output channel; anything else stays as it is.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ._util import const_array, new_initializer


class FoldBiasAddPass(InPlacePass):
    """Fold each ``Conv -> Add(constant)`` into the Conv's bias. After the pass,
    ``folded`` maps each removed Add's name to its Conv's name."""

    def __init__(self) -> None:
        super().__init__()
        self.folded: dict[str, str] = {}

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type == "Add" and node.domain in ("", "ai.onnx") and len(node.inputs) == 2:
                self._fold(graph, node)
        return PassResult(model, bool(self.folded))

    def _fold(self, graph: ir.Graph, add: ir.Node) -> None:
        for side in (0, 1):
            y, c_value = add.inputs[side], add.inputs[1 - side]
            conv = y.producer() if y is not None else None
            if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
                continue
            c = const_array(c_value)
            weight = const_array(conv.inputs[1]) if len(conv.inputs) > 1 else None
            if c is None or weight is None or c.dtype.kind != "f":
                continue
            if len(y.uses()) != 1 or y.is_graph_output():
                continue
            per_channel = _per_channel(c, weight.shape[0], weight.ndim)
            if per_channel is None:
                continue
            bias_value = conv.inputs[2] if len(conv.inputs) > 2 else None
            bias = const_array(bias_value)
            if bias_value is not None and bias is None:
                continue
            b = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64).reshape(-1)
            new_b = (b + per_channel).astype(np.float32)
            if len(conv.inputs) < 3:
                conv.resize_inputs(3)
            conv.replace_input_with(2, new_initializer(graph, f"{conv.name}_B_folded", new_b))
            out = add.outputs[0]
            was_output, out_name = out.is_graph_output(), out.name
            out.replace_all_uses_with(y, replace_graph_outputs=True)
            graph.remove(add, safe=True)
            if was_output:
                y.name = out_name
            self.folded[add.name] = conv.name
            return


def _per_channel(c: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``c`` as ``(channels,)`` float64 where, added to a Conv output of ``rank`` axes
    ``(N, M, spatial...)``, it adds one value per output channel and changes no shape;
    else None."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (channels,)).copy()
