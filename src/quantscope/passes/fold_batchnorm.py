"""Fold BatchNormalization into the Conv, ConvTranspose or Gemm before it.

For a per-channel scale ``s = gamma / sqrt(var + eps)`` (float64):

    W' = W * s   (broadcast along the output-channel axis of W; a ConvTranspose's
                  weights are (C_in, C_out / group, k...), its output channel
                  g * C_out / group + j)
    b' = (b - mean) * s + beta

computed in float64 and stored as float32. Each BatchNormalization that cannot
be folded stays in the graph as a float layer and ``notes`` says why.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ..ops import info
from ._util import const_array, float_attr, int_attr, new_initializer


class FoldBatchNormPass(InPlacePass):
    """Fold each foldable BatchNormalization into its producer.

    After the pass, ``folded`` maps each removed BatchNormalization's name to the
    name of the Conv/Gemm it was folded into, and ``notes`` explains each
    BatchNormalization left in place.
    """

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.folded: dict[str, str] = {}

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type != "BatchNormalization":
                continue
            reason = self._fold(graph, node)
            if reason is not None:
                self.notes.append(f"BatchNormalization {node.name!r} not folded: {reason}")
        return PassResult(model, bool(self.folded))

    def _fold(self, graph: ir.Graph, bn: ir.Node) -> str | None:
        """Fold ``bn`` into its producer; return None on success, else the reason."""
        x = bn.inputs[0]
        producer = x.producer() if x is not None else None
        if producer is None:
            return "its input is a graph input, not the output of a Conv, ConvTranspose or Gemm"
        transposed = producer.op_type == "ConvTranspose" and producer.domain in ("", "ai.onnx")
        if not transposed and not info(producer.op_type, producer.domain).takes_bias:
            return f"its input comes from {producer.op_type} {producer.name!r}, not a Conv, ConvTranspose or Gemm"
        if len(x.uses()) != 1 or x.is_graph_output():
            return (
                f"the output of {producer.op_type} {producer.name!r} is also used elsewhere, "
                "so folding would change that use"
            )
        if int_attr(bn, "training_mode", 0) != 0 or any(o.uses() for o in bn.outputs[1:]):
            return "it runs in training mode (running statistics are outputs)"
        params = [const_array(v) for v in bn.inputs[1:5]]
        if len(params) < 4 or any(p is None for p in params):
            return "its scale, bias, mean or variance is not a constant"
        weight = const_array(producer.inputs[1])
        if weight is None:
            return f"the weights of {producer.op_type} {producer.name!r} are not a constant"
        bias_value = producer.inputs[2] if len(producer.inputs) > 2 else None
        bias = const_array(bias_value)
        if bias_value is not None and bias is None:
            return f"the bias of {producer.op_type} {producer.name!r} is not a constant"

        gamma, beta, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
        scale = gamma / np.sqrt(var + float_attr(bn, "epsilon", 1e-5))
        w = weight.astype(np.float64)
        if producer.op_type == "Conv":
            out_axis = 0
            if w.shape[0] != scale.size:
                return f"it has {scale.size} channels but the Conv has {w.shape[0]} filters"
        elif transposed:  # weights (C_in, C_out / group, k...): output channel g * C_out/group + j
            group = int_attr(producer, "group", 1)
            if w.ndim < 3 or w.shape[0] % group or w.shape[1] * group != scale.size:
                return f"it has {scale.size} channels but the ConvTranspose has {w.shape[1] * group} outputs"
            per_in = np.repeat(np.arange(group), w.shape[0] // group)  # each input channel's group
            factor = scale.reshape(group, -1)[per_in]  # (C_in, C_out / group)
            w = w * factor.reshape(*factor.shape, *[1] * (w.ndim - 2))
        else:
            if int_attr(producer, "transA", 0) != 0 and w.ndim != 2:
                return "the Gemm has an unusual layout"
            out_axis = 0 if int_attr(producer, "transB", 0) else 1
            if w.shape[out_axis] != scale.size:
                return f"it has {scale.size} channels but the Gemm has {w.shape[out_axis]} outputs"
            w = w * float_attr(producer, "alpha", 1.0)
            if bias is not None:
                bias = bias * float_attr(producer, "beta", 1.0)
                if bias.size != scale.size:
                    return "the Gemm's bias is broadcast, not one value per output"
            producer.attributes["alpha"] = ir.AttrFloat32("alpha", 1.0)
            producer.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
        if transposed:
            new_w = w.astype(np.float32)
        else:
            shape = [1] * w.ndim
            shape[out_axis] = -1
            new_w = (w * scale.reshape(shape)).astype(np.float32)
        b = np.zeros(scale.size) if bias is None else bias.astype(np.float64).reshape(-1)
        new_b = ((b - mean) * scale + beta).astype(np.float32)

        producer.replace_input_with(1, new_initializer(graph, f"{producer.name}_W_folded", new_w))
        if len(producer.inputs) < 3:
            producer.resize_inputs(3)
        producer.replace_input_with(2, new_initializer(graph, f"{producer.name}_B_folded", new_b))

        out = bn.outputs[0]
        was_output = out.is_graph_output()
        out_name = out.name
        out.replace_all_uses_with(x, replace_graph_outputs=True)
        graph.remove(bn, safe=True)
        if was_output:
            x.name = out_name
        self.folded[bn.name] = producer.name
        return None
