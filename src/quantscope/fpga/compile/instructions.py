"""The instruction stream's format: typed instructions and their 32-byte records.

A stream is a 64-byte :class:`Header` (``b"QSDLPI01"``, version 1, instruction,
layer and leg counts, InputFrameNumberLimit) followed by one record per instruction,
``struct "<HH7I"``: opcode u16, an index u16 (the layer's index in the network, or
the leg's for ``LEG_BEGIN``/``LEG_END``), seven u32 operands (``docs/fpga.md``,
"Instruction stream").

Each opcode is a frozen dataclass: its first field is the record's index, the
following fields are the operands in order (unused operands are 0).
:meth:`Instruction.encode` writes the record and :meth:`Instruction.decode` reads one
back, so ``decode(i.encode()) == i`` for every instruction whose values fit their
fields (the encoder keeps the low 16 / 32 bits, as the hardware would read them).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import numpy as np

from ..config import Module

__all__ = [
    "INSTRUCTION_BYTES",
    "INSTRUCTION_CLASSES",
    "INSTRUCTION_HEADER_BYTES",
    "OPCODES",
    "Add",
    "AvgPool",
    "Conv",
    "ConvTranspose",
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
    "LegBegin",
    "LegEnd",
    "Lut",
    "MaxPool",
    "Mul",
    "Opcode",
    "Resize",
    "decode_stream",
    "encode_stream",
    "stream_bytes",
]

#: Instruction stream: header bytes and bytes per instruction.
INSTRUCTION_HEADER_BYTES = 64
INSTRUCTION_BYTES = 32
#: Operands per instruction record.
OPERANDS = 7
MAGIC = b"QSDLPI01"
VERSION = 1
_RECORD = struct.Struct("<HH7I")  # opcode, index, 7 operands: 32 bytes
_HEADER = struct.Struct("<8sIIIII")  # magic, version, instructions, layers, legs, frame limit


class Opcode(IntEnum):
    """Instruction opcodes (docs/fpga.md, "Instruction stream")."""

    LEG_BEGIN = 0x01
    LEG_END = 0x02
    CONV = 0x10
    MAXPOOL = 0x11
    AVGPOOL = 0x12
    GLOBALPOOL = 0x13
    LUT = 0x14
    RESIZE = 0x15
    CONV_TRANSPOSE = 0x16
    FC_LOAD_INPUT = 0x20
    FC_LOAD_WEIGHTS = 0x21
    FC_PREFETCH_WEIGHTS = 0x22
    FC_COMPUTE = 0x23
    FC_STORE_OUTPUT = 0x24
    ADD = 0x30
    MUL = 0x31
    END = 0xFF


#: Opcode values by name.
OPCODES: dict[str, int] = {op.name: op.value for op in Opcode}


@dataclass(frozen=True)
class Instruction:
    """One instruction. Subclasses set ``OPCODE``; their first field is the record's
    index and the following fields its operands, in order."""

    OPCODE: ClassVar[Opcode]

    def index(self) -> int:
        """The record's u16 index field."""
        f = dataclasses.fields(self)
        return int(getattr(self, f[0].name)) if f else 0

    def operands(self) -> tuple[int, ...]:
        """The operands this instruction uses, in record order (the rest are 0)."""
        return tuple(int(getattr(self, f.name)) for f in dataclasses.fields(self)[1:])

    @classmethod
    def from_record(cls, index: int, operands: tuple[int, ...]) -> Instruction:
        """The instruction from its record's index and seven operands."""
        n = len(dataclasses.fields(cls))
        if n == 0:
            return cls()
        return cls(index, *operands[: n - 1])

    def encode(self) -> bytes:
        """The 32-byte record."""
        ops = self.operands()
        ops = ops + (0,) * (OPERANDS - len(ops))
        return _RECORD.pack(self.OPCODE, self.index() & 0xFFFF, *[o & 0xFFFFFFFF for o in ops])

    def tobytes(self) -> bytes:
        """The 32-byte record (:meth:`encode`)."""
        return self.encode()

    @staticmethod
    def decode(record: bytes) -> Instruction:
        """The instruction a 32-byte record holds. An unknown opcode, or a record with
        a nonzero index or operand its opcode does not use, raises ``ValueError``."""
        if len(record) != INSTRUCTION_BYTES:
            raise ValueError(f"an instruction record is {INSTRUCTION_BYTES} bytes, got {len(record)}")
        opcode, index, *operands = _RECORD.unpack(record)
        try:
            cls = INSTRUCTION_CLASSES[Opcode(opcode)]
        except ValueError:
            raise ValueError(f"unknown opcode 0x{opcode:02x}") from None
        n = len(dataclasses.fields(cls))
        if any(operands[max(n - 1, 0) :]) or (n == 0 and index):
            raise ValueError(f"{cls.__name__} record with fields it does not use: {record.hex()}")
        return cls.from_record(index, tuple(operands))


