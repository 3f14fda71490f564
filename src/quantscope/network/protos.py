"""Small helpers on ONNX protos shared by the stages."""

from __future__ import annotations

import onnx

__all__ = ["node_reads"]


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph (If/Loop/Scan body) reads from the scopes around it."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        used.update(n for n in node.input if n)
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                used |= _outer_names(sub)
        defined.update(node.output)
    return used - defined


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Every value name ``node`` reads: its inputs and its subgraphs' outer names."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            names.extend(sorted(_outer_names(sub)))
    return names
