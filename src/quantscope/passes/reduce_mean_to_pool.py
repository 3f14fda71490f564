"""Rewrite a ReduceMean over every spatial axis, and a pool whose one window is
larger than its input, as a global pool.

PyTorch exports ``AdaptiveAvgPool2d(1)`` and ``x.mean((2, 3))`` as ``ReduceMean``
over axes 2 and 3; that is exactly ``GlobalAveragePool`` (followed by a Flatten when
``keepdims=0``), which the int8 kernels and the FPGA processor run.

Hugging Face's EfficientNet pools its 4x4 (or 7x7) map with ``AveragePool(kernel=1280,
stride=1280, ceil_mode=1)``: one window, clipped to the input, so the mean of every
value, as onnxruntime computes it. It is rewritten as ``GlobalAveragePool``
(``MaxPool`` likewise as ``GlobalMaxPool``): the int8 kernels take windows inside the
padded input only, and onnxruntime's int8 AveragePool computes such a window
differently from its float one (a QDQ export of the original pool lost 40 dB).
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult

from ..ops import GLOBAL_POOL_OF
from ._util import int_attr, int_list

#: A kernel (and stride) at least this large on an axis of unknown size is larger than
#: any feature map (Hugging Face's EfficientNet pools with kernel 1280, ceil_mode).
_HUGE = 256


class ReduceMeanToPoolPass(InPlacePass):
    """``ReduceMean(x, axes = 2..rank-1)`` on ``(N, C, D1, ...)`` -> ``GlobalAveragePool``
    (+ ``Flatten`` when ``keepdims=0``). ``rewritten`` lists the node names."""

    def __init__(self) -> None:
        super().__init__()
        self.rewritten: list[str] = []

    def call(self, model: ir.Model) -> PassResult:
        graph = model.graph
        for node in list(graph):
            if node.op_type in GLOBAL_POOL_OF and node.domain in ("", "ai.onnx"):
                self._one_window(graph, node)
                continue
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

    def _one_window(self, graph: ir.Graph, node: ir.Node) -> None:
        """``node`` -> its global pool where its one window, clipped to the input, is the
        whole input: no pads, a kernel larger than the input on some axis and one output
        position per axis (``ceil((in - k) / s) + 1 == 1`` with ``ceil_mode``); with no
        pads the average divides by the input's size whatever ``count_include_pad``
        says. An axis of unknown size counts as fitting when its kernel and stride are
        both at least :data:`_HUGE` (a feature map that large does not occur): that is
        such a pool for every size it can run at."""
        x = node.inputs[0]
        if len(node.outputs) != 1 or x is None or x.shape is None or len(x.shape) < 3:
            return
        spatial = list(x.shape)[2:]
        kernel = int_list(node, "kernel_shape", 99)
        if kernel is None or len(kernel) != len(spatial):
            return
        nd = len(spatial)
        strides = int_list(node, "strides", 99) or [1] * nd
        pads = int_list(node, "pads", 99) or [0] * (2 * nd)
        dilations = int_list(node, "dilations", 99) or [1] * nd
        auto_pad = node.attributes.get("auto_pad")
        if auto_pad is not None and auto_pad.value not in ("NOTSET", "VALID", ""):
            return
        if any(pads) or any(d != 1 for d in dilations):
            return
        ceil_mode = int_attr(node, "ceil_mode", 0)
        larger = False
        for k, n, s in zip(kernel, spatial, strides):
            if not isinstance(n, int):
                if not (ceil_mode and k >= _HUGE and s >= k):
                    return
                larger = True
                continue
            span = n - k
            out = (-(-span // s) if ceil_mode else span // s) + 1
            if out != 1 or n <= 0:
                return
            larger = larger or k > n
        if not larger:
            return
        pool = ir.Node("", GLOBAL_POOL_OF[node.op_type], [x], name=node.name)
        graph.insert_before(node, pool)
        old, new = node.outputs[0], pool.outputs[0]
        new.name = old.name
        new.type = old.type if old.type is not None else x.type
        new.shape = ir.Shape([x.shape[0], x.shape[1]] + [1] * nd)
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        graph.remove(node, safe=True)
        self.rewritten.append(node.name)
