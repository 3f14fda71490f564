"""Tiny ONNX models built inline for the tests (onnx.helper, seeded weights)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(nodes, inputs, outputs, initializers, name="tiny") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        inputs,
        outputs,
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tensor(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def small_cnn(
    seed: int = 0,
    with_bn: bool = False,
    with_dropout: bool = False,
    with_norm: bool = True,
    exact: bool = False,
) -> onnx.ModelProto:
    """imageinput (N,3,8,8) -> [Sub, Div] -> conv1 (+bn1) -> relu_conv1 -> pool1 ->
    fire-like branch (squeeze 1x1 + relu, two expands + relus, concat) -> [drop] ->
    GlobalAveragePool -> Flatten -> fc (Gemm) -> relu_fc -> fc2 (MatMul + Add) -> prob (Softmax).

    ``exact=True``: weights are multiples of 1/4, std powers of two and no Softmax, so
    every float32 result is exact and any two correct implementations agree bit for bit.
    """
    rng = np.random.default_rng(seed)
    if exact:
        f = lambda *s: (rng.integers(-3, 4, s) * 0.25).astype(np.float32)  # noqa: E731
    else:
        f = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.5  # noqa: E731
    std = [[[[64.0]], [[32.0]], [[64.0]]]] if exact else [[[[60.0]], [[55.0]], [[50.0]]]]
    init = {
        "mean": np.array([[[[120.0]], [[110.0]], [[100.0]]]], dtype=np.float32),
        "std": np.array(std, dtype=np.float32),
        "conv1_W": f(8, 3, 3, 3),
        "conv1_B": f(8),
        "sq_W": f(4, 8, 1, 1),
        "sq_B": f(4),
        "e1_W": f(6, 4, 1, 1),
        "e1_B": f(6),
        "e3_W": f(6, 4, 3, 3),
        "e3_B": f(6),
        "fc_W": f(5, 12),
        "fc_B": f(5),
        "fc2_W": f(5, 3),
        "fc2_B": f(3),
    }
    nodes = []
    x = "imageinput"
    if with_norm:
        nodes += [
            helper.make_node("Sub", [x, "mean"], ["x_sub"], name="norm_sub"),
            helper.make_node("Div", ["x_sub", "std"], ["x_norm"], name="norm_div"),
        ]
        x = "x_norm"
    nodes.append(helper.make_node("Conv", [x, "conv1_W", "conv1_B"], ["c1"], name="conv1", pads=[1, 1, 1, 1]))
    c = "c1"
    if with_bn:
        init.update(
            bn_scale=(rng.uniform(0.5, 2.0, 8)).astype(np.float32),
            bn_bias=f(8),
            bn_mean=f(8),
            bn_var=(rng.uniform(0.2, 3.0, 8)).astype(np.float32),
        )
        nodes.append(
            helper.make_node(
                "BatchNormalization",
                ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                ["bn1_out"],
                name="bn1",
                epsilon=1e-3,
            )
        )
        c = "bn1_out"
    nodes += [
        helper.make_node("Relu", [c], ["r1"], name="relu_conv1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "sq_W", "sq_B"], ["sq"], name="fire2-squeeze1x1"),
        helper.make_node("Relu", ["sq"], ["sqr"], name="fire2-relu_squeeze1x1"),
        helper.make_node("Conv", ["sqr", "e1_W", "e1_B"], ["e1"], name="fire2-expand1x1"),
        helper.make_node("Relu", ["e1"], ["e1r"], name="fire2-relu_expand1x1"),
        helper.make_node("Conv", ["sqr", "e3_W", "e3_B"], ["e3"], name="fire2-expand3x3", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["e3"], ["e3r"], name="fire2-relu_expand3x3"),
        helper.make_node("Concat", ["e1r", "e3r"], ["cat"], name="fire2-concat", axis=1),
    ]
    last = "cat"
    if with_dropout:
        nodes.append(helper.make_node("Dropout", [last], ["drop"], name="drop9"))
        last = "drop"
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["gap"], name="pool10"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_W", "fc_B"], ["fc"], name="fc", transB=1),
        helper.make_node("Relu", ["fc"], ["fcr"], name="relu_fc"),
        helper.make_node("MatMul", ["fcr", "fc2_W"], ["mm"], name="fc2"),
        helper.make_node("Add", ["mm", "fc2_B"], ["logits"], name="fc2_add"),
    ]
    if not exact:
        nodes.append(helper.make_node("Softmax", ["logits"], ["prob"], name="prob", axis=1))
    return make_model(
        nodes,
        [tensor("imageinput", ["N", 3, 8, 8])],
        [tensor("logits" if exact else "prob", ["N", 3])],
        init,
        name="small_cnn",
    )


def images(n: int, seed: int = 1) -> np.ndarray:
    """``n`` random 'images' (n, 3, 8, 8) float32 with pixel values 0..255."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 8, 8)).astype(np.float32)
