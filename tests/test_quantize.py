"""The quantization plan, memory accounting, export, and the quantized network."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.calibrate.stats import TensorStats
from quantscope.quantize.numerics import pow2_exponent
from quantscope.quantize.plan import histogram_exponent, make_plan
from quantscope.zoo import squeezenet


def test_memory_rule_squeezenet_5_classes():
    net = qs.prepare(squeezenet(num_classes=5, input_size=67))
    cal = qs.calibrate(net, np.random.default_rng(0).uniform(0, 255, (2, 3, 67, 67)).astype(np.float32), progress=False)
    plan = make_plan(cal, "fpga")
    assert plan.memory_bytes() == (2_900_244, 733_908)
    # keeping conv10 in float: its 512*5 weights + 5 biases stay at 4 bytes
    kept = make_plan(cal, "fpga", keep_float=["conv10"])
    assert kept.memory_bytes() == (2_900_244, 733_908 - (512 * 5 + 4 * 5) + 4 * (512 * 5 + 5))
    assert "conv10_relu_conv10" in kept.float_layers


def test_memory_counts_every_float_learnable_once():
    """An LSTM's weights, a LayerNorm's scale and bias and a constant added to the
    activations are learnables too (they stay in float: 4 bytes each); a constant
    read by two layers counts once; the input normalization's mean and std do not."""
    from onnx import helper
    from tinymodels import make_model, tensor

    rng = np.random.default_rng(0)
    h = 6
    init = {
        "mean": np.array([0.5, 0.25, 0.0, 0.1], np.float32),
        "w_in": rng.standard_normal((4, 8)).astype(np.float32),
        "pos": rng.standard_normal((5, 8)).astype(np.float32),
        "W": rng.standard_normal((1, 4 * h, 8)).astype(np.float32),
        "R": rng.standard_normal((1, 4 * h, h)).astype(np.float32),
        "B": rng.standard_normal((1, 8 * h)).astype(np.float32),
        "gamma": rng.standard_normal(h).astype(np.float32),
        "beta": rng.standard_normal(h).astype(np.float32),
        "w_out": rng.standard_normal((h, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["xn"], name="norm"),
        helper.make_node("MatMul", ["xn", "w_in"], ["e"], name="proj"),
        helper.make_node("Add", ["e", "pos"], ["ep"], name="add_pos"),
        helper.make_node("Add", ["ep", "pos"], ["ep2"], name="add_pos_again"),
        helper.make_node("Transpose", ["ep2"], ["t"], name="time_major", perm=[1, 0, 2]),
        helper.make_node("LSTM", ["t", "W", "R", "B"], ["seq"], name="lstm", hidden_size=h),
        helper.make_node("Squeeze", ["seq", "one"], ["s"], name="squeeze"),
        helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["ln"], name="ln", axis=-1),
        helper.make_node("MatMul", ["ln", "w_out"], ["y"], name="head"),
    ]
    init["one"] = np.array([1], np.int64)
    model = make_model(nodes, [tensor("x", ["N", 5, 4])], [tensor("y", [5, "N", 3])], init)
    net = qs.prepare(model)
    cal = qs.calibrate(net, rng.standard_normal((6, 5, 4)).astype(np.float32), progress=False)
    learnables = sum(init[k].size for k in ("w_in", "pos", "W", "R", "B", "gamma", "beta", "w_out"))
    plan = make_plan(cal, "cpu")
    assert {"proj", "head"} <= set(plan.weights)
    int8 = init["w_in"].size + init["w_out"].size
    assert plan.memory_bytes() == (4 * learnables, 4 * (learnables - int8) + int8)


def test_a_resizes_scales_are_not_learnables():
    from onnx import helper
    from tinymodels import make_model, tensor

    rng = np.random.default_rng(1)
    init = {
        "w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "w2": rng.standard_normal((2, 4, 3, 3)).astype(np.float32),
        "roi": np.zeros(0, np.float32),
        "scales": np.array([1, 1, 2, 2], np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "roi", "scales"], ["u"], name="up", mode="nearest"),
        helper.make_node("Conv", ["u", "w2"], ["y"], name="c2", pads=[1, 1, 1, 1]),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 4, 4])], [tensor("y", ["N", 2, 8, 8])], init)
    cal = qs.calibrate(model, rng.standard_normal((4, 3, 4, 4)).astype(np.float32), progress=False)
    weights = init["w1"].size + init["w2"].size
    assert make_plan(cal, "fpga").memory_bytes() == (4 * weights, weights)


