"""Layer geometry and costs: the :class:`~quantscope.fpga.cycles.LayerInfo` of each
hardware layer (shapes, kernel, strides, pads, FC sizes, its place in its leg) and
its :class:`~quantscope.fpga.cycles.LayerCost` from the cycle model."""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedModelError
from ...network import LayerKind, OptimizedLayer
from ..config import Module, ProcessorConfig
from ..cycles import MODULE_OF, LayerCost, LayerInfo, layer_cost
from .activations import Activations
from .memory import round_up
from .placement import LegLayers
from .weights import fc_matrix

__all__ = ["cost_legs", "layer_info"]


def _pairs(v: Any, default: tuple[int, int]) -> tuple[int, int]:
    if v is None:
        return default
    v = tuple(int(x) for x in v)
    return (v[0], v[-1]) if len(v) >= 1 else default


def layer_info(
    layer: OptimizedLayer, acts: Activations, config: ProcessorConfig, leg: int, first: bool, last: bool
) -> LayerInfo:
    """What the cycle model needs of ``layer``, the ``leg``-th leg's ``first`` / ``last``
    costed layer or not.

    Raises:
        UnsupportedModelError: unknown shapes, a convolution that is not 2-D, an FC
            layer over a multidimensional activation, an activation of the conv module
            or the adder above FeatureSizeLimit.
    """
    net = acts.network
    in_shapes = tuple(acts.chw(v, layer.name) for v in layer.inputs)
    out_shape = acts.chw(layer.output, layer.name)
    kw: dict[str, Any] = {}
    if layer.kind in (LayerKind.CONV, "MaxPool", "AveragePool"):
        attrs = net.node_attributes(layer.members[0])
        if layer.kind == LayerKind.CONV:
            wshape = net.constant(layer.weight).shape
            if len(wshape) != 4:
                raise UnsupportedModelError(
                    f"layer {layer.name!r}: only 2-D convolutions run on the conv module (weight shape {wshape})",
                    nodes=[(layer.name, "Conv")],
                )
            kernel = (int(wshape[2]), int(wshape[3]))
            kw["groups"] = int(attrs.get("group", 1))
        else:
            kernel = _pairs(attrs.get("kernel_shape"), (1, 1))
        pads = tuple(int(p) for p in attrs.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4:
            pads = (0, 0, 0, 0)
        kw.update(
            kernel=kernel,
            strides=_pairs(attrs.get("strides"), (1, 1)),
            pads=pads,
            dilations=_pairs(attrs.get("dilations"), (1, 1)),
        )
    if layer.kind == LayerKind.FC:
        fc_in, fc_out = fc_matrix(net, layer).shape
        c, h, w = in_shapes[0]
        if c * h * w != fc_in:
            raise UnsupportedModelError(
                f"layer {layer.name!r}: an FC layer must read a vector (or a flattened activation) of "
                f"{fc_in} elements, but its input {layer.inputs[0]!r} is {c}x{h}x{w}; the fc module does "
                "not run batched matrix products over extra dimensions.",
                nodes=[(layer.name, layer.op_types[0])],
            )
        kw.update(
            fc_in=fc_in,
            fc_out=fc_out,
            fc_in_padded=max(acts.padded_elements(layer.inputs[0]), round_up(fc_in, config.fc.thread_number)),
            fc_out_padded=round_up(fc_out, config.fc.thread_number),
        )
    info = LayerInfo(
        name=layer.name,
        label=layer.members[0],
        kind=layer.kind,
        in_shapes=in_shapes,
        out_shape=out_shape,
        leg=leg,
        leg_first=first,
        leg_last=last,
        **kw,
    )
    if MODULE_OF.get(layer.kind) in (Module.CONV, Module.ADDER):
        limit = config.conv.feature_size_limit
        for what, (c, h, w) in [("input", s) for s in in_shapes] + [("output", out_shape)]:
            if max(c, h, w) > limit:
                raise UnsupportedModelError(
                    f"layer {layer.name!r} ({layer.kind}) has an {what} activation of {c}x{h}x{w} (C x H x W); "
                    f"the conv module's FeatureSizeLimit is {limit} per dimension. Use a bitstream with a larger "
                    "FeatureSizeLimit or a smaller input.",
                    nodes=[(layer.name, layer.kind)],
                )
    return info


def cost_legs(
    legs: list[LegLayers], acts: Activations, config: ProcessorConfig
) -> tuple[dict[str, LayerInfo], list[LayerCost]]:
    """The :class:`LayerInfo` of every layer of the legs (by name) and the cost of
    each, in execution order (fused layers included, 0 cycles). An FC layer's cost
    sees the previous costed layer of its leg (weight prefetch)."""
    infos: dict[str, LayerInfo] = {}
    costs: list[LayerCost] = []
    for leg in legs:
        costed = leg.costed
        first = costed[0].name if costed else None
        last = costed[-1].name if costed else None
        prev: LayerCost | None = None
        for layer in leg.layers:
            info = layer_info(layer, acts, config, leg.leg.index, layer.name == first, layer.name == last)
            infos[layer.name] = info
            cost = layer_cost(info, config, prev)
            costs.append(cost)
            if not cost.fused:
                prev = cost
    return infos, costs
