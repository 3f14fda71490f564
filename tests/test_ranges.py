"""Clipping ranges from the one-pass statistics, checked against direct computations
on the stored values (issue 5, point 4; docs/ranges.md)."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import onnxruntime as ort
import pytest
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.calibrate.ranges import METHODS, _entropy_index, clipping_range, range_table
from quantscope.calibrate.result import COLUMNS
from quantscope.calibrate.stats import TensorStats
from quantscope.errors import ConfigurationError

#: the histogram's resolution: every bin spans at most 12.5 % of its lower edge
BIN = 0.125


# ----------------------------------------------------------------------------- data


def _raw_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    n = 100_000
    return {
        "normal+outliers": np.concatenate([rng.standard_normal(n), [40.0, -35.0, 60.0]]),
        "laplace": rng.laplace(scale=0.5, size=n),
        "relu_half_zero": np.maximum(rng.standard_normal(n) * 2.0, 0.0),
        "relu_laplace+outlier": np.concatenate([np.maximum(rng.laplace(scale=3.0, size=n), 0.0), [100.0]]),
    }


@pytest.fixture(scope="module")
def onnx_case() -> tuple[np.ndarray, TensorStats, object]:
    """A real network's activation: conv1+relu of the tiny SqueezeNet-like CNN,
    statistics from quantscope.calibrate (every value histogrammed), raw values from
    onnxruntime on the same prepared network."""
    net = qs.prepare(small_cnn(seed=3))
    x = images(200, seed=4)
    cal = qs.calibrate(net, x, batch_size=64, progress=False, histogram_stride=1)
    entry = next(e for e in cal.entries if e.layer == "conv1_relu_conv1" and e.kind == "Activations")
    sess = ort.InferenceSession(net.to_proto([entry.tensor]).SerializeToString(), providers=["CPUExecutionProvider"])
    raw = sess.run([entry.tensor], {net.input_name: x})[0]
    assert entry.stats.count == raw.size and entry.stats.hist.sum() == raw.size
    return raw.reshape(-1), entry.stats, cal


@pytest.fixture(scope="module")
def onnx_large() -> tuple[np.ndarray, TensorStats]:
    """The same activation over 2,000 images (1,024,000 values)."""
    net = qs.prepare(small_cnn(seed=3))
    x = images(2000, seed=4)
    cal = qs.calibrate(net, x, batch_size=500, progress=False, histogram_stride=1)
    entry = next(e for e in cal.entries if e.layer == "conv1_relu_conv1" and e.kind == "Activations")
    sess = ort.InferenceSession(net.to_proto([entry.tensor]).SerializeToString(), providers=["CPUExecutionProvider"])
    raw = sess.run([entry.tensor], {net.input_name: x})[0]
    assert entry.stats.count == raw.size == entry.stats.hist.sum()
    return raw.reshape(-1), entry.stats


@pytest.fixture(scope="module")
def cases(onnx_case) -> dict[str, tuple[np.ndarray, TensorStats]]:
    out = {}
    for name, x in _raw_cases().items():
        x = x.astype(np.float32)
        out[name] = (x, TensorStats.of(x))
    out["onnx_conv1_relu"] = onnx_case[:2]
    return out


# ----------------------------------------------------------------------------- direct references


def _quantize_error(x: np.ndarray, lo: float, hi: float, bits: int, symmetric: bool) -> float:
    """Sum of squared errors of actually quantizing ``x`` (float64) to ``bits`` bits over
    the range: symmetric (step hi/(2^(b-1)-1), levels +-(2^(b-1)-1)) or affine
    (step (hi-lo)/(2^b-1), zero exact), rounding half away from zero, saturating."""
    if symmetric:  # the error depends on |x| only: quantize the magnitudes, in place
        levels = (1 << (bits - 1)) - 1
        step = hi / levels
        a = np.abs(x)
        q = a / step
        q += 0.5
        np.floor(q, out=q)
        np.minimum(q, levels, out=q)
        q *= step
        q -= a
        np.square(q, out=q)
        return float(q.sum())
    if lo == 0.0 and x.min() >= 0:  # unsigned grid over [0, hi]
        levels = (1 << bits) - 1
        step = hi / levels
        q = x / step
        q += 0.5
        np.floor(q, out=q)
        np.minimum(q, levels, out=q)
        q *= step
        q -= x
        np.square(q, out=q)
        return float(q.sum())
    step = (hi - lo) / ((1 << bits) - 1)
    zp = math.floor(-lo / step + 0.5)
    v = x / step
    q = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zp, 0, (1 << bits) - 1)
    return float(np.sum((x - (q - zp) * step) ** 2))


def _brute_min(cost, top: float) -> float:
    """min of cost(t) over t in [top / 2^12, top]: 48 geometric points, then 48 more
    between the neighbours of the best (steps under 0.8 %)."""
    ts = np.geomspace(top / 2**12, top, 48)
    errs = [cost(t) for t in ts]
    k = int(np.argmin(errs))
    fine = np.linspace(ts[max(k - 1, 0)], ts[min(k + 1, ts.size - 1)], 48)
    return min(min(errs), min(cost(t) for t in fine))


def _kl_direct(h: np.ndarray, nq: int) -> np.ndarray:
    """KL(P||Q) of every candidate i in nq..len(h), computed candidate by candidate
    (TensorRT's entropy calibration, written independently of the module's)."""
    n, total = h.size, h.sum()
    out = np.full(n + 1, np.inf)
    for i in range(nq, n + 1):
        ref = h[:i].copy()
        ref[-1] += h[i:].sum()
        group = (np.arange(i) * nq) // i
        gsum = np.bincount(group, weights=h[:i], minlength=nq)
        gnz = np.bincount(group, weights=(h[:i] > 0).astype(float), minlength=nq)
        q = np.where(h[:i] > 0, gsum[group] / np.maximum(gnz[group], 1), 0.0)
        if q.sum() == 0:
            continue
        p, q = ref / total, q / q.sum()
        mask = p > 0
        if np.any(q[mask] == 0):
            continue
        out[i] = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
    return out


def _entropy_direct(x: np.ndarray, nq: int = 128, num_bins: int = 2048) -> float:
    """The KL threshold on a fine linear histogram of the raw magnitudes (zeros left out)."""
    a = np.abs(x.astype(np.float64))
    a = a[a != 0]
    top = float(a.max())
    h = np.histogram(a, bins=num_bins, range=(0.0, top))[0].astype(np.float64)
    kl = _kl_direct(h, nq)
    best = int(np.flatnonzero(kl == kl.min())[-1])  # ties: the largest threshold
    return best / num_bins * top


# ----------------------------------------------------------------------------- tests


def test_minmax_is_exact(cases):
    for name, (x, s) in cases.items():
        assert clipping_range(s) == (float(x.min()), float(x.max())), name
        assert clipping_range(s, "MinMax") == (float(x.min()), float(x.max()))


@pytest.mark.parametrize("p", [50.0, 99.0, 99.9, 99.99, 99.999, 100.0])
def test_percentile_matches_numpy_within_one_bin(cases, p):
    for name, (x, s) in cases.items():
        lo, hi = clipping_range(s, "percentile", percentile=p)
        t = max(-lo, hi)  # the threshold on |x|; the range is (-t, t) clipped to [min, max]
        ref = float(np.percentile(np.abs(x.astype(np.float64)), p))
        assert abs(t - ref) <= BIN * ref + 1e-30, (name, p, t, ref)
        assert (lo, hi) == (max(-t, float(x.min())), min(t, float(x.max())))
        # two-sided on the signed values: (100 - p) / 2 % cut from each tail
        lo2, hi2 = clipping_range(s, "percentile", percentile=p, symmetric=False)
        cut = (100.0 - p) / 2.0
        ref_lo, ref_hi = np.percentile(x.astype(np.float64), [cut, 100.0 - cut])
        assert abs(lo2 - ref_lo) <= BIN * abs(ref_lo) + 1e-30, (name, p, lo2, ref_lo)
        assert abs(hi2 - ref_hi) <= BIN * abs(ref_hi) + 1e-30, (name, p, hi2, ref_hi)
    x, s = cases["laplace"]
    assert clipping_range(s, "percentile", percentile=100.0) == (float(x.min()), float(x.max()))


def test_percentile_agreement_is_much_better_than_the_bound(cases):
    worst = 0.0
    for x, s in cases.values():
        for p in (99.0, 99.9, 99.99):
            ref = float(np.percentile(np.abs(x.astype(np.float64)), p))
            worst = max(worst, abs(clipping_range(s, "percentile", percentile=p)[1] / ref - 1.0))
    assert worst < 0.04, worst  # measured 2.6 %; the guaranteed bound is 12.5 %


def test_percentile_close_to_onnxruntime(cases):
    """onnxruntime's Percentile calibrator (symmetric |x| histogram of 2048 bins, the
    lower edge of the bin where the CDF crosses p): within our bin plus its bin."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    for name, (x, s) in cases.items():
        collector = HistogramCollector("percentile", True, 2048, 128, 99.99, "same")
        with contextlib.redirect_stdout(io.StringIO()):
            collector.collect({"t": x})
            lo_ort, hi_ort = collector.compute_collection_result()["t"][:2]
        lo, hi = clipping_range(s, "percentile", percentile=99.99)
        ref = float(np.percentile(np.abs(x), 99.99))
        assert abs(hi - float(hi_ort)) <= BIN * ref + float(np.abs(x).max()) / 2048, (name, hi, hi_ort)
        assert (lo < 0) == (float(lo_ort) < 0)


