"""Mergeable statistics: exact, order-independent, fixed bin edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantscope.calibrate.stats import NUM_BINS, TensorStats, bin_edges

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


def test_non_finite_detected():
    s = TensorStats.of(np.array([1.0, np.nan], np.float32))
    assert not s.finite
    s = TensorStats.of(np.array([1.0, np.inf], np.float32))
    assert not s.finite
    assert TensorStats().finite


@pytest.mark.parametrize("block", [1, 30000, 1 << 22])
@pytest.mark.parametrize("stride", [1, 5, 7, 61])
def test_one_pass_rows_update_equals_plain_definition(stride, block, monkeypatch):
    stats_module = __import__("importlib").import_module("quantscope.calibrate.stats")

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
