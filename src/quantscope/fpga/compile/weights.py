"""Weight images: the weights of each conv and fc layer as the processor reads them
from DDR, and their place in the weight regions.

- conv: ``(Cout', Cin'/groups, kh, kw)`` with Cout' and (for ``groups == 1``) Cin'
  padded to N;
- fc: ``(in', out')``, input-major, the flattened input in ``(c, h, w)`` order with
  the padding planes at the end, ``out'`` padded to FCThreadNumber;
- int8 bitstreams: int8 weights and int32 biases (the quantizer's, or a stand-in:
  per-tensor power-of-two weights, docs/int8.md eq. (1), and the bias at the weight
  exponent); single bitstreams: float32 weights and biases.

Images are packed one after the other in their module's region, each starting on a
64-byte (AXI burst) boundary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UnsupportedModelError
from ...network import LayerKind, Network, OptimizedLayer
from ...quantize.numerics import pow2_exponent, quantize, quantize_bias_pow2
from ..config import DataType, Module, ProcessorConfig
from ..cycles import LayerInfo
from .memory import align, round_up

__all__ = ["IMAGE_ALIGNMENT", "WeightImage", "fc_bias", "fc_matrix", "weight_image", "weight_images"]

#: Each weight image inside a weight region starts on a 64-byte (AXI burst) boundary.
IMAGE_ALIGNMENT = 64


@dataclass(frozen=True)
class WeightImage:
    """The weights of one layer as the processor reads them from DDR.

    ``module``: :attr:`Module.CONV` or :attr:`Module.FC`; ``weights``: conv
    ``(Cout', Cin'/groups, kh, kw)`` or fc ``(in', out')``, int8 or float32, zero
    padded; ``bias``: ``(Cout',)`` int32 or float32; ``exponent``: the power-of-two
    exponent of int8 weights (None for float32); ``offset``: byte offset inside its
    weight region."""

    layer: str
    module: Module
    weights: np.ndarray
    bias: np.ndarray
    exponent: int | None
    offset: int

    @property
    def nbytes(self) -> int:
        return int(self.weights.nbytes + self.bias.nbytes)

    def tobytes(self) -> bytes:
        return self.weights.tobytes() + self.bias.tobytes()


def _transposed_b(net: Network, layer: OptimizedLayer) -> bool:
    return layer.op_types[0] == "Gemm" and bool(int(net.node_attributes(layer.members[0]).get("transB", 0)))


def fc_matrix(net: Network, layer: OptimizedLayer) -> np.ndarray:
    """The FC weights as ``(in, out)`` float32 (Gemm transB and alpha applied)."""
    w = np.asarray(net.constant(layer.weight), dtype=np.float32)
    op = layer.op_types[0]
    if op == "Gemm":
        attrs = net.node_attributes(layer.members[0])
        if int(attrs.get("transA", 0)):
            raise UnsupportedModelError(
                f"layer {layer.name!r}: Gemm with transA=1 is not supported", nodes=[(layer.name, "Gemm")]
            )
        if int(attrs.get("transB", 0)):
            w = w.T
        w = w * np.float32(attrs.get("alpha", 1.0))
    if w.ndim != 2:
        raise UnsupportedModelError(
            f"layer {layer.name!r}: FC weights must be 2-D, got {w.shape}", nodes=[(layer.name, op)]
        )
    return w


def fc_bias(net: Network, layer: OptimizedLayer, out: int) -> np.ndarray:
    """The FC bias as ``(out,)`` float32 (Gemm beta applied; zeros without a bias)."""
    if layer.bias is None:
        return np.zeros(out, np.float32)
    b = np.asarray(net.constant(layer.bias), dtype=np.float32).reshape(-1)
    if layer.op_types[0] == "Gemm":
        b = b * np.float32(net.node_attributes(layer.members[0]).get("beta", 1.0))
    return np.broadcast_to(b, (out,)).astype(np.float32)


def weight_image(
    net: Network,
    config: ProcessorConfig,
    layer: OptimizedLayer,
    info: LayerInfo,
    quantized: Mapping[str, Any],
) -> WeightImage:
    """The image of one conv or fc layer, at offset 0. ``quantized`` as
    :func:`~quantscope.fpga.compile_network` takes it."""
    if layer.kind == LayerKind.CONV:
        w = np.asarray(net.constant(layer.weight), dtype=np.float32)
        b = (
            np.zeros(w.shape[0], np.float32)
            if layer.bias is None
            else np.asarray(net.constant(layer.bias), np.float32).reshape(-1)
        )
        cout, cin_g, kh, kw = w.shape
        n = config.channel_multiple
        shape = (round_up(cout, n), round_up(cin_g, n) if info.groups == 1 else cin_g, kh, kw)
        module = Module.CONV
    else:
        w = fc_matrix(net, layer)
        b = fc_bias(net, layer, w.shape[1])
        shape = (info.fc_in_padded, info.fc_out_padded)
        module = Module.FC
    outputs = shape[0] if module is Module.CONV else shape[1]
    if config.data_type is DataType.INT8:
        if layer.name in quantized:
            given = quantized[layer.name]
            qw, qb = given[:2]
            qw = np.asarray(qw, np.int8)
            if module is Module.FC and _transposed_b(net, layer):
                qw = qw.T
            qb = (
                np.zeros(w.shape[0] if module is Module.CONV else w.shape[1], np.int32)
                if qb is None
                else np.asarray(qb, np.int32)
            )
            e = given[2] if len(given) > 2 else None
        else:
            # Stand-in until the quantizer provides the layer's int8 weights: per-tensor
            # power-of-two weights (docs/int8.md eq. 1) and the bias at exponent e_w + 0.
            e = pow2_exponent(float(np.max(np.abs(w))) if w.size else 0.0)
            qw = quantize(w, math.ldexp(1.0, e))
            qb = quantize_bias_pow2(b, e, 0)
        weights = np.zeros(shape, np.int8)
        bias = np.zeros(outputs, np.int32)
    else:
        qw, qb, e = w, b, None
        weights = np.zeros(shape, np.float32)
        bias = np.zeros(outputs, np.float32)
    weights[tuple(slice(0, s) for s in qw.shape)] = qw
    bias[: qb.shape[0]] = qb
    return WeightImage(layer=layer.name, module=module, weights=weights, bias=bias, exponent=e, offset=0)


def weight_images(
    net: Network,
    config: ProcessorConfig,
    hardware: list[OptimizedLayer],
    infos: Mapping[str, LayerInfo],
    quantized: Mapping[str, Any],
) -> tuple[dict[str, WeightImage], dict[Module, int]]:
    """The images of the conv and fc layers among ``hardware``, each at its offset in
    its module's region, and the bytes each region needs (only modules with images)."""
    images: dict[str, WeightImage] = {}
    offsets = {Module.CONV: 0, Module.FC: 0}
    for layer in hardware:
        if layer.kind not in (LayerKind.CONV, LayerKind.FC):
            continue
        img = weight_image(net, config, layer, infos[layer.name], quantized)
        img = dataclasses.replace(img, offset=offsets[img.module])
        offsets[img.module] += align(img.nbytes, IMAGE_ALIGNMENT)
        images[layer.name] = img
    used = {img.module for img in images.values()}
    return images, {m: nbytes for m, nbytes in offsets.items() if m in used}
