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

A folded constant has exactly the shape, rank included, and the type onnxruntime
computes for the value it replaces: a 0-D scalar stays 0-D (the shape arithmetic of
TorchScript exports, ``Shape -> Gather -> Cast/Div/Ceil -> Unsqueeze -> Concat``,
depends on it), and a result that disagrees with the value's known shape or type
is not folded.
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


def _agrees(value: ir.Value, array: np.ndarray) -> bool:
    """Whether ``array`` can stand for ``value``: the same element type and the same
    rank and static dimensions as far as the graph knows them."""
    try:
        dtype = ir.DataType.from_numpy(array.dtype)
    except Exception:  # a numpy type with no ONNX element type
        return False
    if value.type is not None and isinstance(value.type, ir.TensorType) and value.type.dtype != dtype:
        return False
    if value.shape is not None:
        if len(value.shape) != array.ndim:
            return False
        if any(isinstance(d, int) and d != n for d, n in zip(value.shape, array.shape)):
            return False
    return True


def _c_contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` in C order with its shape kept (``np.ascontiguousarray`` makes a 0-D
    scalar 1-D, which would change the rank of the value it folds)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")


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
            results = [_c_contiguous(r) for r in results]
            if len(results) != len(node.outputs) or not all(map(_agrees, node.outputs, results)):
                continue  # leave it to onnxruntime rather than fold a value of another shape or type
            for out, array in zip(node.outputs, results):
                folded = new_initializer(graph, f"{out.name}_folded", array)
                out.replace_all_uses_with(folded)
            graph.remove(node, safe=True)
            self.folded.append(node.name)
        return PassResult(model, bool(self.folded))
