"""Deploy to a board and predict: MATLAB's ``dlhdl.Workflow``, on a simulated board.

:class:`Workflow` ties a network to a bitstream (a preset name or a
:class:`~quantscope.fpga.ProcessorConfig`) and a target. :class:`SimulatedBoard`
is a board in this process: deploying writes the weight images and the instruction
stream into a byte array laid out by the compiled memory map, and ``predict`` runs
the int8 arithmetic through a callable given by the caller (the int8 emulator) and
returns the cycle model's profile for the number of frames it ran.

Progress is printed through ``print_fn`` (``print`` by default; a ``rich`` Console
works too; a list's ``append`` captures it in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import ConfigurationError, QuantscopeError
from ..network import Network, prepare
from .compile import CompiledNetwork, RegionName, compile_network, format_size
from .compile.compiler import is_quantized_network, unwrap_quantized
from .config import ProcessorConfig, processor
from .per_channel import check_per_channel
from .profile import Profile, estimate_resources, profile_compiled

__all__ = ["QuantizedNetworkRequired", "SimulatedBoard", "Workflow"]


class QuantizedNetworkRequired(QuantscopeError, NotImplementedError):
    """``predict`` was called without an int8 emulator (``run_int8``) to compute the outputs."""


def _printer(print_fn: Any) -> Callable[[str], None]:
    """``print``, a rich Console (its ``print``, markup off) or any ``str -> None`` callable."""
    if print_fn is None:
        return print
    if hasattr(print_fn, "print") and hasattr(print_fn, "log"):  # rich.console.Console
        return lambda s: print_fn.print(s, markup=False, highlight=False)
    if not callable(print_fn):
        raise ConfigurationError(f"print_fn must be callable or a rich Console, got {print_fn!r}")
    return print_fn


class SimulatedBoard:
    """A board simulated in this process.

    After :meth:`program` and :meth:`load`, ``ddr`` is a uint8 array the size of the
    compiled map holding the weight regions and the instruction stream at their offsets.
    """

    def __init__(self, name: str = "simulated board"):
        self.name = name
        self.bitstream: str | None = None
        self.config: ProcessorConfig | None = None
        self.ddr: np.ndarray | None = None
        self.frames_run = 0

    @property
    def interface(self) -> str:
        return "in-process"

    def program(self, config: ProcessorConfig) -> None:
        """Program the bitstream of ``config`` (forgets any deployed network)."""
        self.bitstream = config.name
        self.config = config
        self.ddr = None

    def load(self, compiled: CompiledNetwork) -> None:
        """Allocate DDR per the map and write the weight images and instructions."""
        mm = compiled.memory_map
        self.ddr = np.zeros(mm.total, dtype=np.uint8)
        if RegionName.CONV_WEIGHT_DATA in mm:
            self.write(mm[RegionName.CONV_WEIGHT_DATA].offset, compiled.conv_weight_bytes())
        if RegionName.FC_WEIGHT_DATA in mm:
            self.write(mm[RegionName.FC_WEIGHT_DATA].offset, compiled.fc_weight_bytes())
        self.write(mm[RegionName.INSTRUCTION_DATA].offset, compiled.instructions.tobytes())

    def write(self, offset: int, data: bytes) -> None:
        if self.ddr is None:
            raise QuantscopeError("the simulated board has no network deployed; call Workflow.deploy() first")
        if offset < 0 or offset + len(data) > self.ddr.size:
            raise QuantscopeError(f"write of {len(data)} B at 0x{offset:08x} is outside the {self.ddr.size} B DDR")
        self.ddr[offset : offset + len(data)] = np.frombuffer(data, dtype=np.uint8)

    def read(self, offset: int, nbytes: int) -> bytes:
        if self.ddr is None:
            raise QuantscopeError("the simulated board has no network deployed; call Workflow.deploy() first")
        return self.ddr[offset : offset + nbytes].tobytes()

    def __repr__(self) -> str:
        return f"SimulatedBoard({self.name!r}, bitstream={self.bitstream!r})"


class Workflow:
    """Compile, deploy, predict and profile a network on a processor.

    Args:
        network: a :class:`~quantscope.QuantizedNetwork` (its int8 emulation computes
            ``predict``'s outputs and its int8 weights fill the weight images), or a
            :class:`~quantscope.Network` (or anything ``prepare`` accepts) for estimates.
        bitstream: a preset name (``"arria10soc_int8"``...) or a :class:`ProcessorConfig`.
        target: the board; a :class:`SimulatedBoard` by default.
        run_int8: ``run_int8(x) -> np.ndarray``, the int8 emulation of the quantized
            network on a batch ``x`` (N, C, H, W); outputs of ``predict`` come from it.
        quantized: the layers' int8 weights for the weight images, as
            :func:`~quantscope.fpga.compile_network` takes them.
        print_fn: where progress lines go (``print``; a rich Console; ``list.append``).
    """

    def __init__(
        self,
        network: Any,
        bitstream: str | ProcessorConfig = "arria10soc_int8",
        target: SimulatedBoard | None = None,
        *,
        run_int8: Callable[[np.ndarray], np.ndarray] | None = None,
        quantized: Mapping[str, tuple] | None = None,
        print_fn: Any = None,
    ):
        self.config = processor(bitstream)
        if is_quantized_network(network):
            # its int8 weights and tables; per-channel exponents or ceilings need the processor's support
            if run_int8 is None:
                run_int8 = network.predict
            network, quantized = unwrap_quantized(network, self.config, quantized)
            self.network: Network = network
        else:
            self.network = network if isinstance(network, Network) else prepare(network)
            # per-channel ceilings of an equalized float network need the processor's support (an estimate too)
            check_per_channel(self.network, self.config)
        self.target = target if target is not None else SimulatedBoard()
        self.run_int8 = run_int8
        self.quantized = quantized
        self._print = _printer(print_fn)
        self._compiled: CompiledNetwork | None = None
        self._deployed = False

    @property
    def bitstream(self) -> str:
        return self.config.name

    @property
    def compiled(self) -> CompiledNetwork | None:
        return self._compiled

    def compile(self, verbose: bool = True) -> CompiledNetwork:
        """Compile for the bitstream (printing the layer placement and the memory map)."""
        p = self._print if verbose else (lambda s: None)
        p("### Compiling network for Deep Learning FPGA prototyping ...")
        p(f"### Targeting FPGA bitstream {self.config.name}.")
        compiled = compile_network(self.network, self.config, quantized=self.quantized)
        for line in compiled.format().splitlines():
            p(line)
        p("### Network compilation complete.")
        self._compiled = compiled
        return compiled

    def deploy(self) -> None:
        """Program the bitstream and load weights and instructions onto the target."""
        compiled = self._compiled or self.compile()
        cfg, board, mm, p = self.config, self.target, compiled.memory_map, self._print
        p(f"### Programming FPGA Bitstream on {board.name} ({board.interface}) ...")
        p(
            f"### Bitstream {cfg.name}: conv {cfg.conv.thread_number} threads, fc {cfg.fc.thread_number} threads, "
            f"{cfg.data_type.value}, {cfg.target_frequency_mhz:g} MHz, board {cfg.board}."
        )
        board.program(cfg)
        p("### Programming the FPGA bitstream has been completed successfully.")
        board.load(compiled)
        if RegionName.CONV_WEIGHT_DATA in mm:
            p("### Loading weights to Conv Processor.")
            r = mm[RegionName.CONV_WEIGHT_DATA]
            p(f"### Conv Weights loaded: {format_size(r.size)} at 0x{r.offset:08x}.")
        if RegionName.FC_WEIGHT_DATA in mm:
            p("### Loading weights to FC Processor.")
            r = mm[RegionName.FC_WEIGHT_DATA]
            p(f"### FC Weights loaded: {format_size(r.size)} at 0x{r.offset:08x}.")
        r = mm[RegionName.INSTRUCTION_DATA]
        p(
            f"### Deploying instructions: {compiled.instruction_count} instructions, "
            f"{compiled.instructions.size} B at 0x{r.offset:08x} ..."
        )
        p("### Deployment complete.")
        self._deployed = True

    def predict(self, x: Any, profile: bool = True) -> tuple[np.ndarray, Profile | None]:
        """Run a batch on the (simulated) board.

        Args:
            x: input frames ``(N, C, H, W)`` (or one frame ``(C, H, W)``), float; or
                anything :func:`quantscope.as_source` takes (an ImageDatastore, a
                ``.npy``/``.npz`` path...), whose frames are read whole.
            profile: also return the profile of the N frames.

        Returns:
            ``(outputs, profile)``: outputs from ``run_int8`` (bit-exact int8
            emulation), profile from the cycle model for N frames (None when
            ``profile`` is False).
        """
        if self.run_int8 is None:
            raise QuantizedNetworkRequired(
                "predict needs the int8 emulation of a quantized network to compute outputs: pass "
                "run_int8=<callable x -> outputs> to Workflow (the int8 reference interpreter run on the "
                "calibrated, quantized network). Workflow.estimate_performance() gives the profile without data."
            )
        if not isinstance(x, np.ndarray) and not hasattr(x, "__array__"):
            # an ImageDatastore, a .npy/.npz path, an iterable of batches: the frames it holds
            from ..calibrate.source import as_source

            source = as_source(x, input_shape=self.network.input_shape, dtype=self.network.input_dtype)
            x = np.concatenate([np.asarray(b.x) for b in source.batches(64)])
        arr = np.asarray(x)
        expected = tuple(self.network.input_shape[1:])
        if arr.ndim == len(expected):
            arr = arr[None]
        if tuple(arr.shape[1:]) != expected:
            raise ConfigurationError(
                f"predict: input shape {tuple(np.asarray(x).shape)} does not match the network input "
                f"(N, {', '.join(map(str, expected))})"
            )
        if not self._deployed:
            self.deploy()
        frames = int(arr.shape[0])
        outputs = np.asarray(self.run_int8(arr))
        self.target.frames_run += frames
        if not profile:
            return outputs, None
        assert self._compiled is not None
        return outputs, profile_compiled(self._compiled, frames)

    def estimate_performance(self, frames: int = 1) -> Profile:
        """The profile for ``frames`` frames, without data or deployment."""
        compiled = self._compiled or compile_network(self.network, self.config, quantized=self.quantized)
        self._compiled = compiled
        return profile_compiled(compiled, frames)

    def estimate_resources(self):
        """The processor's resources (see :func:`quantscope.fpga.estimate_resources`)."""
        return estimate_resources(self.config)
