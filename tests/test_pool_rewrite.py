"""A pool whose one window is larger than its input (Hugging Face EfficientNet's
``AveragePool(kernel=1280, stride=1280, ceil_mode=1)`` on a 4x4 map) is a global pool."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper
from tinymodels import make_model, tensor

import quantscope as qs
from quantscope.quantize.export import to_qdq


def _pooled_net(op: str, kernel: int, ceil_mode: int, seed: int = 0, size=(8, 8)):
    """conv (stride 2) -> relu -> pool -> flatten -> fc; ``size``: the input's height and
    width (names leave them free)."""
    rng = np.random.default_rng(seed)
    init = {
        "w": (rng.standard_normal((6, 3, 3, 3)) * 0.4).astype(np.float32),
        "b": rng.uniform(-0.3, 0.3, 6).astype(np.float32),
        "wf": (rng.standard_normal((5, 6)) * 0.5).astype(np.float32),
        "bf": rng.uniform(-0.3, 0.3, 5).astype(np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w", "b"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]),
        n("Relu", ["c"], ["r"], name="relu"),
        n(op, ["r"], ["p"], name="pool", kernel_shape=[kernel, kernel], strides=[kernel, kernel], ceil_mode=ceil_mode),
        n("Flatten", ["p"], ["f"], name="flatten"),
        n("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    return make_model(nodes, [tensor("x", ["N", 3, *size])], [tensor("y", ["N", 5])], init, name="pooled")


def _metric(result, name: str) -> float:
    table = result.metric_results[name]
    return float(table.loc[table["NetworkImplementation"] == "Quantized", "MetricOutput"].iloc[0])


@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
def test_a_window_larger_than_the_input_is_a_global_pool(op):
    model = _pooled_net(op, kernel=1280, ceil_mode=1)
    x = np.random.default_rng(1).uniform(-1, 1, (6, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    net = qs.prepare(model)
    assert net.log.pooled == ["pool"]
    kinds = [n.op_type for n in net.to_proto().graph.node]
    assert ("GlobalAveragePool" if op == "AveragePool" else "GlobalMaxPool") in kinds and op not in kinds
    got = ort.InferenceSession(net.to_proto().SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    cal = qs.calibrate(net, x, progress=False)
    for target in ("cpu", "fpga"):  # the emulation ran into "the kernel does not fit" before
        result = qs.validate(cal, x, target=target, progress=False)
        assert _metric(result, "cosine_similarity") > 0.99


def test_the_export_of_an_oversized_average_pool_agrees_with_the_emulation():
    """onnxruntime's int8 AveragePool (a QDQ export's pool, all optimizations on)
    computed the oversized window differently from its float one: 2.8 dB."""
    model = _pooled_net("AveragePool", kernel=1280, ceil_mode=1)
    x = np.random.default_rng(2).uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32)
    net = qs.prepare(model)
    cal = qs.calibrate(net, x, progress=False)
    qnet = qs.quantize_network(cal, "cpu")
    emulated = qs.validate(cal, x, target="cpu", progress=False)
    session = ort.InferenceSession(to_qdq(qnet.plan).SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": x})[0].astype(np.float64)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    sqnr = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - out) ** 2))
    assert abs(sqnr - _metric(emulated, "output_sqnr_db")) < 1.0


@pytest.mark.parametrize("kernel,ceil_mode", [(4, 0), (4, 1)])
def test_pools_that_fit_their_input_are_left_alone(kernel, ceil_mode):
    net = qs.prepare(_pooled_net("AveragePool", kernel=kernel, ceil_mode=ceil_mode))
    assert net.log.pooled == []
    assert "AveragePool" in [n.op_type for n in net.to_proto().graph.node]


def test_a_huge_window_on_a_map_of_unknown_size_is_a_global_pool():
    """A TorchScript export records no intermediate shapes, and its input's height and
    width may be free: a kernel and stride of 256 or more (EfficientNet's 1280) cover
    any feature map, so the pool is global at every size it can run at."""
    model = _pooled_net("AveragePool", kernel=1280, ceil_mode=1, size=("H", "W"))
    del model.graph.value_info[:]
    net = qs.prepare(model)
    assert net.log.pooled == ["pool"]
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(net.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    for size in (8, 12):
        x = np.random.default_rng(size).uniform(-1, 1, (3, 3, size, size)).astype(np.float32)
        np.testing.assert_allclose(got.run(None, {"x": x})[0], want.run(None, {"x": x})[0], rtol=1e-6, atol=1e-6)
    cal = qs.calibrate(net, x, progress=False)
    assert _metric(qs.validate(cal, x, target="fpga", progress=False), "cosine_similarity") > 0.99


@pytest.mark.parametrize("group", [1, 2])
def test_batchnorm_after_conv_transpose_folds(group):
    """A GAN generator's ConvTranspose -> BatchNormalization (TorchScript export) stayed
    unfolded: float on the cpu target and refused by the FPGA compile."""
    rng = np.random.default_rng(group)
    c_in, c_out = 4, 6
    init = {
        "w": (rng.standard_normal((c_in, c_out // group, 3, 3)) * 0.4).astype(np.float32),
        "b": rng.uniform(-0.3, 0.3, c_out).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, c_out).astype(np.float32),
        "beta": rng.uniform(-0.5, 0.5, c_out).astype(np.float32),
        "mean": rng.uniform(-0.5, 0.5, c_out).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, c_out).astype(np.float32),
    }
    n = helper.make_node
    nodes = [
        n("ConvTranspose", ["x", "w", "b"], ["u"], name="up", strides=[2, 2], pads=[1, 1, 1, 1], group=group),
        n("BatchNormalization", ["u", "gamma", "beta", "mean", "var"], ["y"], name="bn"),
    ]
    model = make_model(nodes, [tensor("x", ["N", c_in, 5, 5])], [tensor("y", ["N", c_out, 9, 9])], init, name="gen")
    net = qs.prepare(model)
    assert net.log.folded == {"bn": "up"}
    assert "BatchNormalization" not in [node.op_type for node in net.to_proto().graph.node]
    x = rng.standard_normal((3, c_in, 5, 5)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(net.to_proto().SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
