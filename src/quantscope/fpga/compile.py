"""Compile a prepared network for the deep-learning processor.

:func:`compile_network` maps each optimized layer of a :class:`~quantscope.Network`
onto the processor described by a :class:`~quantscope.fpga.ProcessorConfig`:

1. **Placement.** The input layer and an input normalization run on the host
   ("SW Layer": the host normalizes and writes the frames to the input region);
   so does a tail of output layers (Softmax, LogSoftmax, Sigmoid, Flatten, Reshape,
   Squeeze, Identity) after the last hardware layer. Every other layer is a
   "HW Layer" and must have an entry in :data:`quantscope.fpga.cycles.COSTS`.
2. **Legs.** Consecutive hardware layers on the same module group (the conv module
   with its adder; the fc module) form a leg, executed as one instruction group.
3. **Weight images.** Per conv/fc layer, the weights padded as the processor reads
   them (conv ``(Cout', Cin', kh, kw)``, channels padded to N; fc ``(in', out')``,
   input rows in ``(c, h, w)`` order with the padding planes at the end and outputs
   padded to FCThreadNumber), int8 (+ int32 biases) or float32.
4. **Instructions.** A simple fixed-width encoding (``docs/fpga.md``): a 64-byte
   header and 32 bytes per instruction.
5. **DDR memory map.** Regions in MATLAB's order, each 4 KiB aligned (see
   :class:`MemoryMap` and ``docs/fpga.md`` for the size of each).

Networks the processor cannot run raise :class:`~quantscope.errors.UnsupportedModelError`
naming every offending layer and the limit it breaks.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedModelError
from ..network import Network, prepare
from ..ops import ops_with
from ..quantize.numerics import pow2_exponent, quantize, quantize_bias_pow2
from .config import ProcessorConfig, processor
from .cycles import COSTS, MODULE_OF, LayerCost, LayerInfo, fused, layer_cost

__all__ = [
    "ALIGNMENT",
    "OUTPUT_SOFTWARE_KINDS",
    "REGION_NAMES",
    "CompiledNetwork",
    "LayerPlacement",
    "Leg",
    "MemoryMap",
    "Region",
    "WeightImage",
    "compile_network",
    "format_size",
]

#: Every DDR region starts on and is sized to a multiple of 4 KiB (docs/fpga.md).
ALIGNMENT = 4096
#: Each weight image inside a weight region starts on a 64-byte (AXI burst) boundary.
IMAGE_ALIGNMENT = 64
#: Bytes of one conv-module tile descriptor in the scheduler region.
SCHEDULER_DESCRIPTOR_BYTES = 64
#: Instruction stream: header bytes and bytes per instruction.
INSTRUCTION_HEADER_BYTES = 64
INSTRUCTION_BYTES = 32
#: Region names in map order. The weight regions appear only when the network has
#: layers of that module (MATLAB's map of an FC-only network has no ConvWeightDataOffset).
REGION_NAMES: tuple[str, ...] = (
    "InputDataOffset",
    "OutputResultOffset",
    "SchedulerDataOffset",
    "SystemBufferOffset",
    "InstructionDataOffset",
    "ConvWeightDataOffset",
    "FCWeightDataOffset",
    "EndOffset",
)
#: Layer kinds that may run on the host after the last hardware layer.
OUTPUT_SOFTWARE_KINDS = ops_with(fpga_output=True)
#: Fused kinds whose output is their input re-addressed (no buffer of their own).
_ALIAS_KINDS = ops_with(fpga_alias=True)

# Instruction opcodes (docs/fpga.md, "Instruction stream").
OPCODES: dict[str, int] = {
    "LEG_BEGIN": 0x01,
    "LEG_END": 0x02,
    "CONV": 0x10,
    "MAXPOOL": 0x11,
    "AVGPOOL": 0x12,
    "GLOBALPOOL": 0x13,
    "FC_LOAD_INPUT": 0x20,
    "FC_LOAD_WEIGHTS": 0x21,
    "FC_PREFETCH_WEIGHTS": 0x22,
    "FC_COMPUTE": 0x23,
    "FC_STORE_OUTPUT": 0x24,
    "ADD": 0x30,
    "MUL": 0x31,
    "END": 0xFF,
}
_KIND_OPCODE = {
    "conv": "CONV",
    "MaxPool": "MAXPOOL",
    "AveragePool": "AVGPOOL",
    "GlobalAveragePool": "GLOBALPOOL",
    "GlobalMaxPool": "GLOBALPOOL",
    "Add": "ADD",
    "Sum": "ADD",
    "Mul": "MUL",
}
_INSTRUCTION = struct.Struct("<HH7I")  # opcode, layer index, 7 operands: 32 bytes


def _align(n: int, a: int = ALIGNMENT) -> int:
    return -(-int(n) // a) * a


def _pad(n: int, m: int) -> int:
    return -(-int(n) // m) * m


def format_size(nbytes: int, total: bool = False) -> str:
    """Bytes as MATLAB prints map sizes: ``"368.0 kB"`` (kB = 1024 B, one decimal);
    from 4 MiB on, ``"93.8 MB"`` (MB = 1024^2 B). ``total`` prefixes ``"Total: "``."""
    text = f"{nbytes / 1024**2:.1f} MB" if nbytes >= 4 * 1024**2 else f"{nbytes / 1024:.1f} kB"
    return f"Total: {text}" if total else text


# ---------------------------------------------------------------- result types
@dataclass(frozen=True)
class Region:
    """One DDR region: ``offset`` and ``size`` in bytes (both multiples of 4 KiB)."""

    name: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class MemoryMap:
    """The external (DDR) memory map: regions in order, then ``EndOffset`` (the total)."""

    regions: tuple[Region, ...]

    @property
    def total(self) -> int:
        """Total bytes (``EndOffset``)."""
        return self.regions[-1].end if self.regions else 0

    def __getitem__(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        if name == "EndOffset":
            return Region("EndOffset", self.total, 0)
        raise KeyError(f"no region {name!r} in the map; regions: {', '.join(r.name for r in self.regions)}")

    def __contains__(self, name: object) -> bool:
        return name == "EndOffset" or any(r.name == name for r in self.regions)

    def rows(self) -> list[tuple[str, str, str]]:
        """``(offset_name, offset_address, allocated_space)`` as MATLAB prints them."""
        out = [(r.name, f"0x{r.offset:08x}", format_size(r.size)) for r in self.regions]
        out.append(("EndOffset", f"0x{self.total:08x}", format_size(self.total, total=True)))
        return out

    @property
    def table(self):
        """The map as a pandas DataFrame (columns offset_name, offset_address, allocated_space)."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=["offset_name", "offset_address", "allocated_space"])

    def format(self) -> str:
        """The map laid out as MATLAB's ``compile`` prints it."""
        lines = [
            "          offset_name          offset_address    allocated_space ",
            "    _______________________    ______________    ________________",
            "",
        ]
        for name, addr, size in self.rows():
            lines.append(
                f"    {chr(34) + name + chr(34):<27} {chr(34) + addr + chr(34):<16} {chr(34) + size + chr(34):<18}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True)
class LayerPlacement:
    """Where one optimized layer runs.

    ``placement`` is ``"SW Layer"`` (host) or ``"HW Layer"``; ``module`` is
    ``"conv"``, ``"fc"``, ``"adder"`` or None (host, or fused into a neighbour);
    ``leg`` the index of its leg (None on the host); ``note`` says why."""

    index: int
    name: str
    label: str
    kind: str
    placement: str
    module: str | None
    leg: int | None
    fused: bool
    note: str = ""


@dataclass(frozen=True)
class Leg:
    """Layers executed together on one module group (``"conv"`` = conv + adder, ``"fc"``)."""

    index: int
    module: str
    layers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.module}_module"


