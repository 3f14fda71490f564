"""The configuration search: the cheapest processor that runs a network at a frame
rate on a board, as MATLAB's ``optimizeConfigurationForNetwork`` does.

:func:`optimize_config` tries every conv thread count, every fc thread count (when the
network has fully connected layers) and a few conv memory sizes, starting from the
board's shipping preset of the data type. For each it costs the network once (the
cycles do not depend on the clock, and they are :func:`~quantscope.fpga.compile_network`'s),
finds the lowest clock on the board's 25 MHz grid
that reaches the frame rate by :func:`~quantscope.fpga.estimate_performance`'s
arithmetic, and estimates the resources with :func:`~quantscope.fpga.estimate_resources`.
A candidate is rejected when its layers do not fit its memories, when it is too slow
even at the board's highest clock, or when it needs more DSPs, block RAM or LUTs than
the board has. The cheapest of the rest wins: the lowest mean utilization of the
board's DSPs, block RAM and LUTs, then the lowest clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError, UnsupportedModelError
from ..network import LayerKind, Network, prepare
from .compile import cost_network
from .compile.compiler import is_quantized_network
from .config import BOARDS, CONV_THREAD_NUMBERS, FC_THREAD_NUMBERS, PRESETS, DataType, ProcessorConfig
from .cycles import FRAME_OVERHEAD_CYCLES, NETWORK_OVERHEAD_CYCLES
from .profile import estimate_resources

__all__ = ["CONV_MEMORY_SIZES", "Candidate", "ConfigSearch", "optimize_config"]

#: Conv input/output memory sizes tried (``(H, W, C)`` elements): half, the published
#: default and one and a half times its height and width.
CONV_MEMORY_SIZES: tuple[tuple[int, int, int], ...] = ((113, 113, 3), (227, 227, 3), (340, 340, 3))
#: The clock grid, MHz.
CLOCK_STEP_MHZ = 25.0


@dataclass(frozen=True)
class Candidate:
    """One configuration tried.

    ``config`` at the clock chosen for it (the board's highest when it is too slow
    there); ``frames_per_second`` at that clock; ``dsp``, ``block_ram``, ``luts`` its
    resources; ``cost`` the mean utilization of the board's DSPs, block RAM and LUTs;
    ``verdict``: ``"chosen"``, ``"meets both"`` (a costlier one that also works),
    ``"too slow"``, ``"too big"`` or ``"does not fit"`` (a layer does not fit its
    memories); ``reason`` says why, in numbers."""

    config: ProcessorConfig
    network_cycles: int
    frames_per_second: float
    dsp: int
    block_ram: int
    luts: int
    cost: float
    verdict: str
    reason: str = ""

    @property
    def meets(self) -> bool:
        return self.verdict in ("chosen", "meets both")


@dataclass
class ConfigSearch:
    """The result of :func:`optimize_config`: every candidate, cheapest first, and the
    chosen one (None when none meets the frame rate on the board)."""

    board: str
    frames_per_second: float
    data_type: DataType
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.verdict == "chosen"), None)

    @property
    def config(self) -> ProcessorConfig:
        """The chosen configuration; raises :class:`ConfigurationError` when none met both."""
        if self.chosen is None:
            raise ConfigurationError(self.failure())
        return self.chosen.config

    def failure(self) -> str:
        """Why no configuration was chosen (the fastest that fits, in numbers)."""
        fitting = [c for c in self.candidates if c.verdict == "too slow"]
        best = max(fitting, key=lambda c: c.frames_per_second, default=None)
        if best is None:
            message = f"no processor configuration of this search fits the network on {self.board}"
            reasons = Counter(c.reason for c in self.candidates if c.verdict == "does not fit" and c.reason)
            if reasons:  # the commonest reason: one of the network (a symbolic size) is every candidate's
                reason, count = max(reasons.items(), key=lambda item: (item[1], item[0]))
                if count == len(self.candidates):  # the network's, not a configuration's
                    return reason
                message += f" ({count} of {len(self.candidates)}: {reason.rstrip('.')})"
            return message
        return (
            f"no processor configuration reaches {self.frames_per_second:g} Frames/s on {self.board}: the fastest "
            f"that fits the board gives {best.frames_per_second:.1f} Frames/s at "
            f"{best.config.target_frequency_mhz:g} MHz (ConvThreadNumber {best.config.conv.thread_number}, "
            f"FCThreadNumber {best.config.fc.thread_number})"
        )

    @property
    def table(self):
        """The candidates as a pandas DataFrame, cheapest first."""
        import pandas as pd

        return pd.DataFrame(
            [
                (
                    c.config.conv.thread_number,
                    c.config.fc.thread_number,
                    "x".join(map(str, c.config.conv.input_memory_size)),
                    c.config.target_frequency_mhz,
                    round(c.frames_per_second, 1),
                    c.dsp,
                    c.block_ram,
                    c.luts,
                    round(100 * c.cost, 1),
                    c.verdict,
                    c.reason,
                )
                for c in self.candidates
            ],
            columns=[
                "ConvThreadNumber",
                "FCThreadNumber",
                "ConvMemory",
                "MHz",
                "Frames/s",
                "DSPs",
                "Block RAM",
                "LUTs",
                "Cost (%)",
                "Verdict",
                "Why",
            ],
        )

    def format(self) -> str:
        """The candidates tried (cheapest first) and the choice, as lines of text."""
        board = BOARDS[self.board]
        lines = [
            f"### Searching {self.data_type.value} processor configurations for {self.frames_per_second:g} Frames/s "
            f"on {self.board} ({board.dsp} DSP, {board.block_ram} block RAM, {board.logic} {board.logic_unit}):",
            f"{'conv':>5} {'fc':>3} {'conv memory':>12} {'MHz':>6} {'Frames/s':>9} {'DSP':>5} {'BRAM':>5} "
            f"{'LUT':>7} {'cost':>6}  verdict",
        ]
        for c in self.candidates:
            cfg = c.config
            why = f" ({c.reason})" if c.reason else ""
            lines.append(
                f"{cfg.conv.thread_number:>5} {cfg.fc.thread_number:>3} "
                f"{'x'.join(map(str, cfg.conv.input_memory_size)):>12} {cfg.target_frequency_mhz:>6g} "
                f"{c.frames_per_second:>9.1f} {c.dsp:>5} {c.block_ram:>5} {c.luts:>7} {100 * c.cost:>5.1f}%  "
                f"{c.verdict}{why}"
            )
        if self.chosen is not None:
            cfg = self.chosen.config
            lines.append(
                f"### Chosen: ConvThreadNumber {cfg.conv.thread_number}, FCThreadNumber {cfg.fc.thread_number}, "
                f"conv memory {list(cfg.conv.input_memory_size)}, {cfg.target_frequency_mhz:g} MHz: "
                f"{self.chosen.frames_per_second:.1f} Frames/s, {self.chosen.dsp} DSP, {self.chosen.block_ram} "
                f"block RAM, {self.chosen.luts} {board.logic_unit}."
            )
        else:
            lines.append(f"### {self.failure()}.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _clocks(board: str) -> list[float]:
    lo, hi = BOARDS[board].frequency_mhz
    steps = int(math.floor((hi - lo) / CLOCK_STEP_MHZ + 1e-9))
    return [lo + CLOCK_STEP_MHZ * i for i in range(steps + 1)] + ([hi] if lo + CLOCK_STEP_MHZ * steps < hi else [])


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def optimize_config(
    network: Any,
    board: str = "zcu102",
    frames_per_second: float = 30.0,
    *,
    data_type: str | DataType = DataType.INT8,
    conv_threads: Iterable[int] | None = None,
    fc_threads: Iterable[int] | None = None,
    conv_memory_sizes: Sequence[tuple[int, int, int]] | None = None,
) -> ConfigSearch:
    """The cheapest processor configuration that runs ``network`` at
    ``frames_per_second`` on ``board``.

    Args:
        network: a :class:`~quantscope.Network` (or anything ``prepare`` accepts).
        board: ``"zcu102"``, ``"zc706"`` or ``"arria10soc"``.
        frames_per_second: the frame rate to reach (one frame at a time, as
            :func:`~quantscope.fpga.estimate_performance` with ``frames=1``).
        data_type: ``"int8"`` (default) or ``"single"``; the search starts from the
            board's preset of that type (``zcu102_int8``...).
        conv_threads, fc_threads, conv_memory_sizes: the values tried (default: every
            ConvThreadNumber, every FCThreadNumber when the network has fully
            connected layers, :data:`CONV_MEMORY_SIZES`).

    Returns:
        a :class:`ConfigSearch`: ``.config`` the chosen configuration, ``.candidates``
        every one tried with its Frames/s, resources and verdict, ``.format()`` them.

    Raises:
        ConfigurationError: an unknown board or data type, a non-positive frame rate.
    """
    fps = _positive(frames_per_second, "frames_per_second")
    if board not in BOARDS:
        raise ConfigurationError(f"unknown board {board!r}; known boards: {', '.join(BOARDS)}")
    try:
        dtype = DataType(data_type.value if isinstance(data_type, DataType) else str(data_type).lower())
    except ValueError:
        raise ConfigurationError(f"data_type must be 'int8' or 'single', got {data_type!r}") from None
    base = PRESETS[f"{board}_{dtype.value}"]
    if is_quantized_network(network):  # the cycles depend on the shapes only
        network = network.network
    net = network if isinstance(network, Network) else prepare(network)
    has_fc = any(layer.kind == LayerKind.FC for layer in net.layers)
    conv_options = sorted(set(conv_threads or CONV_THREAD_NUMBERS))
    fc_options = sorted(set(fc_threads or (FC_THREAD_NUMBERS if has_fc else (FC_THREAD_NUMBERS[0],))))
    memories = list(conv_memory_sizes or CONV_MEMORY_SIZES)
    clocks = _clocks(board)
    available = None
    candidates: list[Candidate] = []
    for conv in conv_options:
        for fc in fc_options:
            for memory in memories:
                cfg = base.with_changes(
                    conv_thread_number=conv,
                    fc_thread_number=fc,
                    conv_input_memory_size=tuple(memory),
                    conv_output_memory_size=tuple(memory),
                    target_frequency_mhz=clocks[-1],
                    name=f"{board}_{dtype.value}_custom",
                )
                resources = estimate_resources(cfg)
                if available is None:
                    available = resources.loc["Available"]
                used = resources.loc["DL_Processor"]
                dsp, bram, lut = int(used["DSPs"]), int(used["Block RAM"]), int(used["LUTs"])
                cost = (dsp / available["DSPs"] + bram / available["Block RAM"] + lut / available["LUTs"]) / 3
                try:
                    costs = cost_network(net, cfg)
                    cycles = sum(c.cycles for c in costs if not c.fused) + NETWORK_OVERHEAD_CYCLES
                except UnsupportedModelError as exc:
                    candidates.append(Candidate(cfg, 0, 0.0, dsp, bram, lut, cost, "does not fit", str(exc)))
                    continue
                latency = cycles + FRAME_OVERHEAD_CYCLES
                clock = next((c for c in clocks if c * 1e6 / latency >= fps), None)
                if clock is not None:
                    cfg = cfg.with_changes(target_frequency_mhz=clock, name=cfg.name)
                rate = cfg.clock_hz / latency
                over = [
                    f"{what} {n:,} > {int(available[col]):,}"
                    for what, col, n in (("DSP", "DSPs", dsp), ("block RAM", "Block RAM", bram), ("LUT", "LUTs", lut))
                    if n > available[col]
                ]
                if over:
                    verdict, reason = "too big", "needs " + ", ".join(over)
                elif clock is None:
                    verdict, reason = "too slow", f"{rate:.1f} < {fps:g} Frames/s at {clocks[-1]:g} MHz"
                else:
                    verdict, reason = "meets both", ""
                candidates.append(Candidate(cfg, cycles, rate, dsp, bram, lut, cost, verdict, reason))
    candidates.sort(key=lambda c: (c.cost, c.config.target_frequency_mhz, c.config.conv.thread_number))
    for i, c in enumerate(candidates):
        if c.verdict == "meets both":
            candidates[i] = Candidate(**{**c.__dict__, "verdict": "chosen"})
            break
    return ConfigSearch(board, fps, dtype, candidates)
