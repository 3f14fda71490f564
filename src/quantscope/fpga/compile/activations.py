"""The network's activations as the processor sees them: who produces and who reads
each value, the value a fused alias reads from, its ``(C, H, W)`` shape and its
elements in the DDR layout (channels padded to N, FC outputs to FCThreadNumber)."""

from __future__ import annotations

from ...errors import UnsupportedModelError, option
from ...network import LayerKind, Network, OptimizedLayer
from ...ops import ops_with
from ..config import ProcessorConfig
from .memory import round_up

__all__ = ["ALIAS_KINDS", "Activations", "chw", "resolved_shapes"]

#: Fused kinds whose output is their input re-addressed (no buffer of their own).
ALIAS_KINDS = ops_with(fpga_alias=True)


def resolved_shapes(net: Network) -> dict[str, tuple[int | None, ...]]:
    """Every layer output's shape (batch axis ``None``) from one float run of one frame
    of zeros, when every input dimension but the batch is fixed; else no shapes."""
    import numpy as np

    from ...calibrate.collector import create_session

    feeds = {}
    for name, (shape, dtype) in net.input_spec.items():
        if not shape or any(not isinstance(d, int) for d in shape[1:]):
            return {}
        feeds[name] = np.zeros((1, *shape[1:]), dtype=dtype)
    names = [layer.output for layer in net.layers if layer.kind != LayerKind.INPUT]
    outs = create_session(net.session_model(names)).run(names, feeds)
    return {name: (None, *out.shape[1:]) if out.ndim else () for name, out in zip(names, outs)}


def chw(shape: tuple[int | None, ...] | None, value: str, layer: str) -> tuple[int, int, int]:
    """``shape`` (batch first) as ``(C, H, W)``: ``(N, C, H, W)``, ``(N, C, L)`` ->
    ``(C, 1, L)``, ``(N, F)`` -> ``(F, 1, 1)``. Unknown or symbolic dimensions other
    than the batch, and other ranks, raise :class:`UnsupportedModelError`."""
    if shape is None:
        raise UnsupportedModelError(
            f"the shape of {value!r} (layer {layer!r}) is unknown; the processor needs static shapes. "
            "Export the model with a fixed input size.",
            nodes=[(layer, "shape")],
        )
    dims = shape[1:] if len(shape) >= 2 else shape
    if any(d is None for d in dims):
        raise UnsupportedModelError(
            f"the shape of {value!r} (layer {layer!r}) is {shape}, with a symbolic dimension other than the "
            "batch; the processor needs a fixed input size (H, W and channels): export the model with a fixed "
            "input size (torch.onnx.export without dynamic axes on H and W, or onnxruntime's "
            "python -m onnxruntime.tools.make_dynamic_shape_fixed).",
            nodes=[(layer, "shape")],
        )
    if len(dims) == 3:
        return (int(dims[0]), int(dims[1]), int(dims[2]))
    if len(dims) == 1:
        return (int(dims[0]), 1, 1)
    if len(dims) == 2:
        return (int(dims[0]), 1, int(dims[1]))
    raise UnsupportedModelError(
        f"{value!r} (layer {layer!r}) has shape {shape}; the processor holds (N, C, H, W) images and (N, F) "
        "features (and (N, C, L) as C x 1 x L). Fold the extra axis into the channels or the batch (a 3-D "
        "convolution has no module), or quantize for the cpu target "
        f"({option('target=' + repr('cpu'), '--target cpu')}) instead.",
        nodes=[(layer, "shape")],
    )


class Activations:
    """The activation values of ``network`` on the processor ``config``."""

    def __init__(self, network: Network, config: ProcessorConfig):
        self.network = network
        self.config = config
        self.producer: dict[str, OptimizedLayer] = {layer.output: layer for layer in network.layers}
        self._consumers: dict[str, list[OptimizedLayer]] = {}
        for layer in network.layers:
            for v in layer.inputs:
                self._consumers.setdefault(v, []).append(layer)
        self._resolved: dict[str, tuple[int | None, ...]] | None = None

    def consumers(self, value: str) -> list[OptimizedLayer]:
        """The layers that read ``value``, in network order."""
        return self._consumers.get(value, [])

    def source(self, value: str) -> str:
        """The value a fused-alias chain reads from (Flatten of X -> X)."""
        seen = 0
        while (
            value in self.producer
            and self.producer[value].kind in ALIAS_KINDS
            and self.producer[value].inputs
            and seen < 1000
        ):
            value = self.producer[value].inputs[0]
            seen += 1
        return value

    def shape(self, value: str) -> tuple[int | None, ...] | None:
        """The shape of ``value``: from shape inference, or, where a Reshape, Resize or
        Slice computes it at run time, from one float run at the fixed input size."""
        net = self.network
        shape = net.input_shapes[value] if value in net.input_shapes else net.value_shape(value)
        if shape is not None and len(shape) > 0 and all(isinstance(d, int) for d in shape[1:]):
            return shape
        if self._resolved is None:
            self._resolved = resolved_shapes(net)
        return self._resolved.get(value, shape)

    def chw(self, value: str, layer: str) -> tuple[int, int, int]:
        """``(C, H, W)`` of ``value`` read or written by ``layer`` (named in errors)."""
        return chw(self.shape(value), value, layer)

    def padded_elements(self, value: str) -> int:
        """Elements of ``value`` in its DDR layout: FC outputs padded to FCThreadNumber,
        everything else (C, H, W) with C padded to N."""
        src = self.source(value)
        layer = self.producer.get(src)
        c, h, w = self.chw(src, layer.name if layer else src)
        if layer is not None and layer.kind == LayerKind.FC:
            return round_up(c * h * w, self.config.fc.thread_number)
        return h * w * round_up(c, self.config.channel_multiple)
