"""Placement and legs: which layers run on the host and which on the processor, and
how the hardware layers group into legs.

The input layer and an input normalization run on the host (:attr:`Placement.SW`:
the host normalizes and writes the frames to the input region); so does a tail of
output layers after the last hardware layer: of the kinds of
:data:`OUTPUT_SOFTWARE_KINDS` (Softmax, LogSoftmax, Flatten, Reshape, Squeeze,
Identity), or of any kind the processor lacks (MATLAB's "SW Layer", no cycles). Every other layer is a
hardware layer (:attr:`Placement.HW`) and must have an entry in
:data:`quantscope.fpga.cycles.COSTS`. Consecutive hardware layers on one module
group (the conv module with its adder; the fc module) form a leg, executed as one
instruction group.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ...errors import UnsupportedModelError, option
from ...network import LayerKind, Network, OptimizedLayer
from ...ops import ops_with
from ..config import Module
from ..cycles import COSTS, MODULE_OF, fused
from .activations import Activations

__all__ = [
    "OUTPUT_SOFTWARE_KINDS",
    "LayerPlacement",
    "Leg",
    "LegLayers",
    "Placement",
    "group_legs",
    "is_fused",
    "layer_placements",
    "place",
    "row_label",
]

#: Layer kinds that may run on the host after the last hardware layer.
OUTPUT_SOFTWARE_KINDS = ops_with(fpga_output=True)


class Placement(StrEnum):
    """Where a layer runs: on the host (``"SW Layer"``) or on the processor
    (``"HW Layer"``), MATLAB's words. Members compare equal to their strings."""

    SW = "SW Layer"
    HW = "HW Layer"


@dataclass(frozen=True)
class LayerPlacement:
    """Where one optimized layer runs.

    ``placement`` is :attr:`Placement.SW` (host, ``"SW Layer"``) or
    :attr:`Placement.HW` (``"HW Layer"``); ``module`` is the :class:`Module` that runs
    it (``"conv"``, ``"fc"``, ``"adder"``), or None (host, or fused into a neighbour);
    ``leg`` the index of its leg (None on the host); ``note`` says why."""

    index: int
    name: str
    label: str
    kind: str
    placement: Placement
    module: Module | None
    leg: int | None
    fused: bool
    note: str = ""


@dataclass(frozen=True)
class Leg:
    """Layers executed together on one module group (:attr:`Module.CONV`: the conv
    module with its adder; :attr:`Module.FC`)."""

    index: int
    module: Module
    layers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.module}_module"


@dataclass(frozen=True)
class LegLayers:
    """A :class:`Leg` with its layers (``layers``, fused ones included) and the
    layers that have a pass of their own (``costed``), in execution order."""

    leg: Leg
    layers: tuple[OptimizedLayer, ...]

    @property
    def costed(self) -> tuple[OptimizedLayer, ...]:
        return tuple(layer for layer in self.layers if not is_fused(layer.kind))


def row_label(layer: OptimizedLayer) -> str:
    """A layer's label in the profile, as MATLAB labels rows: its first member
    (``conv_1`` of ``conv_1_relu_1``), or its name when that is the members' module
    (``model.0.act`` for ``model.0.act/Sigmoid`` and ``model.0.act/Mul``)."""
    first = layer.members[0]
    return first if layer.name.startswith(first) else layer.name


def is_fused(kind: str) -> bool:
    """A hardware layer kind without a pass of its own (its cost function is ``fused``)."""
    return COSTS[kind] is fused


#: Kinds the refusal has advice for (the op table's ``fpga_advice``).
_ACTIVATION_KINDS = ops_with(fpga_advice="activation")
_NORMALIZATION_KINDS = ops_with(fpga_advice="normalization")


def _advice(kinds: set[str]) -> str:
    """What to do about the layer kinds the processor has no module for (the sentence
    before "or quantize for the CPU target instead")."""
    advice = []
    if kinds & _ACTIVATION_KINDS:
        advice.append(
            "use activations the processor has (Relu, Clip/Relu6, LeakyRelu, PRelu, Sigmoid, Tanh, HardSigmoid, "
            "HardSwish, SiLU) in place of "
            + ", ".join(sorted(kinds & _ACTIVATION_KINDS))
            + " (GELU exports as Div, Erf, Add and Mul)"
        )
    if kinds & ops_with(fpga_advice="batchnorm"):
        advice.append(
            "a BatchNormalization folds only into the Conv, ConvTranspose or Gemm right before it (read by nothing "
            "else): place it after the convolution "
            "(Conv -> BN -> ReLU rather than BN -> ReLU -> Conv)"
        )
    if kinds & _NORMALIZATION_KINDS:
        advice.append(
            "the processor has no "
            + " or ".join(sorted(kinds & _NORMALIZATION_KINDS))
            + " (a transformer runs on the CPU target)"
        )
    if "Transpose" in kinds:
        advice.append(
            "a Transpose (a channel shuffle's Reshape -> Transpose -> Reshape, a layout change) has no module: "
            "the processor keeps activations channel-planar"
        )
    return ("; ".join(advice)[:1].upper() + "; ".join(advice)[1:] + "; or ") if advice else "Otherwise "


def _listing(names: list[str]) -> str:
    """Every name, comma-separated (an error names every layer at once)."""
    return ", ".join(names)