def _brute_mse(x: np.ndarray, bits: int, symmetric: bool) -> float:
    return _brute_min(lambda t: _quantize_error(x, -t, t, bits, symmetric), float(np.abs(x).max()))


@pytest.mark.parametrize("bits", [8, 4])
def test_mse_threshold_error_near_brute_force_optimum(cases, bits):
    for name, (x, s) in cases.items():
        x64 = x.astype(np.float64)
        lo, hi = clipping_range(s, "mse", bits=bits, symmetric=True)
        t = max(-lo, hi) if lo < 0 else hi
        ratio = _quantize_error(x64, -t, t, bits, True) / _brute_mse(x64, bits, True)
        assert ratio <= 1.03, (name, bits, ratio)


def test_mse_unsigned_grid_for_one_signed_tensors(cases):
    """symmetric=None on a ReLU output: the unsigned grid of 2^bits - 1 steps over [0, T]."""
    for name in ("relu_half_zero", "relu_laplace+outlier", "onnx_conv1_relu"):
        x, s = cases[name]
        x64 = x.astype(np.float64)
        lo, hi = clipping_range(s, "mse")
        assert lo == 0.0
        brute = _brute_min(lambda t, x64=x64: _quantize_error(x64, 0.0, t, 8, False), float(x.max()))
        assert _quantize_error(x64, 0.0, hi, 8, False) / brute <= 1.03, name


