"""GPTQ weight rounding (docs/accuracy.md (8)-(10), ``simulate/gptq.py``): the blocked
pass against the column-by-column reference, each layer's H against its convolution run
by onnxruntime, and the option through the API and the command line."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from test_accuracy import depthwise_net
from tinymodels import make_model, tensor

import quantscope as qs
from quantscope.cli import main
from quantscope.quantize import make_plan
from quantscope.quantize.numerics import Rounding, round_values
from quantscope.simulate import compensate_weights
from quantscope.simulate.gptq import _error, _form, _hessians, gptq_rows, gptq_rows_reference


def _spd(rng, groups: int, k: int, dead: int | None = None) -> np.ndarray:
    """Correlated positive semi-definite H (G, K, K), as neighbouring pixels give."""
    base = rng.standard_normal((groups, 4 * k, k))
    base = np.cumsum(base, axis=2) / np.sqrt(np.arange(1, k + 1))  # correlated columns
    if dead is not None:
        base[:, :, dead] = 0.0  # an input that is 0 on every sample
    return np.matmul(base.transpose(0, 2, 1), base) / (4 * k)


@pytest.mark.parametrize(
    ("groups", "rows", "k", "bounds", "rounding"),
    [
        (1, 6, 300, (-127, 127), Rounding.HALF_EVEN),  # three blocks of columns
        (5, 1, 9, (-128, 127), Rounding.HALF_AWAY),  # a depthwise 3x3 layer
        (3, 4, 20, (-4, 3), Rounding.HALF_EVEN),  # a narrow grid: GPTQ's updates saturate
    ],
)
def test_blocked_gptq_equals_the_reference_and_lowers_the_output_error(groups, rows, k, bounds, rounding):
    rng = np.random.default_rng(k)
    w = rng.standard_normal((groups, rows, k))
    h = _spd(rng, groups, k, dead=k // 2)
    scale = np.abs(w).max(axis=2) / bounds[1]
    scale[0, 0] *= 4.0  # one row with another step
    q = gptq_rows(w, h, scale, *bounds, rounding)
    np.testing.assert_array_equal(q, gptq_rows_reference(w, h, scale, *bounds, rounding))
    assert q.min() >= bounds[0] and q.max() <= bounds[1] and np.array_equal(q, np.round(q))
    nearest = np.clip(round_values(w / scale[:, :, None], rounding), *bounds)
    assert not np.array_equal(q, nearest)
    assert _error(w, q, scale, h) < 0.8 * _error(w, nearest, scale, h)
    # the dead input's weight rounds alone, to its nearest integer
    np.testing.assert_array_equal(q[:, :, k // 2], nearest[:, :, k // 2])


# ----------------------------------------------------------------------------- each layer's H


def _one_layer(node: onnx.NodeProto, x_shape, w, b=None) -> onnx.ModelProto:
    init = {"w": w.astype(np.float32)}
    if b is not None:
        init["b"] = b.astype(np.float32)
    y = tensor("y", ["N", "c", "h", "w"][: len(x_shape)])
    return make_model([node], [tensor("x", ["N", *x_shape[1:]])], [y], init, name="one")


CONVS = [
    ("pads, stride, dilation", dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[2, 3]), (4, 4, 3, 3), 1),
    ("groups", dict(pads=[1, 1, 1, 1], group=2), (6, 2, 3, 3), 1),
    ("depthwise, stride 2", dict(pads=[1, 1, 1, 1], strides=[2, 2], group=4), (4, 1, 3, 3), 1),
    ("SAME_UPPER", dict(auto_pad="SAME_UPPER", strides=[2, 2]), (3, 4, 4, 4), 1),
    ("SAME_LOWER", dict(auto_pad="SAME_LOWER", strides=[2, 2]), (3, 4, 4, 4), 1),
    ("VALID", dict(auto_pad="VALID"), (3, 4, 2, 3), 1),
]


@pytest.mark.parametrize(("case", "attrs", "w_shape", "_"), CONVS, ids=[c[0] for c in CONVS])
def test_each_convolutions_h_gives_its_output_energy(case, attrs, w_shape, _):
    """v H v^T summed over rows is the mean over output positions of sum_o (conv(x, v))^2,
    for any weights v: the patches are the convolution's own."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 11, 9)).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **attrs)
    model = _one_layer(node, x.shape, w, w[:, 0, 0, 0])
    _check_energy(model, x, w)


