"""Performance profile and resource estimate of a network on the processor.

:func:`estimate_performance` compiles the network, costs every hardware layer with
the cycle model (:mod:`quantscope.fpga.cycles`) and returns a :class:`Profile`,
printed by :meth:`Profile.format` in the layout of MATLAB's "Deep Learning
Processor Profiler Performance Results". Its arithmetic, exactly:

- seconds = cycles / clock (Hz), for every row;
- Network cycles = sum of the layer rows + ``NETWORK_OVERHEAD_CYCLES``;
- Total Latency = FramesNum x (Network cycles + ``FRAME_OVERHEAD_CYCLES``);
- Frames/s = FramesNum x clock / Total Latency.

:func:`estimate_resources` gives DSPs, block RAM and LUTs from the resource model
of ``docs/fpga.md`` ("Resource model").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .compile import CompiledNetwork, compile_network
from .config import DataType, Family, Module, ProcessorConfig, processor
from .cycles import (
    ADDER_LANES,
    CONV_WINDOW,
    FC_LANES_PER_THREAD,
    FRAME_OVERHEAD_CYCLES,
    NETWORK_OVERHEAD_CYCLES,
    LayerCost,
)

__all__ = [
    "PROFILE_COLUMNS",
    "Profile",
    "ProfileRow",
    "RowKind",
    "estimate_performance",
    "estimate_resources",
    "profile_compiled",
]

#: Column names of :attr:`Profile.table` (MATLAB's).
PROFILE_COLUMNS = (
    "LastFrameLatency(cycles)",
    "LastFrameLatency(seconds)",
    "FramesNum",
    "Total Latency",
    "Frames/s",
)


class RowKind(StrEnum):
    """What a profile row stands for: the whole network, a module (its legs' layers
    summed) or one layer. Members compare equal to their strings."""

    NETWORK = "network"
    MODULE = "module"
    LAYER = "layer"


@dataclass(frozen=True)
class ProfileRow:
    """One row: ``level`` 0 (Network), 1 (module, or layer without modules), 2 (layer
    under a module). ``kind`` is a :class:`RowKind` (a string ``"network"``,
    ``"module"`` or ``"layer"`` is converted); ``layer`` the optimized layer name for
    layer rows."""

    label: str
    level: int
    kind: RowKind
    cycles: int
    layer: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", RowKind(self.kind))


@dataclass(frozen=True)
class Profile:
    """The profile of one network on one processor for ``frames`` frames.

    Attributes:
        bitstream: the configuration's name; clock_hz: processor clock (Hz).
        frames: FramesNum. layers: the costed layers (no fused ones), execution order.
        rows: Network row, module rows (when the network has conv-module layers),
            layer rows.
        network_overhead_cycles, frame_overhead_cycles: the named overheads used.
    """

    bitstream: str
    clock_hz: float
    frames: int
    layers: tuple[LayerCost, ...]
    rows: tuple[ProfileRow, ...]
    network_overhead_cycles: int = NETWORK_OVERHEAD_CYCLES
    frame_overhead_cycles: int = FRAME_OVERHEAD_CYCLES

    @property
    def network_cycles(self) -> int:
        """LastFrameLatency of the network: sum of layer rows + network overhead."""
        return sum(c.cycles for c in self.layers) + self.network_overhead_cycles

    @property
    def total_latency(self) -> int:
        """Total Latency (cycles) of all frames: frames x (network + frame overhead)."""
        return self.frames * (self.network_cycles + self.frame_overhead_cycles)

    @property
    def frames_per_second(self) -> float:
        """FramesNum x clock / Total Latency."""
        return self.frames * self.clock_hz / self.total_latency

    def seconds(self, cycles: int) -> float:
        """cycles / clock."""
        return cycles / self.clock_hz

    @property
    def latency_seconds(self) -> float:
        """Network LastFrameLatency in seconds."""
        return self.seconds(self.network_cycles)

    def cycles_of(self, label: str) -> int:
        """Cycles of the row labelled ``label`` (a layer's first member name, its
        optimized name, a module row such as ``"conv_module"``, or ``"Network"``)."""
        for r in self.rows:
            if label in (r.label, r.layer):
                return r.cycles
        raise KeyError(f"no row {label!r}; rows: {', '.join(r.label for r in self.rows)}")

    @property
    def table(self):
        """The profile as a pandas DataFrame indexed by row label, MATLAB's columns;
        FramesNum, Total Latency and Frames/s are filled on the Network row only."""
        import pandas as pd

        data = []
        for r in self.rows:
            if r.kind is RowKind.NETWORK:
                data.append((r.cycles, self.seconds(r.cycles), self.frames, self.total_latency, self.frames_per_second))
            else:
                data.append((r.cycles, self.seconds(r.cycles), None, None, None))
        df = pd.DataFrame(data, columns=list(PROFILE_COLUMNS), index=[r.label for r in self.rows])
        df.index.name = "Layer"
        return df

    def format(self) -> str:
        """The profile as MATLAB prints it (the layout in docs/published.md)."""
        labels = [" " * (4 * r.level) + r.label for r in self.rows]
        w = max(15, max(len(s) for s in labels) + 4)
        lines = [
            " " * (w - 1) + "Deep Learning Processor Profiler Performance Results",
            " " * (w - 3) + "LastFrameLatency(cycles)  LastFrameLatency(seconds)  FramesNum  Total Latency  Frames/s",
        ]
        for r, label in zip(self.rows, labels):
            line = f"{label:<{w}}{r.cycles:>11d}{self.seconds(r.cycles):>26.5f}"
            if r.kind is RowKind.NETWORK:
                line += f"{self.frames:>18d}{self.total_latency:>15d}{self.frames_per_second:>13.1f}"
            lines.append(line)
        lines.append(f" * The clock frequency of the DL processor is: {self.clock_hz / 1e6:g}MHz")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def report(self, path, **options):
        """Write the HTML report of this profile (per-layer cycles, resources; the DDR
        map with ``compiled=``) to ``path`` and its data as JSON beside it; options as
        :func:`quantscope.report.write_report`. Returns the page's path."""
        import quantscope  # the facade names the report stage, which sits above this one

        return quantscope.report(self, path, **options)


