"""Quantization: numerics, schemes, the plan of integer types, the quantized network, QDQ export."""

from .export import save_params, save_qdq, to_qdq
from .numerics import FloatScale, Overflow, PowerOfTwo, Rounding, Saturation, cpu_int8_saturates
from .plan import QParams, QuantPlan, make_plan
from .quantized import QuantizedNetwork, quantize_network

__all__ = [
    "FloatScale",
    "Overflow",
    "PowerOfTwo",
    "QParams",
    "QuantPlan",
    "QuantizedNetwork",
    "Rounding",
    "Saturation",
    "cpu_int8_saturates",
    "make_plan",
    "quantize_network",
    "save_params",
    "save_qdq",
    "to_qdq",
]
