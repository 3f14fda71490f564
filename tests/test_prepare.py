"""Preparation: BatchNormalization folding, Dropout/Identity removal, optimized layers."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from tinymodels import images, make_model, small_cnn, tensor

import quantscope as qs


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_optimized_layer_names_and_mapping():
    net = qs.prepare(small_cnn())
    names = [layer.name for layer in net.layers]
    assert names == [
        "imageinput",
        "imageinput_normalization",
        "conv1_relu_conv1",
        "pool1",
        "fire2-squeeze1x1_fire2-relu_squeeze1x1",
        "fire2-expand1x1_fire2-relu_expand1x1",
        "fire2-expand3x3_fire2-relu_expand3x3",
        "fire2-concat",
        "pool10",
        "flatten",
        "fc_relu_fc",
        "fc2_fc2_add",
        "prob",
    ]
    sq = net.layer("fire2-squeeze1x1_fire2-relu_squeeze1x1")
    assert sq.network_layer == "fire2-relu_squeeze1x1"
    assert sq.kind == "conv" and sq.weight == "sq_W" and sq.bias == "sq_B"
    assert net.layer("fc2_fc2_add").kind == "fc" and net.layer("fc2_fc2_add").bias == "fc2_B"
    norm = net.layer("imageinput_normalization")
    assert norm.network_layer == "imageinput" and norm.members == ("norm_sub", "norm_div")
    assert net.layer_of["relu_conv1"] == "conv1_relu_conv1"
    assert net.layer_of["conv1"] == "conv1_relu_conv1"
    assert net.layer("relu_fc").name == "fc_relu_fc"
    assert net.input_shape == (None, 3, 8, 8)


def _fold_reference(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    """Fold bn1 into conv1 independently (float64 numpy)."""
    init = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    s = init["bn_scale"] / np.sqrt(init["bn_var"] + 1e-3)
    w = init["conv1_W"] * s[:, None, None, None]
    b = (init["conv1_B"] - init["bn_mean"]) * s + init["bn_bias"]
    return w.astype(np.float32), b.astype(np.float32)


def test_batchnorm_folded_outputs_match_and_weights_are_folded():
    model = small_cnn(seed=3, with_bn=True)
    net = qs.prepare(model)
    assert net.log.folded == {"bn1": "conv1"}
    assert not any(n.op_type == "BatchNormalization" for n in net.model.graph)
    x = images(16)
    original = run(model, x)
    prepared = run(net.to_proto(), x)
    np.testing.assert_allclose(prepared, original, rtol=1e-5, atol=1e-7)
    # compare the logits too (softmax can hide differences)
    logits_name = net.layer("fc2_fc2_add").output
    a = run(net.to_proto([logits_name]), x)
    layer = net.layer("conv1_relu_conv1")
    assert layer.folded == ("bn1",)
    w_ref, b_ref = _fold_reference(model)
    np.testing.assert_array_equal(net.constant(layer.weight), w_ref)
    np.testing.assert_array_equal(net.constant(layer.bias), b_ref)
    cal = qs.calibrate(net, x, batch_size=8)
    t = cal.table.set_index("Optimized Layer Name")
    assert t.loc["conv1_relu_conv1_Weights", "MinValue"] == w_ref.min()
    assert t.loc["conv1_relu_conv1_Weights", "MaxValue"] == w_ref.max()
    assert t.loc["conv1_relu_conv1_Bias", "MaxValue"] == b_ref.max()
    assert a.shape == (16, 3)


def test_batchnorm_after_add_is_not_folded_and_says_why():
    rng = np.random.default_rng(0)
    init = {
        "w": rng.standard_normal((4, 2, 1, 1)).astype(np.float32),
        "s": np.ones(4, np.float32),
        "b": np.zeros(4, np.float32),
        "m": np.zeros(4, np.float32),
        "v": np.ones(4, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Add", ["c", "c"], ["a"], name="add"),
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["y"], name="bn_after_add"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2, 3, 3])], [tensor("y", ["N", 4, 3, 3])], init)
    net = qs.prepare(model)
    assert net.log.folded == {}
    assert any("bn_after_add" in n and "Add" in n for n in net.log.notes), net.log.notes
    assert [layer.kind for layer in net.layers] == ["input", "conv", "Add", "BatchNormalization"]


def test_dropout_and_identity_are_dropped():
    model = small_cnn(with_dropout=True)
    net = qs.prepare(model)
    assert "drop9" in net.log.dropped
    assert not any(n.op_type in ("Dropout", "Identity") for n in net.model.graph)
    x = images(4)
    np.testing.assert_array_equal(run(net.to_proto(), x), run(model, x))


def test_a_cast_to_the_type_it_has_is_dropped_and_a_real_cast_kept():
    """GPT-2's Softmax -> Cast(to=float): no layer of its own (it took the blame for the
    quantization of the Softmax's output); a Cast that changes the type stays."""
    from onnx import TensorProto

    init = {"w": np.ones((2, 2), np.float32)}
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], name="fc"),
        helper.make_node("Softmax", ["g"], ["p"], name="softmax"),
        helper.make_node("Cast", ["p"], ["pf"], name="same_type", to=TensorProto.FLOAT),
        helper.make_node("Cast", ["pf"], ["ph"], name="to_half", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["ph"], ["y"], name="back", to=TensorProto.FLOAT),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])], init)
    net = qs.prepare(model)
    assert "same_type" in net.log.dropped
    assert [n.name for n in net.model.graph if n.op_type == "Cast"] == ["to_half", "back"]
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(run(net.to_proto(), x), run(model, x))


