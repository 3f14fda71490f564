"""Compile a prepared network for the deep-learning processor.

:func:`compile_network` maps each optimized layer of a :class:`~quantscope.Network`
onto the processor described by a :class:`~quantscope.fpga.ProcessorConfig`, one
step per module:

1. **Placement** (:mod:`.placement`). The input layer and an input normalization run
   on the host (``Placement.SW``, "SW Layer": the host normalizes and writes the
   frames to the input region); so does a tail of output layers after the last
   hardware layer (Softmax, LogSoftmax, Flatten, Reshape, Squeeze, Identity, or any
   kind the processor lacks). Every other layer is a ``Placement.HW`` "HW Layer" and
   must have an entry in :data:`quantscope.fpga.cycles.COSTS`.
2. **Legs** (:mod:`.placement`). Consecutive hardware layers on the same module group
   (the conv module with its adder; the fc module) form a leg, executed as one
   instruction group.
3. **Geometry and costs** (:mod:`.activations`, :mod:`.costs`). Shapes, kernels and
   FC sizes of each hardware layer, and its cycles from the cycle model.
4. **Weight images** (:mod:`.weights`). Per conv/fc layer, the weights padded as the
   processor reads them (conv ``(Cout', Cin', kh, kw)``, channels padded to N, a copy
   per row tile; fc ``(in', out')``, input rows in ``(c, h, w)`` order with the padding
   planes at the end and outputs padded to FCThreadNumber), int8 (+ int32 biases) or
   float32; per table activation its 256 int8 outputs.
5. **System buffer** (:mod:`.buffers`). A slot per DDR-resident activation, and the
   values the processor writes to the output region.
6. **Instructions** (:mod:`.program`, :mod:`.instructions`). Typed instructions
   (frozen dataclasses) encoded in a simple fixed-width format (``docs/fpga.md``): a
   64-byte header and 32 bytes per instruction; :func:`decode_stream` reads it back.
7. **DDR memory map** (:mod:`.memory`). Regions in MATLAB's order, each aligned to the
   allocation unit (4 KiB, or the configuration's ``ddr_allocation_bytes``; see
   :class:`MemoryMap` and ``docs/fpga.md`` for the size of each).

:mod:`.compiler` wires the steps; :mod:`.compiled` holds the result.

Networks the processor cannot run raise :class:`~quantscope.errors.UnsupportedModelError`
naming every offending layer and the limit it breaks.
"""

from .activations import Activations
from .buffers import SystemBuffer
from .compiled import CompiledNetwork
from .compiler import compile_network, cost_network
from .instructions import (
    INSTRUCTION_BYTES,
    INSTRUCTION_CLASSES,
    INSTRUCTION_HEADER_BYTES,
    OPCODES,
    Add,
    AvgPool,
    Conv,
    End,
    FcCompute,
    FcLoadInput,
    FcLoadWeights,
    FcPrefetchWeights,
    FcStoreOutput,
    GlobalPool,
    Header,
    Instruction,
    LayerOp,
    LegBegin,
    LegEnd,
    MaxPool,
    Mul,
    Opcode,
    decode_stream,
    encode_stream,
)
from .memory import (
    ALIGNMENT,
    REGION_NAMES,
    SCHEDULER_DESCRIPTOR_BYTES,
    MemoryMap,
    Region,
    RegionName,
    format_size,
    plan_memory,
)
from .placement import OUTPUT_SOFTWARE_KINDS, LayerPlacement, Leg, LegLayers, Placement
from .program import Addresses, DdrAddresses
from .weights import IMAGE_ALIGNMENT, WeightImage

__all__ = [
    "ALIGNMENT",
    "IMAGE_ALIGNMENT",
    "INSTRUCTION_BYTES",
    "INSTRUCTION_CLASSES",
    "INSTRUCTION_HEADER_BYTES",
    "OPCODES",
    "OUTPUT_SOFTWARE_KINDS",
    "REGION_NAMES",
    "SCHEDULER_DESCRIPTOR_BYTES",
    "Activations",
    "Add",
    "Addresses",
    "AvgPool",
    "CompiledNetwork",
    "Conv",
    "DdrAddresses",
    "End",
    "FcCompute",
    "FcLoadInput",
    "FcLoadWeights",
    "FcPrefetchWeights",
    "FcStoreOutput",
    "GlobalPool",
    "Header",
    "Instruction",
    "LayerOp",
    "LayerPlacement",
    "Leg",
    "LegBegin",
    "LegEnd",
    "LegLayers",
    "MaxPool",
    "MemoryMap",
    "Mul",
    "Opcode",
    "Placement",
    "Region",
    "RegionName",
    "SystemBuffer",
    "WeightImage",
    "compile_network",
    "cost_network",
    "decode_stream",
    "encode_stream",
    "format_size",
    "plan_memory",
]
