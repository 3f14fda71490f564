"""The cycle model: one table of cost functions keyed by layer kind.

:data:`COSTS` maps a layer kind (``OptimizedLayer.kind``: ``"conv"``, ``"fc"`` or an
ONNX op type) to a plain function ``cost(info, config, prev) -> LayerCost``. A kind
absent from the table is not something the processor can run: :func:`layer_cost`
raises :class:`~quantscope.errors.UnsupportedModelError`, it never counts it as 0.
Kinds the processor implements without a pass of their own (activations after a
pooling or an add, Concat written in place, Flatten/Reshape as addressing) have an
entry, :func:`fused`, that says so explicitly: 0 cycles and no profile row.

The formulas, every constant and where its value comes from are in
``docs/fpga.md`` ("Cycle model"); the constants below carry the same names.
Cycles never depend on the clock frequency (bandwidth and latency are per cycle),
so halving the clock doubles the seconds and nothing else.

Shapes are ``(C, H, W)`` (the batch dropped), sizes in elements unless named
``*_bytes``; cycles are processor clock cycles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UnsupportedModelError
from ..network import LayerKind
from ..ops import OPS
from .config import Module, ProcessorConfig

__all__ = [
    "COSTS",
    "CONV_WINDOW",
    "FC_LANES_PER_THREAD",
    "FC_PREFETCH_BUFFER_BYTES",
    "FRAME_OVERHEAD_CYCLES",
    "ADDER_LANES",
    "LAYER_OVERHEAD_CYCLES",
    "MODULE_OF",
    "NETWORK_OVERHEAD_CYCLES",
    "TILE_OVERHEAD_CYCLES",
    "LayerCost",
    "LayerInfo",
    "Tiling",
    "conv_cycles",
    "conv_tiling",
    "elementwise_cycles",
    "fc_cycles",
    "fused",
    "global_pool_cycles",
    "layer_cost",
    "pool_cycles",
]

# ---------------------------------------------------------------- named constants
#: Fixed cycles of every hardware layer pass (instruction decode, module start,
#: pipeline fill and drain). Fitted on the published MNIST profile: dense_7 (160) and
#: dense_8 (123) are overhead + 64 and + 32 input cycles; 94 gives 158 and 126.
LAYER_OVERHEAD_CYCLES = 94
#: Fixed cycles per on-chip tile (descriptor fetch, window-buffer refill), plus one
#: DDR latency per tile. Assumption (no published figure isolates it).
TILE_OVERHEAD_CYCLES = 32
#: Network row = sum of the layer rows + this. Published: "the layers plus 2".
NETWORK_OVERHEAD_CYCLES = 2
#: Per-frame cycles outside the layers (start handshake, input/result descriptors):
#: published Total Latency 18,121 - Network 17,653 = 468 for one MNIST frame.
FRAME_OVERHEAD_CYCLES = 468
#: A conv thread computes one CONV_WINDOW x CONV_WINDOW window (9 MACs) per cycle;
#: larger kernels take ceil(k/3)^2 passes. Design choice (MATLAB's conv kernel is 3x3).
CONV_WINDOW = 3
#: Output lanes per FC thread per cycle for single (multiplied by 4 for int8, which
#: packs four values per 32-bit lane). Fitted: dense_7 - dense_8 = 37 cycles for 32
#: more inputs (one input per cycle when the outputs fit the lanes), and 4 x 8 = 32
#: lanes hold dense_7's 32 outputs in one pass.
FC_LANES_PER_THREAD = 8
#: On-chip buffer into which the next FC layer's weights are prefetched while the
#: current one runs (weights + biases of the next layer must fit). Assumption: 16 KiB
#: (dense_7's 8,320 B and dense_8's 1,320 B fit, as the published rows imply).
FC_PREFETCH_BUFFER_BYTES = 16 * 1024
#: Elements per cycle of the adder module for single (x4 for int8). Assumption.
ADDER_LANES = 4

#: Module that runs each kind (:class:`~quantscope.fpga.Module`: conv module, fc,
#: adder); fused kinds are absent. The operators' modules come from the op table
#: (``quantscope.ops``).
MODULE_OF: dict[str, Module] = {
    LayerKind.CONV: Module.CONV,
    LayerKind.FC: Module.FC,
    **{op: Module(i.fpga_module) for op, i in OPS.items() if i.fpga_module is not None},
}


@dataclass(frozen=True)
class LayerInfo:
    """What the cycle model needs to know of one hardware layer.

    Attributes:
        name: the optimized layer's name; label: its row label (first member's name).
        kind: ``OptimizedLayer.kind``.
        in_shapes: ``(C, H, W)`` of each activation input (real channels).
        out_shape: ``(C, H, W)`` of the output.
        kernel, strides, dilations: ``(h, w)``; pads ``(top, left, bottom, right)``;
        groups: convolution groups.
        fc_in, fc_out: real input and output features of an FC layer.
        fc_in_padded, fc_out_padded: the same in the DDR/weight-image layout.
        leg: index of the leg; leg_first / leg_last: first / last costed layer of it.
    """

    name: str
    label: str
    kind: str
    in_shapes: tuple[tuple[int, int, int], ...]
    out_shape: tuple[int, int, int]
    kernel: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1
    fc_in: int = 0
    fc_out: int = 0
    fc_in_padded: int = 0
    fc_out_padded: int = 0
    leg: int = 0
    leg_first: bool = True
    leg_last: bool = True

    @property
    def module(self) -> Module | None:
        return MODULE_OF.get(self.kind)


@dataclass(frozen=True)
class Tiling:
    """How a layer is cut to fit the module's on-chip memories.

    ``rows_per_tile`` output rows per tile, ``row_tiles`` tiles down the height,
    ``in_splits`` input-channel slices, ``out_splits`` output-channel slices;
    ``tiles`` = their product (1 when everything fits)."""

    rows_per_tile: int = 1
    row_tiles: int = 1
    in_splits: int = 1
    out_splits: int = 1

    @property
    def tiles(self) -> int:
        return self.row_tiles * self.in_splits * self.out_splits


@dataclass(frozen=True)
class LayerCost:
    """The cycles of one layer and how they arise.

    ``cycles`` = ``overhead_cycles + max(compute_cycles, transfer_cycles)`` for every
    costed kind (double buffering overlaps compute and DDR transfers); fused layers
    have ``fused=True`` and 0 everywhere.
    """

    name: str
    label: str
    kind: str
    module: Module | None
    cycles: int
    compute_cycles: int = 0
    transfer_cycles: int = 0
    transfer_bytes: int = 0
    overhead_cycles: int = 0
    tiling: Tiling = field(default_factory=Tiling)
    fused: bool = False
    prefetched: bool = False
    leg: int = 0


CostFn = Callable[[LayerInfo, ProcessorConfig, "LayerCost | None"], LayerCost]


def _ceil(a: float, b: float) -> int:
    return int(math.ceil(a / b))


def _transfer_cycles(nbytes: float, config: ProcessorConfig) -> int:
    return _ceil(nbytes, config.ddr_bandwidth_bytes_per_cycle) if nbytes > 0 else 0


def _too_small(info: LayerInfo, what: str, need: int, have: int, field_name: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"layer {info.name!r} ({info.kind}) does not fit the processor: {what} needs {need} elements "
        f"but {field_name} holds {have}. Use a bitstream with a larger {field_name} or a smaller input.",
        nodes=[(info.name, info.kind)],
    )


# ---------------------------------------------------------------- tiling
def conv_tiling(info: LayerInfo, config: ProcessorConfig, channel_independent: bool = False) -> Tiling:
    """Cut a conv-module layer so each tile fits the conv input and output memories.

    On chip an activation occupies its real channels (padding is DDR address space,
    never buffered or transferred). With ``cap_in = prod(InputMemorySize)`` and
    ``cap_out = prod(OutputMemorySize)``:

    - an input tile holds ``kh_eff`` rows (at least) of ``c_in`` channels of width
      ``W``; if ``kh_eff * W * C`` exceeds ``cap_in`` the input channels are split
      into slices of ``floor(cap_in / (kh_eff * W))``;
    - an output row of ``Wo * C_out`` elements must fit ``cap_out``, else the output
      channels are split into slices of ``floor(cap_out / Wo)``;
    - rows per tile: the most output rows whose input rows ``(r-1)*sh + kh_eff`` and
      output rows fit both memories.

    ``channel_independent`` (pooling): input and output slices coincide.
    Raises :class:`UnsupportedModelError` when one row of one channel does not fit.
    """
    c_in, h_in, w_in = info.in_shapes[0]
    c_out, h_out, w_out = info.out_shape
    kh = (info.kernel[0] - 1) * info.dilations[0] + 1
    sh = info.strides[0]
    cap_in, cap_out = config.conv.input_capacity, config.conv.output_capacity
    if kh * w_in > cap_in:
        raise _too_small(info, f"{kh} input rows of width {w_in}", kh * w_in, cap_in, "conv InputMemorySize")
    if w_out > cap_out:
        raise _too_small(info, f"one output row of width {w_out}", w_out, cap_out, "conv OutputMemorySize")
    c_in_slice = min(c_in, cap_in // (kh * w_in))
    c_out_slice = min(c_out, cap_out // w_out)
    if channel_independent:
        c_in_slice = c_out_slice = min(c_in_slice, c_out_slice)
    in_splits = _ceil(c_in, c_in_slice)
    out_splits = 1 if channel_independent else _ceil(c_out, c_out_slice)
    rows_in = cap_in // (w_in * c_in_slice)
    r_from_in = (rows_in - kh) // sh + 1
    r_from_out = cap_out // (w_out * c_out_slice)
    rows = max(1, min(h_out, r_from_in, r_from_out))
    return Tiling(rows_per_tile=rows, row_tiles=_ceil(h_out, rows), in_splits=in_splits, out_splits=out_splits)


def _input_rows_read(info: LayerInfo, tiling: Tiling) -> int:
    """Input rows fetched from DDR over all row tiles (halo rows counted again per tile;
    zero-padding rows are generated on chip, not read)."""
    _, h_in, _ = info.in_shapes[0]
    _, h_out, _ = info.out_shape
    kh = (info.kernel[0] - 1) * info.dilations[0] + 1
    sh = info.strides[0]
    total = 0
    for t in range(tiling.row_tiles):
        rows = min(tiling.rows_per_tile, h_out - t * tiling.rows_per_tile)
        total += (rows - 1) * sh + kh
    return max(h_in, min(total - info.pads[0] - info.pads[2], tiling.row_tiles * h_in))


# ---------------------------------------------------------------- cost functions
def _finish(
    info: LayerInfo, config: ProcessorConfig, compute: int, nbytes: float, tiling: Tiling, **extra
) -> LayerCost:
    transfer = _transfer_cycles(nbytes, config)
    overhead = LAYER_OVERHEAD_CYCLES + tiling.tiles * (TILE_OVERHEAD_CYCLES + config.ddr_latency_cycles)
    return LayerCost(
        name=info.name,
        label=info.label,
        kind=info.kind,
        module=info.module,
        cycles=overhead + max(compute, transfer),
        compute_cycles=compute,
        transfer_cycles=transfer,
        transfer_bytes=int(nbytes),
        overhead_cycles=overhead,
        tiling=tiling,
        leg=info.leg,
        **extra,
    )


def conv_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Convolution on the conv module.

    compute = Ho * Wo * groups * ceil(Cin_g / P) * ceil(Cout_g / P) * ceil(kh/3) * ceil(kw/3),
    with P = sqrt(ConvThreadNumber): P x P threads, each a 3x3 window per cycle, i.e.
    MACs / (ConvThreadNumber * 9) when the channels are multiples of P and k = 3.

    transfer bytes = input rows read * W * Cin * b * out_splits      (input, halo per tile)
                   + (weights * b + Cout * 4) * row_tiles            (filters per row tile)
                   + Ho * Wo * Cout * b                              (output)
    """
    c_in, _, w_in = info.in_shapes[0]
    c_out, h_out, w_out = info.out_shape
    g = info.groups
    p = config.conv.thread_side
    passes = _ceil(info.kernel[0], CONV_WINDOW) * _ceil(info.kernel[1], CONV_WINDOW)
    compute = h_out * w_out * g * _ceil(c_in // g, p) * _ceil(c_out // g, p) * passes
    tiling = conv_tiling(info, config)
    b = config.bytes_per_element
    weight_bytes = c_out * (c_in // g) * info.kernel[0] * info.kernel[1] * b + c_out * config.data_type.bias_bytes
    nbytes = (
        _input_rows_read(info, tiling) * w_in * c_in * b * tiling.out_splits
        + weight_bytes * tiling.row_tiles
        + h_out * w_out * c_out * b
    )
    return _finish(info, config, compute, nbytes, tiling)


def pool_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """MaxPool / AveragePool on the conv module: each of the T threads reduces one
    channel's 3x3 window per cycle.

    compute = Ho * Wo * ceil(C / T) * ceil(kh/3) * ceil(kw/3);
    transfer bytes = input rows read * W * C * b + Ho * Wo * C * b.
    """
    c, _, w_in = info.in_shapes[0]
    _, h_out, w_out = info.out_shape
    passes = _ceil(info.kernel[0], CONV_WINDOW) * _ceil(info.kernel[1], CONV_WINDOW)
    compute = h_out * w_out * _ceil(c, config.conv.thread_number) * passes
    tiling = conv_tiling(info, config, channel_independent=True)
    b = config.bytes_per_element
    nbytes = _input_rows_read(info, tiling) * w_in * c * b + h_out * w_out * c * b
    return _finish(info, config, compute, nbytes, tiling)


def global_pool_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """GlobalAveragePool / GlobalMaxPool on the conv module: T threads, 9 elements of
    one channel per thread per cycle.

    compute = ceil(H * W / 9) * ceil(C / T); tiles = ceil(H * W * C / cap_in);
    transfer bytes = (H * W * C + C) * b.
    """
    c, h, w = info.in_shapes[0]
    compute = _ceil(h * w, CONV_WINDOW * CONV_WINDOW) * _ceil(c, config.conv.thread_number)
    tiles = _ceil(h * w * c, config.conv.input_capacity)
    b = config.bytes_per_element
    return _finish(info, config, compute, (h * w * c + c) * b, Tiling(row_tiles=tiles))


def elementwise_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Add / Mul / Sum of activations on the adder module.

    compute = ceil(C * H * W / (ADDER_LANES * pack)), pack = 4 for int8, 1 for single;
    tiles = ceil(H / adder InputMemorySize rows);
    transfer bytes = (inputs + 1) * C * H * W * b.
    """
    c, h, w = info.out_shape
    elems = c * h * w
    compute = _ceil(elems, ADDER_LANES * config.data_type.pack)
    rows = min(config.adder.input_memory_size, config.adder.output_memory_size)
    tiles = _ceil(h, rows)
    nbytes = (len(info.in_shapes) + 1) * elems * config.bytes_per_element
    return _finish(info, config, compute, nbytes, Tiling(rows_per_tile=rows, row_tiles=tiles))


def fc_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Fully connected layer on the fc module: weights streamed from DDR.

    compute = fc_in * ceil(fc_out / (FCThreadNumber * FC_LANES_PER_THREAD * pack)):
    one input element per cycle, broadcast to all output lanes.

    stream = ceil((fc_in * fc_out * b + fc_out * 4) / bandwidth): the real weights
    (padding rows and columns are DDR space only, never read). The first layer of a
    leg also reads the leg's input vector and the last writes its output vector.

    Prefetch: when the previous costed layer is an FC layer of the same leg and these
    weights fit FC_PREFETCH_BUFFER_BYTES, they were fetched while it ran; only
    ``max(0, stream - previous cycles)`` remains exposed and no DDR latency is paid.

    Tiles: ceil(padded in / fc InputMemorySize) * ceil(padded out / fc OutputMemorySize);
    every tile beyond the first costs TILE_OVERHEAD_CYCLES + latency, and the input
    vector is read again for every output tile beyond the first.

    cycles = LAYER_OVERHEAD + (tiles - 1) * (TILE_OVERHEAD + latency)
             + [latency unless prefetched] + max(compute, exposed stream + vector I/O).
    """
    b = config.bytes_per_element
    lanes = config.fc.thread_number * FC_LANES_PER_THREAD * config.data_type.pack
    compute = info.fc_in * _ceil(info.fc_out, lanes)
    weight_bytes = info.fc_in * info.fc_out * b + info.fc_out * config.data_type.bias_bytes
    in_tiles = _ceil(info.fc_in_padded, config.fc.input_memory_size)
    out_tiles = _ceil(info.fc_out_padded, config.fc.output_memory_size)
    tiling = Tiling(row_tiles=in_tiles, out_splits=out_tiles)
    vector_bytes = (info.fc_in * b if info.leg_first else 0) + (info.fc_out * b if info.leg_last else 0)
    vector_bytes += (out_tiles - 1) * info.fc_in * b
    stream = _transfer_cycles(weight_bytes, config)
    prefetched = (
        prev is not None
        and prev.kind == LayerKind.FC
        and prev.leg == info.leg
        and not info.leg_first
        and weight_bytes <= FC_PREFETCH_BUFFER_BYTES
    )
    if prefetched:
        exposed = max(0, stream - prev.cycles)  # type: ignore[union-attr]
        latency = 0
    else:
        exposed = stream
        latency = config.ddr_latency_cycles
    transfer = exposed + _transfer_cycles(vector_bytes, config)
    overhead = LAYER_OVERHEAD_CYCLES + (tiling.tiles - 1) * (TILE_OVERHEAD_CYCLES + config.ddr_latency_cycles) + latency
    return LayerCost(
        name=info.name,
        label=info.label,
        kind=info.kind,
        module=Module.FC,
        cycles=overhead + max(compute, transfer),
        compute_cycles=compute,
        transfer_cycles=transfer,
        transfer_bytes=int((0 if prefetched else weight_bytes) + vector_bytes),
        overhead_cycles=overhead,
        tiling=tiling,
        prefetched=prefetched,
        leg=info.leg,
    )


def fused(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """A layer the processor implements without a pass of its own: an activation after
    a pooling/add (applied on the producer's output path), Concat (producers write
    into slices of one buffer), Flatten/Reshape/Squeeze/Unsqueeze (addressing only),
    Identity/Dropout. 0 cycles, no profile row."""
    return LayerCost(name=info.name, label=info.label, kind=info.kind, module=None, cycles=0, fused=True, leg=info.leg)


#: Cost function of each ``OpInfo.fpga_cost`` family of the op table.
COST_FAMILIES: dict[str, CostFn] = {
    "pool": pool_cycles,
    "global_pool": global_pool_cycles,
    "elementwise": elementwise_cycles,
    "fused": fused,
}

#: THE table: layer kind -> cost function (the conv and fc layers, and every operator
#: of the op table with an ``fpga_cost``). Kinds absent here are unsupported.
COSTS: dict[str, CostFn] = {
    LayerKind.CONV: conv_cycles,
    LayerKind.FC: fc_cycles,
    **{op: COST_FAMILIES[i.fpga_cost] for op, i in OPS.items() if i.fpga_cost is not None},
}


def layer_cost(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Look ``info.kind`` up in :data:`COSTS` and cost the layer; an absent kind raises
    :class:`UnsupportedModelError` naming the layer (never a silent 0)."""
    fn = COSTS.get(info.kind)
    if fn is None:
        raise UnsupportedModelError(
            f"layer {info.name!r} is a {info.kind}, which the deep-learning processor cannot run "
            f"(supported in hardware: {', '.join(sorted(COSTS))}). Remove it, move it after the "
            "network's output, or run that part of the network on the CPU.",
            nodes=[(info.name, info.kind)],
        )
    return fn(info, config, prev)
