"""Weight images: the weights of each conv and fc layer as the processor reads them
from DDR, and their place in the weight regions.

- conv: ``(Cout', Cin'/groups, kh, kw)`` with Cout' and (for ``groups == 1``) Cin'
  padded to N (a transposed convolution: ONNX's ``(Cin', Cout/groups, kh, kw)``),
  written once per row tile of the layer: the conv module reads its filters again for
  every row tile, each time one sequential stream from the next copy (the weight DMA
  only walks forward);
- an activation by lookup table (Sigmoid, Tanh, HardSigmoid, HardSwish, Swish): its
  256-entry int8 table (docs/int8.md (16));
- fc: ``(in', out')``, input-major, the flattened input in ``(c, h, w)`` order with
  the padding planes at the end, ``out'`` padded to FCThreadNumber;
- int8 bitstreams: int8 weights and int32 biases (the quantizer's, or a stand-in:
  per-tensor power-of-two weights, docs/int8.md eq. (1), and the bias at the weight
  exponent); single bitstreams: float32 weights and biases.

Images (and the copies of one image) are packed one after the other in their
module's region, each starting on a 64-byte (AXI burst) boundary.
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
from ...ops import ops_with
from ...quantize.numerics import Rounding, Saturation, pow2_exponent, quantize, quantize_bias_pow2
from ...quantize.plan import QParams
from ...simulate.lut import FUNCTIONS, layer_attributes, lookup_table
from ..config import DataType, Module, ProcessorConfig
from ..cycles import LUT_ENTRIES, LayerCost, LayerInfo
from .memory import align, round_up

__all__ = [
    "IMAGE_ALIGNMENT",
    "LUT_KINDS",
    "WeightImage",
    "fc_bias",
    "fc_matrix",
    "has_image",
    "stand_in_table",
    "weight_image",
    "weight_images",
]

#: Each weight image inside a weight region starts on a 64-byte (AXI burst) boundary.
IMAGE_ALIGNMENT = 64


@dataclass(frozen=True)
class WeightImage:
    """The weights of one layer as the processor reads them from DDR.

    ``module``: :attr:`Module.CONV` or :attr:`Module.FC`; ``weights``: conv
    ``(Cout', Cin'/groups, kh, kw)``, fc ``(in', out')`` or a lookup table
    ``(256,)``, int8 or float32, zero padded; ``bias``: ``(Cout',)`` int32 or float32
    (empty for a table); ``exponent``: the power-of-two exponent of int8 weights (None
    for float32 and tables); ``offset``: byte offset inside its weight region;
    ``copies``: how many times the image is written, one after the other, each copy
    on a 64-byte boundary (a conv layer's row tiles)."""

    layer: str
    module: Module
    weights: np.ndarray
    bias: np.ndarray
    exponent: int | None
    offset: int
    copies: int = 1

    @property
    def copy_bytes(self) -> int:
        """Bytes of one copy: the weights, then the biases."""
        return int(self.weights.nbytes + self.bias.nbytes)

    @property
    def nbytes(self) -> int:
        """Bytes of all copies (64-byte aligned between copies)."""
        return align(self.copy_bytes, IMAGE_ALIGNMENT) * (self.copies - 1) + self.copy_bytes

    def tobytes(self) -> bytes:
        one = self.weights.tobytes() + self.bias.tobytes()
        padded = one + bytes(align(len(one), IMAGE_ALIGNMENT) - len(one))
        return padded * (self.copies - 1) + one


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


#: Activations the conv module computes by lookup table (their image is the table).
LUT_KINDS = ops_with(fpga_cost="lut")
#: Transposed convolutions (weights in ONNX's ``(Cin, Cout/groups, kh, kw)``).
TRANSPOSED_KINDS = ops_with(fpga_cost="conv_transpose")


def stand_in_table(layer: OptimizedLayer, net: Network) -> np.ndarray:
    """A layer's table until the quantizer provides one: the function on the int8 grid
    of ``2^-4`` (inputs -8..7.94), outputs on the power-of-two grid of its range there."""
    attrs = layer_attributes(net, layer)
    x_qp = QParams.pow2(-4)
    y = FUNCTIONS[str(layer.kind)](x_qp.dequantize(np.arange(-128, 128)), attrs)
    y_qp = QParams.pow2(pow2_exponent(float(np.max(np.abs(y)))))
    return lookup_table(layer.kind, attrs, x_qp, y_qp, Rounding.HALF_AWAY, Saturation.SATURATE)


def _conv_tensors(net: Network, layer: OptimizedLayer) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias (float32) of a convolution or a transposed convolution."""
    if layer.kind == LayerKind.CONV:
        w = np.asarray(net.constant(layer.weight), dtype=np.float32)
        bias_value = layer.bias
    else:  # ConvTranspose: constant inputs 1 (weights) and 2 (bias)
        node = layer.nodes[0]
        if len(node.inputs) < 2 or node.inputs[1] is None or node.inputs[1].const_value is None:
            raise UnsupportedModelError(
                f"layer {layer.name!r}: the processor needs constant transposed-convolution weights",
                nodes=[(layer.name, layer.kind)],
            )
        w = node.inputs[1].const_value.numpy().astype(np.float32)
        bias_value = node.inputs[2].name if len(node.inputs) > 2 and node.inputs[2] is not None else None
    groups = int(net.node_attributes(layer.members[0]).get("group", 1))
    outputs = w.shape[0] if layer.kind == LayerKind.CONV else w.shape[1] * groups
    b = (
        np.zeros(outputs, np.float32)
        if bias_value is None
        else np.asarray(net.constant(bias_value), np.float32).reshape(-1)
    )
    return w, b


def weight_image(
    net: Network,
    config: ProcessorConfig,
    layer: OptimizedLayer,
    info: LayerInfo,
    quantized: Mapping[str, Any],
    copies: int = 1,
) -> WeightImage:
    """The image of one conv, fc or lookup-table layer, at offset 0. ``quantized`` as
    :func:`~quantscope.fpga.compile_network` takes it; ``copies``: a conv layer's row tiles."""
    if layer.kind in LUT_KINDS:
        given = quantized.get(layer.name)
        table = np.asarray(given[0] if given is not None else stand_in_table(layer, net), np.int8).reshape(-1)
        if table.size != LUT_ENTRIES:
            raise UnsupportedModelError(
                f"layer {layer.name!r}: a lookup table has {LUT_ENTRIES} entries, got {table.size}",
                nodes=[(layer.name, layer.kind)],
            )
        return WeightImage(layer.name, Module.CONV, table, np.zeros(0, np.int8), None, 0)
    if layer.kind == LayerKind.CONV or layer.kind in TRANSPOSED_KINDS:
        w, b = _conv_tensors(net, layer)
        n = config.channel_multiple
        if layer.kind == LayerKind.CONV:
            cout, cin_g, kh, kw = w.shape
            shape = (round_up(cout, n), round_up(cin_g, n) if info.groups == 1 else cin_g, kh, kw)
        else:
            cin, cout_g, kh, kw = w.shape
            shape = (round_up(cin, n), round_up(cout_g, n) if info.groups == 1 else cout_g, kh, kw)
        module = Module.CONV
    else:
        w = fc_matrix(net, layer)
        b = fc_bias(net, layer, w.shape[1])
        shape = (info.fc_in_padded, info.fc_out_padded)
        module = Module.FC
    if module is Module.FC:
        outputs = shape[1]
    else:
        outputs = shape[0] if layer.kind == LayerKind.CONV else round_up(b.shape[0], config.channel_multiple)
    if config.data_type is DataType.INT8:
        if layer.name in quantized:
            given = quantized[layer.name]
            qw, qb = given[:2]
            qw = np.asarray(qw, np.int8)
            if module is Module.FC and _transposed_b(net, layer):
                qw = qw.T
            qb = np.zeros(b.shape[0], np.int32) if qb is None else np.asarray(qb, np.int32)
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
    copies = copies if module is Module.CONV else 1
    return WeightImage(layer.name, module, weights, bias, e, 0, copies)


def has_image(layer: OptimizedLayer) -> bool:
    """A layer with a weight image: conv, fc, transposed conv, lookup-table activation."""
    return layer.kind in (LayerKind.CONV, LayerKind.FC) or layer.kind in LUT_KINDS or layer.kind in TRANSPOSED_KINDS


def weight_images(
    net: Network,
    config: ProcessorConfig,
    hardware: list[OptimizedLayer],
    infos: Mapping[str, LayerInfo],
    quantized: Mapping[str, Any],
    costs: Mapping[str, LayerCost] | None = None,
) -> tuple[dict[str, WeightImage], dict[Module, int]]:
    """The images of the conv, fc and lookup-table layers among ``hardware``, each at its
    offset in its module's region (a conv layer's once per row tile of its cost in
    ``costs``), and the bytes each region needs (only modules with images)."""
    images: dict[str, WeightImage] = {}
    offsets = {Module.CONV: 0, Module.FC: 0}
    for layer in hardware:
        if not has_image(layer):
            continue
        cost = (costs or {}).get(layer.name)
        copies = cost.tiling.row_tiles if cost is not None and layer.kind not in LUT_KINDS else 1
        img = weight_image(net, config, layer, infos[layer.name], quantized, copies)
        img = dataclasses.replace(img, offset=offsets[img.module])
        offsets[img.module] += align(img.nbytes, IMAGE_ALIGNMENT)
        images[layer.name] = img
    used = {img.module for img in images.values()}
    return images, {m: nbytes for m, nbytes in offsets.items() if m in used}
