"""Give every node a unique, non-empty name (layer names are node names)."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult


class NameNodesPass(InPlacePass):
    """Name unnamed nodes ``<OpType>_<k>`` and make duplicate names unique with a suffix."""

    def call(self, model: ir.Model) -> PassResult:
        seen: set[str] = set()
        modified = False
        counters: dict[str, int] = {}
        for node in model.graph:
            name = node.name
            if not name or name in seen:
                base = name or node.op_type
                k = counters.get(base, 0)
                while True:
                    k += 1
                    candidate = f"{base}_{k}"
                    if candidate not in seen:
                        break
                counters[base] = k
                node.name = candidate
                modified = True
            seen.add(node.name)
        return PassResult(model, modified)