def test_pow2_exponents_follow_the_formula():
    net = qs.prepare(small_cnn(seed=4))
    x = images(16)
    cal = qs.calibrate(net, x, progress=False)
    plan = make_plan(cal, "fpga")
    for layer in net.layers:
        qp = plan.activations.get(layer.output)
        if qp is None:
            continue
        if layer.kind in ("Flatten",):
            continue
        assert qp.exponent == pow2_exponent(cal.stats(layer.name).max_abs)
        assert float(qp.scale) == 2.0**qp.exponent and int(qp.zero_point) == 0
    qw, wqp = plan.weights["conv1_relu_conv1"]
    w = net.constant("conv1_W")
    assert wqp.exponent == int(np.floor(np.log2(np.abs(w).max()))) - 6
    assert qw.dtype == np.int8 and np.abs(qw).max() <= 127
    qb, bqp = plan.biases["conv1_relu_conv1"]
    assert bqp.exponent == wqp.exponent + plan.activations[net.layer("imageinput_normalization").output].exponent
    assert qb.dtype == np.int32


def test_histogram_exponent_minimises_direct_error():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000), [40.0]]).astype(np.float32)  # one outlier
    stats = TensorStats.of(x)
    e_minmax = pow2_exponent(stats.max_abs)
    e_hist = histogram_exponent(stats)
    assert e_hist < e_minmax  # clips the outlier

    def mse(e):
        q = np.clip(np.sign(x) * np.floor(np.abs(x) / 2.0**e + 0.5), -128, 127) * 2.0**e
        return float(np.mean((x - q) ** 2))

    errors = {e: mse(e) for e in range(e_minmax - 8, e_minmax + 1)}
    best = min(errors, key=errors.get)
    assert abs(e_hist - best) <= 1 and errors[e_hist] <= 1.5 * errors[best]


def test_keep_float_names_are_checked():
    net = qs.prepare(small_cnn())
    cal = qs.calibrate(net, images(4), progress=False)
    with pytest.raises(qs.ConfigurationError, match="not_a_layer"):
        make_plan(cal, "fpga", keep_float=["not_a_layer"])
    with pytest.raises(qs.ConfigurationError, match="unknown target"):
        make_plan(cal, "gpu")


@pytest.mark.parametrize("target", ["cpu", "fpga"])
def test_quantized_network_runs_reports_and_saves(tmp_path, target):
    net = qs.prepare(small_cnn(seed=7))
    x = images(64, seed=3)
    cal = qs.calibrate(net, x[:32], progress=False)
    qnet = qs.quantize_network(cal, target, keep_float=["fc2_add"])
    layers = qnet.layers
    row = layers[layers["Layer"] == "fc2_fc2_add"].iloc[0]
    assert row["Precision"] == "float" and "request" in row["Reason"]
    assert layers[layers["Layer"] == "prob"].iloc[0]["Precision"] == "float"
    assert (layers["Precision"] == "int8").sum() == len(net.layers) - 2
    out = qnet.predict(x[32:])
    assert out.shape == (32, 3)
    onnx_path, json_path = qnet.save(tmp_path / "small.int8.onnx")
    model = onnx.load(onnx_path)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_inits = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_inits) == 4  # the four quantized convolutions
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, {"imageinput": x[32:]})[0]
    assert np.mean(ort_out.argmax(1) == out.argmax(1)) >= 0.9
    params = json.loads(json_path.read_text())
    assert params["scheme"] == ("FloatScale" if target == "cpu" else "PowerOfTwo")
    assert "fc2_fc2_add" in params["float_layers"]


def test_require_int8_refuses_a_layer_without_an_int8_kernel():
    net = qs.prepare(small_cnn())
    cal = qs.calibrate(net, images(4), progress=False)
    # by default the Softmax is named, left in float, and the reason shown
    qnet = qs.quantize_network(cal, "fpga")
    row = qnet.layers[qnet.layers["Layer"] == "prob"].iloc[0]
    assert row["Precision"] == "float" and "no int8 kernel for Softmax" in row["Reason"]
    # asked for in int8, it is refused with that reason
    with pytest.raises(qs.ConfigurationError, match=r"cannot run in int8: prob \(no int8 kernel for Softmax"):
        qs.quantize_network(cal, "fpga", require_int8=["prob", "conv1_relu_conv1"])
    assert (
        qs.quantize_network(cal, "fpga", require_int8=["conv1_relu_conv1"]).plan.weights["conv1_relu_conv1"][0].dtype
        == np.int8
    )
    # a layer after a kept-float one cannot be int8 either
    with pytest.raises(qs.ConfigurationError, match="both in keep_float and require_int8"):
        make_plan(cal, "fpga", keep_float=["fc_relu_fc"], require_int8=["fc_relu_fc"])
    with pytest.raises(qs.ConfigurationError, match="'nope', 'nada'"):
        make_plan(cal, "fpga", require_int8=["nope", "nada"])


