"""Load a network and prepare it: the graph and its optimized layers."""

from ..ops import OPS, OpInfo, check_not_quantized
from .load import load_model
from .network import Inputs, LayerKind, Network, OptimizedLayer, prepare

__all__ = [
    "Inputs",
    "LayerKind",
    "Network",
    "OPS",
    "OpInfo",
    "OptimizedLayer",
    "check_not_quantized",
    "load_model",
    "prepare",
]
