"""Rewrite a Split with constant part sizes as one Slice per output.

PyTorch's dynamo exporter writes ``torch.chunk`` and ``torch.split`` (a ShuffleNetV2
channel split, GPT-2's query/key/value) as one ``Split`` node with several outputs.
A layer of a prepared network has one output, and ``Slice`` already is what the int8
emulation runs as data movement (the values taken, their grid kept) and what the FPGA
processor reads in place: output ``k`` of a Split along ``axis`` is exactly
``Slice(x, starts=[o_k], ends=[o_k + n_k], axes=[axis])``, with ``n_k`` the part sizes
and ``o_k`` their running sum. The part sizes come from the ``split`` input (opset 13
on) or attribute (before 13), or from ``num_outputs`` (opset 18) or the number of
outputs and the input's static size along ``axis``; a Split whose sizes are not known
before running is left as it is.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ._util import const_array, int_attr, new_initializer, unique_name


class SplitToSlicesPass(InPlacePass):
    """``Split(x)`` with outputs ``y_0..y_{n-1}`` -> ``Slice`` per used output, named
    ``{split}_{k}``; ``rewritten`` lists the Split node names."""

    def __init__(self) -> None:
        super().__init__()
        self.rewritten: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 13))
        names = {n.name for n in graph}
        for node in list(graph):
            if node.op_type != "Split" or node.domain not in ("", "ai.onnx") or not node.outputs:
                continue
            sizes = _part_sizes(node, opset)
            if sizes is None or len(sizes) != len(node.outputs):
                continue
            x = node.inputs[0]
            rank = len(x.shape) if x.shape is not None else None
            axis = int_attr(node, "axis", 0)
            if axis < 0:
                if rank is None:
                    continue
                axis += rank
            offset = 0
            for k, (out, size) in enumerate(zip(node.outputs, sizes)):
                start, offset = offset, offset + size
                if not out.uses() and not out.is_graph_output():
                    continue
                name = unique_name(f"{node.name}_{k}", names)
                names.add(name)
                if opset >= 10:
                    bounds = [
                        new_initializer(graph, f"{name}_{what}", np.array([v], np.int64))
                        for what, v in (("starts", start), ("ends", start + size), ("axes", axis))
                    ]
                    piece = ir.Node("", "Slice", [x, *bounds], name=name)
                else:
                    piece = ir.Node(
                        "",
                        "Slice",
                        [x],
                        attributes=[
                            ir.AttrInt64s("starts", [start]),
                            ir.AttrInt64s("ends", [start + size]),
                            ir.AttrInt64s("axes", [axis]),
                        ],
                        name=name,
                    )
                graph.insert_before(node, piece)
                new = piece.outputs[0]
                new.shape, new.type = out.shape, out.type
                out.replace_all_uses_with(new, replace_graph_outputs=True)
                new.name = out.name
            graph.remove(node, safe=True)
            self.rewritten.append(node.name)
        return PassResult(model, bool(self.rewritten))


def _part_sizes(node: ir.Node, opset: int) -> list[int] | None:
    """The sizes of the Split's parts along its axis, or None where they are not
    constant (or the input's size along the axis is needed and unknown)."""
    if opset < 13:
        attr = node.attributes.get("split")
        if attr is not None:
            return [int(v) for v in attr.as_ints()]
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        split = const_array(node.inputs[1])
        return None if split is None else [int(v) for v in split.reshape(-1)]
    x = node.inputs[0]
    axis = int_attr(node, "axis", 0)
    dims = list(x.shape) if x.shape is not None else None
    if dims is None or not -len(dims) <= axis < len(dims) or not isinstance(dims[axis], int):
        return None
    total = int(dims[axis])
    parts = int_attr(node, "num_outputs", len(node.outputs)) if opset >= 18 else len(node.outputs)
    if parts < 1:
        return None
    if opset < 18 or node.attributes.get("num_outputs") is None:
        if total % parts:
            return None
        return [total // parts] * parts
    chunk = -(-total // parts)  # ceil: the last part takes what is left
    sizes = [min(chunk, max(0, total - k * chunk)) for k in range(parts)]
    return sizes