@dataclass(frozen=True)
class WeightImage:
    """The weights of one layer as the processor reads them from DDR.

    ``weights``: conv ``(Cout', Cin'/groups, kh, kw)`` or fc ``(in', out')``, int8 or
    float32, zero padded; ``bias``: ``(Cout',)`` int32 or float32; ``exponent``: the
    power-of-two exponent of int8 weights (None for float32); ``offset``: byte offset
    inside its weight region."""

    layer: str
    module: str
    weights: np.ndarray
    bias: np.ndarray
    exponent: int | None
    offset: int

    @property
    def nbytes(self) -> int:
        return int(self.weights.nbytes + self.bias.nbytes)

    def tobytes(self) -> bytes:
        return self.weights.tobytes() + self.bias.tobytes()


@dataclass
class CompiledNetwork:
    """The result of :func:`compile_network`.

    Attributes:
        network, config: what was compiled, for what.
        layers: one :class:`LayerPlacement` per optimized layer, in network order.
        legs: the legs in execution order.
        infos: :class:`~quantscope.fpga.cycles.LayerInfo` per hardware layer name.
        costs: :class:`~quantscope.fpga.cycles.LayerCost` per hardware layer (fused
            ones included, with 0 cycles), in execution order.
        weight_images: :class:`WeightImage` per conv/fc layer name.
        instructions: the encoded instruction stream (uint8).
        instruction_count: instructions in it.
        buffers: system-buffer slot of each DDR-resident activation: key ->
            ``(offset inside SystemBuffer, bytes)``.
        memory_map: the DDR map.
    """

    network: Network
    config: ProcessorConfig
    layers: list[LayerPlacement]
    legs: list[Leg]
    infos: dict[str, LayerInfo]
    costs: list[LayerCost]
    weight_images: dict[str, WeightImage]
    instructions: np.ndarray
    instruction_count: int
    buffers: dict[str, tuple[int, int]]
    memory_map: MemoryMap
    input_shape: tuple[int, int, int] = (0, 0, 0)
    output_elements: int = 0

    @property
    def hardware_layers(self) -> list[LayerPlacement]:
        return [p for p in self.layers if p.placement == "HW Layer"]

    @property
    def software_layers(self) -> list[LayerPlacement]:
        return [p for p in self.layers if p.placement == "SW Layer"]

    def conv_weight_bytes(self) -> bytes:
        """The conv weight region's content (images at their offsets, zero padded)."""
        return self._region_bytes("conv")

    def fc_weight_bytes(self) -> bytes:
        """The FC weight region's content."""
        return self._region_bytes("fc")

    def _region_bytes(self, module: str) -> bytes:
        name = "ConvWeightDataOffset" if module == "conv" else "FCWeightDataOffset"
        if name not in self.memory_map:
            return b""
        buf = bytearray(self.memory_map[name].size)
        for img in self.weight_images.values():
            if img.module == module:
                data = img.tobytes()
                buf[img.offset : img.offset + len(data)] = data
        return bytes(buf)

    @property
    def layer_table(self):
        """Placement as a pandas DataFrame: #, Layer, Type, Placement, Module, Leg, Note."""
        import pandas as pd

        return pd.DataFrame(
            [
                (p.index, p.name, p.kind, p.placement, p.module or "", "" if p.leg is None else p.leg, p.note)
                for p in self.layers
            ],
            columns=["#", "Layer", "Type", "Placement", "Module", "Leg", "Note"],
        )

    def format(self) -> str:
        """The layer listing, the legs and the memory map, as MATLAB's compile prints them."""
        width = max(len(p.name) for p in self.layers) + 2
        kind_w = max(len(p.kind) for p in self.layers) + 2
        lines = ["### The network includes the following layers:"]
        for p in self.layers:
            extra = f"  {p.note}" if p.note else ""
            lines.append(f"    {p.index:>3}   {repr(p.name):<{width + 2}}{p.kind:<{kind_w}}({p.placement}){extra}")
        for leg in self.legs:
            lines.append(f"### Layer group {leg.index} on the {leg.name}: {'>>'.join(leg.layers)}")
        lines.append("### Allocating external memory buffers:")
        lines.append("")
        lines.append(self.memory_map.format())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# ---------------------------------------------------------------- helpers
