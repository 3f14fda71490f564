"""Activations by lookup table: Sigmoid, Tanh, HardSigmoid, HardSwish and Swish (SiLU)
on integers (docs/int8.md (16)).

An integer input of ``b`` bits takes one of ``2^b`` values, so the activation on the
integer grid is a table of ``2^b`` outputs (256 for int8): entry ``i`` is the input
``q = qmin + i`` dequantized, passed through the real function in float64 and
quantized to the output's parameters with the plan's rounding and saturation
(eq. (2)). The emulation applies the table; the FPGA processor stores the same table
in its weight image and its activation block looks the outputs up, so both give the
same integers by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import ConfigurationError
from ..quantize.numerics import Rounding, Saturation
from ..quantize.plan import QParams

__all__ = ["FUNCTIONS", "apply_table", "layer_attributes", "lookup_table", "plan_tables"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -700.0, 700.0)))


def _hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(alpha * x + beta, 0.0, 1.0)


#: The real function of each activation, ``f(x, attributes) -> y`` in float64, with
#: ONNX's attribute defaults (HardSigmoid alpha 0.2, beta 0.5; Swish alpha 1).
FUNCTIONS: dict[str, Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]] = {
    "Sigmoid": lambda x, a: _sigmoid(x),
    "Tanh": lambda x, a: np.tanh(x),
    "HardSigmoid": lambda x, a: _hard_sigmoid(x, float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))),
    "HardSwish": lambda x, a: x * _hard_sigmoid(x, 1.0 / 6.0, 0.5),
    "Swish": lambda x, a: x * _sigmoid(float(a.get("alpha", 1.0)) * x),
}


def lookup_table(
    kind: str,
    attributes: Mapping[str, Any],
    in_qp: QParams,
    out_qp: QParams,
    rounding: Rounding,
    saturation: Saturation,
) -> np.ndarray:
    """The ``2^bits`` outputs (integers of ``out_qp``) of activation ``kind`` for every
    integer input of ``in_qp``, input ``qmin`` first."""
    fn = FUNCTIONS.get(str(kind))
    if fn is None:
        raise ConfigurationError(f"no lookup table for {kind}; tables exist for {', '.join(FUNCTIONS)}")
    if in_qp.axis is not None or np.ndim(in_qp.zero_point) or in_qp.bits > 16:
        raise ConfigurationError(f"a lookup table needs a per-tensor input of at most 16 bits ({kind})")
    q = np.arange(in_qp.qmin, in_qp.qmax + 1, dtype=np.int64)
    y = fn(in_qp.dequantize(q).astype(np.float64), attributes)
    return out_qp.quantize(y, rounding, saturation)


def apply_table(q: np.ndarray, table: np.ndarray, in_qp: QParams) -> np.ndarray:
    """``table`` looked up at the integers ``q`` (of ``in_qp``)."""
    return table[q.astype(np.int64) - in_qp.qmin]


def layer_attributes(network, layer) -> dict[str, Any]:
    """The attributes of a table activation layer's function (none for an ``x * Sigmoid(x)``
    group; the node's for a single-node layer)."""
    return {} if layer.kind == "Swish" and len(layer.members) > 1 else dict(network.node_attributes(layer.members[0]))


def plan_tables(plan) -> dict[str, np.ndarray]:
    """The table of every activation the plan computes by lookup table, keyed by layer
    name (the tables the emulation applies and the FPGA weight images hold)."""
    tables: dict[str, np.ndarray] = {}
    for layer in plan.network.layers:
        if str(layer.kind) not in FUNCTIONS or not plan.is_int(layer) or layer.name in plan.float_layers:
            continue
        in_qp = plan.activations.get(layer.inputs[0]) if layer.inputs else None
        out_qp = plan.activations.get(layer.output)
        if in_qp is None or out_qp is None:
            continue
        attrs = layer_attributes(plan.network, layer)
        tables[layer.name] = lookup_table(layer.kind, attrs, in_qp, out_qp, plan.rounding, plan.saturation)
    return tables
