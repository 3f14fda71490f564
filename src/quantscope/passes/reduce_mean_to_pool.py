"""Rewrite a ReduceMean over every spatial axis as GlobalAveragePool.

PyTorch exports ``AdaptiveAvgPool2d(1)`` and ``x.mean((2, 3))`` as ``ReduceMean``
over axes 2 and 3; that is exactly ``GlobalAveragePool`` (followed by a Flatten when
``keepdims=0``), which the int8 kernels and the FPGA processor run.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult


def _axes(node: ir.Node) -> list[int] | None:
    """The node's constant axes (attribute before opset 18, second input after), or None."""
    attr = node.attributes.get("axes")
    if attr is not None:
        return list(attr.as_ints())
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        const = node.inputs[1].const_value
        return None if const is None else [int(a) for a in const.numpy().reshape(-1)]
    return None


class ReduceMeanToPoolPass(InPlacePass):
    """``ReduceMean(x, axes = 2..rank-1)`` on ``(N, C, D1, ...)`` -> ``GlobalAveragePool``
    (+ ``Flatten`` when ``keepdims=0``). ``rewritten`` lists the node names; ``notes``
    says why a spatial-looking ReduceMean was left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.rewritten: list[str] = []
        self.notes: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx"):
                continue
            x = node.inputs[0]
            rank = len(x.shape) if x.shape is not None else None
            axes = _axes(node)
            if rank is None or rank < 3 or axes is None:
                continue
            if sorted(a % rank for a in axes) != list(range(2, rank)):
                continue
            keepdims = node.attributes.get("keepdims")
            keep = True if keepdims is None else bool(keepdims.as_int())
            if node.attributes.get("noop_with_empty_axes") is not None and not axes:
                continue
            pool = ir.Node("", "GlobalAveragePool", [x], name=node.name)
            graph.insert_before(node, pool)
            last = pool
            pool.outputs[0].type = x.type
            pool.outputs[0].shape = ir.Shape([x.shape[0], x.shape[1]] + [1] * (rank - 2))
            if not keep:  # (N, C, 1, ..., 1) -> (N, C)
                pool.outputs[0].name = f"{node.outputs[0].name}_pooled"
                last = ir.Node(
                    "", "Flatten", [pool.outputs[0]], attributes=[ir.AttrInt64("axis", 1)], name=f"{node.name}_flatten"
                )
                graph.insert_before(node, last)
            old, new = node.outputs[0], last.outputs[0]
            new.name = old.name
            new.shape, new.type = old.shape, old.type
            old.replace_all_uses_with(new, replace_graph_outputs=True)
            graph.remove(node, safe=True)
            self.rewritten.append(node.name)
        return PassResult(model, bool(self.rewritten))
