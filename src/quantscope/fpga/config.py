"""Processor configuration: the modules, the clock, the data type, the DDR model.

A configuration describes one bitstream of quantscope's deep-learning processor
(``docs/fpga.md``): a **conv** module (``ConvThreadNumber`` threads, on-chip input
and output memories, ``FeatureSizeLimit``), an **fc** module (``FCThreadNumber``
threads, input and output memories), an **adder** module (element-wise add and
multiply), the clock, the data type and two DDR parameters of the cycle model.

Everything is a frozen dataclass validated in ``__post_init__``; a bad value raises
:class:`~quantscope.errors.ConfigurationError` naming the field, the value and the
allowed range. Presets named after the shipping bitstreams are in :data:`PRESETS`
(:func:`processor` looks one up by name).

Units: memory sizes of the conv module are ``(H, W, C)`` *elements* (not bytes),
the fc and adder memory sizes are elements, the clock is MHz, the DDR bandwidths are
bytes per processor clock cycle and the DDR latency is processor clock cycles.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import ConfigurationError, option

__all__ = [
    "BOARDS",
    "PRESETS",
    "AdderModule",
    "Board",
    "ConvModule",
    "DataType",
    "FCModule",
    "Family",
    "Module",
    "ProcessorConfig",
    "processor",
]

#: Allowed ConvThreadNumber values: perfect squares from 4 to 64 (docs/fpga.md).
CONV_THREAD_NUMBERS: tuple[int, ...] = (4, 9, 16, 25, 36, 49, 64)
#: Allowed FCThreadNumber values: powers of two from 4 to 64 (docs/fpga.md).
FC_THREAD_NUMBERS: tuple[int, ...] = (4, 8, 16, 32, 64)


class DataType(str, enum.Enum):
    """Data type of a bitstream: ``int8`` (1 B activations and weights, int32 biases)
    or ``single`` (IEEE float32, 4 B everything)."""

    INT8 = "int8"
    SINGLE = "single"

    @property
    def bytes_per_element(self) -> int:
        """Bytes of one activation or weight element in DDR: 1 (int8) or 4 (single)."""
        return 1 if self is DataType.INT8 else 4

    @property
    def bias_bytes(self) -> int:
        """Bytes of one bias element: int32 for int8, float32 for single, 4 either way."""
        return 4

    @property
    def pack(self) -> int:
        """Elements packed in one 32-bit datapath word: 4 for int8, 1 for single."""
        return 4 // self.bytes_per_element


class Module(StrEnum):
    """A module of the processor: ``conv`` (convolutions, pooling), ``fc`` (fully
    connected) or ``adder`` (element-wise Add / Mul). Members compare equal to their
    strings (``Module.CONV == "conv"``)."""

    CONV = "conv"
    FC = "fc"
    ADDER = "adder"

    @property
    def unit_name(self) -> str:
        """The module's name in MATLAB's tables: ``"conv_module"``, ``"fc_module"``, ``"adder_module"``."""
        return f"{self.value}_module"

    @property
    def group(self) -> Module:
        """The module group a leg runs on: the conv module with its adder (``CONV``), or ``FC``."""
        return Module.FC if self is Module.FC else Module.CONV


class Family(StrEnum):
    """An FPGA vendor's device family, which sets the resource model's constants."""

    XILINX = "xilinx"
    INTEL = "intel"


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{what} must be a positive integer, got {value!r}")
    return value


def _positive_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{what} must be a positive finite number, got {value!r}")
    return float(value)


def _memory_size(value: Any, what: str) -> tuple[int, int, int]:
    try:
        dims = tuple(value)
    except TypeError:
        raise ConfigurationError(f"{what} must be three positive integers (H, W, C), got {value!r}") from None
    if len(dims) != 3:
        raise ConfigurationError(f"{what} must be three positive integers (H, W, C), got {value!r}")
    for d in dims:
        _positive_int(d, what)
    return dims  # type: ignore[return-value]


@dataclass(frozen=True)
class ConvModule:
    """The convolution module (convolutions, pooling).

    Attributes:
        thread_number: ``ConvThreadNumber``, a perfect square 4..64. The threads form
            a ``sqrt(T) x sqrt(T)`` array (input channels x output channels); each
            thread computes one 3x3 window (9 MACs) per cycle.
        input_memory_size: ``InputMemorySize`` ``(H, W, C)`` in elements; its product
            is the on-chip input buffer capacity.
        output_memory_size: ``OutputMemorySize`` ``(H, W, C)`` in elements.
        feature_size_limit: ``FeatureSizeLimit``: the largest height, width or channel
            count an activation read or written by this module may have.
    """

    thread_number: int = 16
    input_memory_size: tuple[int, int, int] = (227, 227, 3)
    output_memory_size: tuple[int, int, int] = (227, 227, 3)
    feature_size_limit: int = 2048

    def __post_init__(self) -> None:
        t = self.thread_number
        if isinstance(t, bool) or not isinstance(t, int) or t not in CONV_THREAD_NUMBERS:
            raise ConfigurationError(
                f"ConvThreadNumber must be a perfect square from 4 to 64 "
                f"({', '.join(map(str, CONV_THREAD_NUMBERS))}), got {t!r}"
            )
        object.__setattr__(self, "input_memory_size", _memory_size(self.input_memory_size, "conv InputMemorySize"))
        object.__setattr__(self, "output_memory_size", _memory_size(self.output_memory_size, "conv OutputMemorySize"))
        _positive_int(self.feature_size_limit, "conv FeatureSizeLimit")

    @property
    def thread_side(self) -> int:
        """``sqrt(ConvThreadNumber)``: input (and output) channels processed per cycle."""
        return math.isqrt(self.thread_number)

    @property
    def channel_multiple(self) -> int:
        """``N = 2^nextpow2(sqrt(ConvThreadNumber))``: channels in DDR are padded to a
        multiple of N (docs/fpga.md): 4 -> 2, 9 -> 4, 16 -> 4, 25..64 -> 8."""
        return 1 << math.ceil(math.log2(self.thread_side))

    @property
    def input_capacity(self) -> int:
        """Elements the on-chip input memory holds: ``prod(input_memory_size)``."""
        return math.prod(self.input_memory_size)

    @property
    def output_capacity(self) -> int:
        """Elements the on-chip output memory holds: ``prod(output_memory_size)``."""
        return math.prod(self.output_memory_size)


@dataclass(frozen=True)
class FCModule:
    """The fully connected module.

    Attributes:
        thread_number: ``FCThreadNumber``, a power of two 4..64.
        input_memory_size: ``InputMemorySize``, elements of the input vector held on chip.
        output_memory_size: ``OutputMemorySize``, elements of the output vector held on chip.
    """

    thread_number: int = 4
    input_memory_size: int = 25088
    output_memory_size: int = 4096

    def __post_init__(self) -> None:
        t = self.thread_number
        if isinstance(t, bool) or not isinstance(t, int) or t not in FC_THREAD_NUMBERS:
            raise ConfigurationError(
                f"FCThreadNumber must be a power of two from 4 to 64 "
                f"({', '.join(map(str, FC_THREAD_NUMBERS))}), got {t!r}"
            )
        _positive_int(self.input_memory_size, "fc InputMemorySize")
        _positive_int(self.output_memory_size, "fc OutputMemorySize")


@dataclass(frozen=True)
class AdderModule:
    """The adder module (element-wise Add / Mul of activations).

    Attributes:
        input_memory_size: ``InputMemorySize``. MATLAB publishes 40 with no unit;
            quantscope reads it as *feature-map rows* the adder buffers per tile.
        output_memory_size: ``OutputMemorySize``, rows as well.
    """

    input_memory_size: int = 40
    output_memory_size: int = 40

    def __post_init__(self) -> None:
        _positive_int(self.input_memory_size, "adder InputMemorySize")
        _positive_int(self.output_memory_size, "adder OutputMemorySize")


@dataclass(frozen=True)
class Board:
    """An FPGA board: its device and the resources available on it.

    ``family`` is a :class:`Family` (a string ``"xilinx"`` or ``"intel"`` is
    converted); ``block_ram`` counts the device's native blocks (BRAM36 tiles on
    Xilinx, M20K on Intel), ``block_ram_bits`` the bits of one block, ``logic`` the
    LUTs (Xilinx) or ALMs (Intel); ``frequency_mhz`` the processor clocks a
    configuration search may choose on it (lowest, highest).
    """

    name: str
    device: str
    family: Family
    dsp: int
    block_ram: int
    block_ram_bits: int
    logic: int
    logic_unit: str
    frequency_mhz: tuple[float, float] = (100.0, 250.0)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "family", Family(self.family))
        except ValueError:
            raise ConfigurationError(
                f"board family must be one of {', '.join(f.value for f in Family)}, got {self.family!r}"
            ) from None


#: Boards of the presets. Totals are the device data sheets' (ZCU102: XCZU9EG, as
#: docs/published.md's 2,520 DSP / 912 BRAM / 274,080 LUT; Arria 10 SoC dev kit: 10AS066,
#: 1,687 DSP / 251,680 ALM as docs/published.md, 2,131 M20K; ZC706: XC7Z045). Clock
#: ranges: up to the fastest published or preset bitstream of the board (ZCU102 250 MHz,
#: the published YOLOv8n bitstream; Arria 10 SoC 150 MHz, published; ZC706 200 MHz,
#: the preset), from 100 MHz.
BOARDS: dict[str, Board] = {
    "zcu102": Board("zcu102", "xczu9eg-ffvb1156-2-e", Family.XILINX, 2520, 912, 36864, 274080, "LUT", (100.0, 250.0)),
    "zc706": Board("zc706", "xc7z045ffg900-2", Family.XILINX, 900, 545, 36864, 218600, "LUT", (100.0, 200.0)),
    "arria10soc": Board(
        "arria10soc", "10AS066N3F40E2SG", Family.INTEL, 1687, 2131, 20480, 251680, "ALM", (100.0, 150.0)
    ),
}


@dataclass(frozen=True)
class ProcessorConfig:
    """One processor (bitstream) configuration.

    Attributes:
        conv, fc, adder: the modules.
        target_frequency_mhz: ``TargetFrequency``, the processor clock in MHz (> 0).
        data_type: ``"int8"`` or ``"single"`` (or a :class:`DataType`).
        ddr_bandwidth_bytes_per_cycle: sustained DDR bandwidth of the fc module's weight
            stream, bytes per processor clock cycle (cycle-model parameter; 12.2 fitted
            on the published LogoNet fc rows, see docs/fpga.md).
        ddr_latency_cycles: cycles from issuing a DDR burst to its first data.
        activation_bandwidth_bytes_per_cycle: bytes per cycle of the DDR port through
            which the conv module and the adder move activations, conv weights and
            lookup tables (a 128-bit AXI master: 16).
        activation_word_bytes: DDR bytes per activation element (input frames, system
            buffer, output region); None: the data type's (1 int8, 4 single). The
            ``arria10soc_int8`` bitstream keeps one int8 value per 32-bit word (4).
        ddr_allocation_bytes: the unit in which DDR regions and system-buffer slots are
            allocated (each starts on and is sized to a multiple of it): 4 KiB, or
            4 MiB on ``arria10soc_int8`` (docs/fpga.md, "The DDR memory map").
        scheduler_region: the map has a ``SchedulerDataOffset`` region for the
            conv-module descriptors; without one they follow the instructions in the
            ``InstructionDataOffset`` region.
        input_frame_number_limit: ``InputFrameNumberLimit``, frames the input region holds.
        per_channel: the conv and fc modules hold per-output-channel parameters: a weight
            exponent per channel (``PowerOfTwo(per_channel=True)``) and a ReLU ceiling per
            channel (after cross-layer equalization through a Relu6). Beyond MATLAB's
            processor: no preset has them (:mod:`quantscope.fpga.per_channel`).
        board: key of :data:`BOARDS` (the device whose resources ``estimate_resources``
            reports against).
        name: the bitstream name (a preset's name, or ``"custom"``).
    """

    conv: ConvModule = field(default_factory=ConvModule)
    fc: FCModule = field(default_factory=FCModule)
    adder: AdderModule = field(default_factory=AdderModule)
    target_frequency_mhz: float = 200.0
    data_type: DataType = DataType.SINGLE  # a string ("int8", "single") is converted
    ddr_bandwidth_bytes_per_cycle: float = 12.2
    ddr_latency_cycles: int = 21
    input_frame_number_limit: int = 30
    board: str = "zcu102"
    name: str = "custom"
    per_channel: bool = False
    activation_bandwidth_bytes_per_cycle: float = 16.0
    activation_word_bytes: int | None = None
    ddr_allocation_bytes: int = 4096
    scheduler_region: bool = True

    def __post_init__(self) -> None:
        for attr, cls in (("conv", ConvModule), ("fc", FCModule), ("adder", AdderModule)):
            if not isinstance(getattr(self, attr), cls):
                raise ConfigurationError(f"{attr} must be a {cls.__name__}, got {getattr(self, attr)!r}")
        object.__setattr__(
            self, "target_frequency_mhz", _positive_number(self.target_frequency_mhz, "TargetFrequency (MHz)")
        )
        try:
            dt = DataType(self.data_type.value if isinstance(self.data_type, DataType) else str(self.data_type).lower())
        except ValueError:
            raise ConfigurationError(f"data_type must be 'int8' or 'single', got {self.data_type!r}") from None
        object.__setattr__(self, "data_type", dt)
        object.__setattr__(
            self,
            "ddr_bandwidth_bytes_per_cycle",
            _positive_number(self.ddr_bandwidth_bytes_per_cycle, "ddr_bandwidth_bytes_per_cycle"),
        )
        lat = self.ddr_latency_cycles
        if isinstance(lat, bool) or not isinstance(lat, int) or lat < 0:
            raise ConfigurationError(f"ddr_latency_cycles must be an integer >= 0, got {lat!r}")
        _positive_int(self.input_frame_number_limit, "InputFrameNumberLimit")
        object.__setattr__(
            self,
            "activation_bandwidth_bytes_per_cycle",
            _positive_number(self.activation_bandwidth_bytes_per_cycle, "activation_bandwidth_bytes_per_cycle"),
        )
        word = self.activation_word_bytes
        if word is not None and (isinstance(word, bool) or word not in (1, 2, 4)):
            raise ConfigurationError(f"activation_word_bytes must be 1, 2, 4 or None, got {word!r}")
        unit = self.ddr_allocation_bytes
        if isinstance(unit, bool) or not isinstance(unit, int) or unit < 64 or unit & (unit - 1):
            raise ConfigurationError(f"ddr_allocation_bytes must be a power of two of at least 64, got {unit!r}")
        if not isinstance(self.per_channel, bool):
            raise ConfigurationError(f"per_channel must be True or False, got {self.per_channel!r}")
        if not isinstance(self.scheduler_region, bool):
            raise ConfigurationError(f"scheduler_region must be True or False, got {self.scheduler_region!r}")
        if self.board not in BOARDS:
            raise ConfigurationError(f"unknown board {self.board!r}; known boards: {', '.join(BOARDS)}")

    # ---- derived values --------------------------------------------------------------
    @property
    def clock_hz(self) -> float:
        """The processor clock in Hz."""
        return self.target_frequency_mhz * 1e6

    @property
    def bytes_per_element(self) -> int:
        """Bytes per activation/weight element: 1 (int8) or 4 (single)."""
        return self.data_type.bytes_per_element

    @property
    def channel_multiple(self) -> int:
        """N: DDR channel padding multiple (see :attr:`ConvModule.channel_multiple`)."""
        return self.conv.channel_multiple

    @property
    def word_bytes(self) -> int:
        """DDR bytes per activation element: ``activation_word_bytes``, or the data type's."""
        return self.activation_word_bytes or self.bytes_per_element

    @property
    def board_info(self) -> Board:
        return BOARDS[self.board]

    def with_changes(self, **changes: Any) -> ProcessorConfig:
        """A copy with fields changed, validated again. Module fields take the module's
        prefix: ``conv_thread_number=64``, ``fc_input_memory_size=1024``,
        ``adder_input_memory_size=80``; top-level fields their own name
        (``target_frequency_mhz=100``). The name becomes ``"custom"`` unless given."""
        modules: dict[str, dict[str, Any]] = {"conv": {}, "fc": {}, "adder": {}}
        top: dict[str, Any] = {}
        for key, value in changes.items():
            prefix, _, rest = key.partition("_")
            if prefix in modules and rest in {f.name for f in dataclasses.fields(getattr(self, prefix))}:
                modules[prefix][rest] = value
            elif key in {f.name for f in dataclasses.fields(self)}:
                top[key] = value
            else:
                raise ConfigurationError(f"unknown processor configuration field {key!r}")
        for prefix, values in modules.items():
            if values:
                top[prefix] = dataclasses.replace(getattr(self, prefix), **values)
        top.setdefault("name", "custom")
        return dataclasses.replace(self, **top)

    def summary(self) -> str:
        """A few lines, MATLAB's property names."""
        c, f, a = self.conv, self.fc, self.adder
        return "\n".join(
            [
                f'Processor "{self.name}" on {self.board}: {self.data_type.value}, '
                f"{_mhz(self.target_frequency_mhz)} MHz",
                f"  conv: ConvThreadNumber {c.thread_number}, InputMemorySize {list(c.input_memory_size)}, "
                f"OutputMemorySize {list(c.output_memory_size)}, FeatureSizeLimit {c.feature_size_limit}",
                f"  fc: FCThreadNumber {f.thread_number}, InputMemorySize {f.input_memory_size}, "
                f"OutputMemorySize {f.output_memory_size}",
                f"  adder: InputMemorySize {a.input_memory_size}, OutputMemorySize {a.output_memory_size}",
                f"  DDR: weights {self.ddr_bandwidth_bytes_per_cycle:g} B/cycle, activations "
                f"{self.activation_bandwidth_bytes_per_cycle:g} B/cycle ({self.word_bytes} B per element), latency "
                f"{self.ddr_latency_cycles} cycles; allocation unit {self.ddr_allocation_bytes} B; "
                f"InputFrameNumberLimit {self.input_frame_number_limit}",
            ]
        )


def _mhz(value: float) -> str:
    return f"{value:g}"


def _preset(
    name: str,
    board: str,
    data_type: DataType,
    mhz: float,
    latency: int,
    conv_threads: int,
    fc_threads: int,
    **memory: Any,
) -> ProcessorConfig:
    return ProcessorConfig(
        conv=ConvModule(thread_number=conv_threads),
        fc=FCModule(thread_number=fc_threads),
        adder=AdderModule(),
        target_frequency_mhz=mhz,
        data_type=data_type,
        ddr_bandwidth_bytes_per_cycle=12.2,
        ddr_latency_cycles=latency,
        input_frame_number_limit=30,
        board=board,
        name=name,
        activation_bandwidth_bytes_per_cycle=16.0,
        **memory,
    )


#: The shipping-bitstream presets. What is published (docs/published.md) and what
#: is assumed, per field (docs/fpga.md, "Presets", repeats this table):
#:
#: ==================  =====  ==========  ========  =========  ===========================================
#: preset              MHz    conv thr.   fc thr.   latency    source
#: ==================  =====  ==========  ========  =========  ===========================================
#: zcu102_single       200    16          4         21         published: MATLAB's default ProcessorConfig
#:                                                             (ZCU102, single, 200 MHz, all module sizes)
#: zc706_single        200    9           4         21         assumed: the default config does not fit the
#:                                                             XC7Z045's 218,600 LUTs by our resource model
#:                                                             (234,175), so 9 conv threads (196,375 LUTs)
#: arria10soc_single   150    16          4         16         published: 150 MHz; modules assumed default
#: zcu102_int8         250    64          16        26         assumed: 64 conv threads as the published
#:                                                             YOLOv8n int8 ZCU102 bitstream (250 MHz);
#:                                                             fc 16 recalled from MATLAB's doc, unverified
#: zc706_int8          200    64          16        21         assumed (ZC706 7-series clocked at 200 MHz)
#: arria10soc_int8     150    64          16        16         150 MHz published for the board; rest assumed
#: ==================  =====  ==========  ========  =========  ===========================================
#:
#: Memories are the published defaults everywhere (conv [227 227 3]/[227 227 3],
#: FeatureSizeLimit 2048, fc 25088/4096, adder 40/40), InputFrameNumberLimit 30
#: (published default). DDR bandwidth 11.6 B/cycle everywhere: the value measured
#: on arria10soc_single (docs/published.md), taken to be set by the processor's 128-bit
#: AXI master port, so the same on every board. DDR latency: about 105 ns, in cycles.
PRESETS: dict[str, ProcessorConfig] = {
    "zcu102_single": _preset("zcu102_single", "zcu102", DataType.SINGLE, 200.0, 21, 16, 4),
    "zc706_single": _preset("zc706_single", "zc706", DataType.SINGLE, 200.0, 21, 9, 4),
    "arria10soc_single": _preset("arria10soc_single", "arria10soc", DataType.SINGLE, 150.0, 16, 16, 4),
    "zcu102_int8": _preset("zcu102_int8", "zcu102", DataType.INT8, 250.0, 26, 64, 16),
    "zc706_int8": _preset("zc706_int8", "zc706", DataType.INT8, 200.0, 21, 64, 16),
    "arria10soc_int8": _preset(
        "arria10soc_int8",
        "arria10soc",
        DataType.INT8,
        150.0,
        16,
        64,
        16,
        activation_word_bytes=4,
        ddr_allocation_bytes=4 * 1024 * 1024,
        scheduler_region=False,
    ),
}


def processor(name: str | ProcessorConfig) -> ProcessorConfig:
    """The preset called ``name`` (a bitstream name such as ``"zcu102_int8"``); a
    :class:`ProcessorConfig` is returned unchanged. Unknown names raise
    :class:`ConfigurationError` listing the known ones."""
    if isinstance(name, ProcessorConfig):
        return name
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigurationError(
            f"unknown bitstream {name!r}; known bitstreams: {', '.join(PRESETS)}"
            + option(" (or pass a quantscope.fpga.ProcessorConfig)", "")
        )
    return PRESETS[name]
