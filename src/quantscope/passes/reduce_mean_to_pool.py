"""Rewrite a ReduceMean over every spatial axis as GlobalAveragePool.

PyTorch exports ``AdaptiveAvgPool2d(1)`` and ``x.mean((2, 3))`` as ``ReduceMean``
over axes 2 and 3; that is exactly ``GlobalAveragePool`` (followed by a Flatten when
``keepdims=0``), which the int8 kernels and the FPGA processor run.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ._util import int_attr, int_list


class ReduceMeanToPoolPass(InPlacePass):
    """``ReduceMean(x, axes = 2..rank-1)`` on ``(N, C, D1, ...)`` -> ``GlobalAveragePool``
    (+ ``Flatten`` when ``keepdims=0``). ``rewritten`` lists the node names."""

    def __init__(self) -> None:
        super().__init__()
        self.rewritten: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx"):
                continue
            x = node.inputs[0]
            rank = len(x.shape) if x.shape is not None else None
            axes = int_list(node, "axes", 1)
            if rank is None or rank < 3 or axes is None or sorted(a % rank for a in axes) != list(range(2, rank)):
                continue
            keep = bool(int_attr(node, "keepdims", 1))
            pool = ir.Node("", "GlobalAveragePool", [x], name=node.name)
            graph.insert_before(node, pool)
            pool.outputs[0].type = x.type
            pool.outputs[0].shape = ir.Shape([x.shape[0], x.shape[1]] + [1] * (rank - 2))
            last = pool
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
