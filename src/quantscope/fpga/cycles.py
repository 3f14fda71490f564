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

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import UnsupportedModelError
from ..network import LayerKind
from ..ops import OPS
from .config import Module, ProcessorConfig

__all__ = [
    "COSTS",
    "CONV_WEIGHT_BUFFER_BYTES",
    "CONV_WEIGHT_BYTES_PER_CYCLE",
    "CONV_WINDOW",
    "FC_LANES_PER_THREAD",
    "FC_PREFETCH_BUFFER_BYTES",
    "FRAME_OVERHEAD_CYCLES",
    "ADDER_LANES",
    "LAYER_OVERHEAD_CYCLES",
    "LUT_ENTRIES",
    "MODULE_OF",
    "NETWORK_OVERHEAD_CYCLES",
    "PASS_OVERHEAD_CYCLES",
    "TILE_OVERHEAD_CYCLES",
    "LayerCost",
    "LayerInfo",
    "Tiling",
    "conv_cycles",
    "conv_streams",
    "conv_tiling",
    "conv_transpose_cycles",
    "conv_weight_bytes",
    "elementwise_cycles",
    "fc_cycles",
    "filter_bytes",
    "fused",
    "global_pool_cycles",
    "layer_cost",
    "lut_cycles",
    "pool_cycles",
    "resize_cycles",
]

# ---------------------------------------------------------------- named constants
#: Fixed cycles of every hardware layer pass (instruction decode, module start,
#: pipeline fill and drain). Fitted on the published MNIST profile: dense_7 (160) and
#: dense_8 (123) are overhead + 64 and + 32 input cycles; 94 gives 158 and 126.
LAYER_OVERHEAD_CYCLES = 94
#: Fixed cycles per on-chip tile (descriptor fetch, buffer swap), plus one DDR latency
#: per tile. Assumption (no published figure isolates it).
TILE_OVERHEAD_CYCLES = 32
#: Cycles of each pass of the conv module's window generator beyond its streamed
#: pixels: the multiply-accumulate pipeline filling and draining, the accumulators
#: handed to the requantizer. Fitted on the published LogoNet conv_1 and conv_2 rows
#: (73 and 84 cycles make each exact; 78 gives +0.2% and -0.4%).
PASS_OVERHEAD_CYCLES = 78
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
#: Bytes per cycle at which conv weights (and lookup tables) enter the conv module's
#: weight buffer, whose write port is 32 bits wide. Fitted with the activation port on
#: the published LogoNet max-pool rows: maxpool_2 moves 1.9 M activations and conv_3's
#: 443,904 B of filters (prefetched during it) in 577,654 cycles, maxpool_1 5.96 M
#: activations and conv_2's 111,104 B in 1,544,371: both are 4 elements per cycle.
CONV_WEIGHT_BYTES_PER_CYCLE = 4
#: The conv module's weight buffer: the next conv-module layer's filters are
#: prefetched into it while the current layer runs (up to this many bytes; the rest
#: streams during that layer). Assumption sized to hold conv_3's 443,904 B, which the
#: published maxpool_2 row implies were fetched during it.
CONV_WEIGHT_BUFFER_BYTES = 512 * 1024
#: Entries of an activation lookup table (one per int8 input value), one byte each.
LUT_ENTRIES = 256
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
        weights_prefetched: the layer's filters (or table) were fetched into the conv
            module's weight buffer while the conv-module layer before it ran.
        prefetch_bytes: filter bytes of the next conv-module layer fetched while this
            layer runs (at most CONV_WEIGHT_BUFFER_BYTES).
        scales: integer ``(h, w)`` factors of a nearest Resize.
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
    weights_prefetched: bool = False
    prefetch_bytes: int = 0
    scales: tuple[int, int] = (1, 1)

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
    have ``fused=True`` and 0 everywhere. ``descriptors``: the conv-module descriptors
    the layer needs (one per output row of each window-generator pass; one per tile on
    the adder).
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
    descriptors: int = 0


CostFn = Callable[[LayerInfo, ProcessorConfig, "LayerCost | None"], LayerCost]


def _ceil(a: float, b: float) -> int:
    return int(math.ceil(a / b))


def _transfer_cycles(nbytes: float, config: ProcessorConfig) -> int:
    """Cycles of a stream on the fc module's weight port (``ddr_bandwidth_bytes_per_cycle``)."""
    return _ceil(nbytes, config.ddr_bandwidth_bytes_per_cycle) if nbytes > 0 else 0