def test_identity_that_is_graph_output_keeps_output_name():
    init = {"w": np.ones((2, 2), np.float32)}
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], name="fc"),
        helper.make_node("Identity", ["g"], ["y"], name="id"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])], init)
    net = qs.prepare(model)
    assert net.output_names == ["y"]
    assert [layer.name for layer in net.layers] == ["x", "fc"]
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(run(net.to_proto(), x), run(model, x))


@pytest.mark.parametrize("opset, keepdims", [(13, 1), (13, 0), (18, 1), (18, 0)])
def test_spatial_reduce_mean_becomes_global_average_pool(opset, keepdims):
    """torch's AdaptiveAvgPool2d(1) / x.mean((2, 3)) export as ReduceMean over the
    spatial axes: prepare makes it a GlobalAveragePool (+ Flatten), same outputs."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([-2, -1], np.int64), "axes"))
        mean = helper.make_node("ReduceMean", ["r", "axes"], ["y"], name="mean", keepdims=keepdims)
    else:
        mean = helper.make_node("ReduceMean", ["r"], ["y"], name="mean", axes=[2, 3], keepdims=keepdims)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        mean,
        helper.make_node(
            "ReduceMean", ["r"], ["z"], name="channel_mean", keepdims=1, **({"axes": [1]} if opset < 18 else {})
        ),
    ]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "caxes"))
        nodes[-1] = helper.make_node("ReduceMean", ["r", "caxes"], ["z"], name="channel_mean", keepdims=1)
    out_shape = [None, 4, 1, 1] if keepdims else [None, 4]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 1, 8, 8]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    net = qs.prepare(model)
    ops = [n.op_type for n in net.to_proto().graph.node]
    assert "GlobalAveragePool" in ops and ops.count("ReduceMean") == 1  # the channel mean stays
    assert ("Flatten" in ops) == (not keepdims)
    assert net.log.pooled == ["mean"]
    x = np.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    after = ort.InferenceSession(net.to_proto().SerializeToString()).run(None, {"x": x})
    for a, b in zip(before, after):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert net.layer("mean").kind == "GlobalAveragePool"


@pytest.mark.parametrize("opset", [9, 13])
def test_computed_flatten_shape_is_folded(opset):
    """``x.view(x.size(0), -1)`` from older torch exports: Reshape(x, Concat(Unsqueeze(
    Gather(Shape(x), 0)), [-1])). prepare folds the shape to the constant [0, -1], so
    the int8 emulation and the FPGA compiler can run it, for any batch size."""
    from onnx import TensorProto, numpy_helper

    rng = np.random.default_rng(0)
    init = {
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "fw": (rng.standard_normal((5, 4 * 4 * 4)) * 0.1).astype(np.float32),
        "fb": np.zeros(5, np.float32),
        "zero": np.array(0, np.int64),
        "minus1": np.array([-1], np.int64),
    }
    unsq = (
        helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0])
        if opset < 13
        else helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="unsq")
    )
    if opset >= 13:
        init["ax0"] = np.array([0], np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "zero"], ["n"], name="gather", axis=0),
        unsq,
        helper.make_node("Concat", ["n1", "minus1"], ["newshape"], name="cat", axis=0),
        helper.make_node("Reshape", ["p", "newshape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 6 if opset < 13 else 8
    net = qs.prepare(model)
    assert net.log.shapes == ["flat"]
    assert [n.op_type for n in net.to_proto().graph.node] == ["Conv", "Relu", "MaxPool", "Reshape", "Gemm"]
    assert net.value_shape("f") == (None, 64) and net.value_shape("y") == (None, 5)
    x = images(7, seed=2)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    after = ort.InferenceSession(net.to_proto().SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)
    cal = qs.calibrate(net, x, progress=False)
    res = qs.validate(cal, x, target="fpga", processor="zcu102_int8", progress=False)
    assert res.num_samples == 7 and res.int8_scores.shape == (7, 5)


@pytest.mark.parametrize("opset", [9, 13])
@pytest.mark.parametrize("consumer", ["Conv", "AveragePool"])
def test_zero_pad_merges_into_conv_and_average_pool(opset, consumer):
    """torch (opset 9) exports AvgPool2d(padding=1, count_include_pad=True) as Pad +
    AveragePool; TF converters put a Pad before a VALID conv. prepare merges the zero
    Pad into the consumer's pads: same outputs, and the FPGA processor compiles it."""
    from onnx import TensorProto, numpy_helper

    from quantscope import fpga

    rng = np.random.default_rng(0)
    init = {"w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)}
    if opset >= 11:
        init["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
        pad = helper.make_node("Pad", ["r0", "pads"], ["p"], name="pad", mode="constant")
    else:
        pad = helper.make_node(
            "Pad", ["r0"], ["p"], name="pad", mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0
        )
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        pad,
    ]
    if consumer == "Conv":
        init["w2"] = (rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)
        nodes.append(helper.make_node("Conv", ["p", "w2"], ["y"], name="conv1"))
        out_shape = [None, 4, 8, 8]
    else:
        nodes.append(
            helper.make_node(
                "AveragePool", ["p"], ["y"], name="avg", kernel_shape=[3, 3], strides=[2, 2], count_include_pad=1
            )
        )
        out_shape = [None, 4, 4, 4]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    net = qs.prepare(model)
    assert net.log.pads == ["pad"]
    assert "Pad" not in [n.op_type for n in net.to_proto().graph.node]
    x = images(3, seed=1)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    after = ort.InferenceSession(net.to_proto().SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-5)
    fpga.compile_network(net, "zcu102_int8")


def test_constant_subgraphs_fold_so_a_transposed_weight_is_an_int8_layer():
    """Transpose(W) before a MatMul (as tf2onnx and the dynamo exporter write weights) and
    shape arithmetic on static shapes fold into constants at prepare."""
    import onnx
    from onnx import helper
    from tinymodels import make_model, tensor

    w = (np.random.default_rng(0).standard_normal((4, 6)) * 0.5).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], name="w_t", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt"], ["h"], name="fc"),
        helper.make_node("Shape", ["w"], ["ws"], name="w_shape"),
        helper.make_node("Reshape", ["h", "ws"], ["y"], name="reshape"),  # (6, 4) to w's shape (4, 6)
    ]
    model = make_model(nodes, [tensor("x", [6, 6])], [tensor("y", [4, 6])], {"w": w})
    onnx.checker.check_model(model)
    net = qs.prepare(model)
    assert set(net.log.constants) == {"w_t", "w_shape"}
    assert net.layer("fc").kind == "fc"
    x = np.random.default_rng(1).standard_normal((6, 6)).astype(np.float32)
    cal = qs.calibrate(net, x, batch_size=6, progress=False)
    res = qs.validate(cal, x, target="cpu", batch_size=6, progress=False)
    assert "fc" in res.plan.weights


