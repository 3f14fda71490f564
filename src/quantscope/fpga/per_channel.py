"""What the processor must support for a quantized network's per-channel parameters.

MATLAB's deep-learning processor, which quantscope's models, applies one weight
exponent per layer and one ceiling per clipped ReLU. Two options of quantscope go
beyond it: power-of-two weights with one exponent per output channel
(``PowerOfTwo(per_channel=True)``, ``--per-channel``) and, after cross-layer
equalization through a Relu6 (``prepare(..., equalize=True)``, ``--equalize``), one
ceiling per channel (docs/accuracy.md (3), (6)). A processor configuration says
whether its conv and fc modules hold such per-channel parameters
(:attr:`~quantscope.fpga.ProcessorConfig.per_channel`; no preset does); the FPGA
workflow refuses a network that needs them on a processor that has none, and says
which layers need what.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedModelError, option
from ..quantize.plan import QuantPlan

__all__ = ["check_per_channel", "per_channel_needs"]


def per_channel_needs(plan: QuantPlan) -> dict[str, list[str]]:
    """``{"weights": [...], "ceilings": [...]}``: the int8 layers of ``plan`` with one
    weight exponent per output channel, and those with a ceiling per channel."""
    network = plan.network
    weights = [name for name, (_, qp) in plan.weights.items() if qp.axis is not None and np.size(qp.scale) > 1]
    ceilings = []
    for layer in network.layers:
        if layer.name in plan.float_layers:
            continue
        for node in layer.nodes:
            if node.op_type != "Min" or len(node.inputs) < 2:
                continue
            bound = node.inputs[1].const_value if node.inputs[1] is not None else None
            if bound is not None and bound.size > 1 and np.unique(bound.numpy()).size > 1:
                ceilings.append(layer.name)
    return {"weights": weights, "ceilings": ceilings}


def check_per_channel(plan: QuantPlan, config) -> None:
    """Refuse a plan with per-channel parameters on a processor without them.

    Raises:
        UnsupportedModelError: naming the layers, what they need, and what to do.
    """
    if getattr(config, "per_channel", False):
        return
    needs = per_channel_needs(plan)
    parts = []
    if needs["weights"]:
        parts.append(
            f"{len(needs['weights'])} layer(s) have one weight exponent per output channel "
            f"({option('PowerOfTwo(per_channel=True)', '--per-channel')}: {_listing(needs['weights'])})"
        )
    if needs["ceilings"]:
        parts.append(
            f"{len(needs['ceilings'])} layer(s) clip at a ceiling per channel, which cross-layer equalization "
            f"through their Relu6 left ({option('prepare(..., equalize=True)', '--equalize')}: "
            f"{_listing(needs['ceilings'])})"
        )
    if not parts:
        return
    flags = " and ".join(flag for flag, k in (("--per-channel", "weights"), ("--equalize", "ceilings")) if needs[k])
    raise UnsupportedModelError(
        f"the processor {config.name!r} applies one weight exponent per layer and one ceiling per clipped ReLU, "
        f"as MATLAB's deep-learning processor does, but {' and '.join(parts)}. "
        + option(
            "Quantize per tensor (drop per_channel=True), prepare without equalization, or compile for a processor "
            "whose configuration has per-channel parameters (ProcessorConfig(..., per_channel=True), beyond "
            "MATLAB's).",
            f"Drop {flags} "
            "(the presets have no per-channel parameters; a configuration with them, beyond MATLAB's, is a "
            "Python ProcessorConfig(..., per_channel=True)).",
        ),
        nodes=[(name, "per-channel") for name in needs["weights"] + needs["ceilings"]],
    )


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