def test_a_1d_convolution_and_fc_layers_hs_give_their_output_energy():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 13)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[2, 1], strides=[2], dilations=[2])
    _check_energy(_one_layer(node, x.shape, w, w[:, 0, 0]), x, w)
    x = rng.standard_normal((6, 7)).astype(np.float32)
    for trans_b, w in ((1, rng.standard_normal((5, 7))), (0, rng.standard_normal((7, 5)))):
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=trans_b)
        _check_energy(_one_layer(node, x.shape, w, np.ones(5)), x, w.astype(np.float32))
    x = rng.standard_normal((2, 3, 7)).astype(np.float32)  # a transformer's (N, T, K) input
    w = rng.standard_normal((7, 5)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
            helper.make_node("Add", ["m", "b"], ["y"], name="add"),
        ],
        [tensor("x", ["N", 3, 7])],
        [tensor("y", ["N", 3, 5])],
        {"w": w, "b": np.ones(5, np.float32)},
        name="mm",
    )
    _check_energy(model, x, w)


def _check_energy(model: onnx.ModelProto, x: np.ndarray, w: np.ndarray) -> None:
    net = qs.prepare(model)
    (layer,) = [layer for layer in net.layers if layer.kind in ("conv", "fc")]
    form = _form(net, layer)
    h = _hessians(net, {layer.name: form}, x, batch_size=2)[layer.name]
    rng = np.random.default_rng(9)
    v = rng.standard_normal(w.shape).astype(np.float32)
    # the same layer with weights v and no bias, run by onnxruntime
    probe = onnx.ModelProto()
    probe.CopyFrom(net.to_proto())
    for init in probe.graph.initializer:
        if init.name == layer.weight:
            init.CopyFrom(onnx.numpy_helper.from_array(v, init.name))
        elif init.name == layer.bias:
            zeros = np.zeros(onnx.numpy_helper.to_array(init).shape, np.float32)
            init.CopyFrom(onnx.numpy_helper.from_array(zeros, init.name))
    y = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    axis = 1 if layer.op_types[0] == "Conv" else y.ndim - 1
    positions = y.size // y.shape[axis]
    energy = float(np.sum(y.astype(np.float64) ** 2)) / positions
    rows = form.rows(v.astype(np.float64))
    predicted = float(np.einsum("grk,gkl,grl->", rows, h, rows))
    assert predicted == pytest.approx(energy, rel=1e-4)
    assert np.array_equal(form.unrows(rows, v.shape), v)


# ----------------------------------------------------------------------------- a network


