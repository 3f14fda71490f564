"""Validation: the float network and its int8 emulation on the same data, side by side.

MATLAB's ``validate(quantObj, valData, quantOpts)``: the metric of each network,
their learnable-parameter memory, and per-layer diagnostics of where int8 loses.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._progress import progress_bar
from ..calibrate.result import Calibration
from ..calibrate.source import as_source, read_ahead
from ..errors import CalibrationDataError, ConfigurationError, option
from ..quantize.numerics import FloatScale, PowerOfTwo
from ..quantize.plan import QuantPlan, Target, int8_family, make_plan
from ..simulate.engine import Kernels
from .measure import BatchPart, BatchValidator, LayerError, Totals, batch_pieces_of, samples_at_once
from .metrics import (
    LABEL_METRICS,
    agreement_metrics,
    class_scores,
    evaluate_metric,
    resolve_metrics,
    top1_accuracy,
)

__all__ = ["ValidationResult", "validate"]

_log = logging.getLogger("quantscope")

METRIC_COLUMNS = ["NetworkImplementation", "MetricOutput", "LearnableParameterMemory(bytes)"]
LAYER_COLUMNS = [
    "Layer",
    "Kind",
    "Precision",
    "SQNR(dB)",
    "SQNRDrop(dB)",
    "OutputSQNR(dB)",
    "WeightSQNR(dB)",
    "Saturated",
    "FlushedToZero",
    "WeightChannelSpread",
    "ONNXNodes",
]

#: The SQNR of an ideal 8-bit grid over a full-scale uniform signal (6.02 * 8 + 1.76 dB):
#: a layer whose inputs are exact is ranked as if they were at this SQNR.
_INT8_SQNR = 49.9


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


@dataclass
class ValidationResult:
    """What :func:`validate` measured.

    Attributes:
        num_samples: samples validated (MATLAB's ``NumSamples``).
        metric_results: metric name -> DataFrame with rows ``Floating-Point`` and
            ``Quantized`` and columns ``NetworkImplementation``, ``MetricOutput``,
            ``LearnableParameterMemory(bytes)`` (plus ``FramesPerSecond`` on an FPGA target).
        layer_errors: per optimized layer, worst first: SQNR of the int8 network's
            output against the float one (dB, cumulative), ``SQNRDrop(dB)``: how much
            lower it is than its inputs' (inputs that are exact count as an ideal
            int8 grid, 49.9 dB; the table is sorted by it, largest first), the SQNR
            of its output grid and of its weights alone, the fractions of float
            values that saturate or flush to zero, and ``WeightChannelSpread``: the
            largest output channel's max |w| over the median channel's (what makes
            per-tensor scaling fail), and ``ONNXNodes``: the layer's nodes by their
            names in the model file.
        verdict: one line naming the layer that costs most.
        plan: the quantization plan used.
        float_scores, int8_scores: the two networks' outputs ``(N, ...)``; where the
            batches' outputs differ in shape (sequences of several lengths), an object
            array ``(N,)`` of each sample's output.
        labels: the data's labels; without labels, the float network's top-1 (the
            metrics then get ``labels=None``).
    """

    num_samples: int
    metric_results: dict[str, pd.DataFrame]
    layer_errors: pd.DataFrame
    verdict: str
    plan: QuantPlan
    float_scores: np.ndarray
    int8_scores: np.ndarray
    labels: np.ndarray
    labelled: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    #: the calibration the plan was made from (None when validate got a plan): the report's ranges
    calibration: Calibration | None = field(default=None, repr=False)
    #: with ``max_metric_drop``: the float-fallback path (:class:`~quantscope.validate.FallbackResult`)
    fallback: Any = field(default=None, repr=False)

    @property
    def memory(self) -> tuple[int, int]:
        """(float bytes, quantized bytes) of learnable parameters."""
        return self.plan.memory_bytes()

    @property
    def top1_agreement(self) -> float:
        """Fraction of samples where int8 and float pick the same class."""
        if self.float_scores.dtype == object:  # one array per sample (outputs of different shapes)
            return float(np.mean([np.argmax(f) == np.argmax(q) for f, q in zip(self.float_scores, self.int8_scores)]))
        f = self.float_scores.reshape(len(self.float_scores), -1).argmax(1)
        q = self.int8_scores.reshape(len(self.int8_scores), -1).argmax(1)
        return float(np.mean(f == q))

    def report(self, path: str | os.PathLike, **options: Any) -> Path:
        """Write the HTML report of this validation (verdict, error along the network,
        ranges, coverage, layers; the FPGA panel with a processor) to ``path`` and its
        data as JSON beside it. Options: those of :func:`quantscope.report.write_report`
        (``date=``, ``command=``, ``title=``, ``profile=``...). Returns the page's path."""
        import quantscope  # the facade names the report stage, which sits above this one

        return quantscope.report(self, path, **options)

    def to_dict(self) -> dict:
        """JSON-ready: NaN and infinite numbers (no weights, an exact layer) become None."""
        return _finite(
            {
                "NumSamples": self.num_samples,
                "labelled": self.labelled,
                "metrics": {k: v.to_dict(orient="records") for k, v in self.metric_results.items()},
                "top1_agreement": self.top1_agreement,
                "layer_errors": self.layer_errors.to_dict(orient="records"),
                "verdict": self.verdict,
                "quantization": self.plan.to_dict(),
                **self.extra,
            }
        )


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN/Inf float replaced by None (strict JSON has neither)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _weight_sqnr(plan: QuantPlan, layer_name: str) -> float:
    if layer_name not in plan.weights:
        return math.nan
    qw, qp = plan.weights[layer_name]
    w = plan.network.constant(plan.network.layer(layer_name).weight)
    # rows of the first axis at a time: a multi-GB table (an embedding) is never copied whole
    rows = max(1, _WEIGHT_PIECE // max(1, int(np.prod(w.shape[1:], dtype=np.int64)))) if w.ndim else 1
    signal = noise = 0.0
    for start in range(0, max(1, len(w) if w.ndim else 1), rows):
        part = w[start : start + rows] if w.ndim else w
        piece_qp = qp
        if qp.axis == 0:
            piece_qp = dataclasses.replace(
                qp, scale=qp.scale[start : start + rows], zero_point=qp.zero_point[start : start + rows]
            )
        real = part.astype(np.float64)
        signal += float(np.sum(real * real))
        real -= piece_qp.dequantize(qw[start : start + rows] if w.ndim else qw)
        noise += float(np.sum(real * real))
    return _db(signal, noise)


#: Weight values per piece of :func:`_weight_sqnr`.
_WEIGHT_PIECE = 1 << 22


def _channel_spread(plan: QuantPlan, layer_name: str) -> float:
    """max over output channels of max|w| divided by the median channel's max|w|.

    A large spread is why per-tensor scaling fails (MobileNet-style collapse): one
    scale for all channels leaves the small channels a few integer levels or none.
    """
    layer = plan.network.layer(layer_name)
    if layer.weight is None:
        return math.nan
    w = np.abs(plan.network.constant(layer.weight))  # the max of |w| is exact in the weights' own type
    axis = (
        0
        if layer.op_types[0] == "Conv"
        or (layer.op_types[0] == "Gemm" and plan.network.node_attributes(layer.members[0]).get("transB", 0))
        else 1
    )
    per_channel = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).max(axis=1).astype(np.float64)
    median = float(np.median(per_channel))
    return float(per_channel.max() / median) if median > 0 else math.inf


