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
from ..network import Network
from ..quantize.plan import QuantPlan

__all__ = ["check_per_channel", "per_channel_needs"]


def per_channel_needs(plan: QuantPlan | Network) -> dict[str, list[str]]:
    """``{"weights": [...], "ceilings": [...]}``: the int8 layers of ``plan`` with one
    weight exponent per output channel, and those with a ceiling per channel (a float
    :class:`~quantscope.Network`, not quantized yet: its layers with a ceiling per channel)."""
    if isinstance(plan, Network):
        network, weights, float_layers = plan, [], ()
    else:
        network, float_layers = plan.network, plan.float_layers
        weights = [name for name, (_, qp) in plan.weights.items() if qp.axis is not None and np.size(qp.scale) > 1]
    ceilings = []
    for layer in network.layers:
        if layer.name in float_layers:
            continue
        for node in layer.nodes:
            if node.op_type != "Min" or len(node.inputs) < 2:
                continue
            bound = node.inputs[1].const_value if node.inputs[1] is not None else None
            if bound is not None and bound.size > 1 and np.unique(bound.numpy()).size > 1:
                ceilings.append(layer.name)
    return {"weights": weights, "ceilings": ceilings}


def check_per_channel(plan: QuantPlan | Network, config) -> None:
    """Refuse a plan (or a float network, for estimates) with per-channel parameters on
    a processor without them.

    Raises:
        UnsupportedModelError: naming the layers, what they need, and what to do.
    """
    if getattr(config, "per_channel", False):
        return
    needs = per_channel_needs(plan)
    parts, ways = [], []
    if needs["weights"]:
        parts.append(
            f"{len(needs['weights'])} layer(s) have one weight exponent per output channel "
            f"({option('PowerOfTwo(per_channel=True)', '--per-channel')}: {_listing(needs['weights'])})"
        )
        ways.append(f"quantize per tensor ({option('drop per_channel=True', 'drop --per-channel')})")
    if needs["ceilings"]:
        parts.append(
            f"{len(needs['ceilings'])} layer(s) clip at a ceiling per channel, which cross-layer equalization "
            f"through their Relu6 left ({option('equalize=True', '--equalize')}: {_listing(needs['ceilings'])})"
        )
        ways.append(f"prepare without equalization ({option('equalize=False', 'drop --equalize')})")
    if not parts:
        return
    ways.append(
        option(
            "compile for a processor whose configuration has per-channel parameters "
            "(ProcessorConfig(..., per_channel=True), beyond MATLAB's)",
            "use a processor configuration with per-channel parameters from Python "
            "(ProcessorConfig(..., per_channel=True), beyond MATLAB's: no --bitstream preset has them)",
        )
    )
    remedy = "; or ".join(ways)
    raise UnsupportedModelError(
        f"the processor {config.name!r} applies one weight exponent per layer and one ceiling per clipped ReLU, "
        f"as MATLAB's deep-learning processor does, but {' and '.join(parts)}. {remedy[0].upper()}{remedy[1:]}.",
        nodes=[(name, "per-channel") for name in needs["weights"] + needs["ceilings"]],
    )


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
