"""Helpers shared by the graph passes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The constant numpy array behind ``value`` (initializer), or None."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def new_initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` as a new initializer of ``graph`` under a unique name."""
    existing = {v.name for v in graph.initializers.values()}
    for node in graph:
        existing.update(o.name for o in node.outputs)
    base, k = name, 1
    while name in existing:
        k += 1
        name = f"{base}_{k}"
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value


def int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.value)


def float_attr(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return default if attr is None else float(attr.value)


def int_list(node: ir.Node, name: str, position: int) -> list[int] | None:
    """An int-list parameter that older opsets give as attribute ``name`` and newer
    ones as the constant input at ``position`` (axes, pads...); None when absent or
    not constant."""
    attr = node.attributes.get(name)
    if attr is not None:
        return [int(v) for v in attr.as_ints()]
    arr = const_array(node.inputs[position]) if len(node.inputs) > position else None
    return None if arr is None else [int(v) for v in arr.reshape(-1)]


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``...: the first not in ``taken``."""
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name