def check_dask_inputs(network: Any) -> None:
    """Refuse a network of several inputs for validation on Dask (not supported yet).

    Raises:
        ConfigurationError: naming the inputs and what to do instead.
    """
    if len(network.input_names) > 1:
        raise ConfigurationError(
            f"this network has {len(network.input_names)} inputs ({', '.join(network.input_names)}); "
            "validation on Dask takes networks with one input for now. Validate it in one process "
            f"({option('without client=', 'without --dask')})."
        )


def validate(
    calibration: Calibration | QuantPlan,
    data: Any,
    *,
    target: str | Target | PowerOfTwo | FloatScale = Target.FPGA,
    metrics: Any = None,
    keep_float: Iterable[str] = (),
    require_int8: Iterable[str] = (),
    batch_size: int = 32,
    progress: bool | None = None,
    kernels: str | Kernels = Kernels.FAST,
    layout: str = "NCHW",
    processor: Any = None,
    metric: Any = None,
    client: Any = None,
    shards: int | None = None,
    bias_correction: Any = None,
    range_methods: Mapping[str, str] | None = None,
    max_metric_drop: float | None = None,
    gptq: Any = None,
) -> ValidationResult:
    """Quantize, run the float and the int8 network on ``data``, and compare them.

    Args:
        calibration: a :class:`Calibration` (with its network) or a ready :class:`QuantPlan`.
        data: validation data (anything :func:`quantscope.as_source` takes); labels
            are used by the metrics when present.
        target: ``"fpga"`` (power-of-two scaling, MATLAB's) or ``"cpu"`` (float
            scales as onnxruntime's int8 kernels use), or a scheme object.
        metrics: ``None`` (top-1 accuracy with labels; without labels, the
            agreement of the int8 network's first output with the float one's:
            ``top1_agreement`` for a 2-D score matrix, ``cosine_similarity`` and
            ``output_sqnr_db``: :func:`~quantscope.validate.metrics.agreement_metrics`),
            a name (``"top1"``, ``"top5"``), a function ``f(scores (N, classes),
            labels (N,)) -> float``, or a list/dict of them.
            On data without labels a metric function gets ``labels=None``, and the
            label metrics ``"top1"``/``"top5"`` are refused before any work.
        metric: the same as ``metrics`` (the command line's ``--metric``); give one of the two.
        keep_float: layer names to leave in float.
        require_int8: layer names that must run in int8: a
            :class:`~quantscope.ConfigurationError` names any that cannot, and why.
        batch_size: samples per batch.
        kernels: ``"fast"`` or ``"reference"`` integer kernels (same results).
        processor: for the FPGA target, a bitstream preset name (``"arria10soc_int8"``)
            or :class:`~quantscope.fpga.ProcessorConfig`: the metric tables get a
            ``FramesPerSecond`` column from the processor's cycle model (the
            Floating-Point row from the matching ``_single`` preset when there is one).
        client: run on a Dask cluster (a ``distributed.Client``, a scheduler address
            or ``"local:N"``, as for :func:`~quantscope.calibrate`): the data is cut
            into shards of whole batches, each worker runs both networks and the
            per-layer sums of its shards, and the client adds the batches' parts in
            order, so the result equals one process's bit for bit (docs/distributed.md).
        shards: with ``client``, the number of shards (default: 4 per worker thread).
        bias_correction: calibration data (anything :func:`~quantscope.calibrate` takes;
            the data the ranges came from, never the validation data): the int8 biases
            take out the mean output shift quantization leaves in each layer, measured
            on it (:func:`~quantscope.simulate.correct_biases`, docs/accuracy.md (4)-(5)).
        gptq: calibration data (as for ``bias_correction``): the int8 conv/fc weights
            are rounded by GPTQ on the float network's inputs to each layer, so that
            their share of each layer's output error is least
            (:func:`~quantscope.simulate.compensate_weights`, docs/accuracy.md
            (8)-(10)); with ``bias_correction`` too, the biases are corrected after.
        range_methods: per-layer range or exponent methods (see
            :func:`~quantscope.quantize.make_plan`).
        max_metric_drop: float fallback to a metric target (docs/accuracy.md (7)): keep
            in float the layers that cost most until the first metric is within this
            much of the float one; the path is in ``result.fallback``
            (:class:`~quantscope.validate.FallbackResult`). On the power-of-two target
            nothing is kept in float: ``result.fallback`` names the layers that would
            have to change and each layer's better exponent method.
    """
    if metric is not None:
        if metrics is not None:
            raise ConfigurationError("give metrics= or metric= (the same option), not both")
        metrics = metric
    if bias_correction is True:
        raise ConfigurationError(
            f"{option('bias_correction', '--bias-correction')} measures each layer's output shift on the "
            "calibration data: "
            + option("pass that data (bias_correction=calibration_data)", "give --calibration DATA")
        )
    if gptq is True:
        raise ConfigurationError(
            f"{option('gptq', '--gptq')} rounds the weights against each layer's inputs on the calibration data: "
            + option("pass that data (gptq=calibration_data)", "give --calibration DATA")
        )
    if isinstance(calibration, QuantPlan):
        # a ready plan already fixed these: taking them silently would validate something
        # else than asked (and --max-drop's search, which keeps layers in float, looped)
        given = [
            name
            for name, present in (
                ("max_metric_drop", max_metric_drop is not None),
                ("keep_float", bool(_names(keep_float))),
                ("require_int8", bool(_names(require_int8))),
                ("range_methods", bool(range_methods)),
            )
            if present
        ]
        if given:
            raise ConfigurationError(
                f"validate got a ready QuantPlan and {', '.join(given)}: a plan already fixes "
                "which layers are int8 and their ranges; pass the Calibration instead (make_plan(cal, ...) takes "
                "keep_float, require_int8 and range_methods)"
            )
    if max_metric_drop is not None:
        from .fallback import check_max_drop, search

        drop = check_max_drop(max_metric_drop)
        if gptq is not None and gptq is not False and gptq is not True:
            from ..simulate.gptq import WeightRounder

            # one rounder for every step: each layer's GPTQ integers are computed once
            gptq = gptq if isinstance(gptq, WeightRounder) else WeightRounder(gptq, layout=layout)

        def run(kept: tuple[str, ...], methods: Mapping[str, str] | None) -> ValidationResult:
            merged = dict(range_methods or {})
            merged.update(methods or {})
            return validate(
                calibration,
                data,
                target=target,
                metrics=metrics,
                keep_float=kept,
                require_int8=require_int8,
                batch_size=batch_size,
                progress=progress,
                kernels=kernels,
                layout=layout,
                processor=processor,
                client=client,
                shards=shards,
                bias_correction=bias_correction,
                range_methods=merged or None,
                gptq=gptq,
            )

        result, report = search(run, target, drop, _names(keep_float), _names(require_int8))
        result.fallback = report
        result.extra["fallback"] = report.to_dict()
        return result
    plan = (
        calibration
        if isinstance(calibration, QuantPlan)
        else make_plan(calibration, target, keep_float, require_int8=require_int8, range_methods=range_methods)
    )
    # the processor's estimate first: a network it cannot run fails before any work
    fps = _frames_per_second(plan, processor) if processor is not None else None
    if gptq is not None and gptq is not False:
        from ..simulate.gptq import WeightRounder

        plan = (gptq if isinstance(gptq, WeightRounder) else WeightRounder(gptq, layout=layout))(plan)
    if bias_correction is not None and bias_correction is not False:
        from ..simulate.bias_correction import correct_biases

        plan = correct_biases(plan, bias_correction, batch_size=batch_size, layout=layout)
    network = plan.network
    metric_fns = resolve_metrics(metrics) if metrics is not None else None
    totals = Totals(network)
    asked: dict[str, Any] = {}  # the metrics that take every sample's scores as one array

    def add(part: BatchPart) -> None:
        if totals.count == 0:  # the first batch: refuse what cannot work before the others run
            if part.labels is None and metric_fns is not None:
                _check_unlabelled(metric_fns)
            asked.update(
                metric_fns
                if metric_fns is not None
                else {"top1_accuracy": top1_accuracy}
                if part.labels is not None
                else {}
            )
            if any(fn in LABEL_METRICS for fn in asked.values()):
                class_scores(part.float_scores)  # one score per class, or a clear error
        else:  # outputs of another shape than the first batch's (a sequence of another length)
            _check_same_shapes(part, totals, asked)
        totals.add(part)

    class_list = getattr(data, "classes", None) if getattr(data, "class_list_given", False) else None
    outputs = network.value_shape(network.judged_output) if class_list else None
    if class_list and outputs and len(outputs) == 2 and isinstance(outputs[1], int):
        _check_class_list(class_list, outputs[1])  # before any work, where the output's width is known
    # what every layer's output of both networks takes per sample bounds the samples
    # measured at once: batches are read that large at most (so the result is the same
    # whatever larger batch_size is asked for), and larger ones split
    at_once = samples_at_once(plan)
    read_size = batch_size
    if at_once is not None and isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0:
        read_size = min(batch_size, at_once)
    if client is not None:
        check_dask_inputs(network)
        from .distributed import validate_on_dask  # Dask is an optional extra

        classes = validate_on_dask(
            plan,
            data,
            client,
            add,
            batch_size=read_size,
            layout=layout,
            kernels=kernels,
            shards=shards,
            progress=progress,
        )
    else:
        source = as_source(
            data, layout=layout, input_shape=network.input_shape, dtype=network.input_dtype, inputs=network.input_spec
        )
        validator = BatchValidator(plan, kernels)
        with progress_bar("Validating", source.num_samples, enabled=progress) as bar:
            for batch in read_ahead(source, read_size):
                if totals.count == 0 and batch.y is None and metric_fns is not None:
                    _check_unlabelled(metric_fns)  # before any work
                # a source that keeps its own batches (mappings of several inputs) may
                # give more samples than fit in memory at once: measured in pieces
                size = at_once if at_once is not None else samples_at_once(plan, validator.shapes_of(batch))
                for piece in batch_pieces_of(batch, size):
                    part = validator(piece)
                    add(part)
                    bar.advance(part.count)
        classes = getattr(source, "classes", None)
    n, errors, labelled = totals.count, totals.errors, totals.labelled
    float_scores, int8_scores, labels = totals.float_scores, totals.int8_scores, totals.labels
    if n == 0:
        raise CalibrationDataError("the validation data contains no samples")
    if labelled and metric_fns is None:
        metric_fns = {"top1_accuracy": top1_accuracy}
    if all(a.shape[1:] == float_scores[0].shape[1:] for a in float_scores):
        fs = np.concatenate(float_scores)
        qs_ = np.concatenate(int8_scores)
        float_top1 = fs.reshape(len(fs), -1).argmax(axis=1)
    else:  # outputs of different shapes (sequences of several lengths): one array per sample
        fs, qs_ = _per_sample(float_scores), _per_sample(int8_scores)
        float_top1 = np.array([np.argmax(s) for s in fs], dtype=np.intp)
    if labelled:
        y = np.concatenate(labels)
        metric_labels = y
    else:
        y = float_top1
        metric_labels = None  # metrics of unlabelled data get labels=None
    if labelled and class_list and fs.ndim == 2:
        _check_class_list(class_list, fs.shape[1])
    if labelled and classes and not class_list and fs.ndim == 2 and fs.shape[1] != len(classes):
        _log.warning(
            "the data has %d classes (%s...) and the network %d outputs: class i is taken as output i, in "
            "the sorted order of the class names. If the classes are a part of the network's, give the "
            "network's class list (%s)",
            len(classes),
            ", ".join(classes[:3]),
            fs.shape[1],
            option("ImageDatastore(..., class_names=[...])", "--classes FILE, one name a line"),
        )
    float_bytes, quant_bytes = plan.memory_bytes()
    metric_results = {}
    if metric_fns is None:
        # no labels and no metric asked for: how far int8 is from float on the first output
        for name, (f_value, q_value) in agreement_metrics(fs, qs_).items():
            metric_results[name] = pd.DataFrame(
                [("Floating-Point", f_value, float_bytes), ("Quantized", q_value, quant_bytes)],
                columns=METRIC_COLUMNS,
            )
        metric_fns = {}
    for name, fn in metric_fns.items():
        metric_results[name] = pd.DataFrame(
            [
                ("Floating-Point", evaluate_metric(name, fn, fs, metric_labels, "Floating-Point"), float_bytes),
                ("Quantized", evaluate_metric(name, fn, qs_, metric_labels, "Quantized"), quant_bytes),
            ],
            columns=METRIC_COLUMNS,
        )
    extra: dict[str, Any] = {}
    if fps is not None:
        fps_int8, fps_float, name = fps
        for df in metric_results.values():
            df["FramesPerSecond"] = [fps_float, fps_int8]
        extra["processor"] = name
    table = _layer_table(plan, errors)
    _check_inputs_like_calibration(plan, errors)
    _check_concats(plan, errors)
    _check_fpga_floats(plan)
    return ValidationResult(
        extra=extra,
        num_samples=n,
        metric_results=metric_results,
        layer_errors=table,
        verdict=_verdict(table),
        plan=plan,
        float_scores=fs,
        int8_scores=qs_,
        labels=y,
        labelled=labelled,
        calibration=calibration if isinstance(calibration, Calibration) else None,
    )