def _resolved_shapes(net: Network) -> dict[str, tuple[int | None, ...]]:
    """Every layer output's shape (batch axis ``None``) from one float run of one frame
    of zeros, when every input dimension but the batch is fixed; else no shapes."""
    import numpy as np

    from ..calibrate.collector import create_session

    feeds = {}
    for name, (shape, dtype) in net.input_spec.items():
        if not shape or any(not isinstance(d, int) for d in shape[1:]):
            return {}
        feeds[name] = np.zeros((1, *shape[1:]), dtype=dtype)
    names = [layer.output for layer in net.layers if layer.kind != "input"]
    outs = create_session(net.to_proto(names).SerializeToString()).run(names, feeds)
    return {name: (None, *out.shape[1:]) if out.ndim else () for name, out in zip(names, outs)}


def _chw(shape: tuple[int | None, ...] | None, value: str, layer: str) -> tuple[int, int, int]:
    if shape is None:
        raise UnsupportedModelError(
            f"the shape of {value!r} (layer {layer!r}) is unknown; the processor needs static shapes. "
            "Export the model with a fixed input size.",
            nodes=[(layer, "shape")],
        )
    dims = shape[1:] if len(shape) >= 2 else shape
    if any(d is None for d in dims):
        raise UnsupportedModelError(
            f"the shape of {value!r} (layer {layer!r}) is {shape}, with a symbolic dimension other than the "
            "batch; the processor needs a fixed input size (H, W and channels).",
            nodes=[(layer, "shape")],
        )
    if len(dims) == 3:
        return (int(dims[0]), int(dims[1]), int(dims[2]))
    if len(dims) == 1:
        return (int(dims[0]), 1, 1)
    if len(dims) == 2:
        return (int(dims[0]), 1, int(dims[1]))
    raise UnsupportedModelError(
        f"{value!r} (layer {layer!r}) has shape {shape}; the processor handles (N, C, H, W), (N, C, L) "
        "and (N, F) tensors.",
        nodes=[(layer, "shape")],
    )


