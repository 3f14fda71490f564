"""Clipping ranges from the statistics of the one calibration pass.

Every method reads only a :class:`~quantscope.calibrate.stats.TensorStats` (exact
min/max and the fixed-edge histogram), so percentile, MSE-optimal and entropy (KL)
ranges need no second pass over the data, work on merged statistics (Dask shards,
resumed runs), and are deterministic: the same statistics give the same numbers,
bit for bit. Definitions, formulas and resolutions: ``docs/ranges.md``.

Methods (:data:`METHODS`):

``"minmax"``
    ``(min, max)``, exact.
``"percentile"``
    the range holding ``percentile`` % of the values (onnxruntime's Percentile
    calibrator: on ``|x|`` by default), numpy's linear percentile with the sorted
    values modelled from the bins; within one bin (12.5 % relative) of the exact one.
``"mse"``
    the threshold with the least expected squared error of a uniform ``bits``-bit
    grid (rounding noise ``step^2/12``, clipping ``(|x|-T)^2``, flushing ``x^2``
    below half a step), values taken uniform inside each histogram bin.
``"entropy"``
    TensorRT's KL-divergence calibration on a fine linear histogram of ``|x|``
    (``num_bins`` bins up to ``max|x|``) re-binned from the log-spaced one.

Every range is clipped to the observed ``[min, max]``: a method only narrows it.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigurationError
from .result import COLUMNS, Calibration
from .stats import NUM_BINS, TensorStats, bin_edges

__all__ = ["METHODS", "RangeMethod", "clipping_range", "range_table"]


class RangeMethod(StrEnum):
    """How an activation's clipping range is chosen from its statistics."""

    MINMAX = "minmax"  # the observed min and max
    PERCENTILE = "percentile"  # the percentile of |x| (option ``percentile``)
    MSE = "mse"  # the range with the least expected squared quantization error
    ENTROPY = "entropy"  # the range with the least KL divergence (TensorRT's)


#: The clipping-range methods :func:`clipping_range` knows, by name.
METHODS = tuple(m.value for m in RangeMethod)

#: Keyword options of :func:`clipping_range` (and of :func:`range_table`).
OPTIONS = ("percentile", "bits", "symmetric", "num_quantized_bins", "num_bins")

_LO, _HI = bin_edges()
# the finite magnitude bins (exponent 255 holds Inf/NaN and never a finite value)
_FINITE = int(np.flatnonzero(np.isfinite(_HI))[-1]) + 1
_CHUNK = 1 << 20  # elements per (candidate x bin) block: bounds temporaries to ~10 MB each


# ----------------------------------------------------------------------------- API


def clipping_range(
    stats: TensorStats,
    method: str | RangeMethod = RangeMethod.MINMAX,
    *,
    percentile: float = 99.999,
    bits: int = 8,
    symmetric: bool | None = None,
    num_quantized_bins: int = 128,
    num_bins: int = 2048,
) -> tuple[float, float]:
    """The clipping range ``(lo, hi)`` of one tensor by ``method``.

    Args:
        stats: the tensor's statistics (with a histogram, except for ``"minmax"``).
        method: one of :data:`METHODS` (case-insensitive).
        percentile: ``"percentile"``: the share of values inside the range, in
            ``[0, 100]`` (onnxruntime's default 99.999).
        bits: ``"mse"``: width of the integer grid (2..32).
        symmetric: ``True``: one threshold ``T`` on ``|x|``, range ``(-T, T)``.
            ``False``: each end on its own (``"percentile"``: ``(100 - p) / 2`` % cut
            from each tail; ``"mse"``: an asymmetric grid of ``2^bits`` levels over
            ``[lo, hi]``; ``"entropy"``: a KL search per sign). ``None`` (default):
            ``True`` when the tensor has both signs; a tensor of one sign gets the
            one-sided range from 0 (for ``"percentile"`` and ``"entropy"`` this is
            the same as ``True``; for ``"mse"`` the grid is unsigned, ``2^bits - 1``
            steps over ``[0, T]``, as onnxruntime's asymmetric activations quantize
            a ReLU output).
        num_quantized_bins: ``"entropy"``: levels of the quantized distribution
            over ``[0, T]`` (TensorRT's 128 for int8).
        num_bins: ``"entropy"``: bins of the fine linear histogram over
            ``[0, max|x|]`` (TensorRT's and onnxruntime's Percentile 2048).

    Returns:
        ``(lo, hi)`` as Python floats, ``min <= lo <= hi <= max``.

    Raises:
        ConfigurationError: unknown method, bad option value, statistics without a
            histogram (loaded from CSV), with no values, or with NaN/Inf.
    """
    method = _check_method(method)
    opts = _check_options(
        percentile=percentile,
        bits=bits,
        symmetric=symmetric,
        num_quantized_bins=num_quantized_bins,
        num_bins=num_bins,
    )
    return _range(stats, method, opts)