def _check_same_shapes(part: BatchPart, totals: Totals, asked: dict[str, Any]) -> None:
    """Refuse, as soon as a batch's output (or labels) differs in shape from the first
    batch's beyond the batch axis, metrics that take every sample's scores as one array
    ``(N, ...)``: such outputs do not make one. Without metrics asked for (no labels),
    the agreement metrics are computed per sample and over every value, whatever the
    shapes."""
    first = totals.float_scores[0]
    shape = part.float_scores.shape
    if asked and shape[1:] != first.shape[1:]:
        names = ", ".join(repr(name) for name in asked)
        raise ConfigurationError(
            f"the network's first output has shape {tuple(first.shape)} on the first batch and {tuple(shape)} on "
            f"the batch from sample {totals.count} on (inputs of another length or size): metric(s) {names} take "
            "every sample's scores as one array (N, ...), which outputs of different shapes do not make. Give "
            "inputs of one length (pad them), validate each length on its own, or validate without labels and "
            f"{option('without metrics=', 'without --metric')}: cosine similarity and output SQNR are then "
            "computed per sample and over every value"
        )
    if part.labels is not None and totals.labels and part.labels.shape[1:] != totals.labels[0].shape[1:]:
        raise CalibrationDataError(
            f"the labels have shape {tuple(totals.labels[0].shape)} in the first batch and {tuple(part.labels.shape)} "
            f"in the batch from sample {totals.count} on: give labels of one shape per sample (class indices (N,) "
            "or one-hot rows (N, classes))"
        )


