"""int8 accuracy options (docs/accuracy.md): cross-layer equalization, bias correction,
range methods, per-channel power-of-two weights and the float fallback to a metric target."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from tinymodels import make_model, tensor

import quantscope as qs
from quantscope.cli import main
from quantscope.quantize import make_plan
from quantscope.quantize.numerics import pow2_exponent
from quantscope.simulate import Simulator, correct_biases


def _run(network, x):
    session = ort.InferenceSession(network.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {network.input_name: x})[0]


def _relative(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(a).max())


# ----------------------------------------------------------------------------- equalization


def depthwise_net(seed: int = 0) -> onnx.ModelProto:
    """conv (3->8) -> Relu6 -> depthwise 3x3 -> Relu -> pointwise (8->6) -> LeakyRelu ->
    MaxPool -> conv (6->6) -> GlobalAveragePool -> Flatten -> Gemm -> Relu -> Gemm:
    output channels whose weights differ by up to 100x, as BN folding leaves them."""
    rng = np.random.default_rng(seed)

    def w(*shape, spread=True):
        a = rng.standard_normal(shape).astype(np.float32)
        if spread:  # one scale per output channel, 0.03 .. 3
            a *= np.exp(rng.uniform(np.log(0.03), np.log(3.0), shape[0])).reshape(-1, *([1] * (len(shape) - 1)))
        return a.astype(np.float32)

    init = {
        "w0": w(8, 3, 3, 3),
        "b0": rng.uniform(-0.5, 1.0, 8).astype(np.float32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
        "w1": w(8, 1, 3, 3),
        "b1": rng.uniform(-0.5, 0.5, 8).astype(np.float32),
        "w2": w(6, 8, 1, 1),
        "b2": rng.uniform(-0.5, 0.5, 6).astype(np.float32),
        "w3": w(6, 6, 3, 3),
        "b3": rng.uniform(-0.5, 0.5, 6).astype(np.float32),
        "w4": w(10, 6),
        "b4": rng.uniform(-0.5, 0.5, 10).astype(np.float32),
        "w5": w(5, 10),
        "b5": rng.uniform(-0.5, 0.5, 5).astype(np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        n("Clip", ["c0", "lo", "hi"], ["a0"], name="relu6_0"),
        n("Conv", ["a0", "w1", "b1"], ["c1"], name="dw1", pads=[1, 1, 1, 1], group=8),
        n("Relu", ["c1"], ["a1"], name="relu1"),
        n("Conv", ["a1", "w2", "b2"], ["c2"], name="pw2"),
        n("LeakyRelu", ["c2"], ["a2"], name="leaky2", alpha=0.1),
        n("MaxPool", ["a2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p2", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        n("GlobalAveragePool", ["c3"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flatten"),
        n("Gemm", ["f", "w4", "b4"], ["h"], name="fc4", transB=1),
        n("Relu", ["h"], ["hr"], name="relu4"),
        n("Gemm", ["hr", "w5", "b5"], ["y"], name="fc5", transB=1),
    ]
    return make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 5])], init, name="depthwise")


def test_equalization_keeps_the_float_function_of_a_depthwise_network():
    model = depthwise_net()
    x = np.random.default_rng(1).uniform(-3, 3, (16, 3, 8, 8)).astype(np.float32)
    plain, eq = qs.prepare(model), qs.prepare(model, equalize=True)
    assert eq.equalized and not plain.equalized
    assert _relative(_run(plain, x), _run(eq, x)) <= 1e-5
    pairs = {(p.first, p.second): p for p in eq.log.equalized}
    # conv0 -> dw1 through the Relu6, dw1 -> pw2 through Relu, pw2 -> conv3 through LeakyRelu and MaxPool, fc4 -> fc5
    assert set(pairs) == {("conv0", "dw1"), ("dw1", "pw2"), ("pw2", "conv3"), ("fc4", "fc5")}
    assert pairs[("pw2", "conv3")].link == ("LeakyRelu", "MaxPool")
    assert pairs[("conv0", "dw1")].ceiling is not None  # the Relu6's ceiling is per channel now
    assert all(p.spread_after < p.spread_before for p in pairs.values())
    # the Relu6 clips: the ceiling matters on this data, and is kept per channel
    a0 = _run_value(plain, x, "a0")
    assert (a0 == 6.0).mean() > 0.01
    # layer names are those of the network without equalization
    assert [layer.name for layer in eq.layers] == [layer.name for layer in plain.layers]
    assert eq.layer("conv0_relu6_0").op_types == ("Conv", "Relu", "Min")
    # equalizing a prepared network gives the same network; an equalized one is returned as is
    again = qs.prepare(plain, equalize=True)
    assert again.fingerprint == eq.fingerprint and qs.prepare(eq, equalize=True) is eq


def _run_value(network, x, name):
    session = ort.InferenceSession(network.to_proto([name]).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([name], {network.input_name: x})[0]


def test_equalization_of_mobilenetv2_keeps_its_float_function():
    torch = pytest.importorskip("torch")
    from realdata import imagenet_inputs, mobilenet_v2_module

    proto = qs.load_model(mobilenet_v2_module(), torch.zeros(1, 3, 224, 224))
    x = imagenet_inputs(8)
    plain, eq = qs.prepare(proto), qs.prepare(proto, equalize=True)
    assert _relative(_run(plain, x), _run(eq, x)) <= 1e-5
    assert len(eq.log.equalized) >= 30
    assert sum(1 for p in eq.log.equalized if p.ceiling) >= 30  # through the Relu6s
    dw = eq.log.equalized[1]  # features.1's depthwise convolution and its projection
    assert dw.first == "features.1.conv.0.0" and dw.spread_after < dw.spread_before / 2


def test_a_clip_from_a_negative_min_is_not_equalized():
    model = depthwise_net()
    for t in model.graph.initializer:
        if t.name == "lo":
            t.CopyFrom(onnx.numpy_helper.from_array(np.array(-1.0, np.float32), "lo"))
    eq = qs.prepare(model, equalize=True)
    assert ("conv0", "dw1") not in {(p.first, p.second) for p in eq.log.equalized}
    assert any("Clip 'relu6_0' has min -1" in note for note in eq.log.notes)


# ----------------------------------------------------------------------------- bias absorption


def _absorb_net(link: str = "relu", pads: int = 0, kernel: int = 1) -> onnx.ModelProto:
    """conv (3->4, 3x3, weights >= 0) -> link -> conv (4->2, ``kernel``, ``pads``): with
    inputs >= 0 each pre-activation channel stays above its bias b0 = [2, 0.5, -1, 3],
    its minimum over data holding an all-zero sample. Channel 3's bias (3) is above
    the Relu6 ceiling of ``link="relu6"`` when the ceiling is 2.5."""
    rng = np.random.default_rng(0)
    init = {
        "w0": (rng.uniform(0.0, 1.0, (4, 3, 3, 3)) * np.array([1.0, 10.0, 0.1, 1.0]).reshape(4, 1, 1, 1)).astype(
            np.float32
        ),
        "b0": np.array([2.0, 0.5, -1.0, 3.0], np.float32),
        "w1": rng.standard_normal((2, 4, kernel, kernel)).astype(np.float32),
        "b1": np.array([0.25, -0.5], np.float32),
        "lo": np.array(0.0, np.float32),
        "hi": np.array(2.5, np.float32),
    }
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["c0"], name="conv0")]
    if link == "relu":
        nodes.append(n("Relu", ["c0"], ["a0"], name="relu0"))
    elif link == "relu6":
        nodes.append(n("Clip", ["c0", "lo", "hi"], ["a0"], name="clip0"))
    else:
        nodes.append(n("Identity", ["c0"], ["a0"], name="same0"))  # dropped by prepare: no link
    nodes.append(n("Conv", ["a0", "w1", "b1"], ["y"], name="conv1", pads=[pads] * 4))
    size = 6 - 2 - (kernel - 1) + 2 * pads
    return make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 2, size, size])], init, name="absorb")


def _absorb_data(n: int = 16, seed: int = 3) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(0.0, 1.0, (n, 3, 6, 6)).astype(np.float32)
    x[0] = 0.0  # the pre-activation's minimum: the bias itself
    return x


def _biases(network, name):
    node = network.node(name)
    return network.constant(node.inputs[2].name).astype(np.float64)


def test_bias_absorption_moves_the_known_minimum_through_a_relu():
    x = _absorb_data()
    eq = qs.prepare(_absorb_net("relu"), equalize=True)
    ab = qs.absorb_biases(eq, x)
    assert ab.bias_absorbed and ab.equalized and not eq.bias_absorbed
    b0, b1 = _biases(eq, "conv0"), _biases(eq, "conv1")
    w1 = eq.constant(eq.node("conv1").inputs[1].name).astype(np.float64)
    c = np.maximum(b0, 0.0)  # the minimum of each channel (weights, inputs >= 0; one zero sample)
    assert c[2] == 0 and (c[[0, 1, 3]] > 0).all()
    np.testing.assert_allclose(_biases(ab, "conv0"), b0 - c, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_biases(ab, "conv1"), b1 + w1[:, :, 0, 0] @ c, rtol=1e-6, atol=1e-6)
    (pair,) = ab.log.absorbed
    assert (pair.first, pair.second, pair.link, pair.channels, pair.total) == ("conv0", "conv1", ("Relu",), 3, 4)
    assert pair.amount == pytest.approx(c.max(), rel=1e-6)
    # the same function on the data, and on any input >= 0 (the pre-activations stay above c)
    assert _relative(_run(eq, x), _run(ab, x)) <= 1e-5
    other = np.random.default_rng(9).uniform(0.0, 2.0, (8, 3, 6, 6)).astype(np.float32)
    assert _relative(_run(eq, other), _run(ab, other)) <= 1e-5
    # the activation's range per channel drops by the amount moved, and so does the layer's calibrated max
    before, after = _run_value(eq, x, "a0"), _run_value(ab, x, "a0")
    top_before, top_after = before.max(axis=(0, 2, 3)), after.max(axis=(0, 2, 3))
    np.testing.assert_allclose(top_after, top_before - c, rtol=1e-5, atol=1e-5)
    assert pair.range_before == pytest.approx(top_before.max(), rel=1e-5)
    assert pair.range_after == pytest.approx(top_after.max(), rel=1e-5)
    t_before, t_after = (qs.calibrate(n, x, progress=False).table for n in (eq, ab))
    name = eq.layer_of["relu0"]

    def max_of(table):
        rows = table[(table["Optimized Layer Name"] == name) & (table["Learnables / Activations"] == "Activations")]
        return float(rows["MaxValue"].iloc[0])

    assert max_of(t_after) == pytest.approx(top_after.max(), rel=1e-5) and max_of(t_after) < max_of(t_before)
    # absorbing again returns the network as it is; qnet.layers says what moved
    assert qs.absorb_biases(ab, x) is ab
    equalized = qs.quantize_network(qs.calibrate(ab, x, progress=False), "fpga").layers.set_index("Layer")["Equalized"]
    assert "absorbed by conv1" in equalized[name] and "bias + W c absorbed from" in equalized["conv1"]


def test_bias_absorption_through_a_relu6_lowers_its_ceilings():
    x = _absorb_data()
    eq = qs.prepare(_absorb_net("relu6"), equalize=True)
    ab = qs.absorb_biases(eq, x)
    (pair,) = ab.log.absorbed
    assert pair.link == ("Relu", "Min")
    assert _relative(_run(eq, x), _run(ab, x)) <= 1e-5
    ceiling_before = eq.constant(eq.node(eq.log.equalized[0].ceiling).inputs[1].name).reshape(-1)
    ceiling_after = ab.constant(ab.node(eq.log.equalized[0].ceiling).inputs[1].name).reshape(-1)
    b0 = _biases(eq, "conv0")
    c = np.minimum(np.maximum(b0, 0.0), ceiling_before)  # channel 3 always saturates: all of it moves
    np.testing.assert_allclose(ceiling_after, ceiling_before - c, rtol=1e-5, atol=1e-6)
    assert ceiling_after[3] == pytest.approx(0.0, abs=1e-6)


def test_bias_absorption_without_an_activation_centres_each_channel_for_any_input():
    x = _absorb_data()
    eq = qs.prepare(_absorb_net("none"), equalize=True)
    ab = qs.absorb_biases(eq, x)
    (pair,) = ab.log.absorbed
    assert pair.link == () and pair.channels == 4
    pre = _run_value(ab, x, "c0")
    np.testing.assert_allclose(pre.max(axis=(0, 2, 3)), -pre.min(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert pair.range_after < pair.range_before
    other = np.random.default_rng(9).uniform(-5.0, 5.0, (8, 3, 6, 6)).astype(np.float32)  # negative too: exact anyway
    assert _relative(_run(eq, other), _run(ab, other)) <= 1e-5


@pytest.mark.parametrize("pads", [0, 1])
def test_bias_absorption_leaves_a_padded_second_convolution(pads):
    """Into a 3x3 convolution: absorbed without padding, left with padding (its zero
    border would stand for c), with a note; the function is the same either way."""
    x = _absorb_data()
    eq = qs.prepare(_absorb_net("relu", pads=pads, kernel=3), equalize=True)
    ab = qs.absorb_biases(eq, x)
    assert _relative(_run(eq, x), _run(ab, x)) <= 1e-5
    if pads:
        assert ab.log.absorbed == []
        assert any("bias not absorbed into 1 padded convolution(s) (conv0 -> conv1)" in n for n in ab.log.notes)
        np.testing.assert_array_equal(_biases(ab, "conv0"), _biases(eq, "conv0"))
    else:
        assert [p.second for p in ab.log.absorbed] == ["conv1"]


def test_bias_absorption_keeps_the_depthwise_network_and_leaves_what_it_cannot():
    model = depthwise_net()
    x = np.random.default_rng(1).uniform(-3, 3, (16, 3, 8, 8)).astype(np.float32)
    eq = qs.prepare(model, equalize=True)
    ab = qs.absorb_biases(eq, x)
    assert _relative(_run(eq, x), _run(ab, x)) <= 1e-5
    assert {(p.first, p.second) for p in ab.log.absorbed} == {("fc4", "fc5")}
    assert any("pw2 not absorbed into conv3: its link LeakyRelu/MaxPool" in n for n in ab.log.notes)
    assert any("padded convolution(s) (conv0 -> dw1)" in n for n in ab.log.notes)
    assert [layer.name for layer in ab.layers] == [layer.name for layer in eq.layers]
    with pytest.raises(qs.ConfigurationError, match="equalize=True"):
        qs.absorb_biases(qs.prepare(model), x)
    with pytest.raises(qs.ConfigurationError, match="prepared network"):
        qs.absorb_biases(model, x)


def test_bias_absorption_keeps_mobilenetv2_on_its_calibration_data():
    torch = pytest.importorskip("torch")
    from realdata import imagenet_inputs, mobilenet_v2_module

    proto = qs.load_model(mobilenet_v2_module(), torch.zeros(1, 3, 224, 224))
    x = imagenet_inputs(8)
    eq = qs.prepare(proto, equalize=True)
    ab = qs.absorb_biases(eq, x)
    assert _relative(_run(eq, x), _run(ab, x)) <= 1e-5
    assert len(ab.log.absorbed) >= 5 and sum(p.channels for p in ab.log.absorbed) >= 100
    # the projection -> expansion pairs (no activation) are absorbed; expansion -> depthwise (padded) are not
    assert any(p.link == () for p in ab.log.absorbed)
    seconds = {p.second for p in ab.log.absorbed}
    assert all(ab.node(s).op_type != "Conv" or not any(ab.node_attributes(s).get("pads", [0])) for s in seconds)
    assert any("padded convolution(s)" in n for n in ab.log.notes)


def test_bias_absorption_of_a_large_network_outlives_the_original(monkeypatch):
    """A network too large for one protobuf keeps its weights in a private folder; the
    absorbed copy has its own, and works once the original is gone."""
    import gc

    from quantscope.network import storage

    monkeypatch.setattr(storage, "LARGE_BYTES", 1000)
    x = np.random.default_rng(1).uniform(-3, 3, (16, 3, 8, 8)).astype(np.float32)
    eq = qs.prepare(depthwise_net(), equalize=True)
    assert eq.large
    session = ort.InferenceSession(eq.session_model(), providers=["CPUExecutionProvider"])
    reference = session.run(None, {eq.input_name: x})[0]
    ab = qs.absorb_biases(eq, x)
    del eq, session
    gc.collect()
    assert ab.large and len(ab.log.absorbed) == 1
    session = ort.InferenceSession(ab.session_model(), providers=["CPUExecutionProvider"])
    assert _relative(reference, session.run(None, {ab.input_name: x})[0]) <= 1e-5
    assert len(qs.calibrate(ab, x, progress=False).table)


def test_equalizing_a_prepared_large_network_reads_its_weights(monkeypatch):
    """prepare(net, equalize=True) on a network already prepared and too large for one
    protobuf (weights in its private folder): the equalized copy reads them in, keeps
    the float function and outlives the original."""
    import gc

    from quantscope.network import storage

    monkeypatch.setattr(storage, "LARGE_BYTES", 1000)
    x = np.random.default_rng(1).uniform(-3, 3, (16, 3, 8, 8)).astype(np.float32)
    net = qs.prepare(depthwise_net())
    assert net.large
    reference = ort.InferenceSession(net.session_model(), providers=["CPUExecutionProvider"]).run(
        None, {net.input_name: x}
    )[0]
    eq = qs.prepare(net, equalize=True)
    del net
    gc.collect()
    assert eq.large and eq.equalized and len(eq.log.equalized) > 0
    session = ort.InferenceSession(eq.session_model(), providers=["CPUExecutionProvider"])
    assert _relative(reference, session.run(None, {eq.input_name: x})[0]) <= 1e-5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["calibrate", "{model}", "{cal}", "--absorb-bias"], "--absorb-bias moves biases between the layers"),
        (
            ["calibrate", "{model}", "{cal}", "--equalize", "--absorb-bias", "--out", "{tmp}/r.json"],
            "--ranges cannot reproduce them",
        ),
        (
            ["validate", "{model}", "--ranges", "{tmp}/r.json", "--validation", "{val}", "--equalize", "--absorb-bias"],
            "give --calibration DATA instead of --ranges",
        ),
        (["profile", "{model}", "--bitstream", "zcu102_int8", "--equalize", "--absorb-bias"], "give --calibration"),
    ],
)
def test_cli_absorb_bias_refused_where_it_cannot_apply(files, tmp_path, capsys, argv, message):
    model, cal, val = files
    argv = [a.format(model=model, cal=cal, val=val, tmp=tmp_path) for a in argv]
    assert main([*argv, "--quiet"] if argv[0] != "profile" else argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err


def test_cli_absorb_bias(files, capsys):
    model, cal, val = files
    argv = ["validate", str(model), "--calibration", str(cal), "--validation", str(val), "--quiet", "--equalize"]
    assert main([*argv, "--absorb-bias", "--bias-correction"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "absorbed the biases of" in out and "channel(s) in 1 pair(s) into the next layer" in out
    assert "largest activation range drop: fc4_relu4" in out
    assert main(["calibrate", str(model), str(cal), "--quiet", "--equalize", "--absorb-bias"]) == 0
    assert "absorbed the biases of" in capsys.readouterr().out


# ----------------------------------------------------------------------------- bias correction


def test_bias_correction_removes_the_analytic_shift():
    """Gemm 32 -> 3 whose weights 0.1 all quantize to 6/64 (power of two, max |w| = 1):
    the int8 output is shifted by sum_k (w x - w_q x_q), known in closed form."""
    rng = np.random.default_rng(0)
    w = np.full((3, 32), 0.1, np.float32)
    w[:, 0] = 1.0
    w[1, 5:9] = -0.1
    b = np.array([0.25, -0.5, 0.0], np.float32)
    model = make_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)],
        [tensor("x", ["N", 32])],
        [tensor("y", ["N", 3])],
        {"w": w, "b": b},
    )
    x = rng.uniform(0.9, 1.0, (200, 32)).astype(np.float32)
    cal = qs.calibrate(qs.prepare(model), x, progress=False)
    plan = make_plan(cal, "fpga")
    corrected = correct_biases(plan, x)

    # the analytic shift, eq. (1)-(2) of docs/int8.md: exponents from max |x| = x.max() < 1 and max |w| = 1
    e_x = int(np.floor(np.log2(x.max()))) - 6
    e_w = -6
    xq = np.minimum(np.floor(x.astype(np.float64) / 2.0**e_x + 0.5), 127) * 2.0**e_x  # 128 saturates to 127
    wq = np.sign(w) * np.floor(np.abs(w.astype(np.float64)) / 2.0**e_w + 0.5) * 2.0**e_w
    expected = (x.astype(np.float64) @ w.T.astype(np.float64)).mean(0) - (xq @ wq.T).mean(0)
    assert np.abs(expected).min() > 0.1  # several output steps
    np.testing.assert_allclose(corrected.bias_corrections["fc"], expected, rtol=1e-6)
    qb0, b_qp = plan.biases["fc"]
    qb1, _ = corrected.biases["fc"]
    step = 2.0 ** (e_w + e_x)
    assert np.array_equal(qb1.astype(np.int64) - qb0.astype(np.int64), np.round(expected / step).astype(np.int64))
    assert plan.bias_corrections == {}  # the plan given is left alone

    float_y = x.astype(np.float64) @ w.T + b
    before = Simulator(plan).run(x)[0].mean(0) - float_y.mean(0)
    after = Simulator(corrected).run(x)[0].mean(0) - float_y.mean(0)
    out_step = 2.0 ** plan.activations["y"].exponent
    np.testing.assert_allclose(before, -expected, atol=out_step)  # the shift quantization leaves
    assert np.abs(after).max() <= out_step / 2  # gone, to within half an output step


def _conv_net(batch: int) -> onnx.ModelProto:
    """x (batch, 3, 6, 6) -> Conv 3x3 (3 -> 4) -> Relu, exported with a fixed batch."""
    rng = np.random.default_rng(4)
    init = {
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.37).astype(np.float32),
        "b": rng.uniform(-0.2, 0.2, 4).astype(np.float32),
    }
    n = helper.make_node
    nodes = [n("Conv", ["x", "w", "b"], ["c"], name="conv"), n("Relu", ["c"], ["y"], name="relu")]
    return make_model(nodes, [tensor("x", [batch, 3, 6, 6])], [tensor("y", [batch, 4, 4, 4])], init, name="conv")


def test_bias_correction_of_a_fixed_batch_network_uses_every_sample():
    """A network exported with batch 1 runs the samples one at a time: the int8 mean of
    the correction came from the first sample only (ddddocr's recognizer, batch 1, lost
    cosine 0.99 -> 0.59 with --bias-correction; also its Gemm's float mean came from the
    first time step only, its rows being time steps)."""
    x = np.random.default_rng(6).uniform(-1, 1, (8, 3, 6, 6)).astype(np.float32)
    shifts = []
    for batch in (8, 1):  # one run of the 8 samples, and eight runs of one
        net = qs.prepare(_conv_net(batch))
        assert net.fixed_batch == batch
        plan = make_plan(qs.calibrate(net, x, progress=False), "fpga")
        shifts.append(correct_biases(plan, x).bias_corrections["conv_relu"])
    np.testing.assert_allclose(shifts[1], shifts[0], rtol=1e-9, atol=1e-12)


def test_bias_correction_needs_the_calibration_data():
    cal = qs.calibrate(qs.prepare(depthwise_net()), np.zeros((4, 3, 8, 8), np.float32), progress=False)
    with pytest.raises(qs.ConfigurationError, match="bias_correction=calibration_data"):
        qs.quantize_network(cal, "fpga", bias_correction=True)


# ----------------------------------------------------------------------------- float fallback


def sensitive_net() -> tuple[onnx.ModelProto, np.ndarray]:
    """A CNN whose layer 'mid' int8 cannot hold: per output channel one weight of 100 on an
    input channel that is always 0 beside the weights of about 0.1 that carry the signal
    (they flush to zero at a scale of 100/127). Returns the model and inputs whose float
    top-1 has a clear margin."""
    rng = np.random.default_rng(3)
    w_in = rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.5
    b_in = rng.uniform(0, 0.5, 8).astype(np.float32)
    w_in[7], b_in[7] = 0.0, -1.0  # channel 7: always 0 after the Relu
    w_mid = (rng.standard_normal((8, 8, 1, 1)) * 0.1).astype(np.float32)
    w_mid[:, 7] = 100.0
    w_out = (rng.standard_normal((8, 8, 1, 1)) * 0.5).astype(np.float32)
    w_fc = (rng.standard_normal((5, 8 * 36)) * 0.3).astype(np.float32)
    init = {
        "w_in": w_in,
        "b_in": b_in,
        "w_mid": w_mid,
        "b_mid": np.full(8, 0.05, np.float32),
        "w_out": w_out,
        "b_out": np.zeros(8, np.float32),
        "w_fc": w_fc,
        "b_fc": np.zeros(5, np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w_in", "b_in"], ["c1"], name="first", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="first_relu"),
        n("Conv", ["r1", "w_mid", "b_mid"], ["c2"], name="mid"),
        n("Conv", ["c2", "w_out", "b_out"], ["c3"], name="last"),
        n("Relu", ["c3"], ["r3"], name="last_relu"),
        n("Flatten", ["r3"], ["f"], name="flatten"),
        n("Gemm", ["f", "w_fc", "b_fc"], ["y"], name="fc", transB=1),
    ]
    model = make_model(nodes, [tensor("x", ["N", 4, 6, 6])], [tensor("y", ["N", 5])], init, name="sensitive")
    x = rng.uniform(-1, 1, (400, 4, 6, 6)).astype(np.float32)
    y = _run(qs.prepare(model), x)
    top = np.sort(y, axis=1)
    x = x[(top[:, -1] - top[:, -2]) > 0.25 * (top[:, -1] - top[:, 0])]
    return model, x[:96]


def test_max_drop_keeps_exactly_the_sensitive_layer_in_float(monkeypatch):
    import sys

    module = sys.modules[qs.validate.__module__]  # quantscope.validate.validate, the module
    model, x = sensitive_net()
    net = qs.prepare(model)
    cal = qs.calibrate(net, x[:48], progress=False)
    plain = qs.validate(cal, x[48:], target="cpu", progress=False)
    assert plain.layer_errors.iloc[0]["Layer"] == "mid"  # the layer that costs most
    assert plain.top1_agreement < 0.9
    calls, real = [], module.validate

    def counted(*args, **kwargs):
        calls.append(frozenset(kwargs["keep_float"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "validate", counted)  # the search's validations
    result = real(cal, x[48:], target="cpu", max_metric_drop=0.005, progress=False)
    assert len(calls) == len(set(calls)) == 2  # "mid back to int8" is the all-int8 run: not validated again
    fb = result.fallback
    assert fb.met and fb.keep_float == ("mid",)
    assert set(result.plan.float_layers) == {"mid"}
    assert 1.0 - result.top1_agreement <= 0.005
    assert [s.action for s in fb.steps][:2] == ["all int8", "keep mid in float"]
    assert fb.steps[-1].action.startswith("mid back to int8 reaches only")
    assert fb.flags == "--keep-float mid"
    # --keep-float reproduces the final set
    again = qs.validate(cal, x[48:], target="cpu", keep_float=["mid"], progress=False)
    assert np.array_equal(again.int8_scores, result.int8_scores)
    assert result.to_dict()["fallback"]["keep_float"] == ["mid"]


def test_max_drop_with_the_users_keep_float_and_require_int8(capsys):
    """--require-int8 layers are never candidates (the search used to pick one and fail on
    'both in keep_float and require_int8'); --keep-float layers are in every step and in
    the final set that --keep-float reproduces."""
    model, x = sensitive_net()
    cal = qs.calibrate(qs.prepare(model), x[:48], progress=False)
    result = qs.validate(cal, x[48:], target="cpu", max_metric_drop=0.005, require_int8="mid", progress=False)
    fb = result.fallback
    assert "mid" not in fb.keep_float and "mid" not in result.plan.float_layers
    given = qs.validate(cal, x[48:], target="cpu", max_metric_drop=0.005, keep_float=["fc"], progress=False)
    fb = given.fallback
    assert fb.steps[0].action == "start: the keep_float layers in float" and fb.steps[0].keep_float == ("fc",)
    assert fb.keep_float == ("fc", "mid") and fb.flags == "--keep-float fc --keep-float mid"
    again = qs.validate(cal, x[48:], target="cpu", keep_float=fb.keep_float, progress=False)
    assert np.array_equal(again.int8_scores, given.int8_scores)
    with pytest.raises(qs.ConfigurationError, match="are both in keep_float and require_int8"):
        qs.validate(cal, x[48:], target="cpu", keep_float=["mid"], require_int8=["mid"], progress=False)


def test_max_drop_on_the_fpga_target_reports_and_keeps_everything_int8():
    model, x = sensitive_net()
    cal = qs.calibrate(qs.prepare(model), x[:48], progress=False)
    result = qs.validate(cal, x[48:], target="fpga", max_metric_drop=0.005, progress=False)
    fb = result.fallback
    assert fb.fpga and "mid" in fb.keep_float
    assert not result.plan.float_layers
    assert set(fb.best_methods) == {"first_first_relu", "mid", "last_last_relu", "fc"}
    assert set(fb.best_methods.values()) <= {"MinMax", "Histogram"}
    assert fb.best_methods_metric is not None


def test_max_drop_of_a_whole_metric_is_refused_and_the_fpga_advice_reads_right(tmp_path, capsys):
    """--max-drop 2 (meant as 2 points) on a metric of at most 1 would accept anything."""
    model, x = sensitive_net()
    cal = qs.calibrate(qs.prepare(model), x[:48], progress=False)
    with pytest.raises(qs.ConfigurationError, match=r"max_metric_drop=1: top1_agreement is at most 1"):
        qs.validate(cal, x[48:], target="cpu", max_metric_drop=1, progress=False)
    path = tmp_path / "sensitive.onnx"
    onnx.save(model, path)
    np.save(tmp_path / "cal.npy", x[:48])
    np.save(tmp_path / "val.npy", x[48:])
    argv = ["validate", str(path), "--calibration", str(tmp_path / "cal.npy"), "--validation"]
    argv += [str(tmp_path / "val.npy"), "--quiet", "--max-drop"]
    assert main([*argv, "2"]) == 2
    assert "--max-drop 2: top1_agreement is at most 1" in capsys.readouterr().err
    assert main([*argv, "0.005"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "top1_agreement within 0.005 of float (in the emulation) with these 1 layer(s) changed" in out
    assert "(reached)" not in out
    assert main([*argv, "0.99"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "top1_agreement within 0.99 of float all in int8: no layer has to change" in out


# ----------------------------------------------------------------------------- schemes


def test_per_channel_power_of_two_weights_run_exactly_and_the_fpga_refuses_them():
    from quantscope import fpga

    model = depthwise_net()
    x = np.random.default_rng(2).uniform(-3, 3, (24, 3, 8, 8)).astype(np.float32)
    cal = qs.calibrate(qs.prepare(model), x, progress=False)
    per_tensor = make_plan(cal, "fpga")
    plan = make_plan(cal, qs.PowerOfTwo(per_channel=True))
    qw, qp = plan.weights["dw1_relu1"]
    assert qp.axis == 0 and qp.exponent is None and np.unique(np.log2(qp.scale)).size > 1
    assert np.all(np.log2(qp.scale) == np.round(np.log2(qp.scale)))  # powers of two
    out_ref = Simulator(plan, "reference").run(x)[0]
    out_fast = Simulator(plan, "fast").run(x)[0]
    assert np.array_equal(out_ref, out_fast)
    float_y = _run(cal.network, x)
    err = lambda p: np.abs(Simulator(p).run(x)[0] - float_y).mean()  # noqa: E731
    assert err(plan) < err(per_tensor)
    qnet = qs.simulate.QuantizedNetwork(plan)
    with pytest.raises(qs.UnsupportedModelError, match="one weight exponent per output channel"):
        fpga.Workflow(qnet, "zcu102_int8")
    fpga.Workflow(qnet, fpga.processor("zcu102_int8").with_changes(per_channel=True))  # accepted


def test_equalized_relu6_ceilings_need_a_processor_with_per_channel_parameters():
    from quantscope import fpga

    x = np.random.default_rng(2).uniform(-3, 3, (24, 3, 8, 8)).astype(np.float32)
    cal = qs.calibrate(qs.prepare(depthwise_net(), equalize=True), x, progress=False)
    qnet = qs.quantize_network(cal, "fpga")
    with pytest.raises(qs.UnsupportedModelError, match="ceiling per channel"):
        fpga.Workflow(qnet, "arria10soc_int8")
    # the per-channel ceilings are integers on the output grid, as Clip's bound (docs/int8.md (8b))
    out_ref = qs.simulate.Simulator(qnet.plan, "reference").run(x)[0]
    assert np.array_equal(out_ref, qnet.predict(x))
    assert "outputs / s" in qnet.layers.set_index("Layer").loc["conv0_relu6_0", "Equalized"]
    # the float network too: an estimate for a processor that cannot run it is refused
    with pytest.raises(qs.UnsupportedModelError, match=r"ceiling per channel.*\(equalize=True: conv0_relu6_0\)"):
        fpga.Workflow(cal.network, "zcu102_int8")
    fpga.Workflow(qs.prepare(depthwise_net()), "zcu102_int8")  # accepted without equalization


def test_range_methods_per_layer_and_from_the_one_calibration():
    model = depthwise_net()
    x = np.random.default_rng(2).uniform(-3, 3, (24, 3, 8, 8)).astype(np.float32)
    cal = qs.calibrate(qs.prepare(model), x, progress=False)
    minmax = make_plan(cal, "cpu")
    mse = make_plan(cal, qs.FloatScale(range_method="mse"))
    layer = "pw2_leaky2"
    value = cal.network.layer(layer).output
    assert float(mse.activations[value].scale) < float(minmax.activations[value].scale)  # clipped
    one = make_plan(cal, "cpu", range_methods={layer: "percentile"})
    changed = [k for k in minmax.activations if not minmax.activations[k].same_as(one.activations[k])]
    assert changed == [value]
    hist = make_plan(cal, "fpga", range_methods={layer: "Histogram"})
    assert hist.activations[value].exponent <= make_plan(cal, "fpga").activations[value].exponent
    with pytest.raises(qs.ConfigurationError, match="not a method of the PowerOfTwo scheme"):
        make_plan(cal, "fpga", range_methods={layer: "mse"})
    with pytest.raises(qs.ConfigurationError, match="range_methods names 'nope'"):
        make_plan(cal, "cpu", range_methods={"nope": "mse"})


def test_same_inputs_same_outputs_bit_for_bit():
    model = depthwise_net()
    x = np.random.default_rng(2).uniform(-3, 3, (24, 3, 8, 8)).astype(np.float32)

    def once():
        cal = qs.calibrate(qs.prepare(model, equalize=True), x[:16], progress=False)
        return qs.validate(
            cal, x[16:], target=qs.PowerOfTwo(exponent_method="Histogram"), bias_correction=x[:16], progress=False
        )

    a, b = once(), once()
    assert np.array_equal(a.int8_scores, b.int8_scores)
    assert all(np.array_equal(a.plan.biases[k][0], b.plan.biases[k][0]) for k in a.plan.biases)


# ----------------------------------------------------------------------------- the command line


@pytest.fixture()
def files(tmp_path):
    model = tmp_path / "dw.onnx"
    onnx.save(depthwise_net(), model)
    rng = np.random.default_rng(5)
    cal, val = tmp_path / "cal.npz", tmp_path / "val.npz"
    np.savez(cal, x=rng.uniform(-3, 3, (16, 3, 8, 8)).astype(np.float32))
    np.savez(val, x=rng.uniform(-3, 3, (12, 3, 8, 8)).astype(np.float32))
    return model, cal, val


def test_cli_accuracy_options_end_to_end(files, tmp_path, capsys):
    import json

    model, cal, val = files
    out = tmp_path / "r.json"
    argv = ["validate", str(model), "--calibration", str(cal), "--validation", str(val), "--quiet"]
    assert main(argv + ["--equalize", "--bias-correction", "--exponent-method", "Histogram", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "equalized 4 pair(s) of layers (1 through a Relu6" in text
    saved = json.loads(out.read_text())
    assert saved["quantization"]["scheme"] == "PowerOfTwo"
    assert (
        main(argv + ["--target", "cpu", "--range-method", "percentile", "--percentile", "99.9", "--max-drop", "0"]) == 0
    )
    text = capsys.readouterr().out
    assert "Float fallback" in text and "all int8" in text
    onnx_out = tmp_path / "q.onnx"
    argv = ["quantize", str(model), "--calibration", str(cal), "-o", str(onnx_out), "--quiet"]
    assert main(argv + ["--target", "cpu", "--range-method", "mse", "--bias-correction"]) == 0
    assert "bias correction: 6 layer(s)" in capsys.readouterr().out
    assert onnx.load(str(onnx_out)).graph.node


def test_cli_method_names_in_any_case(files, capsys):
    """--exponent-method histogram and --range-method MSE, as the Python API takes them."""
    model, cal, val = files
    argv = ["quantize", str(model), "--calibration", str(cal), "-o", str(model.with_suffix(".q.onnx")), "--quiet"]
    assert main([*argv, "--exponent-method", "histogram"]) == 0
    assert main([*argv, "--target", "cpu", "--range-method", "MSE"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*argv, "--exponent-method", "mse"])
    assert "invalid choice: 'mse' (choose from 'MinMax', 'Histogram')" in capsys.readouterr().err


def test_cli_bias_correction_says_when_no_layer_has_a_bias(tmp_path, capsys):
    """PP-OCR's text detector has no conv bias: --bias-correction used to change nothing, silently."""
    rng = np.random.default_rng(0)
    init = {"w0": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0"), helper.make_node("Relu", ["c0"], ["y"])]
    path = tmp_path / "nobias.onnx"
    onnx.save(make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 4, 4, 4])], init), path)
    np.save(tmp_path / "cal.npy", rng.uniform(-1, 1, (8, 3, 6, 6)).astype(np.float32))
    argv = ["validate", str(path), "--calibration", str(tmp_path / "cal.npy"), "--validation"]
    assert main([*argv, str(tmp_path / "cal.npy"), "--quiet", "--bias-correction"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: --bias-correction changed nothing: no int8 conv/fc layer of this network has an int32 bias" in out
    assert main([*argv, str(tmp_path / "cal.npy"), "--quiet"]) == 0
    assert "--bias-correction changed nothing" not in capsys.readouterr().out


def test_cli_equalize_says_when_there_is_nothing_to_equalize(tmp_path, capsys):
    """A network whose convolutions are linked by a non-homogeneous activation (SiLU here)."""
    rng = np.random.default_rng(0)
    init = {"w0": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1": rng.standard_normal((2, 4, 1, 1))}
    init["w1"] = init["w1"].astype(np.float32)
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        n("Sigmoid", ["c0"], ["s0"], name="sig0"),
        n("Mul", ["c0", "s0"], ["a0"], name="silu0"),
        n("Conv", ["a0", "w1"], ["y"], name="conv1"),
    ]
    path = tmp_path / "silu.onnx"
    onnx.save(make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 2, 6, 6])], init), path)
    np.save(tmp_path / "cal.npy", rng.uniform(-1, 1, (8, 3, 6, 6)).astype(np.float32))
    assert main(["calibrate", str(path), str(tmp_path / "cal.npy"), "--quiet", "--equalize"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--equalize found no pair of layers to equalize, so the network is unchanged" in out
    assert "equalized 0 pair(s)" not in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "cpu", "--exponent-method", "Histogram"], "--exponent-method is an option of the power-of-two"),
        (["--target", "cpu", "--per-channel"], "--per-channel is an option of the power-of-two"),
        (["--range-method", "mse"], "--range-method chooses the cpu target's activation ranges"),
        (["--target", "cpu", "--percentile", "99"], "--percentile P goes with --range-method percentile"),
        (["--target", "cpu", "--range-method", "percentile", "--percentile", "120"], "give a share of the values"),
        (["--max-drop", "-1"], "--max-drop -1: give the largest metric drop"),
        (["--keep-float", "dw1", "--require-int8", "dw1"], "both in --keep-float and --require-int8"),
        (["--keep-float", "nope"], "--keep-float names 'nope', which is not a layer of the network"),
    ],
)
def test_cli_refuses_options_that_cannot_work(files, capsys, extra, message):
    model, cal, val = files
    argv = ["validate", str(model), "--calibration", str(cal), "--validation", str(val), "--quiet"]
    assert main(argv + extra) == 2
    assert message in capsys.readouterr().err