def _rows(costs: list[LayerCost], legs, network_cycles: int) -> tuple[ProfileRow, ...]:
    costed = [c for c in costs if not c.fused]
    rows = [ProfileRow("Network", 0, RowKind.NETWORK, network_cycles)]
    has_conv = any(c.module in (Module.CONV, Module.ADDER) for c in costed)
    if not has_conv:
        rows += [ProfileRow(c.label, 1, RowKind.LAYER, c.cycles, c.name) for c in costed]
        return tuple(rows)
    seen: dict[str, int] = {}
    for leg in legs:
        members = [c for c in costed if c.leg == leg.index]
        if not members:
            continue
        seen[leg.name] = seen.get(leg.name, 0) + 1
        name = leg.name if seen[leg.name] == 1 else f"{leg.name}_{seen[leg.name]}"
        rows.append(ProfileRow(name, 1, RowKind.MODULE, sum(c.cycles for c in members)))
        rows += [ProfileRow(c.label, 2, RowKind.LAYER, c.cycles, c.name) for c in members]
    return tuple(rows)


def profile_compiled(compiled: CompiledNetwork, frames: int = 1) -> Profile:
    """The :class:`Profile` of an already compiled network for ``frames`` frames."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        from ..errors import ConfigurationError, option

        raise ConfigurationError(f"{option('frames', '--frames')} must be a positive integer, got {frames!r}")
    costed = tuple(c for c in compiled.costs if not c.fused)
    network_cycles = sum(c.cycles for c in costed) + NETWORK_OVERHEAD_CYCLES
    return Profile(
        bitstream=compiled.config.name,
        clock_hz=compiled.config.clock_hz,
        frames=frames,
        layers=costed,
        rows=_rows(compiled.costs, compiled.legs, network_cycles),
    )


def estimate_performance(network: Any, config: ProcessorConfig | str, frames: int = 1) -> Profile:
    """Estimate the network's performance on the processor, without data.

    Args:
        network: a :class:`~quantscope.Network` (or anything ``prepare`` accepts).
        config: a :class:`ProcessorConfig` or a preset name.
        frames: FramesNum, the frames run back to back (>= 1).

    Returns:
        the :class:`Profile` (``.format()`` prints MATLAB's table).
    """
    return profile_compiled(compile_network(network, config), frames)


# ---------------------------------------------------------------- resource model
#: DSP blocks per multiply-accumulate lane, by (device family, data type). Intel
#: Arria 10 DSPs have a hard single-precision multiply-add (1 per DSP, Intel's data
#: sheet); on Xilinx a float32 MAC takes 2 DSP48E2 (Floating-Point IP, "full usage"
#: multiplier, adder in fabric). int8: two MACs share one DSP on both (assumption).
DSP_PER_MAC: dict[tuple[Family, DataType], float] = {
    (Family.XILINX, DataType.SINGLE): 2.0,
    (Family.INTEL, DataType.SINGLE): 1.0,
    (Family.XILINX, DataType.INT8): 0.5,
    (Family.INTEL, DataType.INT8): 0.5,
}
#: LUTs (Xilinx) or ALM-equivalents (Intel) of fabric per MAC lane (normalization,
#: alignment, pipeline registers, muxing): assumptions, float32 needs more glue on
#: Xilinx whose DSPs lack hard floating point.
LUT_PER_MAC: dict[tuple[Family, DataType], int] = {
    (Family.XILINX, DataType.SINGLE): 600,
    (Family.INTEL, DataType.SINGLE): 300,
    (Family.XILINX, DataType.INT8): 80,
    (Family.INTEL, DataType.INT8): 80,
}
#: LUTs per adder-module lane: assumption.
LUT_PER_ADDER_LANE: dict[DataType, int] = {DataType.SINGLE: 200, DataType.INT8: 20}
#: Fixed part per device family (DDR/AXI interfaces, instruction decode, control,
#: FIFOs), fitted so that one published configuration per family is reproduced:
#: Xilinx on MATLAB's default ZCU102 single configuration (377 DSP, 508 BRAM36,
#: 234,175 LUT), Intel on the published custom Arria 10 configuration (231 DSP,
#: 16,442,624 block-RAM bits, 117,943 LUT). See docs/fpga.md for the derivation.
BASE: dict[Family, dict[str, int]] = {
    Family.XILINX: {"dsp": 25, "bram_bits": 7_896_896, "lut": 127_775},
    Family.INTEL: {"dsp": 163, "bram_bits": 16_346_240, "lut": 96_743},
}


def _module_resources(config: ProcessorConfig) -> dict[str, dict[str, float]]:
    family = config.board_info.family
    dt = config.data_type
    word_bits = 8 * config.bytes_per_element
    conv_macs = config.conv.thread_number * CONV_WINDOW * CONV_WINDOW
    fc_macs = config.fc.thread_number * FC_LANES_PER_THREAD * config.data_type.pack
    adder_lanes = ADDER_LANES * config.data_type.pack
    dpm, lpm = DSP_PER_MAC[(family, dt)], LUT_PER_MAC[(family, dt)]
    return {
        Module.CONV.unit_name: {
            "dsp": conv_macs * dpm,
            "lut": conv_macs * lpm,
            "bram_bits": (config.conv.input_capacity + config.conv.output_capacity) * word_bits,
        },
        Module.FC.unit_name: {
            "dsp": fc_macs * dpm,
            "lut": fc_macs * lpm,
            "bram_bits": (config.fc.input_memory_size + config.fc.output_memory_size) * word_bits,
        },
        Module.ADDER.unit_name: {
            "dsp": 0,
            "lut": adder_lanes * LUT_PER_ADDER_LANE[dt],
            "bram_bits": (config.adder.input_memory_size + config.adder.output_memory_size) * word_bits,
        },
        "system": dict(BASE[family]),
    }


def estimate_resources(config: ProcessorConfig | str):
    """Estimate the processor's FPGA resources with the documented resource model.

    Args:
        config: a :class:`ProcessorConfig` or a preset name.

    Returns:
        a pandas DataFrame indexed by ``Available``, ``DL_Processor``, ``conv_module``,
        ``fc_module``, ``adder_module``, ``system`` with columns ``DSPs``,
        ``Block RAM`` (device blocks: BRAM36 on Xilinx, M20K on Intel),
        ``Block RAM bits`` and ``LUTs`` (LUTs on Xilinx, ALM-equivalents on Intel), and
        the utilization of ``DL_Processor`` in ``df.attrs["utilization"]`` (fractions).
        Module rows count bits, not blocks; ``DL_Processor`` blocks = ceil(bits / block bits).
    """
    import pandas as pd

    cfg = processor(config)
    board = cfg.board_info
    parts = _module_resources(cfg)
    rows = {}
    for name, p in parts.items():
        rows[name] = (
            int(round(p["dsp"])),
            math.ceil(p["bram_bits"] / board.block_ram_bits),
            int(p["bram_bits"]),
            int(round(p["lut"])),
        )
    dsp = sum(int(round(p["dsp"])) for p in parts.values())
    bits = sum(int(p["bram_bits"]) for p in parts.values())
    lut = sum(int(round(p["lut"])) for p in parts.values())
    total = (dsp, math.ceil(bits / board.block_ram_bits), bits, lut)
    available = (board.dsp, board.block_ram, board.block_ram * board.block_ram_bits, board.logic)
    df = pd.DataFrame(
        [available, total] + list(rows.values()),
        index=["Available", "DL_Processor"] + list(rows),
        columns=["DSPs", "Block RAM", "Block RAM bits", "LUTs"],
    )
    df.attrs["device"] = board.device
    df.attrs["logic_unit"] = board.logic_unit
    df.attrs["utilization"] = {c: total[i] / available[i] for i, c in enumerate(df.columns)}
    return df
