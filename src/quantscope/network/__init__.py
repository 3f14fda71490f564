"""Load a network and prepare it: the graph and its optimized layers."""

from .load import load_model
from .network import Inputs, LayerKind, Network, OptimizedLayer, prepare

__all__ = ["Inputs", "LayerKind", "Network", "OptimizedLayer", "load_model", "prepare"]
