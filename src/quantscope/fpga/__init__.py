"""The FPGA target: quantscope's deep-learning processor in software.

Configure a processor (or take a shipping-bitstream preset), compile a prepared
network for it (placement, legs, weight images, instructions, DDR memory map),
estimate its performance with the documented cycle model and its FPGA resources,
and deploy/predict on a simulated board::

    from quantscope import fpga
    cfg = fpga.processor("zcu102_int8")
    compiled = fpga.compile_network(net, cfg)
    print(compiled.memory_map.format())
    print(fpga.estimate_performance(net, cfg, frames=4).format())
    fpga.estimate_resources(cfg)
    fpga.optimize_config(net, board="zcu102", frames_per_second=30).config  # the cheapest that keeps up

The model, its formulas and constants are documented in ``docs/fpga.md``.
"""

from .board import QuantizedNetworkRequired, SimulatedBoard, Workflow
from .compile import (
    CompiledNetwork,
    LayerPlacement,
    Leg,
    MemoryMap,
    Placement,
    Region,
    WeightImage,
    compile_network,
    format_size,
)
from .config import (
    BOARDS,
    PRESETS,
    AdderModule,
    Board,
    ConvModule,
    DataType,
    Family,
    FCModule,
    Module,
    ProcessorConfig,
    processor,
)
from .cycles import COSTS, LayerCost, LayerInfo, Tiling, layer_cost
from .optimize import Candidate, ConfigSearch, optimize_config
from .profile import Profile, ProfileRow, RowKind, estimate_performance, estimate_resources, profile_compiled

__all__ = [
    "BOARDS",
    "COSTS",
    "PRESETS",
    "AdderModule",
    "Board",
    "Candidate",
    "CompiledNetwork",
    "ConfigSearch",
    "ConvModule",
    "DataType",
    "FCModule",
    "Family",
    "LayerCost",
    "LayerInfo",
    "LayerPlacement",
    "Leg",
    "MemoryMap",
    "Module",
    "Placement",
    "ProcessorConfig",
    "Profile",
    "ProfileRow",
    "QuantizedNetworkRequired",
    "Region",
    "RowKind",
    "SimulatedBoard",
    "Tiling",
    "WeightImage",
    "Workflow",
    "compile_network",
    "estimate_performance",
    "estimate_resources",
    "format_size",
    "layer_cost",
    "optimize_config",
    "processor",
    "profile_compiled",
]