def _port_cycles(activation_elements: float, weight_bytes: float, config: ProcessorConfig) -> int:
    """Cycles of the conv module's DDR port moving ``activation_elements`` activations
    (``word_bytes`` each, at ``activation_bandwidth_bytes_per_cycle``) and
    ``weight_bytes`` of filters or tables (at CONV_WEIGHT_BYTES_PER_CYCLE)."""
    nbytes = activation_elements * config.word_bytes
    cycles = nbytes / config.activation_bandwidth_bytes_per_cycle + weight_bytes / CONV_WEIGHT_BYTES_PER_CYCLE
    return int(math.ceil(cycles)) if cycles > 0 else 0


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

    ``channel_independent`` (pooling, activations): input and output slices coincide.
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


def _row_tiles(info: LayerInfo, tiling: Tiling) -> list[tuple[int, int]]:
    """Per row tile, the input rows its window generator streams and the input rows it
    loads from DDR that no earlier tile loaded.

    A tile of ``r`` output rows spans ``r * sh + max(kh_eff - sh, 0)`` input rows
    (``(r-1)*sh + kh_eff`` when the kernel covers the stride; the rows a stride skips
    after the tile's last window are passed over too), zero-padding rows included:
    generated on chip, they pass through the pipeline. The rows a tile shares with
    the one before stay in the input memory, unless the input channels are split into
    slices, which reuse the memory."""
    _, h_in, _ = info.in_shapes[0]
    _, h_out, _ = info.out_shape
    kh = (info.kernel[0] - 1) * info.dilations[0] + 1
    sh, top = info.strides[0], info.pads[0]
    out: list[tuple[int, int]] = []
    loaded_to = 0
    for t in range(tiling.row_tiles):
        r = min(tiling.rows_per_tile, h_out - t * tiling.rows_per_tile)
        span = r * sh + max(kh - sh, 0)
        first = t * tiling.rows_per_tile * sh - top  # first input row (may be a padding row)
        lo, hi = max(first, 0), min(first + span, h_in)
        if tiling.in_splits == 1:
            lo = max(lo, loaded_to)
        out.append((span, max(0, hi - lo)))
        loaded_to = max(loaded_to, hi)
    return out


def _input_rows_read(info: LayerInfo, tiling: Tiling) -> int:
    """Input rows fetched from DDR over all row tiles (see :func:`_row_tiles`)."""
    return sum(loaded for _, loaded in _row_tiles(info, tiling))


def _descriptors(streams: int, out_rows: int, tiling: Tiling, config: ProcessorConfig) -> int:
    """Conv-module descriptors of a layer: with a scheduler region (a hardware scheduler
    that sequences the rows of a tile), one per tile of each pass; without one, the
    instruction stream programs the window generator row by row, one per output row of
    each pass."""
    return streams * (tiling.row_tiles if config.scheduler_region else out_rows)


def _kernel_passes(info: LayerInfo) -> int:
    """3x3 passes of the window generator a kernel takes: ``ceil(kh/3) * ceil(kw/3)``."""
    return _ceil(info.kernel[0], CONV_WINDOW) * _ceil(info.kernel[1], CONV_WINDOW)


# ---------------------------------------------------------------- cost functions
def _finish(
    info: LayerInfo,
    config: ProcessorConfig,
    compute: int,
    transfer: int,
    nbytes: float,
    tiling: Tiling,
    exposed: int = 0,
    **extra,
) -> LayerCost:
    """``cycles = LAYER_OVERHEAD + tiles * (TILE_OVERHEAD + latency) + exposed + max(compute, transfer)``."""
    overhead = LAYER_OVERHEAD_CYCLES + tiling.tiles * (TILE_OVERHEAD_CYCLES + config.ddr_latency_cycles) + exposed
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


