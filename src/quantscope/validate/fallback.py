"""Float fallback to a metric target (docs/accuracy.md (7)).

``validate(..., max_metric_drop=D)`` starts from the network all in int8 and, while
the int8 metric is more than ``D`` below the float one, keeps in float the int8 layer
that costs most: the largest ``SQNRDrop(dB)`` of the last validation (the layer table's
first int8 row). Once within ``D``, it tries each kept layer back in int8, the last
kept first, and leaves it in int8 when the metric stays within ``D`` (the metric
decides): what remains is a set no smaller subset of which reaches the target along
that path. Every validation is a step of the path (layers kept, metric, memory).

On the power-of-two (FPGA) target every layer must run in int8 on the processor, so
the search runs in the emulation only and the result says which layers would have to
change to reach ``D``; beside it, the better exponent method of each layer (the one
whose output grid keeps more signal, ``OutputSQNR(dB)``, over ``"MinMax"`` and
``"Histogram"``) and the metric with those methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError, option
from ..quantize.numerics import ExponentMethod, PowerOfTwo
from ..quantize.plan import int8_family, resolve_scheme

__all__ = ["FallbackResult", "FallbackStep"]

#: Metrics whose values are fractions up to 1: a drop of 1 or more accepts anything.
_FRACTIONS = frozenset({"top1_accuracy", "top5_accuracy", "top1_agreement", "cosine_similarity"})


@dataclass(frozen=True)
class FallbackStep:
    """One validation of the search: the layers in float, the int8 metric, memory."""

    keep_float: tuple[str, ...]
    metric: float
    quantized_bytes: int
    action: str  # "all int8", "keep X in float", "X back to int8 (kept: metric ...)"

    def to_dict(self) -> dict:
        return {
            "keep_float": list(self.keep_float),
            "metric": self.metric,
            "quantized_bytes": self.quantized_bytes,
            "action": self.action,
        }


@dataclass
class FallbackResult:
    """The path of a float-fallback search and what it found.

    Attributes:
        metric: the metric's name; ``float_metric`` its value for the float network.
        max_drop: the target ``D``: int8 metric >= float metric - D.
        steps: every validation, in order.
        keep_float: the final set of layers in float (``--keep-float`` reproduces it);
            on the FPGA target the layers that would have to change.
        met: whether the final set reaches the target.
        fpga: the search ran on the power-of-two target (nothing is kept in float in the
            returned result; ``keep_float`` is advice).
        best_methods: FPGA target: each int8 layer's better exponent method.
        best_methods_metric: FPGA target: the metric with ``best_methods``.
        best_methods_skipped: FPGA target: why ``best_methods`` is empty when it could
            not be computed (ranges without histograms).
    """

    metric: str
    float_metric: float
    max_drop: float
    steps: list[FallbackStep] = field(default_factory=list)
    keep_float: tuple[str, ...] = ()
    met: bool = False
    fpga: bool = False
    best_methods: dict[str, str] = field(default_factory=dict)
    best_methods_metric: float | None = None
    best_methods_skipped: str = ""

    @property
    def flags(self) -> str:
        """The command-line flags that reproduce the final set."""
        return " ".join(f"--keep-float {name}" for name in self.keep_float)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "float_metric": self.float_metric,
            "max_drop": self.max_drop,
            "steps": [s.to_dict() for s in self.steps],
            "keep_float": list(self.keep_float),
            "met": self.met,
            "fpga": self.fpga,
            "best_methods": dict(self.best_methods),
            "best_methods_metric": self.best_methods_metric,
            "best_methods_skipped": self.best_methods_skipped,
        }


def check_max_drop(max_metric_drop: Any) -> float:
    if isinstance(max_metric_drop, bool) or not isinstance(max_metric_drop, (int, float)):
        raise ConfigurationError(f"max_metric_drop must be a number >= 0, got {max_metric_drop!r}")
    d = float(max_metric_drop)
    if not (math.isfinite(d) and d >= 0):
        raise ConfigurationError(f"max_metric_drop must be a finite number >= 0, got {max_metric_drop!r}")
    return d


def _metric(result) -> tuple[str, float, float]:
    """The first metric of a validation: name, float value, int8 value."""
    name, table = next(iter(result.metric_results.items()))
    values = table["MetricOutput"].tolist()
    return name, float(values[0]), float(values[1])


def search(
    run, target: Any, max_metric_drop: float, keep_float: tuple[str, ...] = (), require_int8: tuple[str, ...] = ()
):
    """The search of the module docstring. ``run(keep_float, range_methods)`` validates
    with those layers in float and returns the :class:`~quantscope.validate.ValidationResult`.
    The user's ``keep_float`` stay in float throughout (and are in every step's and the
    final set), the ``require_int8`` layers are never candidates. Returns ``(result,
    FallbackResult)``: the validation of the final set (all int8 on the FPGA target) and
    the path."""
    scheme = resolve_scheme(target)
    fpga = isinstance(scheme, PowerOfTwo)
    seen: dict[frozenset, Any] = {}  # float sets already validated (the last one back is all int8)

    def validated(layers: tuple[str, ...]):
        key = frozenset(layers)
        if key not in seen or seen[key].int8_scores is None:  # never run, or its outputs let go
            seen[key] = run(layers, None)
        return seen[key]

    def let_go(*results) -> None:
        """Keep only the tables of results the search will not return: each holds both
        networks' outputs on every sample (a text recognizer's (N, 40, 6625) twice), and a
        search of a hundred steps held them all (18 GB)."""
        for res in results:
            if res is not None and res is not base and res is not result:
                res.float_scores = res.int8_scores = None

    result = None
    base = validated(tuple(keep_float))
    name, float_value, value = _metric(base)
    if name in _FRACTIONS and max_metric_drop >= 1:
        flag = option(f"max_metric_drop={max_metric_drop:g}", f"--max-drop {max_metric_drop:g}")
        raise ConfigurationError(
            f"{flag}: {name} is at most 1, so a drop of {max_metric_drop:g} accepts any int8 network; give the "
            f"drop in the metric's units, below 1 ({option('max_metric_drop=0.02', '--max-drop 0.02')} for 2 "
            "percentage points)"
        )
    report = FallbackResult(name, float_value, max_metric_drop, fpga=fpga)
    given = tuple(keep_float)
    start = f"start: the {option('keep_float', '--keep-float')} layers in float" if given else "all int8"
    report.steps.append(FallbackStep(given, value, base.memory[1], start))
    required = {base.plan.network.layer(n).name for n in require_int8}  # optimized names

    def ok(v: float) -> bool:
        return float_value - v <= max_metric_drop + 1e-12

    kept: list[str] = []
    result = base
    while not ok(value):
        table = result.layer_errors
        candidates = table[(table["Precision"] == "int8") & (table["Kind"] != "input")]
        candidates = candidates[candidates["SQNRDrop(dB)"].notna()]
        candidates = candidates[~candidates["Layer"].isin(required)]
        if candidates.empty:
            break
        layer = str(candidates.iloc[0]["Layer"])
        kept.append(layer)
        before, result = result, validated(tuple(keep_float) + tuple(kept))
        let_go(before)
        value = _metric(result)[2]
        report.steps.append(FallbackStep(given + tuple(kept), value, result.memory[1], f"keep {layer} in float"))
    if ok(value):
        for layer in reversed(list(kept)):
            trial = [k for k in kept if k != layer]
            attempt = validated(tuple(keep_float) + tuple(trial))
            v = _metric(attempt)[2]
            if ok(v):
                before = result
                kept, result, value = trial, attempt, v
                let_go(before)
                action = f"{layer} back to int8"
            else:
                let_go(attempt)
                action = f"{layer} back to int8 reaches only {v:.4g}: kept in float"
            report.steps.append(FallbackStep(given + tuple(trial), v, attempt.memory[1], action))
    report.keep_float = given + tuple(kept)
    report.met = ok(value)
    if not fpga:
        return result, report  # the validation of the final set
    # FPGA: every layer stays int8; report the layers and the better exponent methods
    other = ExponentMethod.HISTOGRAM if scheme.exponent_method is ExponentMethod.MINMAX else ExponentMethod.MINMAX
    try:
        alt = run(tuple(keep_float), {layer.name: other.value for layer in _int8_layers(base)})
    except ConfigurationError as exc:  # ranges without histograms (a .csv): no Histogram exponents
        report.best_methods_skipped = str(exc)
        return base, report
    own = base.layer_errors.set_index("Layer")["OutputSQNR(dB)"]
    theirs = alt.layer_errors.set_index("Layer")["OutputSQNR(dB)"]
    best: dict[str, str] = {}
    for layer in _int8_layers(base):
        a, b = own.get(layer.name, math.nan), theirs.get(layer.name, math.nan)
        best[layer.name] = (
            other.value if (not math.isnan(b) and (math.isnan(a) or b > a)) else scheme.exponent_method.value
        )
    report.best_methods = best
    mixed = run(tuple(keep_float), best)
    report.best_methods_metric = _metric(mixed)[2]
    return base, report


def _int8_layers(result):
    """The int8 layers with an output range of their own (data movement keeps its input's)."""
    plan = result.plan
    return [
        layer
        for layer in plan.network.layers
        if layer.kind != "input"
        and plan.is_int(layer)
        and layer.output in plan.activations
        and int8_family(layer) != "move"
    ]