def test_mse_asymmetric_grid_for_mixed_signs(cases):
    x, s = cases["normal+outliers"]
    x = x[::4].astype(np.float64)  # a coarse 2-D brute force: keep it quick
    s = TensorStats.of(x.astype(np.float32))
    lo, hi = clipping_range(s, "mse", symmetric=False)
    grid_hi = np.geomspace(x.max() / 32, x.max(), 40)
    grid_lo = -np.geomspace(-x.min() / 32, -x.min(), 40)
    brute = min(_quantize_error(x, a, b, 8, False) for a in grid_lo for b in grid_hi)
    assert _quantize_error(x, lo, hi, 8, False) / brute <= 1.03
    # the symmetric default of a mixed-sign tensor is never worse than a fixed symmetric grid
    assert clipping_range(s, "mse") == clipping_range(s, "mse", symmetric=True)


def test_entropy_search_equals_a_direct_loop():
    """The vectorized KL search == the candidate-by-candidate one, on raw histograms."""
    rng = np.random.default_rng(7)
    for x in (rng.standard_normal(20_000), np.maximum(rng.laplace(size=20_000), 0)):
        a = np.abs(x)
        a = a[a != 0]
        h = np.histogram(a, bins=512, range=(0, a.max()))[0].astype(np.float64)
        kl = _kl_direct(h, 64)
        assert _entropy_index(h, 64) == int(np.flatnonzero(kl == kl.min())[-1])