def _stream_layer(
    info: LayerInfo,
    config: ProcessorConfig,
    tiling: Tiling,
    streams: int,
    width: int,
    out_elements: int,
    in_channels: int,
    weight_bytes: int = 0,
) -> LayerCost:
    """A conv-module layer: per row tile, ``streams`` passes of the window generator,
    each streaming the tile's input rows (``width`` pixels each, P channels at a time)
    plus PASS_OVERHEAD_CYCLES; its DDR traffic (the input rows each tile loads, times
    the output-channel slices; the output; the filters once per row tile, the first
    copy exposed unless prefetched; the next layer's filters prefetched) overlaps
    the compute (double-buffered memories)."""
    rows = _row_tiles(info, tiling)
    compute = sum(streams * (streamed * width + PASS_OVERHEAD_CYCLES) for streamed, _ in rows)
    _, _, w_in = info.in_shapes[0]
    loaded = sum(loaded for _, loaded in rows) * w_in * in_channels * tiling.out_splits
    later_weights = weight_bytes * (tiling.row_tiles - 1) + info.prefetch_bytes
    exposed = 0 if info.weights_prefetched else _port_cycles(0, weight_bytes, config)
    transfer = _port_cycles(loaded + out_elements, later_weights, config)
    nbytes = (loaded + out_elements) * config.word_bytes + weight_bytes * tiling.row_tiles + info.prefetch_bytes
    descriptors = _descriptors(streams, info.out_shape[1], tiling, config)
    return _finish(info, config, compute, transfer, nbytes, tiling, exposed, descriptors=descriptors)


