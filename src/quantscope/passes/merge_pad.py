"""Merge a constant zero Pad into the Conv or AveragePool after it.

Some exporters write padding as a node of its own: torch at opset 9 exports
``AvgPool2d(padding=1, count_include_pad=True)`` as ``Pad`` + ``AveragePool``, and
TensorFlow converters put a ``Pad`` before a ``VALID`` convolution. A zero Pad on
the spatial axes only is the same as the consumer's own ``pads`` (for an average
pool, when it counts the padding), which the int8 kernels and the FPGA processor run.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ..ops import info
from ._util import const_array, int_attr, int_list


def _zero_constant(node: ir.Node) -> bool:
    """A constant-mode Pad whose value is 0, on every axis (no ``axes`` input)."""
    mode = node.attributes.get("mode")
    if mode is not None and mode.as_string() != "constant":
        return False
    if len(node.inputs) > 3 and node.inputs[3] is not None:  # axes (opset 18): pads of some axes only
        return False
    value = node.attributes.get("value")  # before opset 11
    if value is not None:
        return value.as_float() == 0.0
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        const = const_array(node.inputs[2])
        return const is not None and bool(np.all(const == 0))
    return True


class MergePadPass(InPlacePass):
    """``Pad(x, zeros on the spatial axes) -> Conv / AveragePool(count_include_pad=1)``
    becomes the consumer with those pads added. ``merged`` lists the Pad nodes removed."""

    def __init__(self) -> None:
        super().__init__()
        self.merged: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type != "Pad" or node.domain not in ("", "ai.onnx") or not _zero_constant(node):
                continue
            pads = int_list(node, "pads", 1)
            out = node.outputs[0]
            users = [u for u, _ in out.uses()]
            if pads is None or len(pads) % 2 or len(users) != 1 or out in graph.outputs:
                continue
            rank = len(pads) // 2
            begin, end = pads[:rank], pads[rank:]
            if rank < 3 or any(begin[:2]) or any(end[:2]) or min(pads) < 0:
                continue  # only spatial, non-negative padding
            user = users[0]
            if not info(user.op_type, user.domain).merges_zero_pad or user.inputs[0] is not out:
                continue
            old = user.attributes.get("pads")
            if user.op_type == "AveragePool":
                if not int_attr(user, "count_include_pad", 0) and old is not None and any(old.as_ints()):
                    continue  # its own padding is not counted, the Pad's zeros are: not one pads list
            auto_pad = user.attributes.get("auto_pad")
            if auto_pad is not None and auto_pad.as_string() not in ("NOTSET", ""):
                continue
            spatial = rank - 2
            current = list(old.as_ints()) if old is not None else [0] * (2 * spatial)
            merged = [a + b for a, b in zip(current, begin[2:] + end[2:])]
            user.attributes["pads"] = ir.AttrInt64s("pads", merged)
            if user.op_type == "AveragePool":
                user.attributes["count_include_pad"] = ir.AttrInt64("count_include_pad", 1)
            user.replace_input_with(0, node.inputs[0])
            graph.remove(node, safe=True)
            self.merged.append(node.name)
        return PassResult(model, bool(self.merged))
