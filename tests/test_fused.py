"""The fused onnxruntime kernels of the fast path (``simulate.fast.FusedLayer``,
``fast.max_pool``) equal the reference integer arithmetic bit for bit, ties included,
and refuse the cases where float32 would not be exact."""

from __future__ import annotations

import numpy as np
import pytest
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.quantize.numerics import FloatScale, PowerOfTwo, Rounding, Saturation, requantize_pow2, requantize_scale
from quantscope.quantize.plan import make_plan
from quantscope.simulate import fast, reference
from quantscope.simulate.engine import IntTensor, Simulator

ROUNDINGS = list(Rounding)


def _expected_conv(x, w, b, attrs, shift, rounding, lo, hi):
    acc = reference.conv(x, w, b, **attrs)
    q = requantize_pow2(acc, 0, shift, 8, rounding, Saturation.SATURATE)
    return np.clip(q, lo, hi).astype(np.int8)


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("shift", [-2, 0, 1, 3, 9])
@pytest.mark.parametrize("bounds", [(-128, 127), (0, 127), (0, 37), (-5, 60), (3, 3)])
def test_fused_conv_equals_reference(rounding, shift, bounds):
    rng = np.random.default_rng(abs(shift) * 31 + bounds[1])
    lo, hi = bounds
    # small weights make exact ties (odd multiples of 2**(shift-1)) frequent
    x = rng.integers(-128, 128, (2, 6, 9, 8)).astype(np.int8)
    w = rng.integers(-2, 3, (4, 3, 3, 3)).astype(np.int8)
    b = rng.integers(-300, 300, 4).astype(np.int32)
    attrs = dict(group=2, pads=[1, 0, 1, 2], strides=[2, 1], dilations=[1, 2])
    kernel = fast.FusedLayer.conv(w, b, dict(attrs, kernel_shape=[3, 3]), np.int8, shift, rounding, lo, hi)
    assert kernel is not None
    got = kernel(x)
    want = _expected_conv(x, w, b, attrs, shift, rounding, lo, hi)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, want)
    if 1 <= shift <= 3:  # the case the tie-breaking is for really occurs
        acc = reference.conv(x, w, b, **attrs)
        assert np.any(acc % (1 << shift) == (1 << (shift - 1)))


def test_fused_conv_depthwise_and_large_weights():
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (3, 16, 12, 12)).astype(np.int8)
    w = rng.integers(-128, 128, (16, 1, 3, 3)).astype(np.int8)
    b = rng.integers(-(2**14), 2**14, 16).astype(np.int32)
    for rounding in ROUNDINGS:
        attrs = dict(group=16, pads=[1, 1, 1, 1], strides=[2, 2])
        kernel = fast.FusedLayer.conv(w, b, dict(attrs, kernel_shape=[3, 3]), np.int8, 7, rounding, -128, 127)
        np.testing.assert_array_equal(kernel(x), _expected_conv(x, w, b, attrs, 7, rounding, -128, 127))


def test_fused_conv_refuses_what_float32_cannot_hold_exactly():
    rng = np.random.default_rng(1)
    # 128 * sum|w| = 128 * 520 * 127 >= 2**23: a partial sum could need more than 23 bits
    w = np.full((2, 520, 1, 1), 127, np.int8)
    assert fast.FusedLayer.conv(w, None, {}, np.int8, 8, Rounding.HALF_AWAY, -128, 127) is None
    # a bias that large, too
    w = rng.integers(-3, 4, (2, 8, 1, 1)).astype(np.int8)
    assert (
        fast.FusedLayer.conv(w, np.array([2**23, 0], np.int32), {}, np.int8, 8, Rounding.HALF_AWAY, -128, 127) is None
    )
    # 16-bit inputs widen the bound: 32768 * 9 * 32 >= 2**23
    w = np.full((1, 1, 3, 3), 32, np.int8)
    assert fast.FusedLayer.conv(w, None, {}, np.int16, 8, Rounding.HALF_AWAY, -128, 127) is None
    assert fast.FusedLayer.conv(w, None, {}, np.int8, 8, Rounding.HALF_AWAY, -128, 127) is not None


@pytest.fixture(params=["compiled", "numpy"])
def scale_kernels(request, monkeypatch):
    """Both float-scale Conv kernels: the compiled requantization (fast.ScaleConv) and,
    with QUANTSCOPE_KERNELS=numpy, the all-onnxruntime graph."""
    if request.param == "numpy":
        monkeypatch.setenv("QUANTSCOPE_KERNELS", "numpy")
    return fast.ScaleConv if request.param == "compiled" else fast.FusedLayer