def _per_sample(batches: list[np.ndarray]) -> np.ndarray:
    """Batches' outputs of different shapes as one object array ``(N,)`` of each
    sample's output (views of the batches' arrays)."""
    out = np.empty(sum(len(b) for b in batches), dtype=object)
    i = 0
    for b in batches:
        for sample in b:
            out[i] = sample
            i += 1
    return out


def _check_unlabelled(metric_fns: dict) -> None:
    """Refuse, before any work, label metrics on validation data without labels."""
    needing = [name for name, fn in metric_fns.items() if fn in LABEL_METRICS]
    if needing:
        raise CalibrationDataError(
            f"the validation data has no labels, and metric(s) {', '.join(repr(n) for n in needing)} compare "
            "with labels. Give labels ((x, y) arrays, y in the .npz, an image folder with one subfolder per "
            f"class), or {option('leave metrics unset', 'drop --metric')} to measure the agreement of int8 with "
            f"the float network{option(', or pass a metric function that accepts labels=None', '')}."
        )


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """A layer name or a collection of them as a tuple (None: none)."""
    return (value,) if isinstance(value, str) else tuple(value or ())


def _check_class_list(classes: list[str], outputs: int) -> None:
    """Refuse a user's class list whose length is not the network's number of outputs."""
    if len(classes) != outputs:
        raise ConfigurationError(
            f"the class list has {len(classes)} names and the network {outputs} outputs: give the network's "
            "class list, one name per output in output order "
            f"({option('ImageDatastore(..., class_names=[...])', '--classes FILE')})"
        )


