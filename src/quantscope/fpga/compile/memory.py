"""The DDR memory map: the regions in MATLAB's order, each 4 KiB aligned, and their
sizes printed as MATLAB prints them (``docs/fpga.md``, "The DDR memory map")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from ..config import Module, ProcessorConfig

__all__ = [
    "ALIGNMENT",
    "REGION_NAMES",
    "SCHEDULER_DESCRIPTOR_BYTES",
    "MemoryMap",
    "Region",
    "RegionName",
    "align",
    "allocation_unit",
    "format_size",
    "plan_memory",
    "round_up",
]

#: Every DDR region starts on and is sized to a multiple of 4 KiB (docs/fpga.md), or of
#: the configuration's ``ddr_allocation_bytes`` when larger.
ALIGNMENT = 4096
#: Bytes of one conv-module descriptor (one output row of one window-generator pass).
SCHEDULER_DESCRIPTOR_BYTES = 64


class RegionName(StrEnum):
    """The regions of the map, in map order (MATLAB's ``offset_name``). Members compare
    equal to their strings (``RegionName.INPUT_DATA == "InputDataOffset"``)."""

    INPUT_DATA = "InputDataOffset"
    OUTPUT_RESULT = "OutputResultOffset"
    SCHEDULER_DATA = "SchedulerDataOffset"
    SYSTEM_BUFFER = "SystemBufferOffset"
    INSTRUCTION_DATA = "InstructionDataOffset"
    CONV_WEIGHT_DATA = "ConvWeightDataOffset"
    FC_WEIGHT_DATA = "FCWeightDataOffset"
    END = "EndOffset"


#: Region names in map order. The weight regions appear only when the network has
#: layers of that module (MATLAB's map of an FC-only network has no ConvWeightDataOffset).
REGION_NAMES: tuple[str, ...] = tuple(RegionName)
#: The weight region of each module that has weights.
WEIGHT_REGION: dict[Module, RegionName] = {
    Module.CONV: RegionName.CONV_WEIGHT_DATA,
    Module.FC: RegionName.FC_WEIGHT_DATA,
}


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return -(-int(n) // multiple) * multiple


def align(n: int, alignment: int = ALIGNMENT) -> int:
    """``n`` bytes rounded up to the alignment (4 KiB unless given)."""
    return round_up(n, alignment)


def format_size(nbytes: int, total: bool = False) -> str:
    """Bytes as MATLAB prints map sizes: ``"368.0 kB"`` (kB = 1024 B, one decimal);
    from 4 MiB on, ``"93.8 MB"`` (MB = 1024^2 B). ``total`` prefixes ``"Total: "``."""
    text = f"{nbytes / 1024**2:.1f} MB" if nbytes >= 4 * 1024**2 else f"{nbytes / 1024:.1f} kB"
    return f"Total: {text}" if total else text


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
        if name == RegionName.END:
            return Region(RegionName.END, self.total, 0)
        raise KeyError(f"no region {name!r} in the map; regions: {', '.join(r.name for r in self.regions)}")

    def __contains__(self, name: object) -> bool:
        return name == RegionName.END or any(r.name == name for r in self.regions)

    def offset(self, name: str) -> int:
        """The offset of region ``name``, 0 when the map has no such region."""
        return self[name].offset if name in self else 0

    def rows(self) -> list[tuple[str, str, str]]:
        """``(offset_name, offset_address, allocated_space)`` as MATLAB prints them."""
        out = [(str(r.name), f"0x{r.offset:08x}", format_size(r.size)) for r in self.regions]
        out.append((str(RegionName.END), f"0x{self.total:08x}", format_size(self.total, total=True)))
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


def allocation_unit(config: ProcessorConfig) -> int:
    """The unit in which regions and system-buffer slots are allocated: 4 KiB, or the
    configuration's ``ddr_allocation_bytes`` when larger."""
    return max(ALIGNMENT, config.ddr_allocation_bytes)


def plan_memory(
    config: ProcessorConfig,
    *,
    input_shape: tuple[int, int, int],
    output_elements: int,
    descriptors: int,
    system_buffer_bytes: int,
    instruction_bytes: int,
    weight_bytes: Mapping[Module, int],
) -> MemoryMap:
    """The map of one compiled network, region by region (``docs/fpga.md``; v = DDR
    bytes per activation element, F = InputFrameNumberLimit), each size rounded up to
    the allocation unit (4 KiB, or ``ddr_allocation_bytes``):

    - InputData: F x H x W x C' x v, C' = C padded to N;
    - OutputResult: F x ``output_elements`` (padded in their layout) x v;
    - SchedulerData: one 64-byte descriptor per output row of each window-generator
      pass; on a configuration without ``scheduler_region`` the descriptors follow
      the instructions in InstructionData and the map has no SchedulerData row;
    - SystemBuffer: ``system_buffer_bytes`` (the activation slots);
    - InstructionData: ``instruction_bytes`` (header and instructions);
    - ConvWeightData, FCWeightData: the weight images of each module in
      ``weight_bytes``, only for the modules listed there.
    """
    c, h, w = input_shape
    frames, v = config.input_frame_number_limit, config.word_bytes
    descriptor_bytes = descriptors * SCHEDULER_DESCRIPTOR_BYTES
    sizes: list[tuple[RegionName, int]] = [
        (RegionName.INPUT_DATA, frames * h * w * round_up(c, config.channel_multiple) * v),
        (RegionName.OUTPUT_RESULT, frames * output_elements * v),
    ]
    if config.scheduler_region:
        sizes.append((RegionName.SCHEDULER_DATA, descriptor_bytes))
    sizes += [
        (RegionName.SYSTEM_BUFFER, system_buffer_bytes),
        (RegionName.INSTRUCTION_DATA, instruction_bytes + (0 if config.scheduler_region else descriptor_bytes)),
    ]
    sizes += [(WEIGHT_REGION[m], weight_bytes[m]) for m in (Module.CONV, Module.FC) if m in weight_bytes]
    unit = allocation_unit(config)
    regions, at = [], 0
    for name, nbytes in sizes:
        size = align(nbytes, unit)
        regions.append(Region(name, at, size))
        at += size
    return MemoryMap(tuple(regions))