def range_table(
    calibration: Calibration, method: str | RangeMethod = RangeMethod.MINMAX, **options: Any
) -> pd.DataFrame:
    """The calibration's range table with activation ranges by ``method``.

    Columns: MATLAB's ``Optimized Layer Name``, ``Network Layer Name``,
    ``Learnables / Activations``, ``MinValue``, ``MaxValue``, then ``Method``
    (the method that gave the row's range). Weights and Bias rows keep their exact
    min/max (``Method`` ``"minmax"``): the clipping methods apply to activations.

    Args:
        calibration: a :class:`~quantscope.calibrate.result.Calibration`.
        method: one of :data:`METHODS`.
        **options: the keyword options of :func:`clipping_range`.

    Raises:
        ConfigurationError: unknown method or option, bad option value, or an
            activation whose statistics cannot give a range (the message names it).
    """
    method = _check_method(method)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown range option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(OPTIONS)}"
        )
    opts = _check_options(**options)
    rows = []
    for e in calibration.entries:
        if e.kind == "Activations":
            try:
                lo, hi = _range(e.stats, method, opts)
            except ConfigurationError as exc:
                raise ConfigurationError(f"layer {e.layer!r} ({e.tensor}): {exc}") from None
            used = method.value
        else:
            lo, hi, used = float(e.stats.min), float(e.stats.max), "minmax"
        rows.append((e.row_name, e.network_layer, e.kind, lo, hi, used))
    df = pd.DataFrame(rows, columns=COLUMNS + ["Method"])
    df["MinValue"] = df["MinValue"].astype(np.float64)
    df["MaxValue"] = df["MaxValue"].astype(np.float64)
    return df


# ----------------------------------------------------------------------------- checks


def _check_method(method: Any) -> RangeMethod:
    if isinstance(method, str) and method.lower() in METHODS:
        return RangeMethod(method.lower())
    raise ConfigurationError(f"unknown range method {method!r}; valid methods: {', '.join(METHODS)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_options(
    percentile: Any = 99.999,
    bits: Any = 8,
    symmetric: Any = None,
    num_quantized_bins: Any = 128,
    num_bins: Any = 2048,
) -> dict:
    if isinstance(percentile, (bool, np.bool_)) or not isinstance(percentile, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"percentile must be a number in [0, 100], got {percentile!r}")
    percentile = float(percentile)
    if not 0.0 <= percentile <= 100.0:  # also rejects NaN
        raise ConfigurationError(f"percentile must be in [0, 100], got {percentile!r}")
    if not _is_int(bits) or not 2 <= bits <= 32:
        raise ConfigurationError(f"bits must be an integer from 2 to 32, got {bits!r}")
    if symmetric is not None and not isinstance(symmetric, (bool, np.bool_)):
        raise ConfigurationError(f"symmetric must be True, False or None, got {symmetric!r}")
    if not _is_int(num_quantized_bins) or num_quantized_bins < 2:
        raise ConfigurationError(f"num_quantized_bins must be an integer >= 2, got {num_quantized_bins!r}")
    if not _is_int(num_bins) or not num_quantized_bins <= num_bins <= 1 << 16:
        raise ConfigurationError(
            f"num_bins must be an integer from num_quantized_bins ({num_quantized_bins}) to 65536, got {num_bins!r}"
        )
    return {
        "percentile": percentile,
        "bits": int(bits),
        "symmetric": None if symmetric is None else bool(symmetric),
        "num_quantized_bins": int(num_quantized_bins),
        "num_bins": int(num_bins),
    }


