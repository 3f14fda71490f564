"""Reference architectures built as ONNX directly (no torch), with seeded random weights.

For benchmarks and checks that depend on the architecture only (timing, memory
accounting, FPGA estimates), not on trained weights. Layer names follow MATLAB's
networks so tables read the same.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["squeezenet"]

# SqueezeNet 1.1 fire modules: (name, squeeze, expand1x1, expand3x3), with max pools between.
_SQUEEZENET_11 = [
    ("fire2", 16, 64, 64),
    ("fire3", 16, 64, 64),
    "pool3",
    ("fire4", 32, 128, 128),
    ("fire5", 32, 128, 128),
    "pool5",
    ("fire6", 48, 192, 192),
    ("fire7", 48, 192, 192),
    ("fire8", 64, 256, 256),
    ("fire9", 64, 256, 256),
]


def squeezenet(
    num_classes: int = 1000,
    input_size: int = 227,
    seed: int = 0,
    input_name: str = "data",
    normalization: bool = True,
    softmax: bool = True,
) -> onnx.ModelProto:
    """SqueezeNet 1.1 (Iandola et al.) as ONNX, MATLAB's layer names, He-initialised weights.

    Input ``(N, 3, input_size, input_size)`` pixels 0..255, NCHW, followed by a
    ``Sub`` of the per-channel mean when ``normalization`` (MATLAB's zerocenter).
    Learnables: 1,235,496 for 1,000 classes; 725,061 for 5.
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}

    def conv(name: str, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, relu_name: str | None = None) -> str:
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.01).astype(np.float32)
        inits[f"{name}_W"], inits[f"{name}_B"] = w, b
        nodes.append(
            helper.make_node(
                "Conv", [x, f"{name}_W", f"{name}_B"], [name], name=name,
                kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
            )
        )
        if relu_name is None:
            return name
        nodes.append(helper.make_node("Relu", [name], [relu_name], name=relu_name))
        return relu_name

    def maxpool(name: str, x: str) -> str:
        nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1))
        return name

    x = input_name
    if normalization:
        inits["mean"] = np.array([123.68, 116.78, 103.94], np.float32).reshape(1, 3, 1, 1)
        nodes.append(helper.make_node("Sub", [x, "mean"], [f"{input_name}_zerocenter"], name=f"{input_name}_zerocenter"))
        x = f"{input_name}_zerocenter"
    x = conv("conv1", x, 3, 64, 3, stride=2, relu_name="relu_conv1")
    x = maxpool("pool1", x)
    channels = 64
    for item in _SQUEEZENET_11:
        if isinstance(item, str):
            x = maxpool(item, x)
            continue
        name, s, e1, e3 = item
        sq = conv(f"{name}-squeeze1x1", x, channels, s, 1, relu_name=f"{name}-relu_squeeze1x1")
        a = conv(f"{name}-expand1x1", sq, s, e1, 1, relu_name=f"{name}-relu_expand1x1")
        b = conv(f"{name}-expand3x3", sq, s, e3, 3, pad=1, relu_name=f"{name}-relu_expand3x3")
        nodes.append(helper.make_node("Concat", [a, b], [f"{name}-concat"], name=f"{name}-concat", axis=1))
        x = f"{name}-concat"
        channels = e1 + e3
    nodes.append(helper.make_node("Dropout", [x], ["drop9"], name="drop9"))
    x = conv("conv10", "drop9", channels, num_classes, 1, relu_name="relu_conv10")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool10"], name="pool10"))
    nodes.append(helper.make_node("Flatten", ["pool10"], ["flatten"], name="flatten"))
    out = "flatten"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["flatten"], ["prob"], name="prob", axis=1))
        out = "prob"
    graph = helper.make_graph(
        nodes,
        "squeezenet1_1",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model