def place(net: Network, acts: Activations) -> tuple[dict[str, Placement], dict[str, str]]:
    """The placement of every layer of ``net`` and a note for each host layer.

    Raises:
        UnsupportedModelError: naming every hardware layer whose kind the processor
            lacks (grouped by kind), or when no layer runs on the processor.
    """
    where: dict[str, Placement] = {}
    notes: dict[str, str] = {}
    for layer in net.layers:
        if layer.kind == LayerKind.INPUT:
            where[layer.name] = Placement.SW
            notes[layer.name] = "host writes the frames to InputData"
        elif layer.kind == LayerKind.NORMALIZATION and set(layer.inputs) <= {net.input_name}:
            where[layer.name] = Placement.SW
            notes[layer.name] = "normalized on the host"
    graph_outputs = set(net.output_names)

    def host_tail_kind(kind: str) -> bool:
        return kind in OUTPUT_SOFTWARE_KINDS or kind not in COSTS

    for layer in reversed(net.layers):
        if layer.name in where or not host_tail_kind(layer.kind):
            continue
        users = acts.consumers(layer.output)
        if all(where.get(u.name) is Placement.SW and host_tail_kind(u.kind) for u in users) and (
            users or layer.output in graph_outputs
        ):
            where[layer.name] = Placement.SW
            notes[layer.name] = "output layer, run on the host"
    bad: list[tuple[str, str]] = []
    no_module: dict[str, list[str]] = {}
    not_last: dict[str, list[str]] = {}
    for layer in net.layers:
        if layer.name in where:
            continue
        where[layer.name] = Placement.HW
        if layer.kind not in COSTS:
            bad.append((layer.name, layer.kind))
            if layer.kind in OUTPUT_SOFTWARE_KINDS:
                users = ", ".join(u.name for u in acts.consumers(layer.output))
                not_last.setdefault(layer.kind, []).append(f"{layer.name!r} -> {users}")
            else:
                no_module.setdefault(layer.kind, []).append(repr(layer.name))
    if bad:
        # a Transpose of a network input: a channels-last (NHWC) model, as tf2onnx exports by default
        layout = [
            name for name, kind in bad if kind == "Transpose" and set(net.layer(name).inputs) & set(net.input_names)
        ]
        layout_hint = (
            f" The network transposes its input ({_listing([repr(n) for n in layout])}): it takes channels-last "
            "(NHWC) frames, and the processor reads channel-planar (NCHW) frames; export it with NCHW input "
            "(tf2onnx: --inputs-as-nchw INPUT_NAME) so that the "
            "Transpose goes."
            if layout
            else ""
        )
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
            "its normalization, and a tail of output layers after the last hardware layer ("
            + ", ".join(sorted(OUTPUT_SOFTWARE_KINDS))
            + ", or any kind it lacks). "
            + _advice(set(no_module))
            + "quantize for the CPU target instead ("
            + option(
                'quantize("cpu"), validate(..., target="cpu")', "quantscope validate --target cpu, without --bitstream"
            )
            + ")."
            + layout_hint,
            nodes=bad,
        )
    if Placement.HW not in where.values():
        raise UnsupportedModelError("the network has no layer to run on the processor (only host layers)")
    return where, notes


def group_legs(hardware: list[OptimizedLayer]) -> list[LegLayers]:
    """The legs of the hardware layers (in network order): a new leg wherever the
    module group changes; a fused layer joins the current leg (or, before the first
    one, the next); only fused layers make one trivial conv leg."""
    groups: list[tuple[Module, list[OptimizedLayer]]] = []
    pending: list[OptimizedLayer] = []
    for layer in hardware:
        module = MODULE_OF.get(layer.kind)
        if module is None:  # fused: joins the current leg (or the next one)
            if groups:
                groups[-1][1].append(layer)
            else:
                pending.append(layer)
            continue
        if not groups or groups[-1][0] != module.group:
            groups.append((module.group, pending + [layer]))
            pending = []
        else:
            groups[-1][1].append(layer)
    if pending:
        if groups:
            groups[-1][1].extend(pending)
        else:  # only fused layers in hardware: a trivial conv leg
            groups.append((Module.CONV, pending))
    return [
        LegLayers(Leg(i, group, tuple(layer.name for layer in layers)), tuple(layers))
        for i, (group, layers) in enumerate(groups)
    ]


def layer_placements(
    net: Network, where: dict[str, Placement], notes: dict[str, str], legs: list[LegLayers]
) -> list[LayerPlacement]:
    """One :class:`LayerPlacement` per layer of ``net``, in network order (1-based index)."""
    leg_of = {name: leg.leg.index for leg in legs for name in leg.leg.layers}
    placements: list[LayerPlacement] = []
    for i, layer in enumerate(net.layers, start=1):
        if where[layer.name] is Placement.SW:
            placements.append(
                LayerPlacement(
                    i,
                    layer.name,
                    row_label(layer),
                    layer.kind,
                    Placement.SW,
                    None,
                    None,
                    False,
                    notes.get(layer.name, ""),
                )
            )
            continue
        is_f = is_fused(layer.kind)
        placements.append(
            LayerPlacement(
                i,
                layer.name,
                row_label(layer),
                layer.kind,
                Placement.HW,
                MODULE_OF.get(layer.kind),
                leg_of[layer.name],
                is_f,
                "fused: no pass of its own" if is_f else "",
            )
        )
    return placements
