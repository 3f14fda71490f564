"""The int8 simulator: the reference kernels (the definition), the fast kernels, the
network engine, and the quantized network that runs a plan."""

from .bias_correction import correct_biases
from .engine import FastEngine, IntTensor, Kernels, ReferenceEngine, Simulator
from .gptq import compensate_weights
from .quantized import QuantizedNetwork, quantize_network

__all__ = [
    "FastEngine",
    "IntTensor",
    "Kernels",
    "QuantizedNetwork",
    "ReferenceEngine",
    "Simulator",
    "compensate_weights",
    "correct_biases",
    "quantize_network",
]
