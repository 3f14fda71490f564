"""The int8 simulator: the reference kernels (the definition), the fast kernels, the network engine."""

from .engine import IntTensor, Simulator

__all__ = ["IntTensor", "Simulator"]