def _range(stats: TensorStats, method: RangeMethod, opts: dict) -> tuple[float, float]:
    if not isinstance(stats, TensorStats):
        raise ConfigurationError(f"expected TensorStats, got {type(stats).__name__}")
    if stats.count == 0:
        raise ConfigurationError("these statistics hold no values")
    if not stats.finite:
        raise ConfigurationError(f"non-finite range ({stats.min}, {stats.max}): NaN or Inf was seen")
    vmin, vmax = float(stats.min), float(stats.max)
    if method == "minmax":
        return vmin, vmax
    if stats.hist is None:
        raise ConfigurationError(
            f"method {method!r} needs the histogram; these statistics have none (loaded from a CSV "
            "table? save calibrations as .json to keep histograms)"
        )
    if int(stats.hist.sum()) == 0 or max(abs(vmin), abs(vmax)) == 0.0:
        return vmin, vmax
    sym = opts["symmetric"]
    both_signs = vmin < 0.0 < vmax
    if method == "percentile":
        return _percentile_range(stats, opts["percentile"], sym is not False)
    if method == "mse":
        return _mse_range(stats, opts["bits"], both_signs if sym is None else sym)
    return _entropy_range(stats, opts["num_quantized_bins"], opts["num_bins"], sym is not False)


def _clip(stats: TensorStats, lo: float, hi: float) -> tuple[float, float]:
    """``(lo, hi)`` clipped to the observed ``[min, max]`` (``-0.0`` written as ``0.0``)."""
    return float(min(max(lo, stats.min), stats.max)) + 0.0, float(max(min(hi, stats.max), stats.min)) + 0.0


def _sym(stats: TensorStats, t: float) -> tuple[float, float]:
    return _clip(stats, -t, t)


# ----------------------------------------------------------------------------- bins


