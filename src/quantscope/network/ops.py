"""Which ONNX operators quantscope understands, and how it treats them.

Flat tables, no class per operator (DESIGN.md idea 4).
"""

from __future__ import annotations

import onnx_ir as ir

from ..errors import UnsupportedModelError

__all__ = [
    "FUSABLE_ACTIVATIONS",
    "NORMALIZATION_OPS",
    "SUPPORTED_OPS",
    "check_supported",
]

#: Operators that run in float through calibration and that later stages know.
SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        # layers with learnables
        "Conv",
        "Gemm",
        "MatMul",
        "BatchNormalization",
        # activations
        "Relu",
        "Clip",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
        "Elu",
        "Selu",
        "Softplus",
        "Erf",
        "Gelu",
        # pooling
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        # element-wise and normalization
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sqrt",
        "Pow",
        "Neg",
        "Abs",
        "Exp",
        "Log",
        "Min",
        "Max",
        "LRN",
        "Softmax",
        "LogSoftmax",
        "ReduceMean",
        "ReduceMax",
        "ReduceSum",
        "LayerNormalization",
        "InstanceNormalization",
        "GroupNormalization",
        # data movement
        "Concat",
        "Split",
        "Slice",
        "Flatten",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Pad",
        "Resize",
        "Upsample",
        "Expand",
        "Tile",
        "Gather",
        "DepthToSpace",
        "SpaceToDepth",
        # shape computations and plumbing
        "Shape",
        "Size",
        "Cast",
        "Constant",
        "ConstantOfShape",
        "Range",
        "Equal",
        "Where",
        "Identity",
        "Dropout",
        "Floor",
        "Ceil",
    }
)

#: Activations that are merged into the Conv/Gemm before them (one optimized layer).
FUSABLE_ACTIVATIONS: frozenset[str] = frozenset({"Relu", "Clip", "LeakyRelu", "PRelu"})

#: Element-wise ops with a constant operand that form an input normalization.
NORMALIZATION_OPS: frozenset[str] = frozenset({"Sub", "Div", "Mul", "Add"})


def check_supported(graph: ir.Graph, where: str = "the model") -> None:
    """Raise one :class:`UnsupportedModelError` naming every unsupported node.

    A node is unsupported when its domain is not the default ONNX domain or its
    operator is not in :data:`SUPPORTED_OPS` (control flow, recurrent layers,
    custom ops...).
    """
    bad = [
        (
            node.name or f"<unnamed {node.op_type}>",
            f"{node.domain + '::' if node.domain not in ('', 'ai.onnx') else ''}{node.op_type}",
        )
        for node in graph
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS
    ]
    if bad:
        listed = ", ".join(f"{name} ({op})" for name, op in bad)
        kinds = sorted({op for _, op in bad})
        raise UnsupportedModelError(
            f"{where} has {len(bad)} node(s) quantscope does not support: {listed}. "
            f"Unsupported operator types: {', '.join(kinds)}. Re-export the network without "
            "them (e.g. replace custom ops by standard ONNX ops) or cut the graph before them.",
            nodes=bad,
        )
