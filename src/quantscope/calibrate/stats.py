"""Mergeable per-tensor statistics: min, max, count and a fixed-edge histogram.

The histogram needs no range in advance: a float32 value's bin is read off its
bit pattern, the sign, the 8 exponent bits and the top ``MANTISSA_BITS`` mantissa
bits (``bits >> (23 - MANTISSA_BITS)``). Every bin is a half-open interval
``[lo, hi)`` of magnitudes with ``hi / lo <= 1 + 2**-MANTISSA_BITS`` (8 bins per
octave, relative width at most 12.5 %), with a sign. Zero (and float32
subnormals) fall in bin 0 of each sign.

Because the edges are fixed, ``update`` and ``merge`` are exact integer
additions plus min/max: the result does not depend on batch size, data order or
how the data was split between workers.

Counting every value of every activation costs about as much as the network
itself on large CNNs, so the collector may histogram a fixed systematic sample:
with ``hist_stride = s`` the histogram counts elements ``0, s, 2s, ...`` of each
sample's flattened tensor (the same positions for every sample, so the result
stays independent of batching and order). ``min``, ``max`` and ``count`` always
cover every value; ``hist.sum()`` is the number of values histogrammed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._compiled import loaded, prepare

__all__ = ["MANTISSA_BITS", "NUM_BINS", "TensorStats", "bin_edges"]

#: Mantissa bits kept in the bin index: 2**MANTISSA_BITS bins per octave.
MANTISSA_BITS = 3
_SHIFT = 23 - MANTISSA_BITS
#: Bins per sign (magnitude bins); the index space with the sign bit is twice this.
NUM_BINS = 1 << (8 + MANTISSA_BITS)


#: The compiled pass of :meth:`TensorStats._update_rows` (numpy where it is missing).
_KERNEL_MODULE = "quantscope.calibrate._numba_stats"
#: Sortable int32 keys of -inf and +inf (see ``_numba_stats.row_stats``): a key
#: beyond them is a NaN.
_KEY_NEG_INF = -0x7F800001
_KEY_POS_INF = 0x7F800000

_CHUNK = 1 << 18
#: Values per block in the row-wise update (whole rows; a row larger than this is a block).
_BLOCK_VALUES = 1 << 22


def _add_bin_counts(hist: np.ndarray, bits: np.ndarray) -> None:
    """``hist += bincount(bits >> _SHIFT)``, in cache-sized chunks through one reused
    index buffer (3-8x faster than one big ``bincount`` on large tensors)."""
    buf = np.empty(min(_CHUNK, bits.size), dtype=np.intp)
    for start in range(0, bits.size, _CHUNK):
        chunk = bits[start : start + _CHUNK]
        idx = buf[: chunk.size]
        np.right_shift(chunk, _SHIFT, out=idx, casting="unsafe")
        hist += np.bincount(idx, minlength=hist.size)


def _from_key(key: int) -> float:
    """The float32 value (as a Python float) of a sortable int32 key."""
    bits = key ^ 0x7FFFFFFF if key < 0 else key
    return float(np.array([bits], dtype=np.int32).view(np.float32)[0])


def prepare_kernel() -> None:
    """Start loading the compiled pass in the background (returns at once)."""
    prepare(_KERNEL_MODULE, "row_stats")


def bin_edges() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper magnitude edges of the ``NUM_BINS`` magnitude bins, float64.

    Bin ``i`` holds magnitudes ``lo[i] <= |x| < hi[i]``; the last bins (exponent
    255) are Inf/NaN and never hold finite values.
    """
    idx = np.arange(NUM_BINS, dtype=np.uint64)
    with np.errstate(invalid="ignore"):  # the last bins are NaN patterns
        return _edges(idx)


