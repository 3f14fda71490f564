"""The report's data: one plain, JSON-ready dict built from quantscope's results.

:func:`build_report` reads what the stages computed (a calibration, a validation
result, a quantization plan, an FPGA profile and compiled network) and returns a
dict of lists, strings, numbers and None only: the page is rendered from it
(:mod:`quantscope.report.render`) and it is written beside the page as
``report.json``. It holds no timestamp but the footer's date, and nothing whose order
depends on the run (sets, ids), so the same inputs give the same dict.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
from typing import Any

import numpy as np

from ..calibrate.result import Calibration
from ..calibrate.stats import MANTISSA_BITS, NUM_BINS, TensorStats, bin_edges
from ..errors import ConfigurationError, QuantscopeError, option
from ..quantize.numerics import PowerOfTwo, pow2_exponent
from ..quantize.plan import QParams, QuantPlan, make_plan

__all__ = ["FORMAT", "VERSION", "build_report", "report_date"]

FORMAT = "quantscope.report"
VERSION = 1
#: Heat-map columns at most (power-of-two bins of |x|); smaller magnitudes join the first.
MAX_OCTAVES = 44
#: Per-channel weight ranges: at most this many points per layer (channels grouped beyond).
MAX_CHANNELS = 256
#: The layers marked worst in the error panel.
WORST = 3

_SUB = 1 << MANTISSA_BITS  # fine histogram bins per octave


def _g(x: Any) -> str:
    """A number for reading: ``-inf``/``inf``/``nan`` as such, else 6 significant digits."""
    x = float(x)
    return str(x) if not math.isfinite(x) else f"{x:.6g}"


def _f(x: Any, digits: int | None = None) -> float | None:
    """A JSON number: None for NaN/inf/None, else float (rounded to ``digits``
    significant digits when given)."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    if digits is not None and x != 0:
        x = float(f"{x:.{digits}g}")
    return x


def _s(v: Any) -> str | None:
    """A plain string (an enum member's value, ``StrEnum`` or not), or None."""
    if v is None:
        return None
    value = getattr(v, "value", v)
    return value if isinstance(value, str) else str(v)


def report_date(date: Any = None) -> str:
    """The footer's date, ``YYYY-MM-DD``: ``date`` (a ``datetime.date`` or an ISO
    string), else ``SOURCE_DATE_EPOCH`` (reproducible builds), else today (UTC)."""
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if epoch:
            try:
                return _dt.datetime.fromtimestamp(int(epoch), _dt.UTC).date().isoformat()
            except (ValueError, OverflowError, OSError):
                raise ConfigurationError(
                    f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970; unset it or fix it"
                ) from None
        return _dt.datetime.now(_dt.UTC).date().isoformat()
    if isinstance(date, _dt.datetime):
        return date.date().isoformat()
    if isinstance(date, _dt.date):
        return date.isoformat()
    try:
        return _dt.date.fromisoformat(str(date)).isoformat()
    except ValueError:
        raise ConfigurationError(
            f"{option('date=', '--report-date')} {date!r}: give a date as YYYY-MM-DD (e.g. 2026-01-31)"
        ) from None


# ---------------------------------------------------------------- windows and bins
class _Window:
    """The int8 (or int32) grid of one tensor: where its values flush to zero,
    where they saturate, and the window in log2 |x| drawn on the heat map."""

    def __init__(self, qp: QParams):
        self.qp = qp
        s = np.asarray(qp.scale, np.float64).reshape(-1)
        z = np.asarray(qp.zero_point, np.float64).reshape(-1)
        self.per_channel = qp.axis is not None and s.size > 1
        lo_s = float(s.min())
        top = max(float(np.max((qp.qmax - z + 0.5) * s)), float(np.max((z - qp.qmin + 0.5) * s)))
        self.log2 = (math.log2(0.5 * lo_s), math.log2(top)) if lo_s > 0 and top > 0 else None
        self.scale, self.zero = float(s[0]), float(z[0])

    def classify(self, values: np.ndarray) -> np.ndarray:
        """0 in range, 1 saturated, 2 flushed, for values of a per-tensor grid."""
        t = values / self.scale
        hi, lo = self.qp.qmax - self.zero + 0.5, self.qp.qmin - self.zero - 0.5
        out = np.zeros(values.shape, np.int8)
        out[(t > hi) | (t < lo)] = 1
        out[(np.abs(t) < 0.5) & (values != 0)] = 2
        return out

    def grid(self, values: np.ndarray) -> np.ndarray:
        """The values after quantizing and dequantizing (nearest, saturating)."""
        q = np.clip(np.rint(values / self.scale), self.qp.qmin - self.zero, self.qp.qmax - self.zero)
        return q * self.scale