@pytest.mark.parametrize("rounding", [Rounding.HALF_EVEN, Rounding.FLOOR])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bounds", [(-128, 127), (-90, 127), (-128, 40)])
def test_fused_float_scale_conv_equals_reference(rounding, per_channel, bounds, scale_kernels):
    rng = np.random.default_rng(300 + per_channel + bounds[0])
    lo, hi = bounds
    x = rng.integers(-128, 128, (2, 4, 7, 6)).astype(np.int8)
    w = rng.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8)
    b = rng.integers(-5000, 5000, 6).astype(np.int32)
    zx, z = -128, 7
    m = rng.uniform(1e-4, 4e-3, 6) if per_channel else np.float64(1.7e-3)
    attrs = dict(pads=[1, 1, 0, 0], strides=[1, 2])
    kernel = fast.FusedLayer.conv_scale(w, 0, b, dict(attrs, kernel_shape=[3, 3]), np.int8, zx, m, z, rounding, lo, hi)
    assert isinstance(kernel, scale_kernels)
    acc = reference.conv(x, w, b, x_zero_point=zx, **attrs)
    q = requantize_scale(acc, m, z, 8, rounding, Saturation.SATURATE, axis=1 if per_channel else None)
    np.testing.assert_array_equal(kernel(x), np.clip(q, lo, hi).astype(np.int8))
    # ties of the half-even rounding occur: multiplier 1/2 on odd accumulators
    kernel = fast.FusedLayer.conv_scale(
        w, 0, b, dict(attrs, kernel_shape=[3, 3]), np.int8, zx, 0.5, 0, rounding, -128, 127
    )
    q = requantize_scale(acc, 0.5, 0, 8, rounding, Saturation.SATURATE)
    assert np.any(acc % 2 == 1)
    np.testing.assert_array_equal(kernel(x), q)


def test_compiled_float_scale_conv_exact_at_its_bound():
    """The compiled kernel where only it applies (raw partial sums just below 2**23,
    zero point -128): every input at an extreme, so the sums reach the bound."""
    rng = np.random.default_rng(7)
    w = rng.choice(np.array([-127, 127], np.int8), (3, 500, 1, 1))
    w[:, -14:] = 0  # 128 * 486 * 127 = 7,900,416 < 2**23
    x = rng.choice(np.array([-128, 127], np.int8), (2, 500, 3, 3))
    x[:, :, 0, 0] = np.where(w[0, :, 0, 0] > 0, -128, 127)  # channel 0's most negative sum
    m = np.array([1e-4, 3e-5, 7e-6])
    kernel = fast.FusedLayer.conv_scale(
        w, 0, None, {"kernel_shape": [1, 1]}, np.int8, -128, m, 5, Rounding.HALF_EVEN, -128, 127
    )
    assert isinstance(kernel, fast.ScaleConv)
    acc = reference.conv(x, w, None, x_zero_point=-128)
    expected = requantize_scale(acc, m, 5, 8, Rounding.HALF_EVEN, Saturation.SATURATE, axis=1)
    np.testing.assert_array_equal(kernel(x), expected)


@pytest.mark.parametrize(
    "x_dtype, zx, attrs, shape",
    [
        # depthwise 3x3, stride 2, padding on every side: the zero point's border map
        (np.int8, -128, dict(group=6, pads=[1, 1, 1, 1], strides=[2, 2]), (6, 1, 3, 3)),
        # dilated, asymmetric padding, uint8 inputs with a zero point
        (np.uint8, 131, dict(pads=[2, 0, 1, 3], dilations=[2, 1]), (5, 6, 3, 2)),
        # 1x1 without padding: the zero point is the same everywhere, folded into the bias
        (np.uint8, 97, dict(), (7, 6, 1, 1)),
        # the same with zero point 0, and the ONNX auto_pad form
        (np.int8, 0, dict(auto_pad="SAME_UPPER", strides=[2, 2]), (4, 6, 3, 3)),
    ],
)
def test_float_scale_conv_kernels_agree(x_dtype, zx, attrs, shape, scale_kernels):
    """Both float-scale kernels give the reference's integers on convolutions with padding
    (where the input's zero point is not the same at every output position), groups,
    dilations and uint8 inputs; twice, so the reused accumulator buffer and the cached
    border map of the first call change nothing; and on another image size."""
    rng = np.random.default_rng(sum(shape) + abs(zx))
    info = np.iinfo(x_dtype)
    w = rng.integers(-127, 128, shape).astype(np.int8)
    b = rng.integers(-20000, 20000, shape[0]).astype(np.int32)
    m = rng.uniform(2e-5, 1e-3, shape[0])
    attrs = dict(attrs, kernel_shape=list(shape[2:]))
    kernel = fast.FusedLayer.conv_scale(w, 0, b, attrs, x_dtype, zx, m, -3, Rounding.HALF_EVEN, -128, 127)
    assert isinstance(kernel, scale_kernels)
    for size in [(9, 11), (9, 11), (6, 7)]:
        x = rng.integers(info.min, int(info.max) + 1, (3, 6, *size)).astype(x_dtype)
        acc = reference.conv(x, w, b, x_zero_point=zx, **attrs)
        expected = requantize_scale(acc, m, -3, 8, Rounding.HALF_EVEN, Saturation.SATURATE, axis=1)
        np.testing.assert_array_equal(kernel(x), expected)