def test_cli_bias_correction_needs_calibration_data_and_compile_refuses_per_channel(files, tmp_path, capsys):
    model, cal, val = files
    ranges = tmp_path / "r.json"
    assert main(["calibrate", str(model), str(cal), "--out", str(ranges), "--quiet", "--equalize"]) == 0
    capsys.readouterr()
    argv = ["validate", str(model), "--ranges", str(ranges), "--validation", str(val), "--quiet", "--equalize"]
    assert main(argv) == 0  # the ranges of the equalized network
    capsys.readouterr()
    assert main(argv + ["--bias-correction"]) == 2
    assert "give --calibration DATA instead of --ranges" in capsys.readouterr().err
    # ranges of the equalized network on the network as it is, and the other way round: a
    # .csv has no fingerprint of the model, so the weights tell (they used to be taken silently)
    assert main(argv[:-1]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "prepared without --equalize here: if the ranges were measured with it, add --equalize" in err
    plain = tmp_path / "plain.csv"
    assert main(["calibrate", str(model), str(cal), "--out", str(plain), "--quiet"]) == 0
    capsys.readouterr()
    assert main([*argv[:3], str(plain), *argv[4:]]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "measured on other weights than " in err and "dw.onnx's (layer " in err
    assert "prepared with --equalize here: if the ranges were measured without it, drop --equalize" in err
    assert main([*argv[:3], str(plain), *argv[4:-1]]) == 0  # the same network: accepted
    capsys.readouterr()
    # a .csv has no histograms: the methods that need them say so (they used to give minmax silently)
    for extra, flag in (
        (["--target", "cpu", "--range-method", "mse"], "--range-method"),
        (["--exponent-method", "Histogram"], "--exponent-method"),
    ):
        assert main([*argv[:3], str(plain), *argv[4:-1], *extra]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "method needs each activation's histogram, and these ranges have none" in err
        assert f"or drop {flag}" in err
    assert main([*argv[:3], str(plain), *argv[4:-1], "--max-drop", "0.5"]) == 0  # fpga: the advice without methods
    out = " ".join(capsys.readouterr().out.split())
    assert "note: no better exponent method per layer: layer " in out
    assert main(["compile", str(model), "--bitstream", "zcu102_int8", "--calibration", str(cal), "--per-channel"]) == 2
    err = capsys.readouterr().err
    assert "one weight exponent per output channel (--per-channel: " in err and "(drop --per-channel)" in err
    assert "per_channel=True)," not in err.replace("ProcessorConfig(..., per_channel=True)", "")  # flags, not keywords
    assert "equaliz" not in err  # the per-channel weights are the reason, not equalization
    # validate's Frames/s on the processor too (it used to estimate them for a network it cannot run)
    argv = ["validate", str(model), "--calibration", str(cal), "--validation", str(val), "--quiet"]
    assert main([*argv, "--bitstream", "zcu102_int8", "--per-channel"]) == 2
    assert "one weight exponent per output channel (--per-channel: " in capsys.readouterr().err
    assert main([*argv, "--bitstream", "zcu102_int8", "--equalize"]) == 2
    assert "clip at a ceiling per channel" in capsys.readouterr().err
    # without data (an estimate) the equalized Relu6's per-channel ceilings are refused as well
    for command in ("compile", "profile"):
        assert main([command, str(model), "--bitstream", "zcu102_int8", "--equalize"]) == 2
        err = capsys.readouterr().err
        assert "clip at a ceiling per channel" in err and "(drop --equalize)" in err and "equalize=" not in err


# ----------------------------------------------------------------------------- a real network


def test_ccexam_mnist_int8_accuracy_does_not_fall_with_any_option():
    """Calibrated on 300 digits, validated on 1,000 others (benchmarks/int8_accuracy.py runs
    every combination on 1,000 / 4,000): no option costs the fpga target a digit, and none
    costs the cpu target more than one (0.1 points)."""
    torch = pytest.importorskip("torch")
    from realdata import ccexam_mnist_module, mnist_normalized

    module, _ = ccexam_mnist_module()
    x, y = mnist_normalized(1300)
    cal_x, val = x[:300], (x[300:], y[300:])
    calibrations = {}

    def accuracy(target, equalize=False, **options):
        if equalize not in calibrations:
            net = qs.prepare(module, example_input=torch.zeros(1, 1, 28, 28), equalize=bool(equalize))
            if equalize == "absorb":
                net = qs.absorb_biases(net, cal_x)
            calibrations[equalize] = qs.calibrate(net, cal_x, progress=False)
        res = qs.validate(calibrations[equalize], val, target=target, progress=False, **options)
        return float(res.metric_results["top1_accuracy"]["MetricOutput"].iloc[1])

    fpga, cpu = accuracy("fpga"), accuracy("cpu")
    for target, options in (
        ("fpga", {"equalize": True}),
        ("fpga", {"bias_correction": cal_x}),
        (qs.PowerOfTwo(exponent_method="Histogram"), {"equalize": True, "bias_correction": cal_x}),
        (qs.PowerOfTwo(per_channel=True), {}),
        ("fpga", {"equalize": "absorb", "bias_correction": cal_x}),
        ("fpga", {"gptq": cal_x, "bias_correction": cal_x}),
    ):
        assert accuracy(target, **options) >= fpga, (target, options)
    for target, options in (
        (qs.FloatScale(range_method="mse"), {}),
        (qs.FloatScale(range_method="percentile"), {}),
        (qs.FloatScale(range_method="entropy"), {}),
        ("cpu", {"equalize": True, "bias_correction": cal_x}),
        ("cpu", {"equalize": "absorb", "bias_correction": cal_x}),
        ("cpu", {"gptq": cal_x}),
        (qs.FloatScale(range_method="mse"), {"gptq": cal_x, "bias_correction": cal_x}),
    ):
        assert accuracy(target, **options) >= cpu - 1 / 1000, (target, options)


@pytest.mark.parametrize("method", ["mse", "percentile"])
def test_network_outputs_keep_their_whole_range_unless_asked(method):
    """A range method that clips applies inside the network; the layers that make the
    network's outputs keep min/max (a classifier's top logits, a softmax near 1, are
    what the user reads), unless range_methods names them. The power-of-two scheme's
    Histogram exponent method follows the same rule."""
    model = depthwise_net()
    x = np.random.default_rng(2).uniform(-3, 3, (24, 3, 8, 8)).astype(np.float32)
    x[0] *= 6  # one sample far out: a tail worth clipping everywhere
    cal = qs.calibrate(qs.prepare(model), x, progress=False)
    net = cal.network
    outputs = [layer for layer in net.layers if layer.output in net.output_names]
    assert outputs
    scheme = qs.FloatScale(range_method=method, percentile=99.0)
    plain, clipped = make_plan(cal, "cpu"), make_plan(cal, scheme)
    inner = [k for k in plain.activations if k not in net.output_names]
    assert any(not plain.activations[k].same_as(clipped.activations[k]) for k in inner)  # clipped inside
    pow2 = make_plan(cal, qs.PowerOfTwo(exponent_method="Histogram"))
    for layer in outputs:
        assert plain.activations[layer.output].same_as(clipped.activations[layer.output])  # the output: min/max
        asked = make_plan(cal, scheme, range_methods={layer.name: method})
        assert not plain.activations[layer.output].same_as(asked.activations[layer.output])
        assert pow2.activations[layer.output].exponent == pow2_exponent(cal.stats(layer.name).max_abs, 8)


def test_the_fallback_search_lets_go_of_the_outputs_of_results_it_does_not_return():
    """Each validation holds both networks' outputs on every sample: the search keeps them
    only for the all-int8 start and the result it returns (it used to hold every step's:
    18 GB on a text recognizer)."""
    from quantscope.validate.fallback import search

    model, x = sensitive_net()
    cal = qs.calibrate(qs.prepare(model), x[:48], progress=False)
    made = []

    def never_met(scores, labels):  # the float network's scores come as float32, int8's as float64
        return 1.0 if scores.dtype == np.float32 else 0.0

    def run(kept, methods):
        made.append(
            qs.validate(
                cal, x[48:], target="cpu", keep_float=kept, range_methods=methods, metrics=never_met, progress=False
            )
        )
        return made[-1]

    result, report = search(run, "cpu", 0.5)  # never met: every layer is tried in turn
    assert len(made) >= 3 and result.int8_scores is not None and made[0].int8_scores is not None
    held = [r for r in made if r.int8_scores is not None]
    assert all(r is made[0] or r is result for r in held)
    again = qs.validate(cal, x[48:], target="cpu", keep_float=report.keep_float, metrics=never_met, progress=False)
    assert np.array_equal(again.int8_scores, result.int8_scores) and not report.met
