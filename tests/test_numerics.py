"""The scalar int8 arithmetic (quantscope.quantize.numerics), checked by hand and against exact rationals."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantscope.errors import ConfigurationError, QuantscopeError
from quantscope.quantize.numerics import (
    AccumulatorOverflowError,
    FloatScale,
    Overflow,
    PowerOfTwo,
    Rounding,
    Saturation,
    check_accumulator,
    dequantize,
    divide_round,
    int_dtype,
    int_range,
    pow2_exponent,
    quantize,
    quantize_bias_pow2,
    requantize_pow2,
    requantize_scale,
    round_values,
    saturate,
    shift_round,
)

ALL_ROUNDINGS = list(Rounding)


def exact_round(v: Fraction, rounding: Rounding) -> int:
    """R(v) on an exact rational: the specification of eq. (2a)-(2d), (5b)."""
    fl = math.floor(v)
    frac = v - fl
    if rounding is Rounding.FLOOR:
        return fl
    if rounding is Rounding.ZERO:
        return fl if v >= 0 else math.ceil(v)
    if frac > Fraction(1, 2):
        return fl + 1
    if frac < Fraction(1, 2):
        return fl
    if rounding is Rounding.HALF_AWAY:
        return fl + 1 if v > 0 else fl
    return fl if fl % 2 == 0 else fl + 1  # HALF_EVEN


# ------------------------------------------------------------------ round_values


TIE_TABLE = [
    # x,     HALF_AWAY, HALF_EVEN, FLOOR, ZERO
    (2.5, 3, 2, 2, 2),
    (-2.5, -3, -2, -3, -2),
    (0.5, 1, 0, 0, 0),
    (-0.5, -1, 0, -1, 0),
    (1.5, 2, 2, 1, 1),
    (-1.5, -2, -2, -2, -1),
    (2.4, 2, 2, 2, 2),
    (-2.6, -3, -3, -3, -2),
    (2.7, 3, 3, 2, 2),
    (0.49999999999999994, 0, 0, 0, 0),  # floor(x + 0.5) would give 1
    (-0.49999999999999994, 0, 0, -1, 0),
    (4503599627370495.5, 4503599627370496, 4503599627370496, 4503599627370495, 4503599627370495),
    (0.0, 0, 0, 0, 0),
]


@pytest.mark.parametrize("row", TIE_TABLE, ids=lambda r: repr(r[0]))
def test_round_values_by_hand(row):
    x, *expected = row
    for rounding, want in zip([Rounding.HALF_AWAY, Rounding.HALF_EVEN, Rounding.FLOOR, Rounding.ZERO], expected):
        got = round_values(np.array([x]), rounding)
        assert got.dtype == np.float64
        assert got[0] == want, (x, rounding, got[0], want)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.sampled_from(ALL_ROUNDINGS))
def test_round_values_matches_exact_rationals(x, rounding):
    assert round_values(np.float64(x), rounding) == exact_round(Fraction(x), rounding)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**40), 2**40), st.sampled_from(ALL_ROUNDINGS))
def test_round_values_on_exact_halves(k, rounding):
    x = k + 0.5  # every one a tie
    assert round_values(np.float64(x), rounding) == exact_round(Fraction(2 * k + 1, 2), rounding)


def test_round_values_keeps_shape_nan_and_inf():
    x = np.array([[np.nan, np.inf], [-np.inf, 1.5]])
    for rounding in ALL_ROUNDINGS:
        y = round_values(x, rounding)
        assert y.shape == (2, 2)
        assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[1, 0] == -np.inf


def test_rounding_must_be_named():
    with pytest.raises(ConfigurationError, match="Rounding"):
        round_values(np.array([1.5]), "half_away")


# ------------------------------------------------------------------------ saturate


def test_saturate_and_wrap_int8_by_hand():
    x = np.array([200, -200, 127, -128, 128, -129, 255, 256, 0])
    np.testing.assert_array_equal(saturate(x, 8), [127, -128, 127, -128, 127, -128, 127, 127, 0])
    np.testing.assert_array_equal(saturate(x, 8, mode=Saturation.WRAP), [-56, 56, 127, -128, -128, 127, -1, 0, 0])
    np.testing.assert_array_equal(saturate(x, 8, signed=False), [200, 0, 127, 0, 128, 0, 255, 255, 0])
    np.testing.assert_array_equal(
        saturate(x, 8, signed=False, mode=Saturation.WRAP), [200, 56, 127, 128, 128, 127, 255, 0, 0]
    )


def test_saturate_floats_and_dtypes():
    f = np.array([300.0, -300.0, 5.0])
    np.testing.assert_array_equal(saturate(f, 8), [127.0, -128.0, 5.0])
    np.testing.assert_array_equal(saturate(f, 8, mode=Saturation.WRAP), [44.0, -44.0, 5.0])
    s16 = np.array([1000, -1000], dtype=np.int16)
    assert saturate(s16, 8).dtype == np.int16
    i8 = np.array([-5, 100], dtype=np.int8)
    np.testing.assert_array_equal(saturate(i8, 16), i8)  # bounds wider than the dtype
    with pytest.raises(ValueError):
        saturate(np.array([np.inf]), 8, mode=Saturation.WRAP)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**62), 2**62), st.integers(2, 32))
def test_wrap_is_modular(n, bits):
    got = int(saturate(np.array([n], dtype=np.int64), bits, mode=Saturation.WRAP)[0])
    lo, hi = int_range(bits)
    assert lo <= got <= hi and (got - n) % (1 << bits) == 0


def test_int_range_and_dtype():
    assert int_range(8) == (-128, 127)
    assert int_range(8, signed=False) == (0, 255)
    assert int_range(32) == (-(2**31), 2**31 - 1)
    assert int_dtype(8) == np.int8 and int_dtype(4) == np.int8 and int_dtype(12) == np.int16
    assert int_dtype(32) == np.int32 and int_dtype(8, signed=False) == np.uint8
    for bad in (1, 33, 8.0, True, "8"):
        with pytest.raises(ConfigurationError):
            int_range(bad)


# ---------------------------------------------------------------- pow2_exponent


@pytest.mark.parametrize(
    "max_abs, wl, e",
    [
        (1.0, 8, -6),
        (0.9, 8, -7),
        (127 * 2.0**-6, 8, -6),
        (128 * 2.0**-6, 8, -5),  # 2.0
        (np.nextafter(2.0, 0), 8, -6),
        (0.5, 8, -7),
        (255.0, 8, 1),
        (198.72, 8, 1),  # SqueezeNet's normalized input range
        (0.91985, 8, -7),
        (1.0, 16, -14),
        (3.0, 4, -1),
        (2.0**-1074, 8, -1080),  # the smallest subnormal
        (np.finfo(np.float64).max, 8, 1017),
    ],
)
def test_pow2_exponent_by_hand(max_abs, wl, e):
    assert pow2_exponent(max_abs, wl) == e


def test_pow2_exponent_of_zero_is_the_unit_range_convention():
    assert pow2_exponent(0.0) == -6 == pow2_exponent(1.0)
    assert pow2_exponent(0, word_length=16) == -14
    assert quantize(np.zeros(4), 2.0 ** pow2_exponent(0.0)).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "x"])
def test_pow2_exponent_rejects_bad_ranges(bad):
    with pytest.raises(ConfigurationError):
        pow2_exponent(bad)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-300, max_value=1e300), st.integers(2, 16))
def test_pow2_exponent_puts_max_in_the_top_bit(max_abs, wl):
    e = pow2_exponent(max_abs, wl)
    ratio = Fraction(max_abs) / Fraction(2) ** e
    assert 2 ** (wl - 2) <= ratio < 2 ** (wl - 1)


# ------------------------------------------------------------ quantize / dequantize


def test_quantize_power_of_two_by_hand():
    s = 2.0**-6
    x = np.array([1.0, 2.0, -2.0, -2.01, 127 * s, 2.5 * s, -2.5 * s, 0.004, -0.004, 1.5 * s])
    q = quantize(x, s)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [64, 127, -128, -128, 127, 3, -3, 0, 0, 2])
    q_even = quantize(x, s, rounding=Rounding.HALF_EVEN)
    np.testing.assert_array_equal(q_even, [64, 127, -128, -128, 127, 2, -2, 0, 0, 2])
    q_wrap = quantize(np.array([2.0, -2.02]), s, saturation=Saturation.WRAP)
    np.testing.assert_array_equal(q_wrap, [-128, 127])  # 128 -> -128, -129 -> 127
    np.testing.assert_array_equal(quantize(np.array([np.inf, -np.inf]), s), [127, -128])


def test_quantize_zero_point_bits_and_per_channel():
    q = quantize(np.array([0.0, 1.0, -1.0]), 0.5, zero_point=-10)
    np.testing.assert_array_equal(q, [-10, -8, -12])
    assert quantize(np.array([1e9]), 1.0, bits=32).dtype == np.int32
    assert quantize(np.array([1e9]), 1.0, bits=32)[0] == 10**9
    u = quantize(np.array([-1.0, 0.0, 300.0]), 1.0, zero_point=128, signed=False)
    assert u.dtype == np.uint8
    np.testing.assert_array_equal(u, [127, 128, 255])
    w = np.array([[1.0, -1.0], [1.0, -1.0]])
    qc = quantize(w, np.array([0.5, 0.25]), axis=0)
    np.testing.assert_array_equal(qc, [[2, -2], [4, -4]])
    qc1 = quantize(w, np.array([0.5, 0.25]), axis=1)
    np.testing.assert_array_equal(qc1, [[2, -4], [2, -4]])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(scale=0.0),
        dict(scale=-1.0),
        dict(scale=float("nan")),
        dict(scale=1.0, zero_point=200),
        dict(scale=1.0, zero_point=0.5),
        dict(scale=1.0, bits=64),
        dict(scale=1.0, rounding="half_even"),
        dict(scale=np.array([[1.0]]), axis=0),
    ],
)
def test_quantize_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        quantize(np.array([1.0]), **kwargs)


def test_quantize_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([1.0, np.nan]), 1.0)


@settings(max_examples=100, deadline=None)
@given(st.integers(-12, 4), st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20))
def test_quantize_dequantize_round_trip(e, values):
    s = 2.0**e
    x = np.array(values)
    q = quantize(x, s)
    back = dequantize(q, s)
    inside = (x >= -128 * s) & (x <= 127 * s)
    assert np.all(np.abs(back - x)[inside] <= s / 2)
    assert np.all(back[x > 127 * s] == 127 * s)
    assert np.all(back[x < -128 * s] == -128 * s)


def test_dequantize_by_hand():
    np.testing.assert_array_equal(dequantize(np.array([64, -128], dtype=np.int8), 2.0**-6), [1.0, -2.0])
    np.testing.assert_array_equal(dequantize(np.array([0, 10]), 0.5, zero_point=10), [-5.0, 0.0])
    got = dequantize(np.array([[2, 2], [2, 2]]), np.array([1.0, 0.5]), axis=0)
    np.testing.assert_array_equal(got, [[2.0, 2.0], [1.0, 1.0]])
    with pytest.raises(TypeError):
        dequantize(np.array([1.5]), 1.0)


def test_quantize_bias_at_the_accumulator_exponent():
    # eq. (3): e_w = -7, e_x = -6 -> scale 2**-13
    b = np.array([0.5, -0.25, 3 * 2.0**-14, -(3 * 2.0**-14), 1e6])
    q = quantize_bias_pow2(b, -7, -6)
    assert q.dtype == np.int32
    np.testing.assert_array_equal(q, [4096, -2048, 2, -2, 2**31 - 1])
    np.testing.assert_array_equal(quantize_bias_pow2(b[2:4], -7, -6, Rounding.HALF_EVEN), [2, -2])
    np.testing.assert_array_equal(quantize_bias_pow2(np.array([5 * 2.0**-14]), -7, -6, Rounding.HALF_EVEN), [2])


# ------------------------------------------------------------------- shift_round


def test_shift_round_by_hand():
    a = np.array([5, -5, 6, -6, 7, -7, 4, -4, 1, -1])  # / 2
    want = {
        Rounding.HALF_AWAY: [3, -3, 3, -3, 4, -4, 2, -2, 1, -1],
        Rounding.HALF_EVEN: [2, -2, 3, -3, 4, -4, 2, -2, 0, 0],
        Rounding.FLOOR: [2, -3, 3, -3, 3, -4, 2, -2, 0, -1],
        Rounding.ZERO: [2, -2, 3, -3, 3, -3, 2, -2, 0, 0],
    }
    for rounding, expected in want.items():
        got = shift_round(a, 1, rounding)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected, err_msg=str(rounding))
    # 1000 / 64 = 15.625 -> 16; -1000 / 64 -> -16; 96 / 64 = 1.5 -> 2 (away), 2 (even)
    np.testing.assert_array_equal(
        shift_round(np.array([1000, -1000, 96, -96, 32]), 6, Rounding.HALF_AWAY), [16, -16, 2, -2, 1]
    )
    np.testing.assert_array_equal(
        shift_round(np.array([1000, -1000, 96, -96, 32]), 6, Rounding.HALF_EVEN), [16, -16, 2, -2, 0]
    )


def test_shift_round_textbook_half_away_formula():
    rng = np.random.default_rng(1)
    a = rng.integers(-(2**40), 2**40, size=5000)
    for s in (1, 3, 8, 13, 20):
        textbook = np.sign(a) * ((np.abs(a) + (1 << (s - 1))) >> s)
        np.testing.assert_array_equal(shift_round(a, s, Rounding.HALF_AWAY), textbook)


@pytest.mark.parametrize("rounding", ALL_ROUNDINGS)
def test_shift_round_matches_float64_formula(rounding):
    rng = np.random.default_rng(2)
    a = rng.integers(-(2**52), 2**52, size=20000)
    for s in (1, 2, 5, 7, 12, 20, 31):
        ties = (2 * rng.integers(-(2**20), 2**20, size=500) + 1) << (s - 1)  # odd multiples of 2**(s-1)
        vals = np.concatenate([a, ties, -ties])
        expected = round_values(vals.astype(np.float64) / 2.0**s, rounding)  # exact below 2**53
        np.testing.assert_array_equal(shift_round(vals, s, rounding), expected.astype(np.int64))


@settings(max_examples=400, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.integers(1, 62), st.sampled_from(ALL_ROUNDINGS))
def test_shift_round_exact_on_all_int64(a, s, rounding):
    got = int(shift_round(np.array([a], dtype=np.int64), s, rounding)[0])
    assert got == exact_round(Fraction(a, 2**s), rounding)


def test_shift_round_extremes_and_left_shifts():
    ext = np.array([-(2**63), 2**63 - 1, -(2**63) + 1])
    for rounding in ALL_ROUNDINGS:
        for s in (1, 31, 62):
            got = shift_round(ext, s, rounding)
            assert [int(g) for g in got] == [exact_round(Fraction(int(v), 2**s), rounding) for v in ext]
    np.testing.assert_array_equal(shift_round(np.array([3, -3]), -4, Rounding.FLOOR), [48, -48])
    np.testing.assert_array_equal(shift_round(np.array([3, -3]), 0, Rounding.FLOOR), [3, -3])
    assert shift_round(np.array([-(2**61)]), -2, Rounding.FLOOR)[0] == -(2**63)
    with pytest.raises(AccumulatorOverflowError):
        shift_round(np.array([2**61]), -2, Rounding.FLOOR)
    with pytest.raises(AccumulatorOverflowError):
        shift_round(np.array([-(2**61) - 1]), -2, Rounding.FLOOR)
    for bad in (63, -63, 1.0):
        with pytest.raises(ConfigurationError):
            shift_round(np.array([1]), bad, Rounding.FLOOR)
    with pytest.raises(TypeError):
        shift_round(np.array([1.0]), 1, Rounding.FLOOR)


@settings(max_examples=400, deadline=None)
@given(st.integers(-(2**62), 2**62), st.integers(1, 10**6), st.sampled_from(ALL_ROUNDINGS))
def test_divide_round_exact(n, d, rounding):
    assert int(divide_round(np.array([n]), d, rounding)[0]) == exact_round(Fraction(n, d), rounding)


def test_divide_round_by_hand():
    n = np.array([5, -5, 7, -7, 9, -9])
    np.testing.assert_array_equal(divide_round(n, 2, Rounding.HALF_AWAY), [3, -3, 4, -4, 5, -5])
    np.testing.assert_array_equal(divide_round(n, 2, Rounding.HALF_EVEN), [2, -2, 4, -4, 4, -4])
    np.testing.assert_array_equal(divide_round(n, 9, Rounding.HALF_AWAY), [1, -1, 1, -1, 1, -1])
    np.testing.assert_array_equal(divide_round(n, 9, Rounding.ZERO), [0, 0, 0, 0, 1, -1])
    np.testing.assert_array_equal(divide_round(np.array([1, 1]), np.array([2, 3]), Rounding.HALF_AWAY), [1, 0])
    with pytest.raises(ValueError):
        divide_round(n, 0, Rounding.FLOOR)


# -------------------------------------------------------------------- requantize


def test_requantize_pow2_by_hand():
    # accumulator at e_acc = -13 (e_w = -7, e_x = -6) to e_out = -6: shift 7
    acc = np.array([128 * 64, 128 * 64 + 64, -(128 * 64 + 64), 200 * 128, -200 * 128, 63, -64, 0])
    q = requantize_pow2(acc, -13, -6)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [64, 65, -65, 127, -128, 0, -1, 0])
    q_even = requantize_pow2(acc, -13, -6, rounding=Rounding.HALF_EVEN)
    np.testing.assert_array_equal(q_even, [64, 64, -64, 127, -128, 0, 0, 0])
    q_wrap = requantize_pow2(np.array([200 * 128]), -13, -6, saturation=Saturation.WRAP)
    np.testing.assert_array_equal(q_wrap, [-56])
    # e_out finer than e_acc: exact left shift, then saturation
    np.testing.assert_array_equal(requantize_pow2(np.array([3, -3, 40]), -4, -6), [12, -12, 127])
    q16 = requantize_pow2(np.array([100000]), 0, 2, bits=16)
    assert q16.dtype == np.int16 and q16[0] == 25000
    with pytest.raises(ConfigurationError, match="e_out"):
        requantize_pow2(np.array([1]), -6, -6.5)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=10),
    st.integers(-20, 0),
    st.integers(-20, 0),
    st.sampled_from(ALL_ROUNDINGS),
)
def test_requantize_pow2_matches_rationals(values, e_acc, e_out, rounding):
    got = requantize_pow2(np.array(values), e_acc, e_out, rounding=rounding)
    for v, g in zip(values, got):
        want = exact_round(Fraction(v) * Fraction(2) ** (e_acc - e_out), rounding)
        assert int(g) == min(max(want, -128), 127)


def test_requantize_scale_by_hand():
    acc = np.array([5, -5, 7, 1000, -1000])
    np.testing.assert_array_equal(requantize_scale(acc, 0.5), [2, -2, 4, 127, -128])
    np.testing.assert_array_equal(requantize_scale(acc, 0.5, rounding=Rounding.HALF_AWAY), [3, -3, 4, 127, -128])
    np.testing.assert_array_equal(requantize_scale(acc, 0.5, zero_point=-100), [-98, -102, -96, 127, -128])
    u = requantize_scale(np.array([-300, 0, 10]), 0.5, zero_point=128, signed=False)
    assert u.dtype == np.uint8
    np.testing.assert_array_equal(u, [0, 128, 133])
    per_channel = requantize_scale(np.array([[10, 10], [10, 10]]), np.array([0.1, 0.3]), axis=1)
    np.testing.assert_array_equal(per_channel, [[1, 3], [1, 3]])
    with pytest.raises(ConfigurationError):
        requantize_scale(acc, 0.0)
    with pytest.raises(TypeError):
        requantize_scale(acc.astype(float), 0.5)


def test_check_accumulator_policy():
    ok = np.array([2**31 - 1, -(2**31)])
    np.testing.assert_array_equal(check_accumulator(ok), ok)
    bad = np.array([2**31, -(2**31) - 1, 5])
    with pytest.raises(AccumulatorOverflowError, match="int32") as info:
        check_accumulator(bad)
    assert isinstance(info.value, QuantscopeError) and isinstance(info.value, OverflowError)
    np.testing.assert_array_equal(check_accumulator(bad, Overflow.WRAP), [-(2**31), 2**31 - 1, 5])
    with pytest.raises(ConfigurationError):
        check_accumulator(bad, "wrap")


# ------------------------------------------------------------------ configuration


def test_power_of_two_defaults_and_validation():
    p = PowerOfTwo()
    assert (p.word_length, p.exponent_method, p.rounding, p.saturation) == (
        8,
        "MinMax",
        Rounding.HALF_AWAY,
        Saturation.SATURATE,
    )
    assert (p.qmin, p.qmax) == (-128, 127)
    assert PowerOfTwo(exponent_method="Histogram").exponent_method == "Histogram"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.word_length = 4
    for kwargs in (
        dict(word_length=1),
        dict(word_length=8.0),
        dict(word_length=64),
        dict(exponent_method="minmax"),
        dict(exponent_method="Entropy"),
        dict(rounding="HALF_AWAY"),
        dict(saturation=True),
    ):
        with pytest.raises(ConfigurationError):
            PowerOfTwo(**kwargs)


def test_float_scale_defaults_and_validation():
    f = FloatScale()
    assert (f.per_channel, f.symmetric_activations, f.rounding) == (True, False, Rounding.HALF_EVEN)
    assert FloatScale(per_channel=False, symmetric_activations=True).symmetric_activations
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.per_channel = False
    for kwargs in (dict(per_channel="yes"), dict(symmetric_activations=1), dict(rounding=None)):
        with pytest.raises(ConfigurationError):
            FloatScale(**kwargs)