def test_fused_float_scale_conv_refuses_other_roundings_and_large_sums(scale_kernels):
    w = np.ones((2, 3, 1, 1), np.int8)
    for rounding in (Rounding.HALF_AWAY, Rounding.ZERO):
        assert fast.FusedLayer.conv_scale(w, 0, None, {}, np.int8, 0, 0.01, 0, rounding, -128, 127) is None
    # the graph sums x - zx (up to 255 for int8): 255 * 300 * 127 >= 2**23; the compiled
    # kernel sums the raw x (up to 128): 128 * 300 * 127 < 2**23, but 128 * 600 * 127 is not
    w = np.full((2, 300, 1, 1), 127, np.int8)
    kernel = fast.FusedLayer.conv_scale(w, 0, None, {}, np.int8, -128, 0.01, 0, Rounding.HALF_EVEN, -128, 127)
    assert isinstance(kernel, fast.ScaleConv) if scale_kernels is fast.ScaleConv else kernel is None
    w2 = np.full((2, 600, 1, 1), 127, np.int8)
    assert fast.FusedLayer.conv_scale(w2, 0, None, {}, np.int8, -128, 0.01, 0, Rounding.HALF_EVEN, -128, 127) is None
    assert (
        fast.FusedLayer.conv_scale(w[:, :200], 0, None, {}, np.int8, 0, 0.01, 0, Rounding.HALF_EVEN, -128, 127)
        is not None
    )
    # a bias that could take the int32 accumulator out of range: the exact kernel decides
    big = np.array([2**31 - 1000, 0], np.int64)
    assert (
        fast.FusedLayer.conv_scale(w[:, :200], 0, big, {}, np.int8, 0, 0.01, 0, Rounding.HALF_EVEN, -128, 127) is None
    )


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("exponents", [(-7, -7, -6), (-7, -5, -6), (-3, -9, -8), (-6, -6, -8), (-4, -2, -1)])
def test_fused_add_equals_reference(rounding, exponents):
    rng = np.random.default_rng(sum(exponents) + 50)
    a = rng.integers(-128, 128, (3, 5, 4, 4)).astype(np.int8)
    b = rng.integers(-128, 128, (3, 5, 4, 4)).astype(np.int8)
    kernel = fast.FusedLayer.add(np.int8, np.int8, *exponents, rounding, -128, 127)
    assert kernel is not None
    want = reference.add(a, b, *exponents, rounding=rounding)
    np.testing.assert_array_equal(kernel(a, b), want)
    # broadcasting, as numpy and ONNX do
    np.testing.assert_array_equal(kernel(a, b[:1]), reference.add(a, b[:1], *exponents, rounding=rounding))


def test_fused_add_refuses_exponents_too_far_apart():
    assert fast.FusedLayer.add(np.int8, np.int8, 0, -16, -8, Rounding.HALF_AWAY, -128, 127) is None
    assert fast.FusedLayer.add(np.int8, np.int8, 0, -14, -8, Rounding.HALF_AWAY, -128, 127) is not None


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("exponents", [(-7, -6), (-6, -7), (-3, -9), (-9, -2), (0, 20), (5, -30)])
@pytest.mark.parametrize("bits", [8, 4])
def test_fused_requantize_equals_reference(rounding, exponents, bits):
    from quantscope.quantize.numerics import int_range

    lo, hi = int_range(bits, True)
    for dtype, (low, high) in ((np.int8, (-128, 128)), (np.uint8, (0, 256))):
        q = np.arange(low, high).astype(dtype).reshape(2, -1, 4)
        kernel = fast.FusedLayer.requantize(dtype, *exponents, rounding, lo, hi)
        assert kernel is not None
        want = requantize_pow2(q, *exponents, bits, rounding, Saturation.SATURATE)
        got = kernel(q)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert fast.FusedLayer.requantize(np.int16, 0, 1, rounding, lo, hi) is None


