"""The int8 network simulator: the fast kernels equal the reference bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from realdata import ccexam_mnist_module, imagenet_inputs, mnist_normalized, mobilenet_v2_module
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.quantize.plan import make_plan
from quantscope.simulate import fast, reference
from quantscope.simulate.engine import IntTensor, Simulator


@pytest.mark.parametrize("seed", range(6))
def test_fast_conv_equals_reference_random(seed):
    rng = np.random.default_rng(seed)
    group = [1, 2, 4][seed % 3]
    c, m = 4 * group, 2 * group
    k = [1, 3, 5][seed % 3]
    x = rng.integers(-128, 128, (3, c, 11, 9)).astype(np.int8)
    w = rng.integers(-128, 128, (m, c // group, k, k)).astype(np.int8)
    b = rng.integers(-(2**20), 2**20, m).astype(np.int32)
    attrs = dict(
        strides=[1 + seed % 2, 2 - seed % 2], pads=[seed % 2, 1, 0, k // 2], dilations=[1, 1 + (seed % 2)], group=group
    )
    zp = (seed % 3) - 1
    np.testing.assert_array_equal(
        fast.conv(x, w, b, x_zero_point=zp, **attrs), reference.conv(x, w, b, x_zero_point=zp, **attrs)
    )
    # depthwise
    wd = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
    np.testing.assert_array_equal(
        fast.conv(x, wd, group=c, pads=[1, 1, 1, 1]), reference.conv(x, wd, group=c, pads=[1, 1, 1, 1])
    )
    a = rng.integers(-128, 128, (5, 37)).astype(np.int8)
    wg = rng.integers(-128, 128, (6, 37)).astype(np.int8)
    np.testing.assert_array_equal(
        fast.gemm(a, wg, b[:6] if m >= 6 else None, trans_b=1),
        reference.gemm(a, wg, b[:6] if m >= 6 else None, trans_b=1),
    )
    np.testing.assert_array_equal(fast.matmul(a, wg.T, a_zero_point=3), reference.matmul(a, wg.T, a_zero_point=3))


@pytest.mark.parametrize("target", ["fpga", "cpu"])
def test_small_cnn_fast_equals_reference(target):
    net = qs.prepare(small_cnn(seed=2, with_bn=True, with_dropout=True))
    x = images(40, seed=5)
    cal = qs.calibrate(net, x, progress=False)
    plan = make_plan(cal, target)
    out_fast, layers_fast = Simulator(plan, "fast").run(x, collect=True)
    out_ref, layers_ref = Simulator(plan, "reference").run(x, collect=True)
    np.testing.assert_array_equal(out_fast, out_ref)
    for name, value in layers_ref.items():
        other = layers_fast[name]
        if isinstance(value, IntTensor):
            np.testing.assert_array_equal(other.q, value.q, err_msg=name)
            assert value.q.dtype == np.int8
    assert set(plan.float_layers) == {"prob"}
    # the integer network approximates the float one
    assert np.mean(out_fast.argmax(1) == _float_run(net, x).argmax(1)) > 0.8


def _float_run(net, x):
    import onnxruntime as ort

    s = ort.InferenceSession(net.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {net.input_name: x})[0]


@pytest.mark.parametrize("target", ["fpga", "cpu"])
def test_mnist_cnn_fast_equals_reference_on_100_digits(target):
    torch = pytest.importorskip("torch")
    module, _ = ccexam_mnist_module()
    net = qs.prepare(module, example_input=torch.zeros(1, 1, 28, 28))
    x, _ = mnist_normalized(1100)
    cal = qs.calibrate(net, x[:1000], progress=False)
    plan = make_plan(cal, target)
    fast_out, _ = Simulator(plan, "fast").run(x[1000:])
    ref_out, _ = Simulator(plan, "reference").run(x[1000:])
    np.testing.assert_array_equal(fast_out, ref_out)


def test_mobilenet_v2_fast_equals_reference_on_100_photos():
    torch = pytest.importorskip("torch")
    net = qs.prepare(mobilenet_v2_module(), example_input=torch.zeros(1, 3, 224, 224))
    x = imagenet_inputs(100)
    cal = qs.calibrate(net, x[:22], progress=False)
    plan = make_plan(cal, "fpga")
    kinds = {layer.kind for layer in net.layers}
    assert {"conv", "fc", "Add", "GlobalAveragePool"} <= kinds
    for start in range(0, 100, 25):
        a, _ = Simulator(plan, "fast").run(x[start : start + 25])
        b, _ = Simulator(plan, "reference").run(x[start : start + 25])
        np.testing.assert_array_equal(a, b)


def test_add_with_a_constant_runs_in_float_and_is_quantized():
    from onnx import helper
    from tinymodels import make_model, tensor

    rng = np.random.default_rng(0)
    init = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "c": rng.standard_normal((1, 4, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "c"], ["b"], name="add_const"),
        helper.make_node("Add", ["b", "a"], ["y"], name="add_two"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 5, 5])], [tensor("y", ["N", 4, 5, 5])], init)
    x = rng.standard_normal((6, 3, 5, 5)).astype(np.float32)
    cal = qs.calibrate(model, x, progress=False)
    plan = make_plan(cal, "fpga")
    out, layers = Simulator(plan, "reference").run(x, collect=True)
    fast_out, _ = Simulator(plan, "fast").run(x)
    np.testing.assert_array_equal(out, fast_out)
    assert isinstance(layers["add_const"], IntTensor) and isinstance(layers["add_two"], IntTensor)
    float_out = _float_run(qs.prepare(model), x)
    assert np.abs(out - float_out).max() < 0.1 * np.abs(float_out).max()


@pytest.mark.parametrize("target", ["fpga", "cpu"])
def test_average_pools_round_once_to_the_output_grid(target):
    """GlobalAveragePool / AveragePool: the int8 output is the window mean of the
    input's real values rounded once onto the output's own grid (eq. (6d)), as
    onnxruntime's QLinear pools do, not rounded to the input's grid first."""
    from fractions import Fraction

    from onnx import helper
    from tinymodels import make_model, tensor

    from quantscope.quantize.numerics import Rounding

    rng = np.random.default_rng(3)
    init = {"w": (rng.standard_normal((6, 3, 3, 3)) * 0.4).astype(np.float32), "b": np.zeros(6, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node(
            "AveragePool", ["r"], ["a"], name="avg", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("GlobalAveragePool", ["a"], ["y"], name="gap"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 6, 1, 1])], init)
    net = qs.prepare(model)
    x = images(6, seed=2)
    plan = make_plan(qs.calibrate(net, x, progress=False), target)
    if target == "fpga":  # a grid 4x finer than the input's, as a narrower calibrated range gives
        from quantscope.quantize import QParams

        gap_out = net.layer("gap").output
        plan.activations[gap_out] = QParams.pow2(plan.activations[net.layer("avg").output].exponent - 2, 8)
    _, layers = Simulator(plan, "reference").run(x, collect=True)
    _, fast_layers = Simulator(plan, "fast").run(x, collect=True)
    src, out = layers["avg"], layers["gap"]
    np.testing.assert_array_equal(out.q, fast_layers["gap"].q)
    assert not src.qp.same_as(out.qp)  # its own range: a finer grid than its input's
    xs = src.q.astype(np.int64) - int(src.qp.zero_point)
    for (i, c), qy in np.ndenumerate(out.q[:, :, 0, 0]):
        mean = Fraction(int(xs[i, c].sum()), xs[i, c].size)
        if target == "fpga":
            exact = mean * Fraction(2) ** (src.qp.exponent - out.qp.exponent)
        else:
            exact = mean * Fraction(float(src.qp.scale)) / Fraction(float(out.qp.scale))
        floor = exact.numerator // exact.denominator
        frac = exact - floor
        rounding = plan.rounding
        if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and (rounding is Rounding.HALF_AWAY or floor % 2)):
            floor += 1
        expected = int(np.clip(floor + int(out.qp.zero_point), -128, 127))
        assert int(qy) == expected, (i, c, qy, expected)


def test_every_int8_family_of_the_op_table_has_a_handler():
    from quantscope.ops import OPS
    from quantscope.simulate.engine import _INT_HANDLERS

    assert {i.int8 for i in OPS.values() if i.int8 is not None} | {"matmul", "embedding"} == set(_INT_HANDLERS)


def test_a_float_layer_taking_one_tensor_twice_runs():
    """torch writes x * x as Mul(x, x) (and LRN at opset 9 does): the float layer's
    sub-model must take that input once."""
    from onnx import helper
    from tinymodels import make_model, tensor

    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("Mul", ["r", "r"], ["sq"], name="square"),
        helper.make_node("GlobalAveragePool", ["sq"], ["y"], name="gap"),
    ]
    net = qs.prepare(make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 1, 1])], {"w": w}))
    x = images(6, seed=1)
    cal = qs.calibrate(net, x, progress=False)
    for target in ("fpga", "cpu"):
        out = qs.quantize_network(cal, target).predict(x)
        assert out.shape == (6, 4, 1, 1) and np.isfinite(out).all()
        assert qs.validate(cal, x, target=target, progress=False).num_samples == 6