#: Shares of a network input's validation values beyond its calibrated grid, or made 0
#: by it, above which the data looks scaled unlike the calibration data.
_INPUT_SATURATED, _INPUT_FLUSHED = 0.05, 0.25


#: Bits of its own grid an int8 Concat's input may lose to the shared one before a
#: warning (5: the input keeps at most 3 of its 8 bits).
_CONCAT_LOST_BITS = 5


def _check_concats(plan: QuantPlan, errors: dict[str, LayerError]) -> None:
    """Warn where an int8 Concat joins values of very different ranges: they share the
    output's one grid, so the smaller ones keep few bits or round to 0 (YOLOv8's head
    joins boxes of 0..320 with class scores of 0..1: every score became 0, while the
    output SQNR, dominated by the boxes, said 30 dB)."""
    producer = {layer.output: layer.name for layer in plan.network.layers}
    for layer in plan.network.layers:
        out_qp = plan.activations.get(layer.output)
        if out_qp is None or not plan.is_int(layer) or int8_family(layer) != "concat":
            continue
        lost = []
        for value in dict.fromkeys(layer.inputs):
            qp = plan.activations.get(value)
            bits = _bits_lost(qp, out_qp) if qp is not None else None
            if bits is not None and bits >= _CONCAT_LOST_BITS:
                lost.append((bits, producer.get(value, value)))
        if not lost:
            continue
        e = errors.get(layer.name)
        flushed = f"; {100 * e.flushed / e.count:.1f}% of its values round to 0" if e is not None and e.count else ""
        parts = ", ".join(
            f"{name!r} (its own grid {2**bits:.0f}x finer than the shared one: it keeps about {max(8 - bits, 0):.0f} "
            "of its 8 bits)"
            for bits, name in sorted(lost, reverse=True)
        )
        _log.warning(
            "layer %r joins values of very different ranges on one int8 grid: %s%s. The output SQNR follows "
            "the largest values and may not show it; keep the layer in float (%s) or judge the small part yourself",
            layer.name,
            parts,
            flushed,
            option(f"keep_float=[{layer.name!r}]", f"--keep-float {layer.name}"),
        )