def _pairs(v: Any, default: tuple[int, int]) -> tuple[int, int]:
    if v is None:
        return default
    v = tuple(int(x) for x in v)
    return (v[0], v[-1]) if len(v) >= 1 else default


class _Compiler:
    def __init__(self, network: Network, config: ProcessorConfig, quantized: Mapping[str, Any] | None):
        self.net = network
        self.cfg = config
        self.quantized = dict(quantized or {})
        self._resolved: dict[str, tuple[int | None, ...]] | None = None
        self.n = config.channel_multiple
        self.producer = {layer.output: layer for layer in network.layers}
        self.consumers: dict[str, list] = {}
        for layer in network.layers:
            for v in layer.inputs:
                self.consumers.setdefault(v, []).append(layer)

    # ---- placement ---------------------------------------------------------------
    def place(self) -> tuple[dict[str, str], list]:
        net = self.net
        where: dict[str, str] = {}
        notes: dict[str, str] = {}
        for layer in net.layers:
            if layer.kind == "input":
                where[layer.name] = "SW"
                notes[layer.name] = "host writes the frames to InputData"
            elif layer.kind == "normalization" and set(layer.inputs) <= {net.input_name}:
                where[layer.name] = "SW"
                notes[layer.name] = "normalized on the host"
        graph_outputs = set(net.output_names)
        for layer in reversed(net.layers):
            if layer.name in where or layer.kind not in OUTPUT_SOFTWARE_KINDS:
                continue
            users = self.consumers.get(layer.output, [])
            if all(where.get(u.name) == "SW" and u.kind in OUTPUT_SOFTWARE_KINDS for u in users) and (
                users or layer.output in graph_outputs
            ):
                where[layer.name] = "SW"
                notes[layer.name] = "output layer, run on the host"
        bad: list[tuple[str, str]] = []
        no_module: dict[str, list[str]] = {}
        not_last: dict[str, list[str]] = {}
        for layer in net.layers:
            if layer.name in where:
                continue
            where[layer.name] = "HW"
            if layer.kind not in COSTS:
                bad.append((layer.name, layer.kind))
                if layer.kind in OUTPUT_SOFTWARE_KINDS:
                    users = ", ".join(u.name for u in self.consumers.get(layer.output, []))
                    not_last.setdefault(layer.kind, []).append(f"{layer.name!r} -> {users}")
                else:
                    no_module.setdefault(layer.kind, []).append(repr(layer.name))
        if bad:
            messages = [
                f"{len(names)} {kind} layer{'s' if len(names) > 1 else ''}, which the processor has no module for "
                f"({_listing(names)})"
                for kind, names in sorted(no_module.items())
            ] + [
                f"{len(names)} {kind} layer{'s' if len(names) > 1 else ''} before other layers, where the processor "
                f"runs {kind} only on the host as the network's final layer ({_listing(names)})"
                for kind, names in sorted(not_last.items())
            ]
            raise UnsupportedModelError(
                f"the deep-learning processor cannot run this network ({len(bad)} layer{'s' if len(bad) > 1 else ''}): "
                + "; ".join(messages)
                + f". Layer kinds it runs in hardware: {', '.join(sorted(COSTS))}; on the host: the input, "
                "its normalization, and a tail of " + ", ".join(sorted(OUTPUT_SOFTWARE_KINDS)) + ". "
                "Use activations the processor has (Relu, Clip/Relu6, LeakyRelu, PRelu) in their place, or "
                'quantize for the CPU target instead (quantize("cpu"), validate(..., target="cpu")).',
                nodes=bad,
            )
        if not any(w == "HW" for w in where.values()):
            raise UnsupportedModelError("the network has no layer to run on the processor (only host layers)")
        self.notes = notes
        return where, [layer for layer in net.layers if where[layer.name] == "HW"]

    # ---- geometry ----------------------------------------------------------------
    def source(self, value: str) -> str:
        """The value a fused-alias chain reads from (Flatten of X -> X)."""
        seen = 0
        while (
            value in self.producer
            and self.producer[value].kind in _ALIAS_KINDS
            and self.producer[value].inputs
            and seen < 1000
        ):
            value = self.producer[value].inputs[0]
            seen += 1
        return value

    def shape(self, value: str) -> tuple[int | None, ...] | None:
        """The shape of ``value``: from shape inference, or, where a Reshape, Resize or
        Slice computes it at run time, from one float run at the fixed input size."""
        net = self.net
        shape = net.input_shapes[value] if value in net.input_shapes else net.value_shape(value)
        if shape is not None and len(shape) > 0 and all(isinstance(d, int) for d in shape[1:]):
            return shape
        if self._resolved is None:
            self._resolved = _resolved_shapes(net)
        return self._resolved.get(value, shape)

    def padded_elements(self, value: str) -> int:
        """Elements of ``value`` in its DDR layout: FC outputs padded to FCThreadNumber,
        everything else (C, H, W) with C padded to N."""
        src = self.source(value)
        layer = self.producer.get(src)
        c, h, w = _chw(
            self.shape(src),
            src,
            layer.name if layer else src,
        )
        if layer is not None and layer.kind == "fc":
            return _pad(c * h * w, self.cfg.fc.thread_number)
        return h * w * _pad(c, self.n)

    def info(self, layer, leg: int, first: bool, last: bool) -> LayerInfo:
        net, cfg = self.net, self.cfg
        in_shapes = tuple(_chw(self.shape(v), v, layer.name) for v in layer.inputs)
        out_shape = _chw(self.shape(layer.output), layer.output, layer.name)
        kw: dict[str, Any] = {}
        if layer.kind in ("conv", "MaxPool", "AveragePool"):
            attrs = net.node_attributes(layer.members[0])
            if layer.kind == "conv":
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
        if layer.kind == "fc":
            w = self.fc_matrix(layer)
            fc_in, fc_out = w.shape
            c, h, w_ = in_shapes[0]
            if c * h * w_ != fc_in:
                raise UnsupportedModelError(
                    f"layer {layer.name!r}: an FC layer must read a vector (or a flattened activation) of "
                    f"{fc_in} elements, but its input {layer.inputs[0]!r} is {c}x{h}x{w_}; the fc module does "
                    "not run batched matrix products over extra dimensions.",
                    nodes=[(layer.name, layer.op_types[0])],
                )
            kw.update(
                fc_in=fc_in,
                fc_out=fc_out,
                fc_in_padded=max(self.padded_elements(layer.inputs[0]), _pad(fc_in, cfg.fc.thread_number)),
                fc_out_padded=_pad(fc_out, cfg.fc.thread_number),
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
        if MODULE_OF.get(layer.kind) in ("conv", "adder"):
            limit = cfg.conv.feature_size_limit
            for what, (c, h, w) in [("input", s) for s in in_shapes] + [("output", out_shape)]:
                if max(c, h, w) > limit:
                    raise UnsupportedModelError(
                        f"layer {layer.name!r} ({layer.kind}) has an {what} activation of {c}x{h}x{w} (C x H x W); "
                        f"the conv module's FeatureSizeLimit is {limit} per dimension. Use a bitstream with a larger "
                        "FeatureSizeLimit or a smaller input.",
                        nodes=[(layer.name, layer.kind)],
                    )
        return info

    def fc_matrix(self, layer) -> np.ndarray:
        """The FC weights as ``(in, out)`` float32 (Gemm transB and alpha applied)."""
        w = np.asarray(self.net.constant(layer.weight), dtype=np.float32)
        op = layer.op_types[0]
        if op == "Gemm":
            attrs = self.net.node_attributes(layer.members[0])
            if int(attrs.get("transA", 0)):
                raise UnsupportedModelError(
                    f"layer {layer.name!r}: Gemm with transA=1 is not supported", nodes=[(layer.name, "Gemm")]
                )
            if int(attrs.get("transB", 0)):
                w = w.T
            w = w * np.float32(attrs.get("alpha", 1.0))
        if w.ndim != 2:
            raise UnsupportedModelError(
                f"layer {layer.name!r}: FC weights must be 2-D, got {w.shape}", nodes=[(layer.name, op)]
            )
        return w

    def fc_bias(self, layer, out: int) -> np.ndarray:
        if layer.bias is None:
            return np.zeros(out, np.float32)
        b = np.asarray(self.net.constant(layer.bias), dtype=np.float32).reshape(-1)
        if layer.op_types[0] == "Gemm":
            b = b * np.float32(self.net.node_attributes(layer.members[0]).get("beta", 1.0))
        return np.broadcast_to(b, (out,)).astype(np.float32)

    # ---- weight images -----------------------------------------------------------
    def image(self, layer, info: LayerInfo) -> WeightImage:
        cfg = self.cfg
        if layer.kind == "conv":
            w = np.asarray(self.net.constant(layer.weight), dtype=np.float32)
            b = (
                np.zeros(w.shape[0], np.float32)
                if layer.bias is None
                else np.asarray(self.net.constant(layer.bias), np.float32).reshape(-1)
            )
            cout, cin_g, kh, kw = w.shape
            shape = (_pad(cout, self.n), _pad(cin_g, self.n) if info.groups == 1 else cin_g, kh, kw)
            module = "conv"
        else:
            w = self.fc_matrix(layer)
            b = self.fc_bias(layer, w.shape[1])
            shape = (info.fc_in_padded, info.fc_out_padded)
            module = "fc"
        if cfg.data_type.value == "int8":
            if layer.name in self.quantized:
                qw, qb = self.quantized[layer.name][:2]
                qw = np.asarray(qw, np.int8)
                if (
                    module == "fc"
                    and layer.op_types[0] == "Gemm"
                    and int(self.net.node_attributes(layer.members[0]).get("transB", 0))
                ):
                    qw = qw.T
                qb = (
                    np.zeros(w.shape[0] if module == "conv" else w.shape[1], np.int32)
                    if qb is None
                    else np.asarray(qb, np.int32)
                )
                e = self.quantized[layer.name][2] if len(self.quantized[layer.name]) > 2 else None
            else:
                # Stand-in until the quantizer provides the layer's int8 weights: per-tensor
                # power-of-two weights (docs/int8.md eq. 1) and the bias at exponent e_w + 0.
                e = pow2_exponent(float(np.max(np.abs(w))) if w.size else 0.0)
                qw = quantize(w, math.ldexp(1.0, e))
                qb = quantize_bias_pow2(b, e, 0)
            weights = np.zeros(shape, np.int8)
            bias = np.zeros(shape[0] if module == "conv" else shape[1], np.int32)
        else:
            qw, qb, e = w, b, None
            weights = np.zeros(shape, np.float32)
            bias = np.zeros(shape[0] if module == "conv" else shape[1], np.float32)
        weights[tuple(slice(0, s) for s in qw.shape)] = qw
        bias[: qb.shape[0]] = qb
        return WeightImage(layer=layer.name, module=module, weights=weights, bias=bias, exponent=e, offset=0)

    # ---- system buffer -----------------------------------------------------------
    def slot_key(self, value: str) -> str:
        value = self.source(value)
        for user in self.consumers.get(value, []):
            if user.kind == "Concat" and self.where.get(user.name) == "HW":
                return self.slot_key(user.output)
        return value


def compile_network(
    network: Any,
    config: ProcessorConfig | str,
    *,
    quantized: Mapping[str, tuple] | None = None,
) -> CompiledNetwork:
    """Compile ``network`` for the processor ``config``.

    Args:
        network: a prepared :class:`~quantscope.Network` (or anything
            :func:`quantscope.prepare` accepts). Input ``(N, C, H, W)`` with fixed C, H, W.
        config: a :class:`ProcessorConfig` or a preset name (``"zcu102_int8"``...).
        quantized: for int8 bitstreams, the layers' int8 weights from the quantizer:
            ``{layer name: (int8 weights as stored in the model, int32 bias or None[,
            exponent])}``. Layers absent get a stand-in (per-tensor power-of-two weights,
            bias at the weight exponent); sizes and layout are the same either way.

    Returns:
        a :class:`CompiledNetwork` (placement, legs, weight images, instructions, map).

    Raises:
        UnsupportedModelError: a layer kind the processor lacks (e.g. a Softmax that is
            not the last layer), an activation above FeatureSizeLimit, a row that does not
            fit the conv memories, unknown shapes.
    """
    net = prepare(network) if not isinstance(network, Network) else network
    cfg = processor(config)
    comp = _Compiler(net, cfg, quantized)
    where, hw = comp.place()
    comp.where = where  # type: ignore[attr-defined]

    # ---- legs ---------------------------------------------------------------------
    group_of = {"conv": "conv", "adder": "conv", "fc": "fc"}
    legs_layers: list[tuple[str, list]] = []
    pending: list = []
    for layer in hw:
        g = group_of.get(MODULE_OF.get(layer.kind) or "")
        if g is None:  # fused: joins the current leg (or the next one)
            if legs_layers:
                legs_layers[-1][1].append(layer)
            else:
                pending.append(layer)
            continue
        if not legs_layers or legs_layers[-1][0] != g:
            legs_layers.append((g, pending + [layer]))
            pending = []
        else:
            legs_layers[-1][1].append(layer)
    if pending:
        if legs_layers:
            legs_layers[-1][1].extend(pending)
        else:  # only fused layers in hardware: a trivial conv leg
            legs_layers.append(("conv", pending))
    legs = [Leg(i, g, tuple(layer.name for layer in ls)) for i, (g, ls) in enumerate(legs_layers)]
    leg_of = {name: leg.index for leg in legs for name in leg.layers}

    # ---- geometry and costs --------------------------------------------------------
    infos: dict[str, LayerInfo] = {}
    costs: list[LayerCost] = []
    for leg_index, (_, ls) in enumerate(legs_layers):
        costed = [layer for layer in ls if COSTS[layer.kind] is not fused]
        first = costed[0].name if costed else None
        last = costed[-1].name if costed else None
        prev: LayerCost | None = None
        for layer in ls:
            info = comp.info(layer, leg_index, layer.name == first, layer.name == last)
            infos[layer.name] = info
            cost = layer_cost(info, cfg, prev)
            costs.append(cost)
            if not cost.fused:
                prev = cost

    # ---- placements ---------------------------------------------------------------
    placements: list[LayerPlacement] = []
    for i, layer in enumerate(net.layers, start=1):
        if where[layer.name] == "SW":
            placements.append(
                LayerPlacement(
                    i,
                    layer.name,
                    layer.members[0],
                    layer.kind,
                    "SW Layer",
                    None,
                    None,
                    False,
                    comp.notes.get(layer.name, ""),
                )
            )
            continue
        module = MODULE_OF.get(layer.kind)
        is_fused = COSTS[layer.kind] is fused
        note = "fused: no pass of its own" if is_fused else ""
        placements.append(
            LayerPlacement(
                i, layer.name, layer.members[0], layer.kind, "HW Layer", module, leg_of[layer.name], is_fused, note
            )
        )

    # ---- weight images --------------------------------------------------------------
    images: dict[str, WeightImage] = {}
    offsets = {"conv": 0, "fc": 0}
    for layer in hw:
        if layer.kind not in ("conv", "fc"):
            continue
        img = comp.image(layer, infos[layer.name])
        module = img.module
        img = WeightImage(img.layer, module, img.weights, img.bias, img.exponent, offsets[module])
        offsets[module] += _align(img.nbytes, IMAGE_ALIGNMENT)
        images[layer.name] = img

    # ---- system buffer slots ---------------------------------------------------------
    b = cfg.bytes_per_element
    buffers: dict[str, tuple[int, int]] = {}
    sysbuf = 0

    def add_slot(key: str, nbytes: int) -> None:
        nonlocal sysbuf
        if key not in buffers:
            buffers[key] = (sysbuf, int(nbytes))
            sysbuf += _align(nbytes)

    by_name = {layer.name: layer for layer in hw}
    for leg, (g, ls) in zip(legs, legs_layers):
        costed = [layer for layer in ls if COSTS[layer.kind] is not fused]
        if g == "fc" and costed:
            add_slot(f"{leg.name}_{leg.index}_input", infos[costed[0].name].fc_in_padded * b)
            add_slot(costed[-1].output, infos[costed[-1].name].fc_out_padded * b)
        else:
            for layer in costed:
                key = comp.slot_key(layer.output)
                add_slot(key, comp.padded_elements(key) * b)

    # ---- output region ----------------------------------------------------------------
    hw_names = {layer.name for layer in hw}
    out_values: list[str] = []
    for layer in net.layers:
        if where[layer.name] == "SW" and layer.kind != "input" and layer.kind != "normalization":
            for v in layer.inputs:
                p = comp.producer.get(v)
                if p is not None and p.name in hw_names and v not in out_values:
                    out_values.append(v)
    for v in net.output_names:
        p = comp.producer.get(v)
        if p is not None and p.name in hw_names and v not in out_values:
            out_values.append(v)
    output_elements = sum(comp.padded_elements(v) for v in out_values)

    # ---- instruction stream (two passes: count, then encode with offsets) -------------
    program: list[tuple[str, int, tuple[int, ...]]] = []
    scheduler_tiles = 0
    layer_index = {layer.name: i for i, layer in enumerate(net.layers)}
    cost_of = {c.name: c for c in costs}
    for leg, (g, ls) in zip(legs, legs_layers):
        program.append(("LEG_BEGIN", leg.index, (0 if g == "conv" else 1,)))
        costed = [layer for layer in ls if COSTS[layer.kind] is not fused]
        if g == "fc" and costed:
            program.append(("FC_LOAD_INPUT", layer_index[costed[0].name], ("slot", f"{leg.name}_{leg.index}_input")))
        for layer in costed:
            c = cost_of[layer.name]
            if layer.kind == "fc":
                op = "FC_PREFETCH_WEIGHTS" if c.prefetched else "FC_LOAD_WEIGHTS"
                program.append((op, layer_index[layer.name], ("fcw", layer.name)))
                program.append(("FC_COMPUTE", layer_index[layer.name], ("tiles", c.tiling.tiles)))
            else:
                program.append(
                    (_KIND_OPCODE[layer.kind], layer_index[layer.name], ("layer", layer.name, scheduler_tiles))
                )
                scheduler_tiles += c.tiling.tiles
        if g == "fc" and costed:
            program.append(("FC_STORE_OUTPUT", layer_index[costed[-1].name], ("slot", costed[-1].output)))
        program.append(("LEG_END", leg.index, ()))
    program.append(("END", 0, ()))

    # ---- memory map ----------------------------------------------------------------
    c_in, h_in, w_in = _chw(net.input_shape, net.input_name, net.input_name)
    sizes: list[tuple[str, int]] = [
        ("InputDataOffset", _align(cfg.input_frame_number_limit * h_in * w_in * _pad(c_in, comp.n) * b)),
        ("OutputResultOffset", _align(cfg.input_frame_number_limit * output_elements * b)),
        ("SchedulerDataOffset", _align(scheduler_tiles * SCHEDULER_DESCRIPTOR_BYTES)),
        ("SystemBufferOffset", _align(sysbuf)),
        ("InstructionDataOffset", _align(INSTRUCTION_HEADER_BYTES + INSTRUCTION_BYTES * len(program))),
    ]
    if any(img.module == "conv" for img in images.values()):
        sizes.append(("ConvWeightDataOffset", _align(offsets["conv"])))
    if any(img.module == "fc" for img in images.values()):
        sizes.append(("FCWeightDataOffset", _align(offsets["fc"])))
    regions, at = [], 0
    for name, size in sizes:
        regions.append(Region(name, at, size))
        at += size
    mm = MemoryMap(tuple(regions))

    # ---- encode ---------------------------------------------------------------------
    sys_base = mm["SystemBufferOffset"].offset
    fc_base = mm["FCWeightDataOffset"].offset if "FCWeightDataOffset" in mm else 0
    conv_base = mm["ConvWeightDataOffset"].offset if "ConvWeightDataOffset" in mm else 0
    sched_base = mm["SchedulerDataOffset"].offset
    blob = bytearray(
        struct.pack("<8sIIIII", b"QSDLPI01", 1, len(program), len(net.layers), len(legs), cfg.input_frame_number_limit)
    )
    blob += bytes(INSTRUCTION_HEADER_BYTES - len(blob))

    def addr_of_value(value: str) -> int:
        value = comp.source(value)
        if value == net.input_name or comp.producer.get(value) is not None and where[comp.producer[value].name] == "SW":
            return mm["InputDataOffset"].offset
        key = comp.slot_key(value)
        return sys_base + buffers[key][0] if key in buffers else 0

    for op, index, args in program:
        operands = [0] * 7
        if args and args[0] == "slot":
            operands[0] = sys_base + buffers[args[1]][0]
            operands[1] = buffers[args[1]][1]
        elif args and args[0] == "fcw":
            img = images[args[1]]
            operands[0] = fc_base + img.offset
            operands[1] = img.nbytes
        elif args and args[0] == "tiles":
            operands[0] = args[1]
        elif args and args[0] == "layer":
            layer = by_name[args[1]]
            c = cost_of[layer.name]
            for k, v in enumerate(layer.inputs[:2]):
                operands[k] = addr_of_value(v)
            operands[2] = addr_of_value(layer.output)
            if layer.name in images:
                operands[3] = conv_base + images[layer.name].offset
                operands[4] = images[layer.name].nbytes
            operands[5] = sched_base + args[2] * SCHEDULER_DESCRIPTOR_BYTES
            operands[6] = c.tiling.tiles
        elif args:
            operands[0] = args[0]
        blob += _INSTRUCTION.pack(OPCODES[op], index & 0xFFFF, *[o & 0xFFFFFFFF for o in operands])
    instructions = np.frombuffer(bytes(blob), dtype=np.uint8).copy()

    return CompiledNetwork(
        network=net,
        config=cfg,
        layers=placements,
        legs=legs,
        infos=infos,
        costs=costs,
        weight_images=images,
        instructions=instructions,
        instruction_count=len(program),
        buffers=buffers,
        memory_map=mm,
        input_shape=(c_in, h_in, w_in),
        output_elements=output_elements,
    )


def _listing(names: list[str]) -> str:
    """Every name, comma-separated (an error names every layer at once)."""
    return ", ".join(names)
