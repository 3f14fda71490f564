"""The one operator table: how quantscope treats each ONNX operator.

There is no allow-list. Any operator onnxruntime runs (any domain it registers,
``com.microsoft`` contrib operators included) is supported *in float*: it is
calibrated, and the int8 emulation runs it through onnxruntime on dequantized
inputs. This table lists the operators quantscope knows more about: which ones
have an integer kernel, which merge into the layer before them, which only move
data, and which form an input normalization. Every other stage asks this table
(:func:`info`, :func:`ops_with`) instead of keeping an operator list of its own
(a test fails when one is defined elsewhere).

Flat data, no class per operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from .errors import UnsupportedModelError

__all__ = [
    "OPS",
    "OpInfo",
    "QUANTIZED_OPS",
    "check_not_quantized",
    "info",
    "ops_with",
]


@dataclass(frozen=True)
class OpInfo:
    """What quantscope knows of one operator.

    Attributes:
        int8: the integer kernel family that runs it in the int8 emulation:
            ``"learnable"`` (Conv, Gemm, MatMul), ``"pool"``, ``"add"``, ``"concat"``,
            ``"activation"`` (a clamp or slope on the integer grid), ``"lut"`` (a
            function by its table of one output per integer input), ``"move"`` (the
            values rearranged or a part of them taken), or None (computed in float
            through onnxruntime).
        fusable: an activation merged into the Conv/fully connected layer before it
            (one optimized layer).
        clamp: on the integer grid, the activation is a clamp between two integers.
        normalization: with a constant operand right after the network input, part
            of the input normalization layer.
        same_values: the output holds exactly the input's values, rearranged (its
            range is its input's; nothing to measure).
        fpga_output: may run on the host after the last hardware layer of an FPGA
            network ("SW Layer").
        fpga_alias: on the FPGA, its output is its input re-addressed (no buffer).
        fpga_channels: on the FPGA, it writes or reads parts of an activation in place,
            which the channel-planar layout allows along the channels only.
        fpga_module: the processor module that runs it: ``"conv"`` (conv module,
            pooling included), ``"fc"``, ``"adder"``, or None (fused into a neighbour).
        fpga_cost: the family of its cycle-cost function in
            :data:`quantscope.fpga.cycles.COSTS` (``"pool"``, ``"global_pool"``,
            ``"elementwise"``, ``"lut"``, ``"resize"``, ``"conv_transpose"``,
            ``"fused"``); None: the processor cannot run it.
        takes_bias: a layer with weights (input 1) and a bias (input 2) that a
            BatchNormalization after it folds into.
        commutative: the two operands may be swapped (``x + c`` is ``c + x``; not
            so ``x - c``).
        merges_zero_pad: a zero Pad before it merges into its own ``pads``.
        copies_values: the output holds the input's values, maybe in another type
            (shape computations are followed through it).
        random: its result is not a function of its inputs (never folded into a constant).
        homogeneous: positively homogeneous per channel, ``f(x / s) = f(x) / s`` for a
            positive scale ``s`` per channel (cross-layer equalization scales through it).
        fpga_advice: what the FPGA refusal advises for a layer of this kind the processor
            lacks: ``"activation"`` (use one it has; GELU's Div and Erf too),
            ``"batchnorm"`` (fold it into the Conv before it), ``"normalization"`` (none on
            the processor), or None.
        sizes_only: its constant inputs after the first are sizes, scales or regions
            (Resize, Upsample), not learnable parameters.
    """

    int8: str | None = None
    fusable: bool = False
    clamp: bool = False
    normalization: bool = False
    same_values: bool = False
    fpga_output: bool = False
    fpga_alias: bool = False
    fpga_channels: bool = False
    fpga_module: str | None = None
    fpga_cost: str | None = None
    takes_bias: bool = False
    commutative: bool = False
    merges_zero_pad: bool = False
    copies_values: bool = False
    random: bool = False
    homogeneous: bool = False
    fpga_advice: str | None = None
    sizes_only: bool = False


#: THE table. Operators absent from it run in float (``OpInfo()``).
OPS: dict[str, OpInfo] = {
    **dict.fromkeys(
        ("Elu", "Selu", "Celu", "Gelu", "Erf", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Exp", "Pow"),
        OpInfo(fpga_advice="activation"),
    ),
    "BatchNormalization": OpInfo(fpga_advice="batchnorm"),
    **dict.fromkeys(
        ("LayerNormalization", "InstanceNormalization", "GroupNormalization"), OpInfo(fpga_advice="normalization")
    ),
    "Conv": OpInfo(int8="learnable", takes_bias=True, merges_zero_pad=True),
    "Gemm": OpInfo(int8="learnable", takes_bias=True),
    "MatMul": OpInfo(int8="learnable"),
    "Relu": OpInfo(int8="activation", fusable=True, clamp=True, fpga_alias=True, fpga_cost="fused", homogeneous=True),
    "Clip": OpInfo(int8="activation", fusable=True, clamp=True, fpga_alias=True, fpga_cost="fused"),
    "LeakyRelu": OpInfo(int8="activation", fusable=True, fpga_alias=True, fpga_cost="fused", homogeneous=True),
    "PRelu": OpInfo(int8="activation", fusable=True, fpga_alias=True, fpga_cost="fused", homogeneous=True),
    # with a constant operand: a ceiling (per channel after equalization, docs/accuracy.md (3))
    "Min": OpInfo(int8="activation", fusable=True, fpga_alias=True, fpga_cost="fused"),
    "MaxPool": OpInfo(int8="pool", fpga_module="conv", fpga_cost="pool", homogeneous=True),
    "AveragePool": OpInfo(int8="pool", merges_zero_pad=True, fpga_module="conv", fpga_cost="pool", homogeneous=True),
    "GlobalAveragePool": OpInfo(int8="pool", fpga_module="conv", fpga_cost="global_pool"),
    "GlobalMaxPool": OpInfo(fpga_module="conv", fpga_cost="global_pool"),
    "Add": OpInfo(int8="add", normalization=True, commutative=True, fpga_module="adder", fpga_cost="elementwise"),
    "Sum": OpInfo(fpga_module="adder", fpga_cost="elementwise"),
    "Sub": OpInfo(normalization=True),
    "Mul": OpInfo(normalization=True, commutative=True, fpga_module="adder", fpga_cost="elementwise"),
    "Div": OpInfo(normalization=True, fpga_advice="activation"),
    "Concat": OpInfo(int8="concat", fpga_cost="fused", fpga_channels=True),
    "Flatten": OpInfo(int8="move", same_values=True, fpga_output=True, fpga_alias=True, fpga_cost="fused"),
    "Reshape": OpInfo(int8="move", same_values=True, fpga_output=True, fpga_alias=True, fpga_cost="fused"),
    "Squeeze": OpInfo(int8="move", same_values=True, fpga_output=True, fpga_alias=True, fpga_cost="fused"),
    "Unsqueeze": OpInfo(int8="move", same_values=True, fpga_alias=True, fpga_cost="fused"),
    "Transpose": OpInfo(int8="move", same_values=True),
    "Identity": OpInfo(fpga_output=True, fpga_alias=True, copies_values=True, fpga_cost="fused"),
    "Cast": OpInfo(copies_values=True),
    "Dropout": OpInfo(fpga_alias=True, fpga_cost="fused"),
    "Softmax": OpInfo(fpga_output=True),
    "LogSoftmax": OpInfo(fpga_output=True),
    # activations by a 256-entry table on the int8 input (docs/int8.md (16)); on the
    # processor, the conv module's activation block (docs/fpga.md)
    **dict.fromkeys(
        ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Swish"),
        OpInfo(int8="lut", fpga_module="conv", fpga_cost="lut"),
    ),
    # on the processor: nearest Resize by integer factors on the conv module; Slice and
    # Split along channels read their part in place; ConvTranspose on the conv module
    "Resize": OpInfo(fpga_module="conv", fpga_cost="resize", sizes_only=True),
    "Upsample": OpInfo(sizes_only=True),
    "Slice": OpInfo(int8="move", fpga_alias=True, fpga_cost="fused", fpga_channels=True),
    "Split": OpInfo(fpga_alias=True, fpga_cost="fused", fpga_channels=True),
    "ConvTranspose": OpInfo(fpga_module="conv", fpga_cost="conv_transpose"),
    **dict.fromkeys(
        ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"),
        OpInfo(random=True),
    ),
}

_NO_INFO = OpInfo()


def info(op_type: str, domain: str = "") -> OpInfo:
    """What the table says of ``op_type`` (of the default ONNX domain); an operator
    of another domain, or one absent from the table, computes in float."""
    if domain not in ("", "ai.onnx"):
        return _NO_INFO
    return OPS.get(op_type, _NO_INFO)


def ops_with(**conditions) -> frozenset[str]:
    """The operators whose :class:`OpInfo` fields equal ``conditions``, e.g.
    ``ops_with(int8="move")`` or ``ops_with(fusable=True)``."""
    return frozenset(op for op, i in OPS.items() if all(getattr(i, k) == v for k, v in conditions.items()))


#: A windowed pool -> its global form, which it is when its one window covers the input
#: (``passes/reduce_mean_to_pool.py``).
GLOBAL_POOL_OF: dict[str, str] = {"AveragePool": "GlobalAveragePool", "MaxPool": "GlobalMaxPool"}


#: Operators that mean a model is already quantized (ONNX and onnxruntime's
#: com.microsoft contrib domain).
QUANTIZED_OPS: frozenset[str] = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "ConvInteger",
        "MatMulInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QLinearAdd",
        "QLinearMul",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearConcat",
        "QLinearLeakyRelu",
        "QLinearSigmoid",
        "QLinearSoftmax",
        "QLinearReduceMean",
        "QLinearWhere",
        "QGemm",
        "QAttention",
        "QEmbedLayerNormalization",
        "QOrderedMatMul",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "MatMulIntegerToFloat",
        "MatMulNBits",
        "MatMulBnb4",
        "GatherBlockQuantized",
    }
)


def _is_quantized(node: ir.Node) -> bool:
    return node.op_type in QUANTIZED_OPS or (node.domain == "com.microsoft" and node.op_type.startswith("QLinear"))


def check_not_quantized(graph: ir.Graph, where: str = "the model") -> None:
    """Raise :class:`UnsupportedModelError` when the model is already quantized
    (QuantizeLinear/DequantizeLinear, QLinear*, ConvInteger, MatMulInteger,
    DynamicQuantizeLinear or a com.microsoft quantized operator): quantscope
    quantizes float models."""
    found = [(node.name or f"<unnamed {node.op_type}>", node.op_type) for node in graph if _is_quantized(node)]
    if found:
        kinds = sorted({op for _, op in found})
        raise UnsupportedModelError(
            f"{where} is already quantized: {len(found)} of its nodes are quantized operators "
            f"({', '.join(kinds)}). quantscope calibrates and quantizes float models; give it the float "
            "model this one was made from (the ONNX export before quantization).",
            nodes=found,
        )
