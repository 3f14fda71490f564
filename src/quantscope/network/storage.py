"""Models too large for one protobuf message (2 GiB): weights kept as external data.

A protobuf message, and so an ONNX model serialized in one piece, holds at most
2 GiB. A prepared network whose initializers exceed :data:`LARGE_BYTES` therefore
never goes to onnxruntime as bytes: the first time a session is needed, its
initializers are written once to ``weights.bin`` in a private temporary folder and
become external tensors (memory-mapped by onnxruntime and numpy alike), and every
session model (a graph of a few kB that points to ``weights.bin``) is written next to
it and opened by path. The folder is removed with the network (or at exit).
"""

from __future__ import annotations

import hashlib
import tempfile
import weakref
from pathlib import Path

import onnx
import onnx_ir as ir

from .._io import write_atomic

__all__ = ["LARGE_BYTES", "PROTOBUF_LIMIT", "ExternalStore", "initializer_bytes"]

#: A protobuf message, and so an ONNX model held in one, is at most 2 GiB.
PROTOBUF_LIMIT = 2**31 - 1
#: Initializer bytes above which a network keeps its weights as external data (the
#: rest of a graph, and the outputs sessions add, stay far below the 2 GiB limit).
LARGE_BYTES = 3 * 2**29  # 1.5 GiB

_WEIGHTS = "weights.bin"


def initializer_bytes(model: ir.Model) -> int:
    """Bytes of all initializers of ``model``'s main graph (external ones included)."""
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


class ExternalStore:
    """A private temporary folder holding a model's weights (``weights.bin``) and the
    session models that point to them."""

    def __init__(self, model: ir.Model):
        self._dir = tempfile.TemporaryDirectory(prefix="quantscope-model-")
        self.folder = Path(self._dir.name)
        weakref.finalize(self, self._dir.cleanup)
        values = [v for v in model.graph.initializers.values() if v.const_value is not None]
        tensors = ir.external_data.convert_tensors_to_external(
            [v.const_value for v in values], base_dir=self.folder, relative_path=_WEIGHTS
        )
        for value, tensor in zip(values, tensors):
            value.const_value = tensor

    def path_of(self, proto: onnx.ModelProto) -> str:
        """``proto`` (whose external data is ``weights.bin``) written into the folder;
        its path, for onnxruntime. The same model gives the same file."""
        data = proto.SerializeToString()
        path = self.folder / f"session-{hashlib.sha256(data).hexdigest()[:24]}.onnx"
        if not path.exists():
            write_atomic(path, data)
        return str(path)

    def weights_sha256(self) -> str:
        """sha256 of ``weights.bin``, read in pieces."""
        h = hashlib.sha256()
        with open(self.folder / _WEIGHTS, "rb") as f:
            for block in iter(lambda: f.read(16 << 20), b""):
                h.update(block)
        return h.hexdigest()