def test_a_layer_whose_int32_bias_would_saturate_computes_in_float_and_says_why():
    """An input whose calibrated range is tiny (here 1e-9 x the pixels) puts the bias
    scale s_w * s_x so low that bias / scale leaves int32: that layer runs in float,
    with the reason, and the layers after it stay int8."""
    from onnx import helper
    from tinymodels import make_model, tensor

    rng = np.random.default_rng(0)
    init = {
        "tiny": np.array(1e-9, np.float32),
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "b": np.full(4, 0.5, np.float32),
        "w2": (rng.standard_normal((4, 4, 1, 1)) * 0.3).astype(np.float32),
        "b2": np.full(4, 0.1, np.float32),
    }
    nodes = [
        helper.make_node("Mul", ["x", "tiny"], ["xs"], name="scale_down"),
        helper.make_node("Conv", ["xs", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("Conv", ["r", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["y"], name="gap"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 1, 1])], init)
    net = qs.prepare(model)
    x = images(16, seed=1)
    cal = qs.calibrate(net, x, progress=False)
    for target in ("fpga", "cpu"):
        plan = make_plan(cal, target)
        assert "its int32 bias saturates" in plan.float_layers["conv1_relu1"]
        assert "conv2" in plan.weights and "conv1_relu1" not in plan.weights
        res = qs.validate(cal, x, target=target, progress=False)
        errors = res.layer_errors.set_index("Layer")
        assert res.num_samples == 16 and errors.loc["conv1_relu1", "Precision"] == "float"
        assert errors.loc["conv2", "Precision"] == "int8"
        with pytest.raises(qs.ConfigurationError, match="conv1_relu1 \\(its int32 bias saturates"):
            make_plan(cal, target, require_int8=["conv1_relu1"])


def test_layer_normalization_computes_in_float_between_int8_layers():
    """LayerNormalization (opset 17, torch's default export of nn.LayerNorm) loads,
    calibrates, runs in float between int8 layers with the reason shown, and the QDQ
    export runs on onnxruntime with the same top-1 as the emulation."""
    import onnxruntime as ort
    from onnx import helper
    from tinymodels import make_model, tensor

    rng = np.random.default_rng(0)
    init = {
        "w1": (rng.standard_normal((16, 32)) * 0.3).astype(np.float32),
        "b1": np.zeros(32, np.float32),
        "g": np.ones(32, np.float32),
        "beta": np.zeros(32, np.float32),
        "w2": (rng.standard_normal((32, 5)) * 0.3).astype(np.float32),
        "b2": np.zeros(5, np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("LayerNormalization", ["h", "g", "beta"], ["n"], name="ln", axis=-1),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2"),
    ]
    net = qs.prepare(make_model(nodes, [tensor("x", ["N", 16])], [tensor("y", ["N", 5])], init))
    x = rng.standard_normal((64, 16)).astype(np.float32)
    cal = qs.calibrate(net, x, progress=False)
    for target in ("fpga", qs.FloatScale(reduce_range=True)):
        qnet = qs.quantize_network(cal, target)
        assert "no int8 kernel for LayerNormalization" in qnet.plan.float_layers["ln"]
        assert "fc2" in qnet.plan.weights  # the layer after it is int8
        ran = ort.InferenceSession(qnet.to_onnx().SerializeToString()).run(None, {"x": x})[0]
        assert np.mean(ran.argmax(1) == qnet.predict(x).argmax(1)) >= 0.95
    assert qs.validate(cal, x, target="fpga", progress=False).top1_agreement >= 0.9


@pytest.mark.parametrize(
    "op, opset, extra", [("InstanceNormalization", 17, {}), ("GroupNormalization", 21, {"num_groups": 2})]
)
def test_instance_and_group_normalization_compute_in_float(op, opset, extra):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = {
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "s": np.ones(4, np.float32),
        "bb": np.zeros(4, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c", "s", "bb"], ["n"], name="norm", **extra),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["y"], name="gap"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 1, 1])],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    net = qs.prepare(model)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    cal = qs.calibrate(net, x, progress=False)
    qnet = qs.quantize_network(cal, qs.FloatScale(reduce_range=True))
    assert f"no int8 kernel for {op}" in qnet.plan.float_layers["norm"]
    # after a float layer, Relu and the pool only move float values: they stay float too
    assert "after float layers" in qnet.plan.float_layers["relu"] and "y" not in qnet.plan.activations
    ran = ort.InferenceSession(qnet.to_onnx().SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(ran, qnet.predict(x), atol=1e-5)


def test_keep_float_naming_a_removed_dropout_says_so():
    net = qs.prepare(small_cnn(with_dropout=True))
    assert net.log.dropped
    cal = qs.calibrate(net, images(4), progress=False)
    with pytest.raises(qs.ConfigurationError, match="a Dropout/Identity that prepare removed"):
        make_plan(cal, "fpga", keep_float=[net.log.dropped[0]])
