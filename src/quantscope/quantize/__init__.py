"""Quantization: numerics, schemes, the plan of integer types, QDQ export.

The quantized network that runs the plan is :class:`quantscope.simulate.QuantizedNetwork`."""

from .export import save_params, save_qdq, to_qdq
from .numerics import ExponentMethod, FloatScale, Overflow, PowerOfTwo, Rounding, Saturation, cpu_int8_saturates
from .plan import QParams, QuantPlan, Target, make_plan

__all__ = [
    "ExponentMethod",
    "FloatScale",
    "Overflow",
    "PowerOfTwo",
    "QParams",
    "QuantPlan",
    "Rounding",
    "Saturation",
    "Target",
    "cpu_int8_saturates",
    "make_plan",
    "save_params",
    "save_qdq",
    "to_qdq",
]
