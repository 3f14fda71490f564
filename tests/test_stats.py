"""Mergeable statistics: exact, order-independent, fixed bin edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantscope._compiled import kernel
from quantscope.calibrate.stats import NUM_BINS, TensorStats, bin_edges

stats_module = __import__("importlib").import_module("quantscope.calibrate.stats")

finite32 = st.floats(min_value=-(2.0**100), max_value=2.0**100, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=finite32), st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_merge_of_any_split_equals_whole(x, seed, parts):
    whole = TensorStats.of(x)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(x.size)
    cuts = np.sort(rng.integers(0, x.size + 1, size=parts - 1))
    pieces = np.split(x[perm], cuts)
    merged = TensorStats()
    for piece in reversed(pieces):
        merged = merged.merge(TensorStats.of(piece))
    assert merged == whole
    assert whole.min == float(x.min()) and whole.max == float(x.max()) and whole.count == x.size
    assert whole.hist.sum() == x.size


def test_values_land_in_their_bins():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.standard_normal(5000) * 10.0 ** rng.integers(-8, 8, 5000), [0.0, -0.0, 1.0, -1.0, 0.5]]
    ).astype(np.float32)
    lo, hi = bin_edges()
    s = TensorStats.of(x)
    mag = s.magnitude_hist()
    expected = np.zeros(NUM_BINS, dtype=np.int64)
    for v in np.abs(x).astype(np.float64):
        i = np.searchsorted(lo, v, side="right") - 1
        assert lo[i] <= v < hi[i]
        expected[i] += 1
    np.testing.assert_array_equal(mag, expected)
    assert (hi[8:2039] / lo[8:2039]).max() <= 1.125 + 1e-12  # 8 bins per octave (normal floats)
    assert s.hist[NUM_BINS:].sum() == np.signbit(x).sum()


def test_log2_hist_counts_octaves():
    s = TensorStats.of(np.array([0.0, 0.3, 0.6, 1.0, 1.5, 3.0, -3.9], np.float32))
    assert s.log2_hist() == {-2: 1, -1: 1, 0: 2, 1: 2}


def test_dict_round_trip_is_exact():
    x = (np.random.default_rng(1).standard_normal(1000) * 3).astype(np.float32)
    s = TensorStats.of(x)
    assert TensorStats.from_dict(s.to_dict()) == s


def test_non_finite_ranges_are_strict_json():
    """An attention mask's -inf (or no values at all) is written as a string JSON can
    hold, and read back the same."""
    import json

    for x in (np.array([1.0, -np.inf], np.float32), np.array([np.inf, 2.0], np.float32), np.zeros(0, np.float32)):
        s = TensorStats.of(x)
        text = json.dumps(s.to_dict(), allow_nan=False)
        assert "Infinity" not in text
        assert TensorStats.from_dict(json.loads(text)) == s


def test_non_finite_detected():
    s = TensorStats.of(np.array([1.0, np.nan], np.float32))
    assert not s.finite
    s = TensorStats.of(np.array([1.0, np.inf], np.float32))
    assert not s.finite
    assert TensorStats().finite


@pytest.fixture(params=["compiled", "numpy"])
def stats_pass(request, monkeypatch):
    """Runs a test with the compiled statistics pass (loaded first) and with numpy's."""
    if request.param == "numpy":
        monkeypatch.setenv("QUANTSCOPE_KERNELS", "numpy")
    else:
        monkeypatch.delenv("QUANTSCOPE_KERNELS", raising=False)
        assert kernel(stats_module._KERNEL_MODULE, "row_stats") is not None  # numba is a dependency
    return request.param


def test_kernel_bins_like_stats():
    from quantscope.calibrate import _numba_stats

    assert _numba_stats.SHIFT == stats_module._SHIFT


@pytest.mark.parametrize("block", [1, 30000, 1 << 22])
@pytest.mark.parametrize("stride", [1, 5, 7, 61])
def test_one_pass_rows_update_equals_plain_definition(stride, block, monkeypatch, stats_pass):
    monkeypatch.setattr(stats_module, "_BLOCK_VALUES", block)  # one row, one row, all rows a block
    rng = np.random.default_rng(stride)
    x = (rng.standard_normal((3, 4, 70, 90)) * 3).astype(np.float32)  # > one chunk per sample
    fast = TensorStats(hist_stride=stride).update(x)
    # the definition: min/max over everything, histogram of positions j % stride == 0 of each sample
    sampled = x.reshape(3, -1)[:, ::stride].reshape(-1)
    expected = np.bincount(sampled.view(np.uint32) >> np.uint32(20), minlength=2 * NUM_BINS)
    np.testing.assert_array_equal(fast.hist, expected)
    assert (fast.min, fast.max, fast.count) == (float(x.min()), float(x.max()), x.size)
    y = x.copy()
    y[2, 3, 69, 89] = np.nan
    assert not TensorStats(hist_stride=stride).update(y).finite
    y[0, 0, 0, 0] = np.nan  # NaN in the first chunk, then finite chunks
    assert not TensorStats(hist_stride=stride).update(y).finite


def _bits(v: float) -> int:
    return int(np.array([v], np.float64).view(np.uint64)[0])


SPECIAL = np.array([0.0, -0.0, 1e-45, -1e-45, 1.2e-38, -3.4e38, 3.4e38, np.inf, -np.inf, 1.0, -1.0, 0.1], np.float32)


@pytest.mark.parametrize("stride", [1, 3, 61, 5000])
@pytest.mark.parametrize(
    "case", ["random", "negative", "zeros", "signed zeros", "specials", "nan", "negative nan", "inf"]
)
def test_compiled_pass_equals_numpy_pass(stride, case, monkeypatch):
    """The compiled pass gives the numpy pass's statistics, bit for bit (the sign of a zero
    minimum included), on zeros of both signs, subnormals, the float32 extremes,
    infinities and NaNs of either sign, rows shorter and longer than a chunk."""
    rng = np.random.default_rng(len(case) * 100 + stride)
    x = (rng.standard_normal((4, 3, 50, 70)) * 10.0 ** rng.integers(-6, 6, (4, 3, 50, 70))).astype(np.float32)
    if case == "negative":
        x = -np.abs(x) - np.float32(1e-30)
    elif case == "zeros":
        x[:] = 0.0
    elif case == "signed zeros":
        x = np.where(rng.random(x.shape) < 0.5, np.float32(0.0), np.float32(-0.0)).astype(np.float32)
    elif case == "specials":
        x.reshape(-1)[rng.integers(0, x.size, 200)] = rng.choice(SPECIAL, 200)
    elif case == "nan":
        x[3, 2, 49, 69] = np.nan
    elif case == "negative nan":
        x.reshape(-1)[4321] = -np.float32(np.nan)
    elif case == "inf":
        x[1, 0, 0, 0] = -np.inf
    assert kernel(stats_module._KERNEL_MODULE, "row_stats") is not None
    compiled = TensorStats(hist_stride=stride).update(x).update(x[:1])
    monkeypatch.setenv("QUANTSCOPE_KERNELS", "numpy")
    plain = TensorStats(hist_stride=stride).update(x).update(x[:1])
    assert compiled == plain
    assert (_bits(compiled.min), _bits(compiled.max)) == (_bits(plain.min), _bits(plain.max))
    np.testing.assert_array_equal(compiled.hist, plain.hist)
    if case not in ("nan", "negative nan"):
        assert compiled.min == float(x.min()) and compiled.max == float(x.max())
    else:
        assert np.isnan(compiled.min) and not compiled.finite