@dataclass(frozen=True)
class LegBegin(Instruction):
    """Start of leg ``leg`` on the module group ``module`` (operand 0 for the conv
    module with its adder, 1 for the fc module)."""

    OPCODE: ClassVar[Opcode] = Opcode.LEG_BEGIN
    leg: int
    module: Module

    def operands(self) -> tuple[int, ...]:
        return (0 if self.module.group is Module.CONV else 1,)

    @classmethod
    def from_record(cls, index: int, operands: tuple[int, ...]) -> Instruction:
        if operands[0] not in (0, 1):
            raise ValueError(f"LEG_BEGIN with module code {operands[0]}, expected 0 (conv) or 1 (fc)")
        return cls(index, Module.CONV if operands[0] == 0 else Module.FC)


@dataclass(frozen=True)
class LegEnd(Instruction):
    """End of leg ``leg``."""

    OPCODE: ClassVar[Opcode] = Opcode.LEG_END
    leg: int


@dataclass(frozen=True)
class LayerOp(Instruction):
    """One layer pass on the conv module or the adder: DDR addresses of up to two
    inputs and of the output, of the weight image and its bytes (0 without weights),
    of the layer's first descriptor (scheduler region, or after the instructions), and
    its tile count."""

    layer: int
    input: int
    second_input: int
    output: int
    weights: int
    weight_bytes: int
    descriptors: int
    tiles: int


@dataclass(frozen=True)
class Conv(LayerOp):
    """A convolution."""

    OPCODE: ClassVar[Opcode] = Opcode.CONV


@dataclass(frozen=True)
class MaxPool(LayerOp):
    """A max pooling."""

    OPCODE: ClassVar[Opcode] = Opcode.MAXPOOL


@dataclass(frozen=True)
class AvgPool(LayerOp):
    """An average pooling."""

    OPCODE: ClassVar[Opcode] = Opcode.AVGPOOL


@dataclass(frozen=True)
class GlobalPool(LayerOp):
    """A global average or max pooling."""

    OPCODE: ClassVar[Opcode] = Opcode.GLOBALPOOL


@dataclass(frozen=True)
class Lut(LayerOp):
    """An activation by lookup table (Sigmoid, Tanh, HardSigmoid, HardSwish, Swish); its
    table is the weight image."""

    OPCODE: ClassVar[Opcode] = Opcode.LUT


@dataclass(frozen=True)
class Resize(LayerOp):
    """A nearest Resize by integer factors."""

    OPCODE: ClassVar[Opcode] = Opcode.RESIZE


@dataclass(frozen=True)
class ConvTranspose(LayerOp):
    """A transposed convolution."""

    OPCODE: ClassVar[Opcode] = Opcode.CONV_TRANSPOSE


@dataclass(frozen=True)
class Add(LayerOp):
    """An element-wise Add (or Sum) on the adder."""

    OPCODE: ClassVar[Opcode] = Opcode.ADD


@dataclass(frozen=True)
class Mul(LayerOp):
    """An element-wise Mul on the adder."""

    OPCODE: ClassVar[Opcode] = Opcode.MUL