def test_percentile_100_is_the_exact_range_even_when_the_histogram_is_strided():
    """A histogram of every 7th value missed the maximum: percentile 100 gave the top of
    the histogram's last bin (9.0 for a max of 9.38 on the MNIST CNN's conv2 output)."""
    x = np.random.default_rng(1).uniform(0, 8, 7000).astype(np.float32)
    x[3] = 9.38  # not at a multiple of 7
    stats = TensorStats.of(x)
    sampled = TensorStats.of(x[::7])
    stats = TensorStats(min=stats.min, max=stats.max, count=stats.count, hist=sampled.hist, hist_stride=7)
    assert clipping_range(stats, "percentile", percentile=100) == (float(x.min()), float(x.max()))
    assert clipping_range(stats, "percentile", percentile=100, symmetric=False) == (float(x.min()), float(x.max()))


def test_entropy_keeps_a_narrow_band_away_from_zero():
    """A sigmoid gate's outputs in [0.40, 0.62]: the KL minimum used to sit at the band's
    lower edge (P and Q one bin each, KL 0), saturating every value."""
    x = np.random.default_rng(0).uniform(0.40, 0.62, 20000).astype(np.float32)
    lo, hi = clipping_range(TensorStats.of(x), "entropy")
    assert lo == float(x.min()) and hi >= float(np.median(x))
    assert np.mean(x > hi) < 0.01


def test_entropy_threshold_near_direct_kl_on_raw_values(onnx_large):
    """The KL threshold from the log histogram vs the same search on a 2048-bin linear
    histogram of the raw values, on >= 10^6 values: with fewer, the raw computation
    itself moves by up to 20 % with the sample (empty fine bins in the tail)."""
    rng = np.random.default_rng(5)
    n = 2_000_000
    raw = {
        "normal+outliers": np.concatenate([rng.standard_normal(n), [40.0, -35.0, 60.0]]),
        "laplace": rng.laplace(scale=0.5, size=n),
        "relu_half_zero": np.maximum(rng.standard_normal(n) * 2.0, 0.0),
        "relu_laplace+outlier": np.concatenate([np.maximum(rng.laplace(scale=3.0, size=n), 0.0), [100.0]]),
    }
    data = {k: (v.astype(np.float32), TensorStats.of(v.astype(np.float32))) for k, v in raw.items()}
    data["onnx_conv1_relu"] = onnx_large
    for name, (x, s) in data.items():
        lo, hi = clipping_range(s, "entropy")
        t = max(-lo, hi)
        ref = _entropy_direct(x)
        assert abs(t / ref - 1.0) <= BIN, (name, t, ref)


def test_ranges_never_leave_the_observed_range(cases):
    for x, s in cases.values():
        for method in METHODS:
            for sym in (None, True, False):
                lo, hi = clipping_range(s, method, symmetric=sym)
                assert float(x.min()) <= lo <= hi <= float(x.max()), (method, sym, lo, hi)


def test_deterministic_and_merge_invariant():
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.laplace(size=60_000), [25.0, -30.0]]).astype(np.float32)
    relu = np.maximum(x, 0)
    for data in (x, relu):
        whole = TensorStats.of(data)
        pieces = np.array_split(data[rng.permutation(data.size)], 5)
        merged = TensorStats()
        for piece in pieces[::-1]:
            merged = merged.merge(TensorStats.of(piece))
        again = TensorStats.from_dict(whole.to_dict())
        for method in METHODS:
            for sym in (None, True, False):
                ref = clipping_range(whole, method, symmetric=sym)
                assert clipping_range(merged, method, symmetric=sym) == ref  # bit for bit
                assert clipping_range(again, method, symmetric=sym) == ref


