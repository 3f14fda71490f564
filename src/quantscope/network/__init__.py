"""Load a network and prepare it: the graph and its optimized layers."""

from .load import load_model
from .network import Network, OptimizedLayer, prepare
from .ops import SUPPORTED_OPS, check_supported

__all__ = ["Network", "OptimizedLayer", "SUPPORTED_OPS", "check_supported", "load_model", "prepare"]
