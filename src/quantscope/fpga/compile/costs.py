"""Layer geometry and costs: the :class:`~quantscope.fpga.cycles.LayerInfo` of each
hardware layer (shapes, kernel, strides, pads, FC sizes, its place in its leg) and
its :class:`~quantscope.fpga.cycles.LayerCost` from the cycle model."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...errors import UnsupportedModelError, option
from ...network import LayerKind, OptimizedLayer
from ...ops import ops_with
from ..config import Module, ProcessorConfig
from ..cycles import (
    CONV_WEIGHT_BUFFER_BYTES,
    COSTS,
    MODULE_OF,
    LayerCost,
    LayerInfo,
    conv_cycles,
    conv_transpose_cycles,
    filter_bytes,
    layer_cost,
    pool_cycles,
    resize_cycles,
)
from .activations import Activations
from .memory import round_up
from .placement import LegLayers, is_fused, row_label
from .weights import fc_matrix

__all__ = ["cost_legs", "layer_info", "prefetch_filters"]


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
    windowed = COSTS.get(layer.kind) in (conv_cycles, pool_cycles, conv_transpose_cycles)
    if windowed:
        attrs = net.node_attributes(layer.members[0])
        if layer.kind == LayerKind.CONV or COSTS.get(layer.kind) is conv_transpose_cycles:
            wvalue = layer.nodes[0].inputs[1] if layer.kind != LayerKind.CONV else None
            if wvalue is not None and wvalue.const_value is None:
                raise UnsupportedModelError(
                    f"layer {layer.name!r}: the processor needs constant {layer.kind} weights",
                    nodes=[(layer.name, layer.kind)],
                )
            wshape = net.constant(layer.weight).shape if wvalue is None else wvalue.const_value.shape
            if len(wshape) != 4:
                raise UnsupportedModelError(
                    f"layer {layer.name!r}: only 2-D convolutions run on the conv module (weight shape {wshape})"
                    + (
                        ": export a 1-D convolution as a 2-D one with a kernel of height 1 (nn.Conv2d on input "
                        "(N, C, 1, L)), or quantize for the CPU target"
                        if len(wshape) == 3
                        else ""
                    ),
                    nodes=[(layer.name, layer.op_types[0])],
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
    if COSTS.get(layer.kind) is resize_cycles:
        kw["scales"] = _resize_scales(layer, net, in_shapes[0], out_shape)
    if layer.kind in CHANNEL_KINDS:
        _check_channel_axis(layer, in_shapes, out_shape)
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
        label=row_label(layer),
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


#: Layers the processor runs by addressing parts of an activation in place (channels only).
CHANNEL_KINDS = ops_with(fpga_channels=True)


def _cpu() -> str:
    return option("target='cpu'", "--target cpu")


def _check_channel_axis(layer: OptimizedLayer, in_shapes, out_shape) -> None:
    """Concat, Slice and Split run in place only along the channels: every input and the
    output have the same height and width."""
    if any(s[1:] != out_shape[1:] for s in in_shapes):
        raise UnsupportedModelError(
            f"layer {layer.name!r} ({layer.kind}) joins or cuts activations along their height or width "
            f"({', '.join('x'.join(map(str, s)) for s in in_shapes)} -> {'x'.join(map(str, out_shape))}); "
            "the processor writes and reads parts of an activation in place along the channels only. Cut or "
            "join along the channels instead (or crop with the convolution's padding), or quantize for the cpu "
            f"target ({_cpu()}) instead",
            nodes=[(layer.name, layer.kind)],
        )


def _resize_scales(layer: OptimizedLayer, net, in_shape, out_shape) -> tuple[int, int]:
    """The integer ``(h, w)`` factors of a nearest Resize; anything else is unsupported."""
    attrs = net.node_attributes(layer.members[0])
    mode = attrs.get("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    (c, h, w), (co, ho, wo) = in_shape, out_shape
    if mode != "nearest" or co != c or ho % h or wo % w:
        raise UnsupportedModelError(
            f"layer {layer.name!r}: the conv module resizes by nearest neighbour with integer factors; this "
            f"Resize is {mode} from {c}x{h}x{w} to {co}x{ho}x{wo}. To run it on the processor, export the "
            "upsampling as nearest with an integer factor (nn.Upsample(scale_factor=2, mode='nearest')) or as a "
            "ConvTranspose (the processor runs transposed convolutions), and fine-tune; or run the network on the "
            f"cpu target ({_cpu()}), where every Resize runs",
            nodes=[(layer.name, layer.kind)],
        )
    return (ho // h, wo // w)


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
        leg_infos = [
            layer_info(layer, acts, config, leg.leg.index, layer.name == first, layer.name == last)
            for layer in leg.layers
        ]
        if leg.leg.module is Module.CONV:
            leg_infos = prefetch_filters(leg_infos, config)
        prev: LayerCost | None = None
        for info in leg_infos:
            infos[info.name] = info
            cost = layer_cost(info, config, prev)
            costs.append(cost)
            if not cost.fused:
                prev = cost
    return infos, costs


def prefetch_filters(leg: list[LayerInfo], config: ProcessorConfig) -> list[LayerInfo]:
    """The conv leg's layers with the weight-buffer prefetch marked: while a costed
    layer runs, the filters (or table) of the next costed layer that has some are
    fetched (when they fit CONV_WEIGHT_BUFFER_BYTES); that layer then starts without
    waiting for them (docs/fpga.md)."""
    out = list(leg)
    costed = [i for i, info in enumerate(out) if not is_fused(info.kind)]
    for here, there in zip(costed, costed[1:]):
        nbytes = filter_bytes(out[there], config)
        if 0 < nbytes <= CONV_WEIGHT_BUFFER_BYTES:
            out[here] = dataclasses.replace(out[here], prefetch_bytes=nbytes)
            out[there] = dataclasses.replace(out[there], weights_prefetched=True)
    return out