def test_degenerate_tensors():
    zeros = TensorStats.of(np.zeros(100, np.float32))
    const = TensorStats.of(np.full(100, 6.0, np.float32))
    neg = TensorStats.of(-np.abs(np.random.default_rng(0).standard_normal(1000)).astype(np.float32))
    for method in METHODS:
        assert clipping_range(zeros, method) == (0.0, 0.0)
        assert clipping_range(const, method) == (6.0, 6.0)
        lo, hi = clipping_range(neg, method)
        assert neg.min <= lo < hi == neg.max


def test_range_table(onnx_case):
    _, _, cal = onnx_case
    base = cal.table
    for method in METHODS:
        t = range_table(cal, method, percentile=99.9)
        assert list(t.columns) == COLUMNS + ["Method"]
        assert list(t["Optimized Layer Name"]) == list(base["Optimized Layer Name"])
        learn = t["Learnables / Activations"] != "Activations"
        assert (t.loc[learn, "MinValue"] == base.loc[learn, "MinValue"]).all()
        assert (t.loc[learn, "MaxValue"] == base.loc[learn, "MaxValue"]).all()
        assert set(t.loc[learn, "Method"]) == {"minmax"} and set(t.loc[~learn, "Method"]) == {method}
        assert (t["MinValue"] >= base["MinValue"]).all() and (t["MaxValue"] <= base["MaxValue"]).all()
        for e, row in zip(cal.entries, t.itertuples(index=False)):
            if e.kind == "Activations":
                assert (row.MinValue, row.MaxValue) == clipping_range(e.stats, method, percentile=99.9)
    minmax = range_table(cal)
    assert minmax[COLUMNS].equals(base[COLUMNS])


def test_bad_input_raises_configuration_error(onnx_case):
    s = TensorStats.of(np.arange(10, dtype=np.float32))
    with pytest.raises(ConfigurationError, match="minmax, percentile, mse, entropy"):
        clipping_range(s, "kl")
    for bad in (
        {"percentile": 101},
        {"percentile": -1},
        {"percentile": float("nan")},
        {"percentile": "99"},
        {"bits": 1},
        {"bits": 8.0},
        {"bits": True},
        {"symmetric": "yes"},
        {"num_quantized_bins": 1},
        {"num_bins": 64},
    ):
        with pytest.raises(ConfigurationError):
            clipping_range(s, "percentile", **bad)
    no_hist = TensorStats(min=0.0, max=1.0, count=5, hist=None)
    assert clipping_range(no_hist) == (0.0, 1.0)
    with pytest.raises(ConfigurationError, match="histogram"):
        clipping_range(no_hist, "entropy")
    with pytest.raises(ConfigurationError, match="no values"):
        clipping_range(TensorStats(), "mse")
    with pytest.raises(ConfigurationError, match="non-finite"):
        clipping_range(TensorStats.of(np.array([1.0, np.inf], np.float32)), "percentile")
    cal = onnx_case[2]
    with pytest.raises(ConfigurationError, match="valid options"):
        range_table(cal, "percentile", percentil=99.9)
    with pytest.raises(ConfigurationError, match="valid methods"):
        range_table(cal, "median")


def test_calibration_ranges_method_on_a_real_pass():
    from tinymodels import images, small_cnn

    import quantscope as qs

    cal = qs.calibrate(small_cnn(seed=2), images(32), progress=False)
    exact = range_table(cal, "minmax")
    pct = range_table(cal, "percentile", percentile=99.0)
    act = pct["Learnables / Activations"] == "Activations"
    assert (pct.loc[act, "MaxValue"] <= exact.loc[act, "MaxValue"]).all()
    assert (pct.loc[act, "MaxValue"] < exact.loc[act, "MaxValue"]).any()
    assert set(pct["Method"][act]) == {"percentile"}
