"""Validation: metrics, memory, diagnostics, and the CPU export against onnxruntime."""

from __future__ import annotations

import math
import re

import numpy as np
import onnxruntime as ort
import pytest
from realdata import ccexam_mnist_module, imagenet_photos, mnist_normalized, mobilenet_v2_module
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.cli import main


@pytest.fixture(scope="module")
def mnist():
    torch = pytest.importorskip("torch")
    module, _ = ccexam_mnist_module()
    net = qs.prepare(module, example_input=torch.zeros(1, 1, 28, 28))
    x, y = mnist_normalized()
    cal = qs.calibrate(net, (x[:1000], y[:1000]), progress=False)
    return net, cal, x[1000:], y[1000:]


def test_mnist_power_of_two_within_0_3_points(mnist):
    net, cal, x, y = mnist
    res = qs.validate(cal, (x, y), target="fpga", progress=False)
    assert res.num_samples == 4000
    table = res.metric_results["top1_accuracy"]
    assert list(table.columns) == ["NetworkImplementation", "MetricOutput", "LearnableParameterMemory(bytes)"]
    assert list(table["NetworkImplementation"]) == ["Floating-Point", "Quantized"]
    f, q = table["MetricOutput"]
    assert f > 0.99
    assert abs(f - q) <= 0.003, (f, q)
    learnables = 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 + 128 + 128 * 10 + 10
    weights = 32 * 9 + 64 * 32 * 9 + 3136 * 128 + 128 * 10
    assert list(table["LearnableParameterMemory(bytes)"]) == [4 * learnables, weights + 4 * (learnables - weights)]
    errors = res.layer_errors
    assert len(errors) == len(net.layers)
    assert errors["SQNR(dB)"].iloc[:-1].map(math.isfinite).all()
    assert res.verdict.startswith(errors.iloc[0]["Layer"])


def _qdq_vs_emulation(qnet, net, x):
    emulated = qnet.predict(x)
    model = qnet.to_onnx()
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return emulated, sess.run(None, {net.input_name: x})[0]


def _ort_fused_int8(qnet) -> bool:
    """onnxruntime's optimized graph of the export runs QLinearConv / QGemm kernels."""
    import onnx

    options = ort.SessionOptions()
    path = __import__("tempfile").mktemp(suffix=".onnx")
    options.optimized_model_filepath = path
    ort.InferenceSession(qnet.to_onnx().SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(path).graph.node}
    __import__("os").unlink(path)
    return bool({"QLinearConv", "QGemm"} & ops)


def test_cpu_export_reduce_range_agrees_with_emulation_on_every_top1(mnist):
    """7-bit weights cannot saturate onnxruntime's int16 pair sums on any x86 CPU: the
    deployed int8 kernels compute what quantscope emulates, up to float32 requantization."""
    net, cal, x, y = mnist
    qnet = qs.quantize_network(cal, qs.FloatScale(reduce_range=True))
    qw, _ = qnet.plan.weights[net.layers[1].name]
    assert np.abs(qw).max() == 64
    assert _ort_fused_int8(qnet)
    emulated, ort_out = _qdq_vs_emulation(qnet, net, x)
    assert np.array_equal(emulated.argmax(1), ort_out.argmax(1))
    diff = float(np.abs(emulated - ort_out).max())
    print(f"largest output difference, quantscope emulation vs onnxruntime QDQ (reduce_range): {diff:.4f}")
    # one output step of the last layer, where float32 and float64 requantization differ at a tie
    out_scale = float(qnet.plan.activations[net.layers[-1].output].scale)
    assert diff <= out_scale * 1.0001


def test_cpu_export_8bit_agrees_where_onnxruntime_does_not_saturate(mnist):
    if qs.cpu_int8_saturates():
        pytest.skip("x86 without VNNI: onnxruntime's u8s8 kernels saturate int16 pair sums (use reduce_range)")
    net, cal, x, y = mnist
    qnet = qs.quantize_network(cal, "cpu")
    emulated, ort_out = _qdq_vs_emulation(qnet, net, x)
    mismatches = int((emulated.argmax(1) != ort_out.argmax(1)).sum())
    diff = float(np.abs(emulated - ort_out).max())
    print(f"8-bit weights: {mismatches} top-1 mismatches, largest output difference {diff:.4f}")
    assert mismatches == 0
    out_scale = float(qnet.plan.activations[net.layers[-1].output].scale)
    assert diff <= out_scale * 1.0001