def _edges(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = (idx << np.uint64(_SHIFT)).astype(np.uint32).view(np.float32).astype(np.float64)
    hi_bits = (idx + np.uint64(1)) << np.uint64(_SHIFT)
    hi_bits = np.minimum(hi_bits, np.uint64(0x7F800000)).astype(np.uint32)
    hi = hi_bits.view(np.float32).astype(np.float64)
    return lo, hi


@dataclass
class TensorStats:
    """Statistics of every value a tensor took: exact min/max/count and a histogram.

    Attributes:
        min, max: smallest and largest value seen (float64 holding the exact float32).
        count: number of values seen.
        hist: int64 array of length ``2 * NUM_BINS``; ``hist[:NUM_BINS]`` counts
            values with sign bit 0 (``+0`` and positives) by magnitude bin,
            ``hist[NUM_BINS:]`` counts negatives (and ``-0``). None when loaded from CSV.
        hist_stride: 1 when the histogram counts every value; ``s`` when it counts
            every ``s``-th value of each sample (axis 0 is the sample axis).
    """

    min: float = float("inf")
    max: float = float("-inf")
    count: int = 0
    hist: np.ndarray | None = field(default_factory=lambda: np.zeros(2 * NUM_BINS, dtype=np.int64))
    hist_stride: int = 1

    # ---- building ----------------------------------------------------------------
    def update(self, x: np.ndarray) -> TensorStats:
        """Add every value of ``x`` (any shape, float). Returns self.

        Values are read as float32 for the histogram; min/max are exact for
        float32 inputs. Non-finite values are counted by ``min``/``max`` being
        NaN/Inf: check :meth:`finite` after updating.
        """
        if x.size == 0:
            return self
        if self.hist is not None and x.dtype == np.float32 and x.ndim > 1 and x.flags.c_contiguous:
            return self._update_rows(x.reshape(len(x), -1))
        lo = float(np.min(x))
        hi = float(np.max(x))
        if np.isnan(lo) or np.isnan(hi):
            self.min = self.max = float("nan")
        else:
            self.min = min(self.min, lo) + 0.0
            self.max = max(self.max, hi) + 0.0
        self.count += int(x.size)
        if self.hist is not None:
            if self.hist_stride > 1 and x.ndim > 1:
                x = x.reshape(len(x), -1)[:, :: self.hist_stride]
            bits = np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32)
            _add_bin_counts(self.hist, bits)
        return self

    def _update_rows(self, rows: np.ndarray) -> TensorStats:
        """:meth:`update` for contiguous float32 ``(samples, values)``: min and max of
        every value and the histogram of positions ``0, s, 2s, ...`` of every row, in
        one compiled pass (``calibrate/_numba_stats.py``) once numba has loaded, else
        through few numpy calls a block of rows at a time (at most ``_BLOCK_VALUES``
        values). Both give the same results, bit for bit."""
        s = self.hist_stride
        n, m = rows.shape
        kernel = loaded(_KERNEL_MODULE, "row_stats")
        if kernel is not None:
            lo_key, hi_key = kernel(rows, s, self.hist)
            nan = lo_key < _KEY_NEG_INF or hi_key > _KEY_POS_INF
            lo = min(self.min, _from_key(lo_key))
            hi = max(self.max, _from_key(hi_key))
        else:
            per_block = max(1, _BLOCK_VALUES // max(m, 1))
            lo, hi, nan = self.min, self.max, False
            hist = self.hist
            for start in range(0, n, per_block):
                block = rows[start : start + per_block]
                cmin, cmax = block.min(), block.max()
                if cmin != cmin or cmax != cmax:  # NaN
                    nan = True
                lo = min(lo, float(cmin))
                hi = max(hi, float(cmax))
                sampled = block[:, ::s].view(np.uint32)
                idx = np.empty(sampled.shape, dtype=np.intp)
                np.right_shift(sampled, _SHIFT, out=idx, casting="unsafe")
                hist += np.bincount(idx.reshape(-1), minlength=hist.size)
        if nan or np.isnan(self.min):
            self.min = self.max = float("nan")
        else:  # +0.0 for a zero of either sign: the same whichever pass found it
            self.min, self.max = lo + 0.0, hi + 0.0
        self.count += int(rows.size)
        return self

    @classmethod
    def of(cls, x: np.ndarray) -> TensorStats:
        """Statistics of one array."""
        return cls().update(x)

    def merge(self, other: TensorStats) -> TensorStats:
        """Combine with ``other`` (exact, order-independent). Returns a new object."""
        if self.hist is None or other.hist is None:
            hist = None
        else:
            if self.hist_stride != other.hist_stride and self.count and other.count:
                raise ValueError(f"cannot merge histograms of stride {self.hist_stride} and {other.hist_stride}")
            hist = self.hist + other.hist
        stride = self.hist_stride if self.count else other.hist_stride
        if np.isnan(self.min) or np.isnan(other.min):
            lo = hi = float("nan")
        else:
            lo, hi = min(self.min, other.min), max(self.max, other.max)
        return TensorStats(min=lo, max=hi, count=self.count + other.count, hist=hist, hist_stride=stride)

    # ---- reading -----------------------------------------------------------------
    @property
    def finite(self) -> bool:
        """True when no NaN or Inf has been seen."""
        return bool(np.isfinite(self.min) and np.isfinite(self.max)) or self.count == 0

    @property
    def max_abs(self) -> float:
        """Largest magnitude seen, ``max(|min|, |max|)``."""
        return max(abs(self.min), abs(self.max))

    def magnitude_hist(self) -> np.ndarray:
        """Counts by magnitude bin, both signs together (length ``NUM_BINS``)."""
        if self.hist is None:
            raise ValueError("these statistics have no histogram (loaded from CSV?)")
        return self.hist[:NUM_BINS] + self.hist[NUM_BINS:]

    def log2_hist(self) -> dict[int, int]:
        """Counts of nonzero magnitudes by octave: ``{k: count of 2**k <= |x| < 2**(k+1)}``
        (MATLAB's Deep Network Quantizer heat map); zeros and subnormals are not counted."""
        mag = self.magnitude_hist()
        per_octave = mag.reshape(256, -1).sum(axis=1)
        return {e - 127: int(c) for e, c in enumerate(per_octave) if c and e > 0}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorStats):
            return NotImplemented
        same_hist = (self.hist is None and other.hist is None) or (
            self.hist is not None and other.hist is not None and np.array_equal(self.hist, other.hist)
        )
        return (
            _same_float(self.min, other.min)
            and _same_float(self.max, other.max)
            and self.count == other.count
            and same_hist
            and (self.hist is None or self.hist_stride == other.hist_stride)
        )

    # ---- (de)serialization ---------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (strict JSON: a non-finite min or max is the string ``"inf"``,
        ``"-inf"`` or ``"nan"``); the histogram is stored sparse as ``[[bin, count], ...]``."""
        out: dict = {"min": _json_float(self.min), "max": _json_float(self.max), "count": self.count}
        if self.hist is not None:
            nz = np.flatnonzero(self.hist)
            out["hist"] = {
                "mantissa_bits": MANTISSA_BITS,
                "stride": self.hist_stride,
                "bins": [[int(i), int(self.hist[i])] for i in nz],
            }
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TensorStats:
        hist = None
        if d.get("hist") is not None:
            if d["hist"].get("mantissa_bits") != MANTISSA_BITS:
                raise ValueError(
                    f"histogram with {d['hist'].get('mantissa_bits')} mantissa bits; this "
                    f"quantscope uses {MANTISSA_BITS}"
                )
            hist = np.zeros(2 * NUM_BINS, dtype=np.int64)
            for i, c in d["hist"]["bins"]:
                i, c = int(i), int(c)
                if not (0 <= i < hist.size and 0 <= c < 2**63):
                    raise ValueError(f"histogram bin {i} with count {c} is out of range")
                hist[i] = c
        stride = int(d["hist"].get("stride", 1)) if d.get("hist") is not None else 1
        count = int(d["count"])
        if not (0 <= count < 2**63 and 1 <= stride < 2**31):
            raise ValueError(f"count {count} or histogram stride {stride} is out of range")
        return cls(min=float(d["min"]), max=float(d["max"]), count=count, hist=hist, hist_stride=stride)


def _json_float(v: float) -> float | str:
    """``v`` as JSON can hold it: a finite float, or ``"inf"``, ``"-inf"``, ``"nan"``
    (JSON has no infinities; ``float()`` reads these strings back)."""
    return v if np.isfinite(v) else ("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))


def _same_float(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b
