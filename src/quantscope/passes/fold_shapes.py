"""Fold the shape computations that feed a Reshape into a constant shape.

Older PyTorch exports write ``x.view(x.size(0), -1)`` as
``Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))``: the target shape is
computed at run time from the batch size. The int8 kernels and the FPGA compiler
need it as a constant. ONNX's ``Reshape`` reads a ``0`` as "copy this dimension of
the input", so a shape whose entries are constants, static dimensions, or the
input's own dimension at the same position folds to a constant (``[0, -1]`` here)
that means the same for every batch size.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ..ops import info
from ._util import const_array, int_attr, int_list, new_initializer

#: An entry of a shape vector: a known int, or ("dim", value, axis) for a symbolic dim.
_Entry = int | tuple


def _entries(value: ir.Value, depth: int = 0) -> list[_Entry] | _Entry | None:
    """The symbolic content of a small int64 shape tensor: a list (1-D) or one entry
    (a scalar), or None when it cannot be followed."""
    arr = const_array(value)
    if arr is not None:
        arr = np.asarray(arr)
        if arr.dtype.kind not in "iu" or arr.ndim > 1:
            return None
        return int(arr) if arr.ndim == 0 else [int(v) for v in arr]
    node = value.producer()
    if node is None or depth > 16 or node.domain not in ("", "ai.onnx"):
        return None
    op = node.op_type
    if op == "Shape":
        x = node.inputs[0]
        if x.shape is None:
            return None
        dims = [d if isinstance(d, int) else ("dim", x, i) for i, d in enumerate(x.shape)]
        start = node.attributes.get("start")
        end = node.attributes.get("end")
        return dims[start.as_int() if start else 0 : end.as_int() if end else len(dims)]
    if info(op).copies_values:
        return _entries(node.inputs[0], depth + 1)
    if op == "Gather":
        data, idx = _entries(node.inputs[0], depth + 1), const_array(node.inputs[1])
        axis = node.attributes.get("axis")
        if not isinstance(data, list) or idx is None or (axis is not None and axis.as_int() != 0):
            return None
        try:
            picked = [data[int(i)] for i in idx.reshape(-1)]
        except IndexError:
            return None
        return picked[0] if idx.ndim == 0 else picked
    if op == "Unsqueeze":
        inner = _entries(node.inputs[0], depth + 1)
        return (
            [inner]
            if inner is not None and not isinstance(inner, list) and int_list(node, "axes", 1) in ([0], [-1])
            else None
        )
    if op == "Squeeze":
        inner = _entries(node.inputs[0], depth + 1)
        return inner[0] if isinstance(inner, list) and len(inner) == 1 else None
    if op == "Concat":
        axis = node.attributes.get("axis")
        if axis is None or axis.as_int() not in (0, -1):
            return None
        out: list[_Entry] = []
        for v in node.inputs:
            part = _entries(v, depth + 1)
            if not isinstance(part, list):
                return None
            out.extend(part)
        return out
    return None


class FoldReshapeShapesPass(InPlacePass):
    """Replace a computed Reshape shape by the constant it always equals (see the
    module docstring). ``folded`` lists the Reshape nodes rewritten."""

    def __init__(self) -> None:
        super().__init__()
        self.folded: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
                continue
            if const_array(node.inputs[1]) is not None:
                continue
            if int_attr(node, "allowzero", 0):
                continue
            entries = _entries(node.inputs[1])
            if not isinstance(entries, list):
                continue
            data = node.inputs[0]
            shape: list[int] = []
            for i, e in enumerate(entries):
                if isinstance(e, int):
                    shape.append(e)
                elif e[1] is data and e[2] == i:
                    shape.append(0)  # copy the input's own (symbolic) dimension i
                else:
                    break
            else:
                # shapes after it are re-inferred once all passes ran (run_prepare_passes)
                node.replace_input_with(
                    1, new_initializer(graph, f"{node.name}_shape", np.array(shape, dtype=np.int64))
                )
                self.folded.append(node.name)
        return PassResult(model, bool(self.folded))