@dataclass(frozen=True)
class FcLoadInput(Instruction):
    """Load an fc leg's input vector (``nbytes`` at DDR ``address``) into the fc module."""

    OPCODE: ClassVar[Opcode] = Opcode.FC_LOAD_INPUT
    layer: int
    address: int
    nbytes: int


@dataclass(frozen=True)
class FcLoadWeights(Instruction):
    """Stream an fc layer's weight image (``nbytes`` at DDR ``address``)."""

    OPCODE: ClassVar[Opcode] = Opcode.FC_LOAD_WEIGHTS
    layer: int
    address: int
    nbytes: int


@dataclass(frozen=True)
class FcPrefetchWeights(Instruction):
    """Prefetch an fc layer's weight image into the prefetch buffer while the previous one runs."""

    OPCODE: ClassVar[Opcode] = Opcode.FC_PREFETCH_WEIGHTS
    layer: int
    address: int
    nbytes: int


@dataclass(frozen=True)
class FcCompute(Instruction):
    """Run an fc layer in ``tiles`` tiles."""

    OPCODE: ClassVar[Opcode] = Opcode.FC_COMPUTE
    layer: int
    tiles: int


@dataclass(frozen=True)
class FcStoreOutput(Instruction):
    """Store an fc leg's output vector (``nbytes`` at DDR ``address``)."""

    OPCODE: ClassVar[Opcode] = Opcode.FC_STORE_OUTPUT
    layer: int
    address: int
    nbytes: int


@dataclass(frozen=True)
class End(Instruction):
    """End of the program."""

    OPCODE: ClassVar[Opcode] = Opcode.END


#: The instruction class of each opcode.
INSTRUCTION_CLASSES: dict[Opcode, type[Instruction]] = {
    cls.OPCODE: cls
    for cls in (
        LegBegin,
        LegEnd,
        Conv,
        MaxPool,
        AvgPool,
        GlobalPool,
        Lut,
        Resize,
        ConvTranspose,
        FcLoadInput,
        FcLoadWeights,
        FcPrefetchWeights,
        FcCompute,
        FcStoreOutput,
        Add,
        Mul,
        End,
    )
}


@dataclass(frozen=True)
class Header:
    """The stream's 64-byte header."""

    instructions: int
    layers: int
    legs: int
    frame_limit: int
    version: int = VERSION

    def encode(self) -> bytes:
        blob = _HEADER.pack(MAGIC, self.version, self.instructions, self.layers, self.legs, self.frame_limit)
        return blob + bytes(INSTRUCTION_HEADER_BYTES - len(blob))

    @classmethod
    def decode(cls, blob: bytes) -> Header:
        magic, version, instructions, layers, legs, frame_limit = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            raise ValueError(f"not an instruction stream: magic {magic!r}, expected {MAGIC!r}")
        return cls(instructions, layers, legs, frame_limit, version)


def stream_bytes(count: int) -> int:
    """Bytes of a stream of ``count`` instructions (header included)."""
    return INSTRUCTION_HEADER_BYTES + INSTRUCTION_BYTES * count


def encode_stream(program: Sequence[Instruction], *, layers: int, legs: int, frame_limit: int) -> np.ndarray:
    """The stream (header, then one record per instruction) as a uint8 array."""
    blob = bytearray(Header(len(program), layers, legs, frame_limit).encode())
    for instruction in program:
        blob += instruction.encode()
    return np.frombuffer(bytes(blob), dtype=np.uint8).copy()


def decode_stream(stream: bytes | np.ndarray) -> tuple[Header, list[Instruction]]:
    """The header and the instructions of an encoded stream."""
    blob = stream.tobytes() if isinstance(stream, np.ndarray) else bytes(stream)
    header = Header.decode(blob)
    if len(blob) != stream_bytes(header.instructions):
        raise ValueError(
            f"the header announces {header.instructions} instructions ({stream_bytes(header.instructions)} B), "
            f"the stream has {len(blob)} B"
        )
    at = INSTRUCTION_HEADER_BYTES
    program = [
        Instruction.decode(blob[at + INSTRUCTION_BYTES * i : at + INSTRUCTION_BYTES * (i + 1)])
        for i in range(header.instructions)
    ]
    return header, program
