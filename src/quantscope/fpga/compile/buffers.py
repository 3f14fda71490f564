"""Where activations live in DDR: the system-buffer slots and the values the
processor writes to the output region.

Each DDR-resident activation has one slot in the SystemBuffer region, aligned to the
allocation unit (4 KiB, or the configuration's ``ddr_allocation_bytes``), holding one
frame's padded elements at ``word_bytes`` each: every conv-module or adder layer output
(Concat inputs alias into the Concat's buffer, fused layers alias their input), and
per fc leg its input vector and its output vector; FC activations inside a leg stay on
chip. An fc leg reads a conv-module or adder output in place (the channel-planar
layout is the flattened ``(c, h, w)`` order); any other input (the network input,
written by the host to InputData) is staged in a slot of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...network import LayerKind, Network
from ..config import Module, ProcessorConfig
from ..cycles import LayerInfo
from .activations import Activations
from .memory import align, allocation_unit
from .placement import Leg, LegLayers, Placement

__all__ = ["SystemBuffer", "fc_input_in_place", "fc_input_slot", "output_values", "slot_key", "system_buffer"]


@dataclass(frozen=True)
class SystemBuffer:
    """The SystemBuffer region's slots: key -> ``(offset inside the region, bytes)``,
    and the bytes the region needs (each slot 4 KiB aligned)."""

    slots: dict[str, tuple[int, int]]
    size: int


def fc_input_slot(leg: Leg) -> str:
    """The slot key of an fc leg's staged input vector."""
    return f"{leg.name}_{leg.index}_input"


def slot_key(value: str, acts: Activations, hardware: set[str]) -> str:
    """The slot that holds ``value``: that of the value a fused alias reads from, or of
    the hardware Concat it is written into."""
    value = acts.source(value)
    for user in acts.consumers(value):
        if user.kind == "Concat" and user.name in hardware:
            return slot_key(user.output, acts, hardware)
    return value


def fc_input_in_place(leg: LegLayers, acts: Activations, hardware: set[str]) -> str | None:
    """The slot an fc leg reads its input from in place (a conv-module or adder output),
    or None when the input is staged (the network input, a host layer's output)."""
    source = acts.source(leg.costed[0].inputs[0])
    producer = acts.producer.get(source)
    if producer is None or producer.name not in hardware or producer.kind == LayerKind.FC:
        return None
    return slot_key(source, acts, hardware)


def system_buffer(
    legs: list[LegLayers],
    infos: Mapping[str, LayerInfo],
    acts: Activations,
    hardware: set[str],
    config: ProcessorConfig,
) -> SystemBuffer:
    """The slots of the legs' DDR-resident activations, in execution order."""
    v = config.word_bytes
    unit = allocation_unit(config)
    slots: dict[str, tuple[int, int]] = {}
    size = 0

    def add(key: str, nbytes: int) -> None:
        nonlocal size
        if key not in slots:
            slots[key] = (size, int(nbytes))
            size += align(nbytes, unit)

    for leg in legs:
        costed = leg.costed
        if leg.leg.module is Module.FC and costed:
            if fc_input_in_place(leg, acts, hardware) is None:
                add(fc_input_slot(leg.leg), infos[costed[0].name].fc_in_padded * v)
            add(costed[-1].output, infos[costed[-1].name].fc_out_padded * v)
        else:
            for layer in costed:
                key = slot_key(layer.output, acts, hardware)
                add(key, acts.padded_elements(key) * v)
    return SystemBuffer(slots, size)


def output_values(net: Network, where: Mapping[str, Placement], acts: Activations) -> list[str]:
    """The hardware outputs the host reads from the OutputResult region: the values a
    host layer after the processor reads, and the network outputs a hardware layer
    writes, each once, in network order."""
    out: list[str] = []

    def add(value: str) -> None:
        p = acts.producer.get(value)
        if p is not None and where[p.name] is Placement.HW and value not in out:
            out.append(value)

    for layer in net.layers:
        if where[layer.name] is Placement.SW and layer.kind not in (LayerKind.INPUT, LayerKind.NORMALIZATION):
            for v in layer.inputs:
                add(v)
    for v in net.output_names:
        add(v)
    return out
