"""The program: the typed instructions that run the legs.

Per leg: :class:`LegBegin`; on an fc leg :class:`FcLoadInput`, then per FC layer a
weights load (or a prefetch, when the cycle model prefetched them) and
:class:`FcCompute`, then :class:`FcStoreOutput`; on a conv leg one
:class:`LayerOp` per costed layer, pointing at its tile descriptors in the scheduler
region; then :class:`LegEnd`. The program ends with :class:`End`.

Operands are DDR addresses from :class:`Addresses`. The length of the program does
not depend on them, and the memory map needs that length (the InstructionData
region), so the compiler builds it once with :class:`Addresses` (everything at 0) to
size the map, then again with :class:`DdrAddresses` over the map.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...network import LayerKind, Network
from ...ops import ops_with
from ..config import Module
from ..cycles import LayerCost
from .activations import Activations
from .buffers import SystemBuffer, fc_input_in_place, fc_input_slot, slot_key
from .instructions import (
    Add,
    AvgPool,
    Conv,
    ConvTranspose,
    End,
    FcCompute,
    FcLoadInput,
    FcLoadWeights,
    FcPrefetchWeights,
    FcStoreOutput,
    GlobalPool,
    Instruction,
    LayerOp,
    LegBegin,
    LegEnd,
    Lut,
    MaxPool,
    Mul,
    Resize,
)
from .memory import SCHEDULER_DESCRIPTOR_BYTES, MemoryMap, RegionName
from .placement import LegLayers, Placement
from .weights import WeightImage

__all__ = ["Addresses", "DdrAddresses", "build_program", "descriptor_count"]

#: The instruction of each layer kind the conv module or the adder runs.
LAYER_OPS: dict[str, type[LayerOp]] = {
    LayerKind.CONV: Conv,
    "MaxPool": MaxPool,
    "AveragePool": AvgPool,
    "GlobalAveragePool": GlobalPool,
    "GlobalMaxPool": GlobalPool,
    "Add": Add,
    "Sum": Add,
    "Mul": Mul,
    **dict.fromkeys(ops_with(fpga_cost="lut"), Lut),
    **dict.fromkeys(ops_with(fpga_cost="resize"), Resize),
    **dict.fromkeys(ops_with(fpga_cost="conv_transpose"), ConvTranspose),
}


class Addresses:
    """DDR addresses of the program's operands, all 0 (the program unplaced)."""

    def slot(self, key: str) -> tuple[int, int]:
        """Address and bytes of a system-buffer slot."""
        return (0, 0)

    def value(self, value: str) -> int:
        """Address of an activation a conv-module or adder layer reads or writes."""
        return 0

    def fc_weights(self, layer: str) -> tuple[int, int]:
        """Address and bytes of an fc layer's weight image."""
        return (0, 0)

    def conv_weights(self, layer: str) -> tuple[int, int]:
        """Address and bytes of a layer's conv weight image; ``(0, 0)`` without one."""
        return (0, 0)

    def descriptors(self, index: int) -> int:
        """Address of the ``index``-th conv-module descriptor."""
        return 0

    def fc_input(self, leg: LegLayers) -> tuple[int, int]:
        """Address and bytes of an fc leg's input vector (its staging slot, or the
        conv-module output it reads in place)."""
        return (0, 0)


class DdrAddresses(Addresses):
    """The addresses in the memory map ``mm``: slots in the SystemBuffer region, the
    network input (and what the host writes) in the InputData region, weight images in
    their weight regions, tile descriptors in the SchedulerData region."""

    def __init__(
        self,
        mm: MemoryMap,
        buffer: SystemBuffer,
        images: Mapping[str, WeightImage],
        acts: Activations,
        where: Mapping[str, Placement],
        input_name: str,
        instruction_bytes: int = 0,
    ):
        self.mm, self.buffer, self.images, self.acts, self.where = mm, buffer, images, acts, where
        self.input_name = input_name
        self.hardware = {name for name, p in where.items() if p is Placement.HW}
        self.system = mm[RegionName.SYSTEM_BUFFER].offset
        # the descriptors: in their own region, or after the instructions
        self.descriptor_base = (
            mm[RegionName.SCHEDULER_DATA].offset
            if RegionName.SCHEDULER_DATA in mm
            else mm[RegionName.INSTRUCTION_DATA].offset + instruction_bytes
        )

    def slot(self, key: str) -> tuple[int, int]:
        offset, nbytes = self.buffer.slots[key]
        return (self.system + offset, nbytes)

    def value(self, value: str) -> int:
        value = self.acts.source(value)
        producer = self.acts.producer.get(value)
        if value == self.input_name or producer is not None and self.where[producer.name] is Placement.SW:
            return self.mm[RegionName.INPUT_DATA].offset
        key = slot_key(value, self.acts, self.hardware)
        return self.system + self.buffer.slots[key][0] if key in self.buffer.slots else 0

    def fc_weights(self, layer: str) -> tuple[int, int]:
        img = self.images[layer]
        return (self.mm.offset(RegionName.FC_WEIGHT_DATA) + img.offset, img.nbytes)

    def conv_weights(self, layer: str) -> tuple[int, int]:
        if layer not in self.images:
            return (0, 0)
        img = self.images[layer]
        return (self.mm.offset(RegionName.CONV_WEIGHT_DATA) + img.offset, img.nbytes)

    def descriptors(self, index: int) -> int:
        return self.descriptor_base + index * SCHEDULER_DESCRIPTOR_BYTES

    def fc_input(self, leg: LegLayers) -> tuple[int, int]:
        key = fc_input_in_place(leg, self.acts, self.hardware) or fc_input_slot(leg.leg)
        return self.slot(key)


def build_program(
    net: Network, legs: list[LegLayers], costs: list[LayerCost], addresses: Addresses
) -> list[Instruction]:
    """The instructions that run ``legs`` (costs as :func:`~.costs.cost_legs` gives them)."""
    index = {layer.name: i for i, layer in enumerate(net.layers)}
    cost_of = {c.name: c for c in costs}
    program: list[Instruction] = []
    descriptors = 0
    for leg in legs:
        fc = leg.leg.module is Module.FC
        costed = leg.costed
        program.append(LegBegin(leg.leg.index, leg.leg.module))
        if fc and costed:
            program.append(FcLoadInput(index[costed[0].name], *addresses.fc_input(leg)))
        for layer in costed:
            c = cost_of[layer.name]
            i = index[layer.name]
            if layer.kind == LayerKind.FC:
                load = FcPrefetchWeights if c.prefetched else FcLoadWeights
                program.append(load(i, *addresses.fc_weights(layer.name)))
                program.append(FcCompute(i, c.tiling.tiles))
            else:
                inputs = [addresses.value(v) for v in layer.inputs[:2]] + [0, 0]
                program.append(
                    LAYER_OPS[layer.kind](
                        i,
                        inputs[0],
                        inputs[1],
                        addresses.value(layer.output),
                        *addresses.conv_weights(layer.name),
                        addresses.descriptors(descriptors),
                        c.tiling.tiles,
                    )
                )
                descriptors += c.descriptors
        if fc and costed:
            program.append(FcStoreOutput(index[costed[-1].name], *addresses.slot(costed[-1].output)))
        program.append(LegEnd(leg.leg.index))
    program.append(End())
    return program


def descriptor_count(costs: list[LayerCost]) -> int:
    """The conv-module and adder descriptors of the costed layers (docs/fpga.md)."""
    return sum(c.descriptors for c in costs)