def _bias_add_model(dead_channel: bool = False) -> onnx.ModelProto:
    """Paddle2ONNX's form: conv_a (no bias) -> Add((1, 4, 1, 1) constant) -> Relu ->
    conv_b (with bias) -> Add(scalar) -> out, plus conv_c whose output feeds an Add of a
    (4,) constant (broadcast along the width, not the channels) and is also an output."""
    rng = np.random.default_rng(5)
    wa = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    if dead_channel:
        wa[2] *= 1e-20  # a channel whose weights all but vanish beside a real bias
    inits = {
        "wa": wa,
        "ca": rng.normal(size=(1, 4, 1, 1)).astype(np.float32),
        "wb": rng.normal(size=(4, 4, 1, 1)).astype(np.float32),
        "bb": rng.normal(size=4).astype(np.float32),
        "cb": np.array(0.25, np.float32),
        "wc": rng.normal(size=(4, 3, 1, 1)).astype(np.float32),
        "cc": rng.normal(size=4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["ya"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["ya", "ca"], ["za"], name="add_a"),
        helper.make_node("Relu", ["za"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["ra", "wb", "bb"], ["yb"], name="conv_b"),
        helper.make_node("Add", ["cb", "yb"], ["out"], name="add_b"),
        helper.make_node("Conv", ["x", "wc"], ["yc"], name="conv_c"),
        helper.make_node("Add", ["yc", "cc"], ["out_c"], name="add_c"),
    ]
    outputs = [tensor("out", [None, 4, 4, 4]), tensor("out_c", [None, 4, 4, 4]), tensor("yc", [None, 4, 4, 4])]
    return make_model(nodes, [tensor("x", [None, 3, 4, 4])], outputs, inits)


def test_constant_bias_add_folds_into_the_conv():
    """A constant Add after a Conv (one value per output channel, or one value) becomes
    the Conv's bias: the same float outputs, no Add left, the Conv + Relu one layer with
    an int32 bias; an Add that broadcasts along another axis, or after a Conv whose
    output is used elsewhere, stays."""
    model = _bias_add_model()
    net = qs.prepare(model)
    proto = net.to_proto()
    adds = [n.name for n in proto.graph.node if n.op_type == "Add"]
    assert adds == ["add_c"]
    assert net.log.folded == {"add_a": "conv_a", "add_b": "conv_b"}
    x = np.ascontiguousarray(images(3, seed=2)[:, :, :4, :4]) / np.float32(255)
    wants = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for want, got in zip(wants, ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x}), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    layer = next(layer for layer in net.layers if "conv_a" in layer.members)
    assert layer.op_types == ("Conv", "Relu") and layer.bias is not None
    qnet = qs.quantize_network(qs.calibrate(net, x, progress=False), "cpu")
    assert qnet.layers.set_index("Layer").loc[layer.name, "Precision"] == "int8"


def test_vanishing_weight_channel_beside_a_bias_stays_int8():
    """A channel with weights ~1e-20 and a real bias: its weight scale is raised until the
    int32 bias fits, instead of the layer computing in float."""
    net = qs.prepare(_bias_add_model(dead_channel=True))
    x = np.ascontiguousarray(images(3, seed=2)[:, :, :4, :4]) / np.float32(255)
    cal = qs.calibrate(net, x, progress=False)
    qnet = qs.quantize_network(cal, "cpu")
    layer = next(layer for layer in net.layers if "conv_a" in layer.members)
    assert qnet.layers.set_index("Layer").loc[layer.name, "Precision"] == "int8"
    qb, b_q = qnet.plan.biases[layer.name]
    assert np.abs(qb.astype(np.int64)).max() <= 2**30
    res = qs.validate(cal, x, target="cpu", progress=False)
    assert res.metric_results["output_sqnr_db"]["MetricOutput"].iloc[1] > 20


@pytest.mark.parametrize(
    "opset, split_args, split_inputs, parts",
    [
        (11, {"split": [2, 3, 3]}, [], 3),  # sizes as an attribute
        (13, {}, ["sizes"], 3),  # sizes as an input
        (13, {}, [], 2),  # equal parts of the static size
        (18, {"num_outputs": 3}, [], 3),  # ceil(8 / 3) = 3, 3, 2
    ],
)
def test_a_split_of_known_sizes_becomes_slices_and_its_parts_stay_int8(opset, split_args, split_inputs, parts):
    rng = np.random.default_rng(opset)
    outs = [f"part{k}" for k in range(parts)]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Split", ["r", *split_inputs], outs, name="chunk", axis=-3, **split_args),
    ]
    nodes += [
        helper.make_node("Conv", [out, f"w{k}"], [f"y{k}"], name=f"head{k}", pads=[1, 1, 1, 1])
        for k, out in enumerate(outs[:-1])  # the last part is read by no one
    ]
    nodes.append(helper.make_node("Concat", [f"y{k}" for k in range(parts - 1)], ["y"], name="cat", axis=1))
    sizes = {11: [2, 3, 3], 13: [2, 3, 3] if split_inputs else [4, 4], 18: [3, 3, 2]}[opset]
    init = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32)}
    init.update({f"w{k}": rng.standard_normal((4, n, 3, 3)).astype(np.float32) for k, n in enumerate(sizes[:-1])})
    if split_inputs:
        init["sizes"] = np.array(sizes, np.int64)
    graph = helper.make_graph(
        nodes,
        "split",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4 * (parts - 1), 6, 6])],
        [onnx.numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    net = qs.prepare(model)
    assert net.log.splits == ["chunk"]
    slices = [layer for layer in net.layers if layer.kind == "Slice"]
    assert [layer.name for layer in slices] == [f"chunk_{k}" for k in range(parts - 1)]
    x = images(12, seed=opset)[:, :, :6, :6]
    ours = ort.InferenceSession(net.to_proto().SerializeToString()).run(None, {net.input_name: x})[0]
    theirs = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ours, theirs)
    cal = qs.calibrate(net, x, progress=False)
    for target in ("cpu", "fpga"):
        plan = qs.quantize_network(cal, target).plan
        assert not set(plan.float_layers) & {"chunk_0", "chunk_1", "head0", "head1"}, plan.float_layers


def test_a_split_of_run_time_sizes_is_left_as_it_is():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Split", ["r"], ["a", "b"], name="chunk", axis=1),
        helper.make_node("Add", ["a", "b"], ["y"], name="sum"),
    ]
    model = make_model(nodes, [tensor("x", ["N", "C"])], [tensor("y", ["N", None])], {})
    net = qs.prepare(model)
    assert net.log.splits == []
    assert any(layer.kind == "Split" for layer in net.layers)
