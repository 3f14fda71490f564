"""Fold what is constant: nodes whose inputs are all constants, and the Shape of a
value whose shape is fully known, become initializers.

Exporters leave constant subgraphs in the graph: a weight transposed or reshaped at
run time (``Transpose(W)`` before a MatMul), shape arithmetic on static shapes, mask
tables built with ``Range``/``ConstantOfShape``. Folded, a MatMul with a transposed
constant weight is a fully connected layer with int8 weights, and the float segments
of the int8 emulation have less to compute. Each node is evaluated once with
``onnx.reference`` (the ONNX definition); random operators, operators of other
domains, nodes with subgraphs and results of more than 2**24 elements are left as
they are, and so is a node that produces a graph output.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx import helper, numpy_helper
from onnx_ir.passes import InPlacePass, PassResult

from ..ops import info
from ._util import new_initializer

__all__ = ["FoldConstantsPass"]

_MAX_ELEMENTS = 1 << 24


def _static_shape(value: ir.Value) -> tuple[int, ...] | None:
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return tuple(int(d) for d in value.shape)


def _evaluate(node: ir.Node, opset: int) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    inputs = [v for v in node.inputs if v is not None]
    proto = ir.serde.serialize_node(node)
    graph = helper.make_graph(
        [proto],
        "fold",
        [],
        [helper.make_empty_tensor_value_info(o.name) for o in node.outputs],
        [numpy_helper.from_array(v.const_value.numpy(), v.name) for v in inputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        return [np.asarray(a) for a in ReferenceEvaluator(model).run(None, {})]
    except Exception:  # an operator onnx.reference lacks or refuses: leave it to onnxruntime
        return None


class FoldConstantsPass(InPlacePass):
    """See the module docstring. ``folded`` lists the nodes replaced by constants."""

    def __init__(self) -> None:
        super().__init__()
        self.folded: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 17))
        graph_outputs = {id(v) for v in graph.outputs}
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or info(node.op_type).random or not node.outputs:
                continue
            if any(id(o) in graph_outputs for o in node.outputs):
                continue
            if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
                continue
            present = [v for v in node.inputs if v is not None]
            if node.op_type == "Shape" and _static_shape(node.inputs[0]) is not None:
                dims = np.array(_static_shape(node.inputs[0]), dtype=np.int64)
                start = node.attributes.get("start")
                end = node.attributes.get("end")
                results = [dims[start.as_int() if start else 0 : end.as_int() if end else len(dims)]]
            elif present and all(v.const_value is not None for v in present):
                results = _evaluate(node, opset)
                if results is None or sum(r.size for r in results) > _MAX_ELEMENTS:
                    continue
            else:
                continue
            for out, array in zip(node.outputs, results):
                folded = new_initializer(graph, f"{out.name}_folded", np.ascontiguousarray(array))
                out.replace_all_uses_with(folded)
            graph.remove(node, safe=True)
            self.folded.append(node.name)
        return PassResult(model, bool(self.folded))