def _side_bins(stats: TensorStats, side: str, drop_zero: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-empty magnitude bins of one side: (lo, hi, count), edges clipped to the
    observed magnitudes of that side, in increasing order. ``side``: ``"pos"``
    (sign bit 0), ``"neg"`` or ``"abs"`` (both). ``drop_zero``: leave out magnitude
    bin 0 (exact zeros and float32 subnormals below 2^-129)."""
    if side == "pos":
        counts = stats.hist[:NUM_BINS]
        top = max(stats.max, 0.0)
        bottom = max(stats.min, 0.0)
    elif side == "neg":
        counts = stats.hist[NUM_BINS:]
        top = max(-stats.min, 0.0)
        bottom = max(-stats.max, 0.0)
    else:
        counts = stats.magnitude_hist()
        top = stats.max_abs
        bottom = stats.min if stats.min >= 0 else (-stats.max if stats.max <= 0 else 0.0)
    counts = counts[:_FINITE]
    nz = np.flatnonzero(counts)
    if drop_zero:
        nz = nz[nz > 0]
    lo = np.clip(_LO[nz], bottom, top)
    # bin 0 ([0, 2^-129): zeros, in practice) is taken as exact zeros
    hi = np.clip(np.where(nz == 0, 0.0, _HI[nz]), bottom, top)
    return lo, hi, counts[nz].astype(np.float64)


def _quantile(lo: np.ndarray, hi: np.ndarray, c: np.ndarray, q: float) -> float:
    """numpy's ``percentile(..., method="linear")`` (position ``q * (n - 1)`` in sorted
    order) with the sorted values modelled from the bins: the ``c`` values of bin
    ``[lo, hi]`` sit at the midpoints of ``c`` equal sub-intervals. Each modelled
    value lies in the true value's bin, so the result is within one bin width of
    the exact percentile. Bins must be in increasing order, counts > 0."""
    n = float(c.sum())
    if q <= 0.0:
        return float(lo[0])
    if q >= 1.0:
        return float(hi[-1])
    cum = np.cumsum(c)
    pos = q * (n - 1.0)

    def value(r: float) -> float:  # value of the element of 0-based rank r (integer)
        k = int(np.searchsorted(cum, r, side="right"))
        k = min(k, c.size - 1)
        before = cum[k] - c[k]
        return float(lo[k] + (r - before + 0.5) / c[k] * (hi[k] - lo[k]))

    r0 = math.floor(pos)
    frac = pos - r0
    v0 = value(r0)
    if frac == 0.0:
        return v0
    return v0 + frac * (value(r0 + 1) - v0)


def _percentile_range(stats: TensorStats, p: float, symmetric: bool) -> tuple[float, float]:
    if p >= 100.0:  # every value: the exact range (a strided histogram may have missed the extremes)
        return _clip(stats, stats.min, stats.max)
    if symmetric:
        lo, hi, c = _side_bins(stats, "abs")
        return _sym(stats, _quantile(lo, hi, c, p / 100.0))
    # signed order: negative bins by decreasing magnitude, then the non-negative bins
    nlo, nhi, nc = _side_bins(stats, "neg")
    plo, phi, pc = _side_bins(stats, "pos")
    lo = np.concatenate([-nhi[::-1], plo])
    hi = np.concatenate([-nlo[::-1], phi])
    c = np.concatenate([nc[::-1], pc])
    cut = (100.0 - p) / 200.0
    return _clip(stats, _quantile(lo, hi, c, cut), _quantile(lo, hi, c, 1.0 - cut))


# ----------------------------------------------------------------------------- mse


def _cube_int(x0: np.ndarray, x1: np.ndarray, shift: np.ndarray | float = 0.0) -> np.ndarray:
    """``integral of (v - shift)^2 dv over [x0, x1]``, 0 where ``x1 <= x0``."""
    x1 = np.maximum(x1, x0)
    return ((x1 - shift) ** 3 - (x0 - shift) ** 3) / 3.0


def _side_error(lo, hi, c, t: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Expected squared error of one side's bins for thresholds ``t`` and steps
    ``step`` (arrays of the same shape (m,)), values uniform inside each bin:
    ``v^2`` below ``step/2`` (flushed to 0), ``step^2/12`` up to ``t`` (rounding),
    ``(v - t)^2`` above ``t`` (saturated). Returns shape (m,)."""
    out = np.zeros(t.shape, dtype=np.float64)
    if c.size == 0:
        return out
    width = hi - lo
    wide = width > 0
    rows = max(1, _CHUNK // max(c.size, 1))
    for s in range(0, t.size, rows):
        T = t[s : s + rows, None]
        h = step[s : s + rows, None] / 2.0
        a, b = lo[None, :], hi[None, :]
        flush = _cube_int(a, np.minimum(b, h))
        noise = np.maximum(np.minimum(b, T) - np.maximum(a, h), 0.0) * (4.0 * h * h / 12.0)
        clipped = _cube_int(np.maximum(a, T), b, T)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(wide, (flush + noise + clipped) / np.where(wide, width, 1.0), 0.0)
        # zero-width bins (all values equal, e.g. the max on a bin edge): the point's error
        point = np.where(a < h, a * a, np.where(a <= T, 4.0 * h * h / 12.0, (a - T) ** 2))
        mean = np.where(wide, mean, point)
        out[s : s + rows] = (mean * c).sum(axis=1)  # numpy's own sum, not BLAS: same bits on any thread count
    return out


def _candidates(lo: np.ndarray, hi: np.ndarray, side_max: float) -> np.ndarray:
    """Thresholds to try: every bin edge from the first non-empty bin to the top.
    A side whose histogram is empty or all zeros (a sampled histogram can miss
    values that min/max saw) gets its exact extreme ``side_max`` only."""
    if hi.size == 0 or hi[-1] <= 0:
        return np.array([side_max], dtype=np.float64)
    top = float(hi[-1])
    first = int(np.searchsorted(_HI, lo[0], side="right"))
    last = int(np.searchsorted(_HI, top, side="left"))
    edges = _HI[first:last]
    cand = np.unique(np.concatenate([edges[(edges > 0) & (edges < top)], [top]]))
    return cand[cand > 0]


def _refine(cand: np.ndarray, best: int, sub: int = 16) -> np.ndarray:
    """``sub`` points in each interval next to ``cand[best]`` (below the lowest
    candidate: down to 7/8 of it)."""
    left = cand[best - 1] if best > 0 else cand[best] * 0.875
    right = cand[best + 1] if best + 1 < cand.size else cand[best]
    return np.unique(np.concatenate([np.linspace(left, cand[best], sub + 1), np.linspace(cand[best], right, sub + 1)]))


def _search(cand: np.ndarray, cost) -> float:
    """The candidate with the least cost (ties: the largest threshold), then a
    refinement between its neighbours."""
    err = cost(cand)
    best = int(cand.size - 1 - np.argmin(err[::-1]))
    fine = _refine(cand, best)
    err = cost(fine)
    return float(fine[int(fine.size - 1 - np.argmin(err[::-1]))])


def _mse_range(stats: TensorStats, bits: int, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        lo, hi, c = _side_bins(stats, "abs")
        levels = float((1 << (bits - 1)) - 1)
        t = _search(_candidates(lo, hi, stats.max_abs), lambda T: _side_error(lo, hi, c, T, T / levels))
        return _sym(stats, t)
    levels = float((1 << bits) - 1)
    pos, neg = _side_bins(stats, "pos"), _side_bins(stats, "neg")
    has_pos, has_neg = stats.max > 0, stats.min < 0
    if not has_neg:
        t = _search(_candidates(pos[0], pos[1], stats.max), lambda T: _side_error(*pos, T, T / levels))
        return _clip(stats, 0.0, t)
    if not has_pos:
        t = _search(_candidates(neg[0], neg[1], -stats.min), lambda T: _side_error(*neg, T, T / levels))
        return _clip(stats, -t, 0.0)
    # both signs, asymmetric grid over [-tn, tp]: coordinate descent from the symmetric optimum
    cp, cn = _candidates(pos[0], pos[1], stats.max), _candidates(neg[0], neg[1], -stats.min)
    lo0, hi0 = _mse_range(stats, bits, True)
    tp, tn = hi0, -lo0

    def total(tp_: np.ndarray, tn_: np.ndarray) -> np.ndarray:
        step = (tp_ + tn_) / levels
        return _side_error(*pos, tp_, step) + _side_error(*neg, tn_, step)

    best = float(total(np.array([tp]), np.array([tn]))[0])
    for _ in range(32):
        tp_new = _search(cp, lambda T, tn=tn: total(T, np.full_like(T, tn)))
        tn_new = _search(cn, lambda T, tp=tp_new: total(np.full_like(T, tp), T))
        err = float(total(np.array([tp_new]), np.array([tn_new]))[0])
        if err >= best:
            break
        tp, tn, best = tp_new, tn_new, err
    return _clip(stats, -tn, tp)


# ----------------------------------------------------------------------------- entropy


def _pchip(xp: np.ndarray, fp: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Monotone cubic (Fritsch-Carlson PCHIP) interpolation of increasing knots
    ``xp`` (strictly) and non-decreasing ``fp`` at ``x`` (inside ``[xp[0], xp[-1]]``).
    Passes through every knot and never decreases."""
    h = np.diff(xp)
    d = np.diff(fp) / h
    m = np.empty(fp.size, dtype=np.float64)
    m[0], m[-1] = d[0], d[-1]
    if fp.size > 2:
        d0, d1, h0, h1 = d[:-1], d[1:], h[:-1], h[1:]
        w1, w2 = 2.0 * h1 + h0, h1 + 2.0 * h0
        with np.errstate(divide="ignore", invalid="ignore"):
            harmonic = (w1 + w2) / (w1 / d0 + w2 / d1)
        m[1:-1] = np.where((d0 > 0) & (d1 > 0), harmonic, 0.0)
    k = np.clip(np.searchsorted(xp, x, side="right") - 1, 0, h.size - 1)
    t = (x - xp[k]) / h[k]
    t2, t3 = t * t, t * t * t
    return (
        (2 * t3 - 3 * t2 + 1) * fp[k]
        + (t3 - 2 * t2 + t) * h[k] * m[k]
        + (-2 * t3 + 3 * t2) * fp[k + 1]
        + (t3 - t2) * h[k] * m[k + 1]
    )


def _linear_hist(lo: np.ndarray, hi: np.ndarray, c: np.ndarray, top: float, num_bins: int) -> np.ndarray:
    """Re-bin log-spaced bins onto ``num_bins`` equal bins over ``[0, top]``.

    The cumulative count is known exactly at every log-bin edge; between edges it
    is interpolated by a monotone cubic (PCHIP), so every log bin keeps its count
    exactly and the density is continuous instead of a staircase of 12.5 %-wide
    steps. Zero-width bins (all values equal, e.g. the max on a bin edge) are point
    masses in the fine bin that holds them."""
    edges = np.linspace(0.0, top, num_bins + 1)
    out = np.zeros(num_bins, dtype=np.float64)
    wide = hi > lo
    if wide.any():
        a, b, w = lo[wide], hi[wide], c[wide]
        cum = np.cumsum(w)
        xk, first = np.unique(np.stack([a, b], axis=1).reshape(-1), return_index=True)
        fk = np.stack([cum - w, cum], axis=1).reshape(-1)[first]
        inner = np.clip(edges, xk[0], xk[-1])
        F = _pchip(xk, fk, inner)
        F = np.maximum.accumulate(np.clip(F, 0.0, cum[-1]))  # exact monotonicity under rounding
        out += np.diff(F)
    if (~wide).any():
        idx = np.minimum((lo[~wide] / top * num_bins).astype(np.int64), num_bins - 1)
        np.add.at(out, idx, c[~wide])
    return out


def _entropy_index(h: np.ndarray, nq: int) -> int:
    """TensorRT's KL-divergence search on a linear histogram ``h`` (float counts):
    the number of bins ``i`` (threshold ``i / len(h) * top``), ``nq <= i <= len(h)``,
    with the least ``KL(P || Q)``; ties go to the largest ``i``. Candidates that leave
    more than half of the values above the threshold are skipped (see the code).

    ``P``: ``h[:i]`` with the outliers ``sum(h[i:])`` added to its last bin.
    ``Q``: ``h[:i]`` merged into ``nq`` groups (bin ``j`` in group ``j * nq // i``),
    each group's total spread evenly over its non-empty bins, empty bins 0. Both
    normalised to sum 1; ``KL = sum P log(P / Q)`` over ``P > 0`` (infinite where
    ``Q = 0 < P``).

    Computed per group, not per bin: inside a group ``Q`` is constant on the
    non-empty bins, so ``sum P log Q`` is ``P(group) log Q(group)``, and ``sum P log P``
    comes from prefix sums of ``h log h``: ``O(nq)`` work per candidate.
    """
    n = h.size
    total = float(h.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        hlogh = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    C = np.concatenate([[0.0], np.cumsum(h)])
    Z = np.concatenate([[0], np.cumsum(h > 0)])
    L = np.concatenate([[0.0], np.cumsum(hlogh)])
    i = np.arange(nq, n + 1, dtype=np.int64)
    log_total = math.log(total)
    out = total - C[i]  # outliers folded into bin i - 1
    last = h[i - 1] + out
    with np.errstate(divide="ignore", invalid="ignore"):
        # sum P log P (P = h / total, bin i - 1 replaced by `last`)
        plogp = (L[i - 1] - C[i - 1] * log_total + np.where(last > 0, last * (np.log(last) - log_total), 0.0)) / total
        # sum P log Q, group by group
        g = np.arange(nq + 1, dtype=np.int64)[None, :]
        bounds = np.minimum((g * i[:, None] + nq - 1) // nq, i[:, None])
        gsum = C[bounds[:, 1:]] - C[bounds[:, :-1]]
        gnz = Z[bounds[:, 1:]] - Z[bounds[:, :-1]]
        logq = np.log(gsum) - np.log(np.maximum(gnz, 1)) - np.log(C[i])[:, None]
        plogq = np.where(gsum > 0, gsum * logq, 0.0).sum(axis=1) / total
        # the outliers sit in bin i - 1, whose Q is its group's (0 if the bin is empty)
        plogq = plogq + np.where(out > 0, np.where(h[i - 1] > 0, out * logq[:, -1], -np.inf), 0.0) / total
        kl = plogp - plogq
    kl = np.where(np.isnan(kl) | (C[i] <= 0), np.inf, kl)
    # KL is blind to how far the clipped values move: values in a narrow band away from 0
    # (a sigmoid gate in [0.4, 0.62]) cut at the band's lower edge make P and Q one bin
    # each (KL 0) and saturate them all. The method trims tails: keep at least half inside.
    kl = np.where(2.0 * C[i] < total, np.inf, kl)
    return int(i[kl.size - 1 - int(np.argmin(kl[::-1]))])


def _entropy_threshold(lo: np.ndarray, hi: np.ndarray, c: np.ndarray, nq: int, num_bins: int) -> float:
    if c.size == 0:
        return 0.0
    top = float(hi[-1])
    h = _linear_hist(lo, hi, c, top, num_bins)
    return _entropy_index(h, nq) / num_bins * top


def _entropy_range(stats: TensorStats, nq: int, num_bins: int, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        return _sym(stats, _entropy_threshold(*_side_bins(stats, "abs", True), nq, num_bins))
    tp = _entropy_threshold(*_side_bins(stats, "pos", True), nq, num_bins) if stats.max > 0 else 0.0
    tn = _entropy_threshold(*_side_bins(stats, "neg", True), nq, num_bins) if stats.min < 0 else 0.0
    return _clip(stats, -tn, tp)