def test_cpu_emulation_applies_a_fused_leaky_relu_and_prelu_as_the_export_runs_them():
    """On the CPU target a LeakyRelu or PRelu fused after a Conv/Gemm takes the real
    output (eq. (9a)), as onnxruntime runs the export's Conv -> LeakyRelu ->
    QuantizeLinear; on the output's grid, which holds the activation's range, the
    negative pre-activations would saturate before the slope."""
    from onnx import helper
    from tinymodels import make_model, tensor

    from quantscope.simulate import Simulator

    rng = np.random.default_rng(3)
    init = {
        "w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "b1": rng.standard_normal(8).astype(np.float32),
        "w2": (rng.standard_normal((8, 8, 3, 3)) * 0.3).astype(np.float32),
        "slope": rng.uniform(0.05, 0.4, (8, 1, 1)).astype(np.float32),
        "wf": (rng.standard_normal((5, 8)) * 0.5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], name="leaky", alpha=0.1),
        helper.make_node("Conv", ["a1", "w2"], ["c2"], name="c2", pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c2", "slope"], ["a2"], name="prelu"),
        helper.make_node("GlobalAveragePool", ["a2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 12, 12])], [tensor("y", ["N", 5])], init)
    x = rng.standard_normal((40, 3, 12, 12)).astype(np.float32)
    net = qs.prepare(model)
    cal = qs.calibrate(net, x[:20], progress=False)
    qnet = qs.quantize_network(cal, "cpu")
    assert [layer.op_types for layer in net.layers if layer.kind == "conv"] == [
        ("Conv", "LeakyRelu"),
        ("Conv", "PRelu"),
    ]
    emulated, ort_out = _qdq_vs_emulation(qnet, net, x[20:])
    reference, _ = Simulator(qnet.plan, "reference").run(x[20:])
    np.testing.assert_array_equal(emulated, reference)
    float_out = ort.InferenceSession(net.to_proto().SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {net.input_name: x[20:]}
    )[0]
    out_scale = float(qnet.plan.activations[net.layers[-1].output].scale)
    # float32 and float64 requantization may differ by one step where they cross a tie
    assert float(np.abs(emulated - ort_out).max()) <= out_scale * 1.0001
    error = np.abs(emulated - float_out).max() / np.abs(float_out).max()
    assert error < 0.05, error


def test_unlabelled_data_measures_agreement():
    net = qs.prepare(small_cnn(seed=3))
    x = images(48, seed=9)
    cal = qs.calibrate(net, x[:24], progress=False)
    res = qs.validate(cal, x[24:], target="cpu", progress=False)
    assert not res.labelled
    table = res.metric_results["top1_agreement"]
    assert table["MetricOutput"].iloc[0] == 1.0
    assert table["MetricOutput"].iloc[1] == res.top1_agreement


def test_custom_metrics_and_reference_kernels_agree():
    net = qs.prepare(small_cnn(seed=3))
    x = images(40, seed=2)
    y = np.arange(40) % 3
    cal = qs.calibrate(net, x, progress=False)

    def mean_top_score(scores, labels):
        return float(np.mean(scores.max(axis=1)))

    a = qs.validate(cal, (x, y), metrics=["top1", mean_top_score], progress=False)
    b = qs.validate(cal, (x, y), metrics=["top1", mean_top_score], kernels="reference", progress=False)
    assert set(a.metric_results) == {"top1_accuracy", "mean_top_score"}
    for k in a.metric_results:
        assert a.metric_results[k].equals(b.metric_results[k])
    np.testing.assert_array_equal(a.int8_scores, b.int8_scores)


def test_mobilenet_v2_photos_both_schemes_and_diagnostics():
    torch = pytest.importorskip("torch")
    net = qs.prepare(mobilenet_v2_module(), example_input=torch.zeros(1, 3, 224, 224))
    x = imagenet_photos()
    cal = qs.calibrate(net, x, progress=False)
    pow2 = qs.validate(cal, x, target="fpga", progress=False)
    cpu = qs.validate(cal, x, target="cpu", progress=False)
    print("MobileNetV2 top-1 agreement: power-of-two", pow2.top1_agreement, "cpu", cpu.top1_agreement)
    print(pow2.verdict)
    assert cpu.top1_agreement >= 0.8
    # power-of-two per-tensor loses far more, and the diagnostics point at depthwise layers
    assert pow2.top1_agreement < cpu.top1_agreement
    worst = pow2.layer_errors.head(5)
    assert (worst["Kind"] == "conv").any()
    assert worst["WeightSQNR(dB)"].min() < cpu.layer_errors["WeightSQNR(dB)"].median()


def test_cli_validate_and_quantize(tmp_path, capsys):
    import onnx

    model = tmp_path / "small.onnx"
    onnx.save(small_cnn(seed=1), model)
    np.savez(tmp_path / "cal.npz", x=images(20, seed=1), y=np.arange(20) % 3)
    np.savez(tmp_path / "val.npz", x=images(20, seed=2), y=np.arange(20) % 3)
    out = tmp_path / "res.json"
    assert (
        main(
            [
                "validate",
                str(model),
                "--calibration",
                str(tmp_path / "cal.npz"),
                "--validation",
                str(tmp_path / "val.npz"),
                "--target",
                "cpu",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "Floating-Point" in text and "Quantized" in text and "Verdict" in text
    import json

    result = json.loads(out.read_text())
    assert result["NumSamples"] == 20
    assert (
        main(
            [
                "validate",
                str(model),
                "--calibration",
                str(tmp_path / "cal.npz"),
                "--validation",
                str(tmp_path / "val.npz"),
                "--bitstream",
                "arria10soc_int8",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "FramesPerSecond" in capsys.readouterr().out
    rows = json.loads(out.read_text())["metrics"]["top1_accuracy"]
    assert rows[1]["FramesPerSecond"] > rows[0]["FramesPerSecond"] > 0
    assert (
        main(
            [
                "quantize",
                str(model),
                "--calibration",
                str(tmp_path / "cal.npz"),
                "-o",
                str(tmp_path / "q.onnx"),
                "--keep-float",
                "fc",
                "--quiet",
            ]
        )
        == 0
    )
    assert (tmp_path / "q.onnx").exists() and (tmp_path / "q.json").exists()
    assert (
        main(
            [
                "quantize",
                str(model),
                "--calibration",
                str(tmp_path / "cal.npz"),
                "-o",
                str(tmp_path / "q2.onnx"),
                "--keep-float",
                "nope",
                "--quiet",
            ]
        )
        == 2
    )
    assert "nope" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_calibrated():
    net = qs.prepare(small_cnn(seed=3))
    x = images(24, seed=9)
    return qs.calibrate(net, x[:12], progress=False), x[12:]


def test_label_metric_on_unlabelled_data_is_refused_before_any_work(tiny_calibrated, monkeypatch):
    cal, x = tiny_calibrated
    from quantscope.simulate import ReferenceEngine

    def never(*args, **kwargs):
        raise AssertionError("the int8 network ran although the metric cannot")

    monkeypatch.setattr(ReferenceEngine, "run", never)  # FastEngine inherits it
    with pytest.raises(qs.CalibrationDataError, match=r"no labels, and metric\(s\) 'top1_accuracy'"):
        qs.validate(cal, x, metrics="top1", progress=False)


def test_metric_functions_get_labels_none_without_labels(tiny_calibrated):
    cal, x = tiny_calibrated
    seen = []

    def mean_max(scores, labels):
        seen.append(labels)
        return float(scores.max(axis=1).mean())

    res = qs.validate(cal, x, metrics=mean_max, progress=False)
    assert seen == [None, None]
    assert res.metric_results["mean_max"]["MetricOutput"].iloc[0] > 0


@pytest.mark.parametrize(
    "metric, message",
    [
        (lambda s, y: 1 / 0, r"metric 'broken' raised ZeroDivisionError"),
        (lambda s, y: "high", r"metric 'broken' returned 'high' \(str\)"),
        (lambda s, y: s.max(axis=1), r"metric 'broken' returned .* must return one number"),
        (lambda s, y: None, r"metric 'broken' returned None"),
    ],
)
def test_a_metric_that_raises_or_returns_no_number_is_named(tiny_calibrated, metric, message):
    cal, x = tiny_calibrated
    y = np.arange(len(x)) % 3
    with pytest.raises(qs.ConfigurationError, match=message):
        qs.validate(cal, (x, y), metrics={"broken": metric}, progress=False)
    # numpy scalars and 0-d arrays are numbers
    res = qs.validate(
        cal, (x, y), metrics={"ok": lambda s, y: np.float32(0.5), "ok0d": lambda s, y: np.array(2)}, progress=False
    )
    assert list(res.metric_results["ok"]["MetricOutput"]) == [0.5, 0.5]
    assert list(res.metric_results["ok0d"]["MetricOutput"]) == [2.0, 2.0]


def test_export_warns_on_a_cpu_whose_int8_kernels_saturate(tiny_calibrated):
    import warnings

    cal, _ = tiny_calibrated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qs.quantize_network(cal, "cpu").to_onnx()
        eight_bit = [w for w in caught if "VNNI" in str(w.message)]
        qs.quantize_network(cal, qs.FloatScale(reduce_range=True)).to_onnx()
        qs.quantize_network(cal, "fpga").to_onnx()
    assert len(eight_bit) == (1 if qs.cpu_int8_saturates() else 0)
    assert len([w for w in caught if "VNNI" in str(w.message)]) == len(eight_bit)


@pytest.mark.parametrize(
    "labels, message",
    [
        (lambda n: np.full(n, 42), r"label 42 of sample 0 is outside the network's 3 classes"),
        (lambda n: np.full(n, 0.5), r"label 0.5 of sample 0 is not a class index"),
    ],
)
def test_labels_that_are_no_class_index_are_refused(tiny_calibrated, labels, message):
    cal, x = tiny_calibrated
    with pytest.raises(qs.ConfigurationError, match=message):
        qs.validate(cal, (x, labels(len(x))), progress=False)
    ok = qs.validate(cal, (x, (np.arange(len(x)) % 3).astype(np.float64)), progress=False)  # whole floats are fine
    assert 0 <= ok.metric_results["top1_accuracy"]["MetricOutput"].iloc[0] <= 1


def test_result_json_is_strict(tiny_calibrated, tmp_path):
    import json

    cal, x = tiny_calibrated
    res = qs.validate(cal, x, progress=False)
    text = json.dumps(res.to_dict(), allow_nan=False)  # raises on NaN/Inf
    assert "NaN" not in text and json.loads(text)["NumSamples"] == len(x)


def _layer_error_by_definition(f, q, qp, rounding, saturation):
    """LayerError's sums, written straight from their definitions (quantize and
    dequantize the float values, compare elementwise)."""
    from quantscope.quantize.numerics import quantize

    f = f.astype(np.float64)
    g = (
        quantize(f, qp.scale, qp.zero_point, qp.bits, rounding, saturation).astype(np.float64) - qp.zero_point
    ) * qp.scale
    t = f / qp.scale
    lo, hi = qp.qmin - qp.zero_point, qp.qmax - qp.zero_point
    return dict(
        signal=float(np.sum(f * f)),
        noise=float(np.sum((f - q) ** 2)),
        grid_noise=float(np.sum((f - g) ** 2)),
        saturated=int(np.count_nonzero((t > hi + 0.5) | (t < lo - 0.5))),
        flushed=int(np.count_nonzero((f != 0) & (np.abs(t) < 0.5))),
        count=f.size,
    )


@pytest.mark.parametrize("rounding", ["half_away", "half_even", "floor", "zero"])
@pytest.mark.parametrize("params", [("pow2", -4), ("pow2", 2), ("scale", 0.0371, 5), ("scale", 0.25, -3)])
def test_layer_error_sums_equal_their_definition(rounding, params):
    import importlib

    from quantscope.quantize.numerics import Rounding, Saturation
    from quantscope.quantize.plan import QParams

    V = importlib.import_module("quantscope.validate.measure")
    rounding = Rounding(rounding)
    if params[0] == "pow2":
        qp = QParams.pow2(params[1])
    else:
        qp = QParams(np.array(params[1]), np.array(params[2], np.int64))
    rng = np.random.default_rng(5)
    s = float(qp.scale)
    ties = (np.arange(-140, 140) + 0.5) * s  # exact ties, some beyond the int8 range
    special = [0.0, -0.0, 1e-30, -1e-30, 0.49 * s, -0.5 * s, 0.5 * s, 127.5 * s, -128.5 * s, 1e6, -1e6]
    f = np.concatenate([rng.normal(0, 40 * s, 3000), ties, special]).astype(np.float32).reshape(3, -1)
    q = rng.normal(0, 1, f.shape)
    plan = type("Plan", (), {"rounding": rounding, "saturation": Saturation.SATURATE})()
    err = V.LayerError()
    err.update(f, q, qp, plan, V._Scratch())
    want = _layer_error_by_definition(f, q, qp, rounding, Saturation.SATURATE)
    got = {k: getattr(err, k) for k in want}
    for k in ("signal", "noise", "grid_noise"):  # sums: another order of the same terms
        assert got.pop(k) == pytest.approx(want.pop(k), rel=1e-12, abs=0)
    assert got == want


@pytest.mark.parametrize("piece", [1 << 18, 256, 1000])
def test_layer_error_of_integers_equals_that_of_their_real_values(monkeypatch, piece):
    """An int8 output (with a zero point here) is compared piece by piece as its
    real values ``(q - z) * s`` would be, whatever the piece size."""
    import importlib

    from quantscope.quantize.numerics import Rounding, Saturation
    from quantscope.quantize.plan import QParams
    from quantscope.simulate.engine import IntTensor

    V = importlib.import_module("quantscope.validate.measure")
    monkeypatch.setattr(V, "_PIECE", piece)
    rng = np.random.default_rng(2)
    qp = QParams(np.array(0.05), np.array(-100, np.int64))
    f = rng.normal(0, 3, (4, 7, 11, 13)).astype(np.float32)
    q = rng.integers(-128, 128, f.shape).astype(np.int8)
    plan = type("Plan", (), {"rounding": Rounding.HALF_AWAY, "saturation": Saturation.SATURATE})()
    by_ints, by_reals = V.LayerError(), V.LayerError()
    by_ints.update(f, IntTensor(q, qp), qp, plan, V._Scratch())
    by_reals.update(f, (q.astype(np.float64) + 100) * 0.05, qp, plan, V._Scratch())
    assert by_ints == by_reals
    want = _layer_error_by_definition(
        f, (q.astype(np.float64) + 100) * 0.05, qp, Rounding.HALF_AWAY, Saturation.SATURATE
    )
    assert by_ints.noise == pytest.approx(want["noise"], rel=1e-12) and by_ints.saturated == want["saturated"]


def _layer_error_in_pieces(f, q_real, qp, rounding, saturation, piece):
    """LayerError's sums as its definition computes them, in the same order: per piece
    of ``piece`` values, float64 arrays summed by the same ``einsum``, so that the
    result must be equal bit for bit, whatever passes produce the arrays."""
    from quantscope.quantize.numerics import Rounding, Saturation

    f, q_real = f.reshape(-1), q_real.reshape(-1)
    s, lo, hi = float(qp.scale), qp.qmin - int(qp.zero_point), qp.qmax - int(qp.zero_point)
    nearest = rounding in (Rounding.HALF_AWAY, Rounding.HALF_EVEN) and saturation is Saturation.SATURATE
    signal = noise = grid = 0.0
    for start in range(0, f.size, piece):
        x = f[start : start + piece].astype(np.float64)
        signal += float(np.einsum("i,i->", x, x))
        d = x - q_real[start : start + piece]
        noise += float(np.einsum("i,i->", d, d))
        # nearest: either tie rule leaves the same |f - g|, hence the same squares
        g = np.clip(np.rint(x / s), lo, hi) * s if nearest else qp.dequantize(qp.quantize(x, rounding, saturation))
        d = x - g
        grid += float(np.einsum("i,i->", d, d))
    return signal, noise, grid


@pytest.mark.parametrize("piece", [1 << 18, 1000, 333])
@pytest.mark.parametrize("exponent", [-4, 0, 3])
@pytest.mark.parametrize("rounding", ["half_away", "half_even", "floor"])
def test_layer_error_sums_equal_their_definition_bit_for_bit(monkeypatch, piece, exponent, rounding):
    """The sums of an int8 power-of-two output, with and without saturated values in a
    piece, equal those of the definition computed in the same order, exactly."""
    import importlib

    from quantscope.quantize.numerics import Rounding, Saturation
    from quantscope.quantize.plan import QParams
    from quantscope.simulate.engine import IntTensor

    V = importlib.import_module("quantscope.validate.measure")
    monkeypatch.setattr(V, "_PIECE", piece)
    monkeypatch.setenv("QUANTSCOPE_KERNELS", "numpy")  # the numpy path's order of additions
    rounding = Rounding(rounding)
    qp = QParams.pow2(exponent)
    s = float(qp.scale)
    rng = np.random.default_rng(exponent + 10)
    ties = (np.arange(-140, 140) + 0.5) * s
    special = [0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, 0.5 * s, -0.5 * s, 127.5 * s, -128.5 * s, 1e30, -1e30]
    inside = rng.normal(0, 30 * s, 4000)  # pieces of these saturate nothing
    wide = rng.normal(0, 100 * s, 2000)
    f = np.concatenate([inside, ties, special, wide]).astype(np.float32)
    q = rng.integers(-128, 128, f.size).astype(np.int8)
    plan = type("Plan", (), {"rounding": rounding, "saturation": Saturation.SATURATE})()
    err = V.LayerError()
    err.update(f, IntTensor(q, qp), qp, plan, V._Scratch())
    want = _layer_error_in_pieces(f, q.astype(np.float64) * s, qp, rounding, Saturation.SATURATE, piece)
    assert (err.signal, err.noise, err.grid_noise) == want
    counts = _layer_error_by_definition(f, q.astype(np.float64) * s, qp, rounding, Saturation.SATURATE)
    assert (err.saturated, err.flushed, err.count) == (counts["saturated"], counts["flushed"], counts["count"])


def test_nan_in_a_float_layer_is_named():
    import importlib

    from quantscope.quantize.numerics import Rounding, Saturation
    from quantscope.quantize.plan import QParams

    V = importlib.import_module("quantscope.validate.measure")
    plan = type("Plan", (), {"rounding": Rounding.HALF_AWAY, "saturation": Saturation.SATURATE})()
    f = np.ones((2, 3, 4, 4), np.float32)
    f[1, 2, 3, 3] = np.nan
    with pytest.raises(qs.NonFiniteActivationError, match="'conv7'"):
        V.LayerError().update(f, np.ones(f.shape), QParams.pow2(-3), plan, V._Scratch(), "conv7")


def test_metric_is_accepted_as_the_command_lines_name_of_metrics(tiny_calibrated):
    cal, x = tiny_calibrated
    y = np.arange(len(x)) % 3
    res = qs.validate(cal, (x, y), metric="top1", progress=False)
    assert list(res.metric_results) == ["top1_accuracy"]
    with pytest.raises(qs.ConfigurationError, match="not both"):
        qs.validate(cal, (x, y), metric="top1", metrics="top5", progress=False)
    # this network has 3 classes: top-5 would be 1 for any network
    with pytest.raises(qs.ConfigurationError, match="top-5 accuracy of a network with 3 classes is 1"):
        qs.validate(cal, (x, y), metric="top5", progress=False)


def test_the_board_predicts_from_a_datastore_or_a_file(tiny_calibrated, tmp_path):
    from quantscope.fpga import Workflow

    cal, x = tiny_calibrated
    np.save(tmp_path / "frames.npy", x[:3])
    wf = Workflow(qs.quantize_network(cal, "fpga"), "zcu102_int8", print_fn=lambda line: None)
    from_array, _ = wf.predict(x[:3], profile=False)
    from_file, _ = wf.predict(tmp_path / "frames.npy", profile=False)
    np.testing.assert_array_equal(from_array, from_file)


def test_the_verdict_of_a_first_layer_gives_no_nan():
    import importlib

    import pandas as pd

    V = importlib.import_module("quantscope.validate.validate")
    row = {"Layer": "embedding", "Precision": "int8", "SQNRDrop(dB)": float("nan"), "SQNR(dB)": 37.16}
    row.update({"WeightSQNR(dB)": 37.1, "WeightChannelSpread": 1.0, "Saturated": 0.0, "FlushedToZero": 0.016})
    verdict = V._verdict(pd.DataFrame([row]))
    assert verdict.startswith("embedding costs most: its output is at 37.2 dB") and "nan" not in verdict


def test_the_verdict_names_a_float_layer_that_magnifies_its_input_error():
    """DeBERTa on padded data: the verdict named an embedding costing 9.7 dB while the
    float LayerNorm after it showed a 32.4 dB drop."""
    import importlib

    import pandas as pd

    V = importlib.import_module("quantscope.validate.validate")
    base = {"WeightSQNR(dB)": float("nan"), "WeightChannelSpread": 1.0, "Saturated": 0.0, "FlushedToZero": 0.0}
    rows = [
        {"Layer": "attention.output.LayerNorm", "Precision": "float", "SQNRDrop(dB)": 32.4, "SQNR(dB)": 4.3, **base},
        {"Layer": "word_embeddings", "Precision": "int8", "SQNRDrop(dB)": 9.7, "SQNR(dB)": 37.0, **base},
    ]
    verdict = V._verdict(pd.DataFrame(rows))
    assert verdict.startswith("word_embeddings costs most: it lowers the SQNR by 9.7 dB")
    assert "but the float layer attention.output.LayerNorm lowers the SQNR more, by 32.4 dB" in verdict
    rows[0]["SQNRDrop(dB)"] = 11.0  # within 3 dB of the int8 layer's: not mentioned
    assert "float layer" not in V._verdict(pd.DataFrame(rows))


def _layer_errors_both_ways(monkeypatch, f, q, qp, rounding="half_away"):
    """LayerError.update through the compiled kernel and through numpy."""
    import importlib

    from quantscope._compiled import kernel
    from quantscope.quantize.numerics import Rounding, Saturation

    V = importlib.import_module("quantscope.validate.measure")
    assert kernel("quantscope.validate._numba_diagnostics", "layer_sums") is not None, "numba must load"
    plan = type("Plan", (), {"rounding": Rounding(rounding), "saturation": Saturation.SATURATE})()
    compiled = V.LayerError()
    compiled.update(f, q, qp, plan, V._Scratch(), "conv7")
    with monkeypatch.context() as m:
        m.setenv("QUANTSCOPE_KERNELS", "numpy")
        plain = V.LayerError()
        plain.update(f, q, qp, plan, V._Scratch(), "conv7")
    return compiled, plain


@pytest.mark.parametrize("size", [1, 999, 300_001])
@pytest.mark.parametrize(
    "case",
    ["pow2-int8", "pow2-float", "scale-zero-point-int8", "scale-ties-int8", "no-grid", "per-channel", "no-int8-output"],
)
def test_compiled_diagnostics_equal_the_numpy_path(monkeypatch, case, size):
    """The one-pass kernel counts exactly what the numpy passes count, and its sums are
    the same terms added in another order (equal within 1e-11 relative)."""
    from quantscope.quantize.plan import QParams
    from quantscope.simulate.engine import IntTensor

    rng = np.random.default_rng(size)
    if case.startswith("pow2"):
        qp = QParams.pow2(-4)
    elif case == "per-channel":
        qp = QParams(np.array([0.02, 0.5, 0.1]), np.zeros(3, np.int64), axis=1)
    elif case == "scale-ties-int8":  # ties (k + 1/2) * s exact in float32 and float64
        qp = QParams(np.array(0.25), np.array(-3, np.int64))
    else:
        qp = QParams(np.array(0.0371), np.array(5, np.int64))
    s = float(np.max(qp.scale))
    shape = (size, 3) if case == "per-channel" else (size,)
    f = rng.normal(0, 60 * s, shape).astype(np.float32)
    f.reshape(-1)[: min(size, 40)] = ((np.arange(min(size, 40)) - 20) + 0.5) * s  # ties
    f.reshape(-1)[-1] = 0.0
    if size > 3 and qp.axis is None:  # the edges of saturation, exactly
        z = int(qp.zero_point)
        f.reshape(-1)[-3:-1] = [(qp.qmax - z + 0.5) * s, (qp.qmin - z - 0.5) * s]
    ints = rng.integers(-128, 128, shape).astype(np.int8)
    q = {
        "pow2-int8": IntTensor(ints, qp),
        "pow2-float": ints.astype(np.float64) * s,
        "scale-zero-point-int8": IntTensor(ints, qp),
        "scale-ties-int8": IntTensor(ints, qp),
        "no-grid": ints.astype(np.float32) * 0.1,
        "per-channel": IntTensor(ints, qp),
        "no-int8-output": None,
    }[case]
    grid = None if case == "no-grid" else qp
    for rounding in ("half_away", "half_even"):
        compiled, plain = _layer_errors_both_ways(monkeypatch, f, q, grid, rounding)
        assert (compiled.count, compiled.saturated, compiled.flushed) == (plain.count, plain.saturated, plain.flushed)
        for k in ("signal", "noise", "grid_noise"):
            assert getattr(compiled, k) == pytest.approx(getattr(plain, k), rel=1e-11, abs=0), k
    if size > 1000 and grid is not None and grid.axis is None:  # a per-channel output has no grid sums
        assert compiled.saturated > 0 and compiled.flushed > 0 and compiled.grid_noise > 0  # the data reach both


def test_compiled_diagnostics_leave_infinities_to_the_numpy_path_and_name_nan(monkeypatch):
    """An attention mask's -inf is compared where the output is finite, as by the numpy
    path (the same numbers, exactly); a NaN names the layer."""
    from quantscope.quantize.plan import QParams

    rng = np.random.default_rng(0)
    f = rng.normal(0, 1, 5000).astype(np.float32)
    f[::7] = -np.inf
    q = np.where(np.isfinite(f), f + 0.01, 0.0)
    compiled, plain = _layer_errors_both_ways(monkeypatch, f, q, QParams.pow2(-5))
    assert compiled == plain and math.isfinite(compiled.signal) and compiled.signal > 0
    f[3] = np.nan
    with pytest.raises(qs.NonFiniteActivationError, match="'conv7'"):
        _layer_errors_both_ways(monkeypatch, f, q, QParams.pow2(-5))


def test_top1_and_top5_refuse_outputs_without_one_score_per_class():
    """A (N, tokens, features) output flattened would count positions as classes and
    give a meaningless accuracy; (N, classes, 1, 1), as a global pooling leaves it, is fine."""
    from quantscope.validate.metrics import top1_accuracy, top5_accuracy

    labels = np.array([0, 3, 9, 2])
    scores = np.random.default_rng(0).normal(size=(4, 10))
    for fn in (top1_accuracy, top5_accuracy):
        assert fn(scores[:, :, None, None], labels) == fn(scores, labels)
        with pytest.raises(qs.ConfigurationError, match=r"one score per class .* shape \(4, 17, 64\)"):
            fn(np.zeros((4, 17, 64)), labels)
        with pytest.raises(qs.ConfigurationError, match=r"shape \(4,\)"):
            fn(np.zeros(4), labels)


def test_top1_on_an_output_without_classes_stops_after_the_first_batch(monkeypatch):
    """The class-score check runs on the first batch's output, not after the whole pass."""
    from onnx import helper
    from tinymodels import make_model, tensor

    measure = __import__("importlib").import_module("quantscope.validate.measure")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")]
    w = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    model = make_model(nodes, [tensor("x", ["N", 3, 8])], [tensor("y", ["N", 3, 4])], {"w": w})
    x = np.random.default_rng(1).normal(size=(40, 3, 8)).astype(np.float32)
    cal = qs.calibrate(model, x, progress=False)
    calls = []
    original = measure.BatchValidator.__call__
    monkeypatch.setattr(measure.BatchValidator, "__call__", lambda self, b: calls.append(1) or original(self, b))
    with pytest.raises(qs.ConfigurationError, match=r"one score per class .* shape \(4, 3, 4\)"):
        qs.validate(cal, (x, np.zeros(40, np.int64)), batch_size=4, progress=False)
    assert len(calls) == 1


def test_a_ready_plan_with_options_it_already_fixed_is_refused_not_looped():
    """validate(plan, ..., max_metric_drop=D) used to loop forever when all-int8 missed D:
    the search kept layers in float through keep_float, which a ready plan ignored."""
    from quantscope.quantize import make_plan

    model = small_cnn()
    x = np.random.default_rng(0).uniform(-1, 1, (12, 3, 8, 8)).astype(np.float32)
    cal = qs.calibrate(qs.prepare(model), x[:8], progress=False)
    plan = make_plan(cal, "cpu")
    assert qs.validate(plan, x[8:], progress=False).num_samples == 4  # a plan alone is fine
    for options, named in (
        ({"max_metric_drop": 0.0}, "max_metric_drop"),
        ({"keep_float": ["conv1"]}, "keep_float"),
        ({"range_methods": {"conv1": "mse"}}, "range_methods"),
    ):
        with pytest.raises(qs.ConfigurationError, match=f"ready QuantPlan and {named}: .* pass the Calibration"):
            qs.validate(plan, x[8:], progress=False, **options)


def test_processor_with_the_cpu_target_is_refused_in_python_too():
    model = small_cnn()
    x = np.random.default_rng(1).uniform(-1, 1, (10, 3, 8, 8)).astype(np.float32)
    cal = qs.calibrate(qs.prepare(model), x[:6], progress=False)
    with pytest.raises(qs.ConfigurationError, match=r"power-of-two scheme \(target='fpga'\); drop processor="):
        qs.validate(cal, x[6:], target="cpu", processor="zcu102_int8", progress=False)


def test_the_verdict_never_reads_zero_percent_for_a_share_above_zero():
    from quantscope.validate.validate import _percent

    assert _percent(0.0) == "0.00%" and _percent(3e-7) == "<0.01%" and _percent(0.0153) == "1.53%"


def test_validation_data_scaled_unlike_the_calibration_data_is_warned_of():
    import logging

    class Records(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    net = qs.prepare(small_cnn(seed=1, with_norm=False))
    raw = images(24, seed=4)  # 0..255 pixels
    normalized = ((raw / 255 - 0.45) / 0.25).astype(np.float32)
    # (calibration, validation, the share the warning must show above 25%)
    cases = [(raw, normalized, r"([\d.]+)% round to 0"), (normalized, raw, r"([\d.]+)% of its values lie beyond")]
    for cal_x, val_x, share in [*cases, (normalized, normalized, None)]:
        records, log = Records(), logging.getLogger("quantscope")  # the CLI's tests stop propagation
        log.addHandler(records)
        try:
            qs.validate(qs.calibrate(net, cal_x[:12], progress=False), val_x[12:], progress=False)
        finally:
            log.removeHandler(records)
        warned = [m for m in records.messages if "does not look like its calibration data" in m]
        if share is None:
            assert not warned
        else:
            assert len(warned) == 1 and "pixel_scale" in warned[0], warned
            assert float(re.search(share, warned[0]).group(1)) > 25, warned[0]


def test_a_class_list_whose_length_is_not_the_outputs_is_refused(tmp_path):
    from PIL import Image

    from quantscope.calibrate.images import ImageDatastore

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    net = qs.prepare(small_cnn(seed=1, with_norm=False))
    outputs = net.value_shape(net.output_names[0])[1]
    cal = qs.calibrate(net, images(8, seed=2), progress=False)
    names = [f"class{i}" for i in range(outputs)]
    names[0], names[2] = "dog", "cat"  # 3 outputs
    res = qs.validate(cal, ImageDatastore(tmp_path, class_names=names), progress=False)
    assert sorted(set(res.labels.tolist())) == [0, 2]
    with pytest.raises(qs.ConfigurationError, match=f"class list has {outputs + 2} names and the network {outputs}"):
        qs.validate(cal, ImageDatastore(tmp_path, class_names=[*names, "x", "y"]), progress=False)


def test_two_dimensional_labels_must_be_one_hot_rows_of_the_outputs_width():
    from quantscope.validate.metrics import top1_accuracy

    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    assert top1_accuracy(scores, np.array([[0, 1, 0], [1, 0, 0]])) == 1.0
    assert top1_accuracy(scores, np.array([1, 0])) == 1.0
    for labels, message in [
        (np.zeros((2, 3)), r"sample 0 .* not a one-hot row"),  # argmax made every label class 0
        (np.array([[0.2, 0.7, 0.1], [1, 0, 0]]), r"sample 0 .* not a one-hot row"),  # probabilities
        (np.array([[0, 1], [1, 0]]), "2 columns and the network 3 classes"),
    ]:
        with pytest.raises(qs.ConfigurationError, match=message):
            top1_accuracy(scores, labels)