def _smooth(n: int, seed: int) -> np.ndarray:
    """Images whose neighbouring pixels correlate, as photos' do (8x8, 3 channels)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-3, 3, (n, 3, 3, 3))
    return np.kron(coarse, np.ones((1, 1, 3, 3)))[:, :, :8, :8].astype(np.float32) + rng.normal(
        0, 0.2, (n, 3, 8, 8)
    ).astype(np.float32)


def test_gptq_on_a_network_keeps_the_grids_and_lowers_the_weights_error_on_other_data():
    net = qs.prepare(depthwise_net())
    cal_x, test_x = _smooth(48, 1), _smooth(48, 2)
    for target in ("cpu", "fpga"):
        plan = make_plan(qs.calibrate(net, cal_x, progress=False), target)
        done = compensate_weights(plan, cal_x)
        assert plan.weight_rounding == {}  # the plan given is left alone
        layers = [la.name for la in net.layers if la.kind in ("conv", "fc")]
        assert sorted(done.weight_rounding) == sorted(layers)
        assert all(gain >= 0 for gain in done.weight_rounding.values())
        assert sum(gain > 0 for gain in done.weight_rounding.values()) >= 4
        for name in layers:
            (q0, qp0), (q1, qp1) = plan.weights[name], done.weights[name]
            assert qp1 is qp0 and q1.dtype == q0.dtype and q1.shape == q0.shape
            assert np.abs(q1).max() <= (127 if target == "cpu" else 128)
        # on data GPTQ never saw, the network with only its weights quantized is closer to float
        reference = _float(net, test_x, {})
        nearest = _float(net, test_x, {n: plan.weights[n] for n in layers})
        rounded = _float(net, test_x, {n: done.weights[n] for n in layers})
        assert np.sum((rounded - reference) ** 2) < 0.9 * np.sum((nearest - reference) ** 2), target
        again = compensate_weights(plan, cal_x)
        assert all(np.array_equal(again.weights[n][0], done.weights[n][0]) for n in layers)  # deterministic


def _float(net, x, weights) -> np.ndarray:
    proto = net.to_proto()
    for init in proto.graph.initializer:
        for name, (q, qp) in weights.items():
            if init.name == net.layer(name).weight:
                init.CopyFrom(onnx.numpy_helper.from_array(qp.dequantize(q).astype(np.float32), init.name))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {net.input_name: x})[0].astype(np.float64)


def test_gptq_through_validate_and_quantize_network():
    net = qs.prepare(depthwise_net())
    cal_x, val_x = _smooth(32, 3), _smooth(16, 4)
    cal = qs.calibrate(net, cal_x, progress=False)
    res = qs.validate(cal, val_x, target="cpu", gptq=cal_x, bias_correction=cal_x, progress=False)
    assert res.plan.weight_rounding and res.plan.bias_corrections
    qnet = qs.quantize_network(cal, "cpu", gptq=cal_x, bias_correction=cal_x)
    for name in res.plan.weights:
        assert np.array_equal(qnet.plan.weights[name][0], res.plan.weights[name][0])
    table = qnet.layers.set_index("Layer")
    assert table.loc["dw1_relu1", "RoundingGain(dB)"] == res.plan.weight_rounding["dw1_relu1"]
    assert np.isnan(table.loc["gap", "RoundingGain(dB)"])
    for call in (
        lambda: qs.validate(cal, val_x, gptq=True, progress=False),
        lambda: qs.quantize_network(cal, "fpga", gptq=True),
    ):
        with pytest.raises(qs.ConfigurationError, match=r"gptq=calibration_data"):
            call()


def test_cli_gptq(tmp_path, capsys):
    model = tmp_path / "dw.onnx"
    onnx.save(depthwise_net(), model)
    cal, val = tmp_path / "cal.npz", tmp_path / "val.npz"
    np.savez(cal, x=_smooth(24, 5))
    np.savez(val, x=_smooth(12, 6))
    argv = ["validate", str(model), "--calibration", str(cal), "--validation", str(val), "--quiet", "--gptq"]
    assert main([*argv, "--target", "cpu", "--bias-correction"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "GPTQ: " in out and " of 6 layer(s) rounded against their calibration inputs" in out
    onnx_out = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "--calibration", str(cal), "-o", str(onnx_out), "--quiet", "--gptq"]) == 0
    assert "GPTQ: " in capsys.readouterr().out
    ranges = tmp_path / "r.json"
    assert main(["calibrate", str(model), str(cal), "--out", str(ranges), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["validate", str(model), "--ranges", str(ranges), "--validation", str(val), "--gptq"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--gptq rounds the weights against each layer's inputs" in err and "instead of --ranges" in err
    assert "Traceback" not in err


def test_the_float_fallback_rounds_each_layer_once(monkeypatch):
    """--max-drop validates plan after plan: GPTQ measures each layer's H once for the
    whole search, and the result equals GPTQ on the final set given at once."""
    from test_accuracy import sensitive_net

    from quantscope.simulate import gptq

    model, x = sensitive_net()
    cal = qs.calibrate(qs.prepare(model), x[:48], progress=False)
    measured, real = [], gptq._hessians

    def counted(network, forms, *args, **kwargs):
        measured.extend(forms)
        return real(network, forms, *args, **kwargs)

    monkeypatch.setattr(gptq, "_hessians", counted)
    result = qs.validate(cal, x[48:], target="cpu", max_metric_drop=0.005, gptq=x[:48], progress=False)
    assert len(result.fallback.steps) >= 2 and sorted(measured) == sorted(set(measured))
    again = qs.validate(cal, x[48:], target="cpu", keep_float=result.fallback.keep_float, gptq=x[:48], progress=False)
    assert np.array_equal(again.int8_scores, result.int8_scores)


def test_what_gptq_did_is_in_the_saved_parameters(tmp_path):
    import json

    net = qs.prepare(depthwise_net())
    cal_x = _smooth(24, 7)
    cal = qs.calibrate(net, cal_x, progress=False)
    _, saved = qs.quantize_network(cal, "cpu", gptq=cal_x, bias_correction=cal_x).save(tmp_path / "q.onnx")
    params = json.loads(saved.read_text())
    assert sorted(params["gptq_gain_db"]) == sorted(la.name for la in net.layers if la.kind in ("conv", "fc"))
    assert params["bias_correction_max_shift"] and all(v >= 0 for v in params["bias_correction_max_shift"].values())
    _, plain = qs.quantize_network(cal, "cpu").save(tmp_path / "p.onnx")
    assert json.loads(plain.read_text())["gptq_gain_db"] == {}