def conv_weight_bytes(info: LayerInfo, config: ProcessorConfig) -> int:
    """Bytes of one copy of a convolution's filters and biases as the conv module reads
    them: the real weights (padding is address space only) and a 4-byte bias per
    output channel (int32 for int8, float32 for single)."""
    c_in = info.in_shapes[0][0]
    c_out = info.out_shape[0]
    g = info.groups
    weights = c_out * (c_in // g) * info.kernel[0] * info.kernel[1] * config.bytes_per_element
    return weights + c_out * config.data_type.bias_bytes


def filter_bytes(info: LayerInfo, config: ProcessorConfig) -> int:
    """Bytes the conv module loads into its weight buffer before a layer can start: one
    copy of a convolution's filters, an activation's lookup table; 0 otherwise."""
    fn = COSTS.get(info.kind)
    if fn in (conv_cycles, conv_transpose_cycles):
        return conv_weight_bytes(info, config)
    if fn is lut_cycles:
        return LUT_ENTRIES
    return 0


def conv_streams(c_in: int, c_out: int, groups: int, side: int) -> int:
    """Window-generator passes per kernel pass of a convolution on a ``side x side``
    thread array (input channels x output channels):

    - ``groups == 1``: ``ceil(Cin / P) * ceil(Cout / P)``;
    - groups of at most P input and P output channels (depthwise, small groups):
      ``floor(P / max(Cin_g, Cout_g))`` groups share the array's diagonal blocks, so
      ``ceil(groups / that)`` passes;
    - larger groups: ``groups * ceil(Cin_g / P) * ceil(Cout_g / P)``.
    """
    cin_g, cout_g = c_in // groups, c_out // groups
    if groups == 1:
        return _ceil(c_in, side) * _ceil(c_out, side)
    if cin_g <= side and cout_g <= side:
        return _ceil(groups, side // max(cin_g, cout_g))
    return groups * _ceil(cin_g, side) * _ceil(cout_g, side)


def conv_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Convolution on the conv module (docs/fpga.md, "Cycle model").

    compute = sum over row tiles of streams * (streamed rows * (W + pads) + PASS_OVERHEAD),
    streams = conv_streams(Cin, Cout, groups, P) * ceil(kh/3) * ceil(kw/3), P = sqrt(ConvThreadNumber):
    the window generator streams one input pixel of P channels per cycle through its
    line buffer, and each cycle the P x P threads apply a 3x3 window to it (9 MACs each).

    transfer = DDR port cycles of: the input rows each tile loads (x output-channel slices),
    the output, the filters once per row tile after the first, the next layer's filters.
    """
    c_in, _, w_in = info.in_shapes[0]
    c_out = info.out_shape[0]
    _, h_out, w_out = info.out_shape
    streams = conv_streams(c_in, c_out, info.groups, config.conv.thread_side) * _kernel_passes(info)
    tiling = conv_tiling(info, config)
    width = w_in + info.pads[1] + info.pads[3]
    return _stream_layer(
        info, config, tiling, streams, width, h_out * w_out * c_out, c_in, conv_weight_bytes(info, config)
    )


def conv_transpose_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Transposed convolution on the conv module: a convolution with the flipped filters
    over the input with ``stride - 1`` zeros inserted between pixels and ``k - 1 - pad``
    zeros around it, stride 1. The zeros are generated on chip: the window generator
    streams them, DDR carries only the real input."""
    c_in, h_in, w_in = info.in_shapes[0]
    c_out, h_out, w_out = info.out_shape
    kh, kw = ((k - 1) * d + 1 for k, d in zip(info.kernel, info.dilations))
    sh, sw = info.strides
    h_up, w_up = (h_in - 1) * sh + 1, (w_in - 1) * sw + 1
    top, left = kh - 1 - info.pads[0], kw - 1 - info.pads[1]
    bottom, right = h_out + kh - 1 - h_up - top, w_out + kw - 1 - w_up - left
    equivalent = dataclasses.replace(
        info,
        in_shapes=((c_in, h_up, w_up),),
        strides=(1, 1),
        pads=(max(top, 0), max(left, 0), max(bottom, 0), max(right, 0)),
    )
    streams = conv_streams(c_in, c_out, info.groups, config.conv.thread_side) * _kernel_passes(info)
    tiling = conv_tiling(equivalent, config)
    rows = _row_tiles(equivalent, tiling)
    width = w_up + max(left, 0) + max(right, 0)
    compute = sum(streams * (streamed * width + PASS_OVERHEAD_CYCLES) for streamed, _ in rows)
    weight_bytes = conv_weight_bytes(info, config)
    # the real input rows: about one in `sh` of the zero-inserted rows each tile loads
    loaded = _ceil(sum(loaded for _, loaded in rows), sh) * w_in * c_in * tiling.out_splits
    out_elements = c_out * h_out * w_out
    exposed = 0 if info.weights_prefetched else _port_cycles(0, weight_bytes, config)
    transfer = _port_cycles(loaded + out_elements, weight_bytes * (tiling.row_tiles - 1) + info.prefetch_bytes, config)
    nbytes = (loaded + out_elements) * config.word_bytes + weight_bytes * tiling.row_tiles + info.prefetch_bytes
    descriptors = _descriptors(streams, h_out, tiling, config)
    return _finish(info, config, compute, transfer, nbytes, tiling, exposed, descriptors=descriptors)


def pool_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """MaxPool / AveragePool on the conv module: as a depthwise convolution, P channels
    per pass (the thread array's diagonal), ``ceil(C / P) * ceil(kh/3) * ceil(kw/3)``
    passes per row tile; no filters (the next layer's are prefetched meanwhile)."""
    c, _, w_in = info.in_shapes[0]
    _, h_out, w_out = info.out_shape
    streams = _ceil(c, config.conv.thread_side) * _kernel_passes(info)
    tiling = conv_tiling(info, config, channel_independent=True)
    width = w_in + info.pads[1] + info.pads[3]
    return _stream_layer(info, config, tiling, streams, width, h_out * w_out * c, c)


def _elementwise_tiling(info: LayerInfo, config: ProcessorConfig) -> Tiling:
    """Row tiles of a layer that maps each input pixel to output pixels (no window)."""
    flat = dataclasses.replace(info, kernel=(1, 1), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1))
    c, h_in, w_in = info.in_shapes[0]
    c_out, h_out, w_out = info.out_shape
    if (h_out, w_out) != (h_in, w_in):  # Resize: tile by output rows, scaled back
        flat = dataclasses.replace(flat, out_shape=(c_out, h_in, w_out))
    return conv_tiling(flat, config, channel_independent=True)


def lut_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Sigmoid, Tanh, HardSigmoid, HardSwish, Swish: the conv module's activation block
    looks up a LUT_ENTRIES-byte table (in the weight buffer) for each int8 input, one
    pixel of P channels per cycle; traffic: the input and the output.

    compute = sum over row tiles of ceil(C / P) * (rows * W + PASS_OVERHEAD)."""
    c, h, w = info.in_shapes[0]
    tiling = _elementwise_tiling(info, config)
    streams = _ceil(c, config.conv.thread_side)
    flat = dataclasses.replace(info, kernel=(1, 1), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1))
    return _stream_layer(flat, config, tiling, streams, w, c * h * w, c, LUT_ENTRIES)


def resize_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Nearest Resize by integer factors on the conv module: the address generator reads
    each input pixel once and writes it ``sh x sw`` times, one output pixel of P
    channels per cycle.

    compute = sum over row tiles of ceil(C / P) * (output rows * Wo + PASS_OVERHEAD);
    transfer: the input and the output."""
    c, h_in, w_in = info.in_shapes[0]
    _, h_out, w_out = info.out_shape
    tiling = _elementwise_tiling(info, config)
    streams = _ceil(c, config.conv.thread_side)
    sh = max(1, h_out // max(h_in, 1))
    compute = 0
    for t in range(tiling.row_tiles):
        rows_in = min(tiling.rows_per_tile, h_in - t * tiling.rows_per_tile)
        compute += streams * (rows_in * sh * w_out + PASS_OVERHEAD_CYCLES)
    elements = c * h_in * w_in + c * h_out * w_out
    transfer = _port_cycles(elements, info.prefetch_bytes, config)
    descriptors = _descriptors(streams, h_out, tiling, config)
    return _finish(info, config, compute, transfer, elements * config.word_bytes, tiling, descriptors=descriptors)


def global_pool_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """GlobalAveragePool / GlobalMaxPool on the conv module: the window generator streams
    every pixel, P channels at a time.

    compute = ceil(C / P) * (H * W + PASS_OVERHEAD) per tile, tiles = ceil(H * W * C / cap_in);
    transfer: the input and the C outputs."""
    c, h, w = info.in_shapes[0]
    tiles = _ceil(h * w * c, config.conv.input_capacity)
    streams = _ceil(c, config.conv.thread_side)
    compute = streams * (h * w + tiles * PASS_OVERHEAD_CYCLES)
    elements = h * w * c + c
    transfer = _port_cycles(elements, info.prefetch_bytes, config)
    return _finish(
        info,
        config,
        compute,
        transfer,
        elements * config.word_bytes,
        Tiling(row_tiles=tiles),
        descriptors=streams * tiles,
    )


def elementwise_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Add / Mul / Sum of activations on the adder module.

    compute = ceil(C * H * W / (ADDER_LANES * pack)), pack = 4 for int8, 1 for single;
    tiles = ceil(H / adder InputMemorySize rows);
    transfer: every input and the output over the DDR port (a broadcast operand, such
    as a squeeze-and-excitation scale, once)."""
    c, h, w = info.out_shape
    elems = c * h * w
    compute = _ceil(elems, ADDER_LANES * config.data_type.pack)
    rows = min(config.adder.input_memory_size, config.adder.output_memory_size)
    tiles = _ceil(h, rows)
    moved = elems + sum(math.prod(s) for s in info.in_shapes)
    transfer = _port_cycles(moved, info.prefetch_bytes, config)
    return _finish(
        info,
        config,
        compute,
        transfer,
        moved * config.word_bytes,
        Tiling(rows_per_tile=rows, row_tiles=tiles),
        descriptors=tiles,
    )


def fc_cycles(info: LayerInfo, config: ProcessorConfig, prev: LayerCost | None = None) -> LayerCost:
    """Fully connected layer on the fc module: weights streamed from DDR.

    compute = fc_in * ceil(fc_out / (FCThreadNumber * FC_LANES_PER_THREAD * pack)):
    one input element per cycle, broadcast to all output lanes.

    stream = ceil((fc_in * fc_out * b + fc_out * 4) / bandwidth): the real weights
    (padding rows and columns are DDR space only, never read). The first layer of a
    leg also reads the leg's input vector and the last writes its output vector
    (``word_bytes`` per element).

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
    v = config.word_bytes
    lanes = config.fc.thread_number * FC_LANES_PER_THREAD * config.data_type.pack
    compute = info.fc_in * _ceil(info.fc_out, lanes)
    weight_bytes = info.fc_in * info.fc_out * b + info.fc_out * config.data_type.bias_bytes
    in_tiles = _ceil(info.fc_in_padded, config.fc.input_memory_size)
    out_tiles = _ceil(info.fc_out_padded, config.fc.output_memory_size)
    tiling = Tiling(row_tiles=in_tiles, out_splits=out_tiles)
    vector_bytes = (info.fc_in * v if info.leg_first else 0) + (info.fc_out * v if info.leg_last else 0)
    vector_bytes += (out_tiles - 1) * info.fc_in * v
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
    "lut": lut_cycles,
    "resize": resize_cycles,
    "conv_transpose": conv_transpose_cycles,
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