def _float_layers(plan: QuantPlan) -> list[str]:
    """The layers (inputs aside) the plan keeps in float."""
    kinds = {layer.name: layer.kind for layer in plan.network.layers}
    return [name for name, precision, _ in plan.summary() if precision == "float" and kinds.get(name) != "input"]


def _check_fpga_floats(plan: QuantPlan) -> None:
    """On the power-of-two (fpga) target, warn that layers the emulation runs in float
    (a ConvTranspose, a LayerNorm) are not in the int8 figures: a GAN generator of
    ConvTransposes showed cosine 1 and the float memory for int8."""
    if not isinstance(plan.scheme, PowerOfTwo):
        return
    graph = plan.network.model.graph
    nodes = {node.name: node for node in graph}
    members = {layer.name: layer.members for layer in plan.network.layers}

    def weighted(name: str) -> bool:  # a member reads a constant of 2 or more axes (a kernel)
        return any(
            v is not None and v.const_value is not None and len(v.const_value.shape) >= 2
            for m in members.get(name, ())
            if m in nodes
            for v in nodes[m].inputs
        )

    floats = [name for name in _float_layers(plan) if weighted(name)]
    if floats:
        listed = ", ".join(floats[:6]) + (f" and {len(floats) - 6} more" if len(floats) > 6 else "")
        _log.warning(
            "fpga target: %d layer(s) with weights run in float in the emulation (%s): their int8 error and memory "
            "are not in these figures. The processor runs them in int8 (a ConvTranspose) or not at all (compile "
            "says which, docs/fpga.md)",
            len(floats),
            listed,
        )


