"""The compiled network: what :func:`~quantscope.fpga.compile_network` returns, and
its listing as MATLAB's ``compile`` prints it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...network import Network
from ..config import Module, ProcessorConfig
from ..cycles import LayerCost, LayerInfo
from .instructions import Instruction
from .memory import WEIGHT_REGION, MemoryMap
from .placement import LayerPlacement, Leg, Placement
from .weights import WeightImage

__all__ = ["CompiledNetwork"]


@dataclass
class CompiledNetwork:
    """The result of :func:`~quantscope.fpga.compile_network`.

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
        input_shape: ``(C, H, W)`` of the network input; output_elements: elements of
            one frame's hardware outputs in the OutputResult region.
        program: the instructions of ``instructions``, typed
            (:mod:`quantscope.fpga.compile.instructions`).
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
    program: tuple[Instruction, ...] = ()

    @property
    def hardware_layers(self) -> list[LayerPlacement]:
        return [p for p in self.layers if p.placement == Placement.HW]

    @property
    def software_layers(self) -> list[LayerPlacement]:
        return [p for p in self.layers if p.placement == Placement.SW]

    def conv_weight_bytes(self) -> bytes:
        """The conv weight region's content (images at their offsets, zero padded)."""
        return self._region_bytes(Module.CONV)

    def fc_weight_bytes(self) -> bytes:
        """The FC weight region's content."""
        return self._region_bytes(Module.FC)

    def _region_bytes(self, module: Module) -> bytes:
        name = WEIGHT_REGION[module]
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