def test_fast_engine_requantizes_a_concat_in_a_graph():
    """Concat inputs at other exponents than the output's are moved by the fused graph,
    with the reference's integers."""
    from quantscope.quantize.plan import QParams

    net = qs.prepare(small_cnn(seed=4, with_bn=True))
    cal = qs.calibrate(net, images(8, seed=9), progress=False)
    for rounding in ROUNDINGS:
        plan = make_plan(cal, PowerOfTwo(rounding=rounding))
        fast_engine, ref_engine = Simulator(plan, "fast"), Simulator(plan, "reference")
        q = np.random.default_rng(1).integers(-128, 128, (2, 3, 5, 5)).astype(np.int8)
        for e_in, e_out in ((-5, -3), (-3, -5), (-4, -4)):
            t = IntTensor(q, QParams.pow2(e_in))
            got, want = fast_engine.requantize(t, QParams.pow2(e_out)), ref_engine.requantize(t, QParams.pow2(e_out))
            assert got.qp.same_as(want.qp)
            np.testing.assert_array_equal(got.q, want.q)
        assert any(k.startswith("requantize|") and v[0] is not None for k, v in fast_engine._fused.items())


@pytest.mark.parametrize(
    "attrs",
    [
        dict(kernel_shape=[3, 3], strides=[2, 2]),
        dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        dict(kernel_shape=[2, 3], pads=[1, 0, 1, 2], dilations=[2, 1]),
        dict(kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
    ],
)
def test_fast_max_pool_equals_reference(attrs):
    rng = np.random.default_rng(3)
    for dtype, (low, high) in ((np.int8, (-128, 128)), (np.uint8, (0, 256))):
        x = rng.integers(low, high, (2, 3, 11, 10)).astype(dtype)
        got = fast.max_pool(x, **attrs)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, reference.max_pool(x, **attrs))


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_simulator_fast_equals_reference_for_every_rounding(rounding):
    net = qs.prepare(small_cnn(seed=4, with_bn=True))
    x = images(24, seed=9)
    cal = qs.calibrate(net, x, progress=False)
    _assert_fused_equals_reference(make_plan(cal, PowerOfTwo(rounding=rounding)), x)


def _assert_fused_equals_reference(plan, x):
    """Every layer's integers of the fast simulator equal the reference's, and some
    layers did take a fused onnxruntime graph."""
    sim = Simulator(plan, "fast")
    out_fast, layers_fast = sim.run(x, collect=True)
    out_ref, layers_ref = Simulator(plan, "reference").run(x, collect=True)
    np.testing.assert_array_equal(out_fast, out_ref)
    for name, value in layers_ref.items():
        if isinstance(value, IntTensor):
            np.testing.assert_array_equal(layers_fast[name].q, value.q, err_msg=name)
    assert any(kernel is not None for kernel, _ in sim._fused.values())
    return sim


@pytest.mark.parametrize(
    "scheme",
    [FloatScale(), FloatScale(per_channel=True), FloatScale(reduce_range=True), FloatScale(rounding=Rounding.FLOOR)],
)
def test_simulator_fast_equals_reference_for_float_scales(scheme, scale_kernels):
    net = qs.prepare(small_cnn(seed=6, with_bn=True))
    x = images(24, seed=3)
    cal = qs.calibrate(net, x, progress=False)
    sim = _assert_fused_equals_reference(make_plan(cal, scheme), x)
    assert any(isinstance(kernel, scale_kernels) for kernel, _ in sim._fused.values())
    assert not hasattr(fast._SCRATCH, "buf")  # the accumulator buffer is freed after each batch