def _bits_lost(qp, out_qp) -> float | None:
    """log2 of the output grid's step over the input's own (per-tensor grids), or None."""
    if qp.exponent is not None and out_qp.exponent is not None:
        return float(out_qp.exponent - qp.exponent)
    step_in, step_out = np.max(np.asarray(qp.scale, dtype=np.float64)), np.max(np.asarray(out_qp.scale, np.float64))
    if qp.exponent is None and out_qp.exponent is None and step_in > 0 and step_out > 0:
        return float(np.log2(step_out / step_in))
    return None


def _check_inputs_like_calibration(plan: QuantPlan, errors: dict[str, LayerError]) -> None:
    """Warn when a quantized network input's validation values lie far outside the range
    calibrated for it, or mostly round to 0 on its grid: validation data scaled unlike
    the calibration data (0..255 pixels against normalized ones, say) makes every int8
    figure meaningless."""
    for layer in plan.network.layers:
        e = errors.get(layer.name)
        if layer.kind != "input" or layer.output not in plan.activations or e is None or not e.count:
            continue
        saturated, flushed = e.saturated / e.count, e.flushed / e.count
        if saturated > _INPUT_SATURATED or flushed > _INPUT_FLUSHED:
            _log.warning(
                "the validation data of input %r does not look like its calibration data: %.1f%% of its values "
                "lie beyond the range calibrated for it and %.1f%% round to 0 on its int8 grid. Give both the same "
                "scaling and normalization (for image folders: %s)",
                layer.output,
                100 * saturated,
                100 * flushed,
                option("ImageDatastore(..., pixel_scale=, mean=, std=)", "--pixel-scale, --mean, --std"),
            )


#: Mean square above which a float tensor holds an attention mask's fill values
#: (``finfo(float32).min``, 1e9-style fills squared stay far below it; -inf makes it inf).
_FILL_MEAN_SQUARE = 1e60


def _fill_values(e: LayerError) -> bool:
    """The float tensor holds fill values (an attention mask's ``-inf`` or
    ``finfo.min``): its signal is theirs, so its SQNR says nothing of the error."""
    return e.count > 0 and not e.signal / e.count <= _FILL_MEAN_SQUARE


def _frames_per_second(plan: QuantPlan, processor) -> tuple[float, float, str]:
    """Estimated Frames/s of one frame on the int8 processor and on its ``_single`` twin
    (``processor`` may name either; NaN where a twin is not known), and the int8
    processor's name; refuses a plan whose per-channel parameters the processor does not
    have."""
    from ..fpga import PRESETS, estimate_performance
    from ..fpga import processor as get_processor
    from ..fpga.config import DataType
    from ..fpga.per_channel import check_per_channel

    network = plan.network
    if not isinstance(plan.scheme, PowerOfTwo):
        raise ConfigurationError(
            "processor= estimates Frames/s on an FPGA processor, which runs the power-of-two scheme (target='fpga'); "
            "drop processor= or use target='fpga'"
        )
    cfg = get_processor(processor)
    if cfg.data_type is DataType.SINGLE:  # a float bitstream given: its int8 twin runs the int8 network
        single, twin = cfg, cfg.name.replace("_single", "_int8") if cfg.name.endswith("_single") else None
        int8 = get_processor(twin) if twin in PRESETS else None
    else:
        int8, twin = cfg, cfg.name.replace("_int8", "_single") if cfg.name.endswith("_int8") else None
        single = get_processor(twin) if twin in PRESETS else None
    if int8 is not None and isinstance(plan.scheme, PowerOfTwo):  # the scheme the processor runs
        check_per_channel(plan, int8)

    def fps(c) -> float:
        return estimate_performance(network, c, frames=1).frames_per_second if c is not None else math.nan

    return fps(int8), fps(single), (int8 or cfg).name