def _fine_bins() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per magnitude bin: its octave (log2 of the lower edge, floor), log2 of both
    edges (NaN for the zero bins and the inf/NaN ones) and the midpoint."""
    lo, hi = bin_edges()
    with np.errstate(divide="ignore", invalid="ignore"):
        x0, x1 = np.log2(lo), np.log2(hi)
    idx = np.arange(NUM_BINS)
    octave = (idx >> MANTISSA_BITS) - 127
    real = (idx >= _SUB) & np.isfinite(x1) & (idx < NUM_BINS - _SUB)
    x0, x1 = np.where(real, x0, np.nan), np.where(real, x1, np.nan)
    mid = np.where(real, 0.5 * (lo + hi), 0.0)
    return octave, np.stack([x0, x1]), mid


_BINS: tuple | None = None


def _bins():
    global _BINS
    if _BINS is None:
        _BINS = _fine_bins()
    return _BINS


def _signed_counts(stats: TensorStats) -> tuple[np.ndarray, np.ndarray]:
    """(values, counts): the midpoint of every non-empty fine bin with its sign (no
    further out than the tensor's min and max), and how many values it holds; the
    zero bins give value 0."""
    _, _, mid = _bins()
    hist = stats.hist
    pos, neg = hist[:NUM_BINS], hist[NUM_BINS:]
    ip, ineg = np.flatnonzero(pos), np.flatnonzero(neg)
    values = np.concatenate([mid[ip], -mid[ineg]])
    counts = np.concatenate([pos[ip], neg[ineg]]).astype(np.float64)
    if stats.finite and stats.count:
        # the outermost bins' midpoints may lie beyond the values seen: take the extremes
        np.clip(values, min(stats.min, 0.0), max(stats.max, 0.0), out=values)
    return values, counts


def _magnitude_bins(values: np.ndarray) -> np.ndarray:
    """The fine magnitude bin of each value (as the statistics' float32 bit pattern)."""
    bits = np.abs(values).astype(np.float32).view(np.uint32)
    return (bits >> np.uint32(23 - MANTISSA_BITS)).astype(np.int64)


# ---------------------------------------------------------------- the dict
def build_report(
    *,
    calibration: Calibration | None = None,
    validation: Any = None,
    plan: QuantPlan | None = None,
    profile: Any = None,
    compiled: Any = None,
    network: Any = None,
    target: str = "fpga",
    command: str | None = None,
    date: Any = None,
    title: str | None = None,
) -> dict:
    """The report's data as a JSON-ready dict (see docs/report.md for its fields).

    Args:
        calibration: a :class:`~quantscope.Calibration` (the ranges and histograms).
        validation: a :class:`~quantscope.ValidationResult` (metrics, per-layer errors);
            its plan and calibration are used when not given.
        plan: the quantization plan (a ``QuantizedNetwork``'s ``plan``); made from the
            calibration with ``target`` when absent and the calibration has its network.
        profile: an FPGA :class:`~quantscope.fpga.Profile`.
        compiled: the :class:`~quantscope.fpga.CompiledNetwork` (placement, DDR map).
        network: the prepared network, when none of the others carries it.
        target: the scheme of the windows when only a calibration is given.
        command: the command that reproduces the run (shown in the verdict).
        date: the footer's date (see :func:`report_date`).
        title: the page title (default: the model's name).
    """
    notes: list[str] = []
    if validation is not None:
        plan = plan or validation.plan
        calibration = calibration or getattr(validation, "calibration", None)
    network = network or (plan.network if plan is not None else None)
    network = network or (compiled.network if compiled is not None else None)
    network = network or (calibration.network if calibration is not None else None)
    if calibration is None and validation is None and profile is None and compiled is None and plan is None:
        raise ConfigurationError(
            "nothing to report: give a calibration, a validation result, a quantized network or an FPGA profile"
        )
    if plan is None and calibration is not None and network is not None:
        try:
            plan = make_plan(calibration, target, network=network)
            notes.append(
                f"int8 windows of the {target!r} scheme ({type(plan.scheme).__name__}); validate shows the "
                "errors they cause"
            )
        except QuantscopeError as exc:
            notes.append(f"no quantization plan: {exc}")
    processor_name = validation.extra.get("processor") if validation is not None else None
    estimated = False
    if profile is None and compiled is None and processor_name and network is not None:
        compiled, profile = _compile(network, processor_name, plan, notes)
        estimated = profile is not None
    elif profile is not None and compiled is None and network is not None:
        compiled, _ = _compile(network, profile.bitstream, plan, notes)

    layer_rows = _layers(network, plan, validation, compiled, profile, calibration) if network is not None else []
    tensors, octaves = _tensors(calibration, plan, network)
    model_name = (network.source_name if network is not None else "") or (
        calibration.model_name if calibration is not None else ""
    )
    model_sha = (
        network.fingerprint if network is not None else (calibration.model_sha256 if calibration is not None else "")
    )
    sources = [
        name
        for name, present in (
            ("calibration", calibration is not None),
            ("validation", validation is not None),
            ("plan", plan is not None),
            ("profile", profile is not None),
        )
        if present
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "title": title or (f"quantscope report: {os.path.basename(model_name)}" if model_name else "quantscope report"),
        "sources": sources,
        "model": {"name": model_name, "sha256": model_sha},
        "scheme": _scheme(plan),
        "notes": notes,
        "verdict": _verdict(validation, calibration, plan, profile, layer_rows, command),
        "layers": layer_rows,
        "heatmap": {"octaves": octaves},
        "tensors": tensors,
        "fpga": _fpga(profile, compiled, estimated) if profile is not None or compiled is not None else None,
        "footer": _footer(model_sha, calibration, validation, date),
    }


def _compile(network, bitstream: str, plan: QuantPlan | None, notes: list[str]):
    from ..fpga import compile_network, processor, profile_compiled

    quantized = None
    if plan is not None and isinstance(plan.scheme, PowerOfTwo):
        quantized = {
            name: (qw, plan.biases[name][0] if name in plan.biases else None, qp.exponent)
            for name, (qw, qp) in plan.weights.items()
        }
    try:
        compiled = compile_network(network, processor(bitstream), quantized=quantized)
    except QuantscopeError as exc:
        notes.append(f"the network was not compiled for {bitstream}: {exc}")
        return None, None
    return compiled, profile_compiled(compiled, 1)


def _scheme(plan: QuantPlan | None) -> dict | None:
    if plan is None:
        return None
    scheme = plan.scheme
    if isinstance(scheme, PowerOfTwo):
        text = (
            f"power-of-two scales, per tensor, {scheme.word_length}-bit, exponents by {scheme.exponent_method} "
            "(target fpga)"
        )
    else:
        text = (
            f"float scales: weights {'per channel' if scheme.per_channel else 'per tensor'}"
            f"{' on 7 bits' if scheme.reduce_range else ''}, activations "
            f"{'symmetric' if scheme.symmetric_activations else 'with a zero point'} (target cpu)"
        )
    return {"name": type(scheme).__name__, "description": text, "rounding": plan.rounding.name}


def _weight_axis(network, layer) -> int:
    if layer.op_types[0] == "Conv":
        return 0
    if layer.op_types[0] == "Gemm":
        return 0 if network.node_attributes(layer.members[0]).get("transB", 0) else 1
    return 1


def _channels(network, layer, plan: QuantPlan | None) -> dict | None:
    """Each output channel's min and max weight (grouped beyond MAX_CHANNELS)."""
    if layer.weight is None or layer.kind not in ("conv", "fc"):
        return None
    w = network.constant(layer.weight).astype(np.float64)
    if w.ndim < 2:
        return None
    axis = _weight_axis(network, layer)
    per = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    lows, highs = per.min(axis=1), per.max(axis=1)
    count = len(lows)
    group = max(1, math.ceil(count / MAX_CHANNELS))
    if group > 1:
        pad = (-count) % group
        lows = np.concatenate([lows, np.full(pad, lows[-1])]).reshape(-1, group).min(axis=1)
        highs = np.concatenate([highs, np.full(pad, highs[-1])]).reshape(-1, group).max(axis=1)
    limits = None
    if plan is not None and layer.name in plan.weights:
        qp = plan.weights[layer.name][1]
        if qp.axis is None:
            s = float(qp.scale)
            limits = [_f(qp.qmax * s, 5), _f(qp.qmin * s, 5)]
    return {
        "count": count,
        "group": group,
        "min": [_f(v, 4) for v in lows],
        "max": [_f(v, 4) for v in highs],
        "limits": limits,
    }


def _act_histogram(stats: TensorStats | None, qp: QParams | None) -> dict | None:
    """A layer's activations on fine log2 bins: the float values (calibration) and the
    same values on the int8 grid (each bin's midpoint quantized)."""
    if stats is None or stats.hist is None or stats.count == 0 or not stats.finite:
        return None
    _, edges, _ = _bins()
    mag = stats.magnitude_hist()
    total = float(mag.sum())
    if total == 0:
        return None
    nz = np.flatnonzero(mag[_SUB:]) + _SUB
    nz = nz[np.isfinite(edges[0][nz])]
    out: dict = {"bin_width": 1.0 / _SUB, "window": None}
    float_pts = [[_f(edges[0][i], 5), _f(edges[1][i], 5), _f(mag[i] / total, 4)] for i in nz]
    out["zero_float"] = _f(mag[:_SUB].sum() / total, 4)
    int_pts: list = []
    zero_int = None
    if qp is not None and qp.axis is None:
        win = _Window(qp)
        out["window"] = [_f(v, 5) for v in win.log2] if win.log2 else None
        values, counts = _signed_counts(stats)
        g = win.grid(values)
        zero_int = float(counts[g == 0].sum()) / total
        keep = g != 0
        bins = _magnitude_bins(g[keep])
        agg = np.bincount(bins, weights=counts[keep], minlength=NUM_BINS)
        int_pts = [[_f(edges[0][i], 5), _f(edges[1][i], 5), _f(agg[i] / total, 4)] for i in np.flatnonzero(agg)]
    out["float"] = float_pts
    out["int8"] = int_pts
    out["zero_int8"] = _f(zero_int, 4)
    xs = [p[0] for p in float_pts + int_pts] + [p[1] for p in float_pts + int_pts]
    if out["window"]:
        xs += out["window"]
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    hi = math.ceil(max(xs)) + 0.5
    lo = max(math.floor(min(xs)) - 0.5, hi - 28)
    out["x_range"] = [lo, hi]
    out["float"] = [p for p in float_pts if p[1] > lo]
    out["int8"] = [p for p in int_pts if p[1] > lo]
    return out


def _layers(network, plan, validation, compiled, profile, calibration) -> list[dict]:
    errors = {}
    if validation is not None:
        for row in validation.layer_errors.to_dict(orient="records"):
            errors[row["Layer"]] = row
    worst = []
    if validation is not None:
        ranked = validation.layer_errors
        ranked = ranked[(ranked["Precision"] == "int8") & (ranked["SQNRDrop(dB)"] > 0)]
        worst = list(ranked["Layer"][:WORST])
    summary = {name: (precision, reason) for name, precision, reason in plan.summary()} if plan is not None else {}
    placements = {p.name: p for p in compiled.layers} if compiled is not None else {}
    cycles = {c.name: c.cycles for c in profile.layers} if profile is not None else {}
    producers = {layer.output: layer.name for layer in network.layers}
    measured = {(e.layer, e.kind): e.stats for e in calibration.entries} if calibration is not None else {}
    rows = []
    for index, layer in enumerate(network.layers):
        e = errors.get(layer.name, {})
        precision, reason = summary.get(layer.name, (None, None))
        p = placements.get(layer.name)
        qp = plan.activations.get(layer.output) if plan is not None else None
        rows.append(
            {
                "index": index,
                "name": layer.name,
                "kind": _s(layer.kind),
                "op_types": [_s(t) for t in layer.op_types],
                "members": list(layer.members),
                "onnx_nodes": list(network.onnx_names(layer)),
                "inputs": [producers[i] for i in layer.inputs if i in producers],
                "graph_inputs": [i for i in layer.inputs if i not in producers],
                "precision": precision,
                "reason": reason,
                "output": layer.output,
                "exponent": qp.exponent if qp is not None and qp.axis is None else None,
                "scale": _f(qp.scale, 6) if qp is not None and qp.axis is None else None,
                "zero_point": int(qp.zero_point) if qp is not None and qp.axis is None else None,
                "sqnr_db": _f(e.get("SQNR(dB)"), 4),
                "sqnr_drop_db": _f(e.get("SQNRDrop(dB)"), 4),
                "output_sqnr_db": _f(e.get("OutputSQNR(dB)"), 4),
                "weight_sqnr_db": _f(e.get("WeightSQNR(dB)"), 4),
                "saturated": _f(e.get("Saturated"), 4),
                "flushed": _f(e.get("FlushedToZero"), 4),
                "channel_spread": _f(e.get("WeightChannelSpread"), 4),
                "worst": layer.name in worst,
                "placement": _s(p.placement) if p is not None else None,
                "module": _s(p.module) if p is not None else None,
                "fused": bool(p.fused) if p is not None else None,
                "placement_note": p.note if p is not None else None,
                "cycles": cycles.get(layer.name),
                "histogram": _act_histogram(measured.get((layer.name, "Activations")), qp),
                "channels": _channels(network, layer, plan),
            }
        )
    return rows


def _tensors(calibration: Calibration | None, plan: QuantPlan | None, network) -> tuple[list[dict], list[int]]:
    """One row per calibrated tensor (MATLAB's ranges table and heat map)."""
    if calibration is None:
        return [], []
    octave_of, _, _ = _bins()
    rows = []
    for e in calibration.entries:
        stats = e.stats
        qp, exact = _tensor_qparams(e, plan, network)
        row: dict = {
            "row": e.row_name,
            "layer": e.layer,
            "network_layer": e.network_layer,
            "kind": e.kind,
            "tensor": e.tensor,
            "min": _f(stats.min),
            "max": _f(stats.max),
            # JSON has no infinity: the text says what a null min/max was (a mask's fill)
            "range_text": f"min {_g(stats.min)}, max {_g(stats.max)}",
            "count": int(stats.count),
            "bits": qp.bits if qp is not None else None,
            "exponent": qp.exponent if qp is not None else None,
            "scale": _f(np.max(qp.scale), 6) if qp is not None and qp.exponent is None else None,
            "zero_point": int(qp.zero_point) if qp is not None and qp.axis is None and qp.exponent is None else None,
            "per_channel": bool(qp is not None and qp.axis is not None),
            "window": None,
            "cells": [],
            "zero": None,
            "in_range": None,
            "saturated": None,
            "flushed": None,
            "channel_spread": None,
        }
        win = _Window(qp) if qp is not None else None
        if win is not None and win.log2:
            row["window"] = [_f(win.log2[0], 5), _f(win.log2[1], 5)]
        if stats.hist is not None and stats.finite and stats.count:
            values, counts = _signed_counts(stats)
            total = counts.sum()
            if win is None:
                classes = np.full(values.shape, 3, np.int8)  # float: no window
            elif win.per_channel:
                classes = np.zeros(values.shape, np.int8)
            else:
                classes = win.classify(values)
            bins = _magnitude_bins(values)
            octs = np.where(values == 0, -1000, octave_of[np.minimum(bins, NUM_BINS - 1)])
            row["zero"] = _f(counts[values == 0].sum() / total, 4)
            cells = []
            for k in np.unique(octs[octs > -1000]):
                sel = octs == k
                by_class = np.bincount(classes[sel], weights=counts[sel], minlength=4)
                cls = ("in", "saturated", "flushed", "float")[int(by_class.argmax())]
                cells.append([int(k), _f(by_class.sum() / total, 4), cls])
            row["cells"] = cells
            if win is not None and not exact:
                by_class = np.bincount(classes, weights=counts, minlength=3)[:3] / total
                row["in_range"], row["saturated"], row["flushed"] = (_f(v, 4) for v in by_class)
        if exact is not None:
            row["in_range"], row["saturated"], row["flushed"] = (_f(v, 4) for v in exact)
            if win is not None and win.per_channel and row["cells"]:
                # per channel: colour by the union of the channels' windows
                lo, hi = win.log2
                row["cells"] = [
                    [k, s, "flushed" if k + 1 <= lo else "saturated" if k >= hi else "in"] for k, s, _ in row["cells"]
                ]
        if e.kind == "Weights" and network is not None:
            try:
                layer = network.layer(e.layer)
            except KeyError:
                layer = None
            if layer is not None and layer.weight is not None and layer.kind in ("conv", "fc"):
                w = np.abs(network.constant(layer.weight).astype(np.float64))
                axis = _weight_axis(network, layer)
                if w.ndim >= 2:
                    per = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).max(axis=1)
                    median = float(np.median(per))
                    row["channel_spread"] = _f(per.max() / median, 4) if median > 0 else None
        rows.append(row)
    ks = [c[0] for r in rows for c in r["cells"]] + [
        v for r in rows if r["window"] for v in (math.floor(r["window"][0]), math.floor(r["window"][1]))
    ]
    if not ks:
        return rows, []
    hi = max(ks)
    lo = max(min(ks), hi - MAX_OCTAVES + 1)
    for r in rows:  # smaller magnitudes join the first column
        merged: dict[int, list] = {}
        for k, s, cls in r["cells"]:
            kk = max(k, lo)
            if kk in merged:
                merged[kk][1] = _f(merged[kk][1] + s, 4)
            else:
                merged[kk] = [kk, s, cls]
        r["cells"] = list(merged.values())
    return rows, [lo, hi]


def _tensor_qparams(entry, plan: QuantPlan | None, network) -> tuple[QParams | None, tuple | None]:
    """The grid of a calibrated tensor, and for weights and biases the exact shares
    (in range, saturated, flushed) computed on the tensor itself."""
    if plan is None:
        if entry.kind == "Bias" or not entry.stats.finite or entry.stats.count == 0:
            return None, None
        return QParams.pow2(pow2_exponent(entry.stats.max_abs)), None
    if entry.kind == "Activations":
        try:
            layer = plan.network.layer(entry.layer)
        except KeyError:
            return None, None
        return plan.activations.get(layer.output), None
    table = plan.weights if entry.kind == "Weights" else plan.biases
    if entry.layer not in table:
        return None, None
    q, qp = table[entry.layer]
    layer = plan.network.layer(entry.layer)
    x = plan.network.constant(layer.weight if entry.kind == "Weights" else layer.bias).astype(np.float64)
    if x.size == 0:
        return qp, None
    if entry.kind == "Bias":
        x = x.reshape(q.shape)
    dq = qp.dequantize(q)
    if qp.axis is not None:
        shape = [1] * q.ndim
        shape[qp.axis] = -1
        s = np.asarray(qp.scale, np.float64).reshape(shape)
    else:
        s = float(qp.scale)
    flushed = (dq == 0) & (x != 0)
    saturated = np.abs(x - dq) > 0.5 * np.asarray(s) * (1 + 1e-9)
    n = x.size
    sat, flu = float(saturated.sum()) / n, float(flushed.sum()) / n
    return qp, (1.0 - sat - flu, sat, flu)


def _verdict(validation, calibration, plan, profile, layers, command) -> dict:
    metrics = []
    fps = None
    if validation is not None:
        for name, df in validation.metric_results.items():
            f_row, q_row = df.iloc[0], df.iloc[1]
            fv, qv = _f(f_row["MetricOutput"]), _f(q_row["MetricOutput"])
            metrics.append(
                {
                    "name": name,
                    "float": fv,
                    "int8": qv,
                    "difference": _f(qv - fv) if fv is not None and qv is not None else None,
                }
            )
            if "FramesPerSecond" in df.columns and fps is None:
                fps = {
                    "processor": validation.extra.get("processor"),
                    "float": _f(f_row["FramesPerSecond"], 6),
                    "int8": _f(q_row["FramesPerSecond"], 6),
                    "source": "estimated by the cycle model, one frame",
                }
    if fps is None and profile is not None:
        fps = {
            "processor": profile.bitstream,
            "float": None,
            "int8": _f(profile.frames_per_second, 6),
            "source": f"profile of {profile.frames} frame(s)",
        }
    memory = None
    if plan is not None:
        float_bytes, int8_bytes = plan.memory_bytes()
        memory = {"float_bytes": int(float_bytes), "int8_bytes": int(int8_bytes)}
    worst = next((r for r in layers if r["worst"]), None)
    by_drop = sorted(
        (r for r in layers if r["worst"]), key=lambda r: -(r["sqnr_drop_db"] if r["sqnr_drop_db"] is not None else 0)
    )
    worst = by_drop[0] if by_drop else worst
    costliest = None
    if profile is not None and profile.layers:
        c = max(profile.layers, key=lambda c: c.cycles)
        costliest = {
            "layer": c.name,
            "label": c.label,
            "cycles": int(c.cycles),
            "share": _f(c.cycles / max(profile.network_cycles, 1), 4),
        }
    float_layers = [r["name"] for r in layers if r["precision"] == "float"]
    return {
        "metrics": metrics,
        "num_samples": int(validation.num_samples) if validation is not None else None,
        "labelled": bool(validation.labelled) if validation is not None else None,
        "top1_agreement": _f(validation.top1_agreement, 6) if validation is not None else None,
        "calibration_samples": int(calibration.num_samples) if calibration is not None else None,
        "memory": memory,
        "frames_per_second": fps,
        "worst_layer": worst["name"] if worst else None,
        "text": validation.verdict if validation is not None else None,
        "slowest_layer": costliest,
        "int8_layers": sum(1 for r in layers if r["precision"] == "int8"),
        "float_layers": len(float_layers),
        "command": command or "",
    }


def _fpga(profile, compiled, estimated: bool) -> dict:
    from ..fpga import estimate_resources, processor

    out: dict = {
        "estimated": estimated,
        "memory_map": None,
        "memory_regions": None,
        "memory_total": None,
        "hardware_layers": None,
        "software_layers": None,
        "resources": None,
    }
    config = compiled.config if compiled is not None else None
    if profile is not None:
        out.update(
            {
                "bitstream": profile.bitstream,
                "clock_hz": _f(profile.clock_hz),
                "frames": int(profile.frames),
                "network_cycles": int(profile.network_cycles),
                "latency_s": _f(profile.latency_seconds, 6),
                "total_latency": int(profile.total_latency),
                "frames_per_second": _f(profile.frames_per_second, 6),
                "layers": [
                    {
                        "layer": c.name,
                        "label": c.label,
                        "module": _s(c.module) or "",
                        "cycles": int(c.cycles),
                        "compute_cycles": int(c.compute_cycles),
                        "transfer_cycles": int(c.transfer_cycles),
                        "transfer_bytes": int(c.transfer_bytes),
                    }
                    for c in profile.layers
                ],
                "rows": [
                    {"label": r.label, "level": r.level, "kind": _s(r.kind), "cycles": int(r.cycles), "layer": r.layer}
                    for r in profile.rows
                ],
            }
        )
    else:
        out.update({"bitstream": config.name, "layers": [], "rows": []})
    if compiled is not None:
        out["memory_map"] = [
            {"name": _s(name), "offset": addr, "size": size} for name, addr, size in compiled.memory_map.rows()
        ]
        out["memory_regions"] = [
            {"name": _s(r.name), "offset": int(r.offset), "bytes": int(r.size)} for r in compiled.memory_map.regions
        ]
        out["memory_total"] = int(compiled.memory_map.total)
        out["hardware_layers"] = len(compiled.hardware_layers)
        out["software_layers"] = len(compiled.software_layers)
    try:
        df = estimate_resources(config if config is not None else processor(out["bitstream"]))
    except QuantscopeError:
        df = None
    if df is not None:
        out["resources"] = {
            "device": str(df.attrs.get("device", "")),
            "logic_unit": str(df.attrs.get("logic_unit", "")),
            "columns": list(df.columns),
            "rows": [[str(name)] + [int(v) for v in df.loc[name]] for name in df.index],
            "utilization": {k: _f(v, 4) for k, v in df.attrs.get("utilization", {}).items()},
        }
    return out


def _fingerprint_calibration(calibration: Calibration) -> str:
    h = hashlib.sha256()
    h.update(str(calibration.num_samples).encode())
    for e in calibration.entries:
        h.update(f"{e.layer}\0{e.kind}\0{e.tensor}\0{e.stats.min!r}\0{e.stats.max!r}\0{e.stats.count}\0".encode())
        if e.stats.hist is not None:
            h.update(np.ascontiguousarray(e.stats.hist, np.int64).tobytes())
    return h.hexdigest()


def _fingerprint_validation(validation) -> str:
    h = hashlib.sha256()
    h.update(str(validation.num_samples).encode())
    for arr in (validation.float_scores, validation.labels):
        # an object array holds one output per sample (outputs of several shapes): its
        # bytes would be addresses, so each sample's array is hashed
        for a in arr if getattr(arr, "dtype", None) is np.dtype(object) else [arr]:
            a = np.asarray(a)
            a = a if a.flags.c_contiguous else a.copy(order="C")
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _footer(model_sha: str, calibration, validation, date) -> dict:
    import onnxruntime

    from .. import __version__

    return {
        "quantscope": __version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "model_sha256": model_sha,
        "calibration_sha256": _fingerprint_calibration(calibration) if calibration is not None else None,
        "validation_sha256": _fingerprint_validation(validation) if validation is not None else None,
        "date": report_date(date),
    }