@pytest.fixture(params=["compiled", "numpy"])
def quantize_pass(request, monkeypatch):
    """Both passes of fast.quantize_pow2: the compiled one (loaded first) and numpy's."""
    if request.param == "numpy":
        monkeypatch.setenv("QUANTSCOPE_KERNELS", "numpy")
    else:
        from quantscope._compiled import kernel

        assert kernel(fast.REQUANTIZE_MODULE, "quantize_values") is not None
    return request.param


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("e", [-5, 0, 3])
def test_fast_quantize_equals_reference(rounding, bits, dtype, e, quantize_pass):
    from quantscope.quantize.numerics import quantize

    rng = np.random.default_rng(bits)
    ties = (np.arange(-300, 300) + 0.5) * 2.0**e  # exact ties of the rounding
    special = np.array(
        [
            0.0,
            -0.0,
            1e-45,
            -1e-45,
            1e-300 if dtype == np.float64 else 1e-38,
            -(2.0**e) / 2,
            np.inf,
            -np.inf,
            1e30,
            -1e30,
            0.49999997 * 2.0**e,
            -0.49999997 * 2.0**e,
        ]
    )
    x = np.concatenate([rng.normal(0, 3, 5000), ties, special]).astype(dtype).reshape(2, -1)
    got = fast.quantize_pow2(x, e, bits, rounding)
    want = quantize(x, 2.0**e, 0, bits, rounding, Saturation.SATURATE)
    assert got.dtype == want.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, want)
    assert fast.quantize_pow2(np.float32(0.75), 0, bits, rounding) == quantize(np.float32(0.75), 1.0, 0, bits, rounding)
    with pytest.raises(ValueError, match="NaN"):
        fast.quantize_pow2(np.array([1.0, np.nan], dtype), e, bits, rounding)


@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_on_layer_announces_every_layer_value_once_as_collect_gives_it(kernels):
    """``run(on_layer=...)`` hands each optimized layer's output to the callback once, the
    same values ``collect`` returns (validation measures them meanwhile), also for a
    model with a fixed batch run piece by piece."""
    from test_fixed_batch import fixed_batch_cnn

    for model, x in ((small_cnn(seed=4, with_bn=True), images(6, seed=9)), (fixed_batch_cnn(seed=1), None)):
        net = qs.prepare(model)
        if x is None:
            x = np.random.default_rng(0).normal(0, 1, (3, *net.input_shape[1:])).astype(np.float32)
        plan = make_plan(qs.calibrate(net, x, progress=False), "fpga")
        seen: list[tuple[str, object]] = []
        out, layers = Simulator(plan, kernels).run(
            x, collect=True, on_layer=lambda n, v, seen=seen: seen.append((n, v))
        )
        assert sorted(n for n, _ in seen) == sorted(layer.name for layer in net.layers)
        for name, value in seen:
            got, want = (v.q if isinstance(v, IntTensor) else v for v in (value, layers[name]))
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_layer_sessions_are_shared_by_engines_of_the_same_plan_and_bounded(monkeypatch):
    """A second fast engine of the same plan reuses the first one's layer sessions (same
    integers); the cache keeps at most SESSION_CACHE_BYTES of models."""
    net = qs.prepare(small_cnn(seed=4, with_bn=True))
    x = images(6, seed=9)
    plan = make_plan(qs.calibrate(net, x, progress=False), "fpga")
    first, second = Simulator(plan, "fast"), Simulator(plan, "fast")
    out1, layers1 = first.run(x, collect=True)
    out2, layers2 = second.run(x, collect=True)
    np.testing.assert_array_equal(out1, out2)
    shared = [k for k, (kernel, _) in first._fused.items() if kernel is not None]
    assert shared and all(first._fused[k][0]._session is second._fused[k][0]._session for k in shared)
    from collections import OrderedDict

    monkeypatch.setattr(fast, "SESSION_CACHE_BYTES", 1)
    monkeypatch.setattr(fast, "_CACHE", OrderedDict())
    out3, _ = Simulator(plan, "fast").run(x)
    assert len(fast._CACHE) == 1
    np.testing.assert_array_equal(out3, out1)


@pytest.mark.parametrize("e", [-126, -40, -7, 0, 5, 112])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_float32_feed_of_power_of_two_integers_equals_dequantize(e, dtype):
    """The float segments' inputs (engine._real): the one float32 product gives the
    values of the float64 dequantization cast to float32, at the exponent range's ends."""
    from quantscope.quantize.plan import QParams
    from quantscope.simulate.engine import _real

    info = np.iinfo(dtype)
    q = np.random.default_rng(e + 200).integers(info.min, int(info.max) + 1, 1000).astype(dtype)
    q[:3] = [info.min, info.max, 0]
    t = IntTensor(q, QParams.pow2(e, 16 if dtype == np.int16 else 8))
    got, want = _real(t, np.float32), t.dequantize().astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