def _layer_table(plan: QuantPlan, errors: dict[str, LayerError]) -> pd.DataFrame:
    network = plan.network
    sqnr = {
        layer.output: math.nan
        if _fill_values(errors[layer.name])
        else _db(errors[layer.name].signal, errors[layer.name].noise)
        for layer in network.layers
    }
    rows = []
    for layer in network.layers:
        e = errors[layer.name]
        own = sqnr[layer.output]
        measured = [sqnr[i] for i in layer.inputs if i in sqnr]
        before = min((v for v in measured if not math.isnan(v)), default=math.inf)
        if layer.kind == "input" or math.isnan(own) or (measured and all(math.isnan(v) for v in measured)):
            # nothing before an input; a tensor holding a mask's fill values has no
            # meaningful SQNR, nor has a layer computed from such tensors alone
            drop = math.nan
        elif own == math.inf:
            drop = 0.0  # no error at all
        elif own == -math.inf:
            drop = math.inf  # a float output all zero that int8 makes nonzero: everything lost here
        else:
            drop = min(before, _INT8_SQNR) - own  # exact inputs count as an ideal int8 grid
        rows.append(
            (
                layer.name,
                layer.kind,
                "float" if layer.name in plan.float_layers else "int8",
                own,
                drop,
                _db(e.signal, e.grid_noise) if layer.output in plan.activations else math.nan,
                _weight_sqnr(plan, layer.name),
                e.saturated / e.count if e.count else 0.0,
                e.flushed / e.count if e.count else 0.0,
                _channel_spread(plan, layer.name),
                ", ".join(network.onnx_names(layer)),
            )
        )
    df = pd.DataFrame(rows, columns=LAYER_COLUMNS)
    order = np.lexsort((np.arange(len(df)), -df["SQNRDrop(dB)"].to_numpy(dtype=np.float64)))
    out = df.iloc[order].reset_index(drop=True)
    out.attrs["scheme"] = type(plan.scheme).__name__
    out.attrs["per_channel"] = bool(getattr(plan.scheme, "per_channel", False))
    return out


def _percent(share: float) -> str:
    """A share as a percentage that never reads 0 for a share above 0."""
    percent = 100 * share
    return "<0.01%" if 0 < percent < 0.01 else f"{percent:.2f}%"


def _verdict(table: pd.DataFrame) -> str:
    int_rows = table[table["Precision"] == "int8"]
    if int_rows.empty:
        return "no layer is quantized"
    worst = int_rows.iloc[0]
    drop = worst["SQNRDrop(dB)"]
    parts = [
        f"{worst['Layer']} costs most: it lowers the SQNR by {drop:.1f} dB to {worst['SQNR(dB)']:.1f} dB"
        if not math.isnan(drop)  # a first layer (an embedding of token ids) has no SQNR before it
        else f"{worst['Layer']} costs most: its output is at {worst['SQNR(dB)']:.1f} dB"
    ]
    if not math.isnan(worst["WeightSQNR(dB)"]):
        parts.append(f"weights quantize at {worst['WeightSQNR(dB)']:.1f} dB")
    spread = worst["WeightChannelSpread"]
    per_tensor = table.attrs.get("scheme") == "PowerOfTwo" and not table.attrs.get("per_channel", False)
    if per_tensor and spread >= 8:
        parts.append(
            f"its largest weight channel is {spread:.0f}x the median one, so one per-tensor scale leaves "
            "most channels few levels (use per-channel scales, target 'cpu', or equalize the layers)"
        )
    if worst["Saturated"] > 0:
        parts.append(f"{_percent(worst['Saturated'])} of its outputs saturate")
    if worst["FlushedToZero"] > 0:
        parts.append(f"{_percent(worst['FlushedToZero'])} flush to zero")
    float_rows = table[(table["Precision"] == "float") & table["SQNRDrop(dB)"].notna()]
    if not float_rows.empty:
        top = float_rows.sort_values("SQNRDrop(dB)", ascending=False, kind="stable").iloc[0]
        if top["SQNRDrop(dB)"] > (drop if not math.isnan(drop) else 0.0) + 3.0:
            parts.append(
                f"but the float layer {top['Layer']} lowers the SQNR more, by {top['SQNRDrop(dB)']:.1f} dB: it "
                "magnifies the error of its int8 input (a LayerNorm or Softmax over near-constant or padded "
                "positions does); keeping the layers before it in float, or judging without padding, shows how much "
                "it matters"
            )
    return "; ".join(parts)