def _mobile_block_net(seed: int = 0):
    """conv -> Relu6 -> depthwise -> Relu6 -> pointwise -> pointwise -> Relu -> depthwise
    (stride 2) -> pointwise -> GlobalAveragePool -> Gemm: runs of Conv layers each
    reading only the one before, as in MobileNetV2's blocks."""
    from onnx import helper
    from tinymodels import make_model, tensor

    rng = np.random.default_rng(seed)

    def w(*shape):
        return (
            rng.standard_normal(shape) * np.exp(rng.uniform(-1.5, 1.0, shape[0])).reshape(-1, *[1] * (len(shape) - 1))
        ).astype(np.float32)

    init = {
        "w0": w(8, 3, 3, 3), "b0": rng.uniform(-0.5, 0.5, 8).astype(np.float32),
        "w1": w(8, 1, 3, 3), "b1": rng.uniform(-0.5, 0.5, 8).astype(np.float32),
        "w2": w(6, 8, 1, 1), "b2": rng.uniform(-0.5, 0.5, 6).astype(np.float32),
        "w3": w(12, 6, 1, 1), "b3": rng.uniform(-0.5, 0.5, 12).astype(np.float32),
        "w4": w(12, 1, 3, 3), "b4": rng.uniform(-0.5, 0.5, 12).astype(np.float32),
        "w5": w(5, 12, 1, 1), "b5": rng.uniform(-0.5, 0.5, 5).astype(np.float32),
        "w6": w(4, 5), "b6": rng.uniform(-0.5, 0.5, 4).astype(np.float32),
        "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
    }  # fmt: skip
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        n("Clip", ["c0", "lo", "hi"], ["a0"], name="relu6_0"),
        n("Conv", ["a0", "w1", "b1"], ["c1"], name="dw1", pads=[1, 1, 1, 1], group=8),
        n("Clip", ["c1", "lo", "hi"], ["a1"], name="relu6_1"),
        n("Conv", ["a1", "w2", "b2"], ["c2"], name="pw2"),
        n("Conv", ["c2", "w3", "b3"], ["c3"], name="pw3"),
        n("Relu", ["c3"], ["a3"], name="relu3"),
        n("Conv", ["a3", "w4", "b4"], ["c4"], name="dw4", pads=[1, 1, 1, 1], strides=[2, 2], group=12),
        n("Conv", ["c4", "w5", "b5"], ["c5"], name="pw5"),
        n("GlobalAveragePool", ["c5"], ["g"], name="gap"),
        n("Flatten", ["g"], ["f"], name="flatten"),
        n("Gemm", ["f", "w6", "b6"], ["y"], name="fc", transB=1),
    ]
    return make_model(nodes, [tensor("x", ["N", 3, 10, 10])], [tensor("y", ["N", 4])], init, name="blocks")


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("collect", [True, False])
def test_chains_of_fused_convs_equal_the_reference(rounding, collect):
    """Consecutive fused Conv layers run as one graph (fast.chain) give every layer's
    integers of the reference, whether each layer's output is asked for (validation) or
    only the network's (predict)."""
    net = qs.prepare(_mobile_block_net())
    x = np.random.default_rng(1).uniform(-2, 2, (12, 3, 10, 10)).astype(np.float32)
    plan = make_plan(qs.calibrate(net, x, progress=False), PowerOfTwo(rounding=rounding))
    sim = Simulator(plan, "fast")
    out_fast, layers_fast = sim.run(x, collect=collect)
    out_ref, layers_ref = Simulator(plan, "reference").run(x, collect=True)
    np.testing.assert_array_equal(out_fast, out_ref)
    for name in layers_fast:
        if isinstance(layers_ref[name], IntTensor):
            np.testing.assert_array_equal(layers_fast[name].q, layers_ref[name].q, err_msg=name)
    chains = {first: [m.name for m in members] for first, members in sim._chains.items()}
    if rounding is Rounding.ZERO:
        assert not any(k.startswith("chain|") and v[0] is not None for k, v in sim._fused.items())
    else:
        assert ["conv0_relu6_0", "dw1_relu6_1", "pw2", "pw3_relu3", "dw4", "pw5"] in chains.values()
        assert any(k.startswith("chain|") and v[0] is not None for k, v in sim._fused.items())
