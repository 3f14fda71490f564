"""Metric functions: ``metric(scores, labels) -> float``.

``scores``: the network's output, one row per sample, ``(N, num_classes)``.
``labels``: class indices ``(N,)`` (or one-hot ``(N, num_classes)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import ConfigurationError, QuantscopeError, option

__all__ = [
    "LABEL_METRICS",
    "Metric",
    "agreement_metrics",
    "cosine_similarity",
    "evaluate_metric",
    "output_sqnr_db",
    "resolve_metrics",
    "top1_accuracy",
    "top5_accuracy",
]

Metric = Callable[[np.ndarray, np.ndarray], float]


def _label_indices(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Class indices ``(N,)`` from labels ``(N,)`` or one-hot ``(N, classes)``.

    Raises :class:`ConfigurationError` naming the first sample whose label is not a
    whole number in ``[0, num_classes)``: such a label can never match, and a metric
    computed with it would be silently wrong."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        # one-hot rows: exactly one 1 and 0 elsewhere, one column per class (a row of
        # zeros or of probabilities has no one class: argmax would make one up)
        hot = (labels == 1).sum(axis=1)
        bad = np.flatnonzero((hot != 1) | ((labels != 0) & (labels != 1)).any(axis=1))
        if bad.size:
            raise ConfigurationError(
                f"the labels of sample {int(bad[0])} ({np.array2string(labels[bad[0]][:10], threshold=10)}) are "
                f"not a one-hot row (one 1, zeros elsewhere), nor are {bad.size - 1} other(s): give class indices "
                "(N,) or one-hot rows (N, classes)"
            )
        if num_classes is not None and labels.shape[1] != num_classes:
            raise ConfigurationError(
                f"the one-hot labels have {labels.shape[1]} columns and the network {num_classes} classes: give "
                "one column per output class, or class indices (N,)"
            )
        return labels.argmax(axis=1)
    flat = labels.reshape(-1)
    if flat.dtype.kind not in "iub":
        if flat.dtype.kind != "f" or not np.all(np.isfinite(flat)) or not np.all(flat == np.round(flat)):
            bad = int(np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))[0]) if flat.dtype.kind == "f" else 0
            raise ConfigurationError(
                f"label {flat[bad].item()!r} of sample {bad} is not a class index: top-1/top-5 accuracy needs "
                "labels that are whole numbers 0..classes-1 (or one-hot rows); map class names to indices first"
            )
    idx = flat.astype(np.int64)
    if num_classes is not None and idx.size:
        out = np.flatnonzero((idx < 0) | (idx >= num_classes))
        if out.size:
            raise ConfigurationError(
                f"label {int(idx[out[0]])} of sample {int(out[0])} is outside the network's {num_classes} classes "
                f"(0..{num_classes - 1}), and {out.size} label(s) in all: check that the labels belong to this "
                "network's output"
            )
    return idx


def class_scores(scores: np.ndarray) -> np.ndarray:
    """``(N, classes)`` scores from ``(N, classes)`` or ``(N, classes, 1, 1)``-like
    outputs. Any other output (a sequence, a feature map, boxes) has no one class per
    sample: flattened, its positions would be counted as classes and the accuracy would
    be a meaningless number, so a :class:`ConfigurationError` says so."""
    scores = np.asarray(scores)
    if scores.ndim < 2 or sum(1 for d in scores.shape[1:] if d != 1) > 1:
        raise ConfigurationError(
            f"top-1/top-5 accuracy needs one score per class for each sample, shape (N, classes), but the "
            f"network's output has shape {scores.shape}. Validate without labels "
            + option("", "(--no-labels for an image folder, no y in an .npz) ")
            + "(the int8 output is then compared with the float one: agreement, cosine similarity, SQNR), or "
            + option("pass metric= a function suited to this output.", "use the Python API with a metric function.")
        )
    return scores.reshape(len(scores), -1)


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest score is the label's class (0..1). ``scores``:
    ``(N, classes)`` (or with trailing axes of size 1)."""
    scores = class_scores(scores)
    return float(np.mean(scores.argmax(axis=1) == _label_indices(labels, scores.shape[1])))


def top5_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose label is among the five highest scores (0..1). ``scores``
    as :func:`top1_accuracy`'s."""
    scores = class_scores(scores)
    if scores.shape[1] <= 5:
        top1 = option('metric="top1"', "--metric top1")
        raise ConfigurationError(
            f"top-5 accuracy of a network with {scores.shape[1]} classes is 1 for any network (every class is "
            f"among the five highest scores); use top-1 ({top1})"
        )
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    return float(np.mean((top == _label_indices(labels, scores.shape[1])[:, None]).any(axis=1)))


_NAMED = {"top1": top1_accuracy, "accuracy": top1_accuracy, "top5": top5_accuracy}
#: The built-in metrics that compare with labels, and cannot run without them.
LABEL_METRICS = frozenset({top1_accuracy, top5_accuracy})


def evaluate_metric(name: str, fn: Metric, scores: np.ndarray, labels: np.ndarray | None, network: str) -> float:
    """``float(fn(scores, labels))``, or a :class:`ConfigurationError` that names the
    metric when it raises or returns something that is not one number.

    ``network``: ``"Floating-Point"`` or ``"Quantized"``, for the message.
    """
    try:
        value = fn(scores, labels)
    except QuantscopeError:
        raise  # already says what is wrong (labels that are no class indices...)
    except Exception as exc:  # the user's function: say which one failed, and on what
        raise ConfigurationError(
            f"metric {name!r} raised {type(exc).__name__}: {exc} (called as {name}(scores, labels) on the "
            f"{network} network's scores of shape {tuple(np.shape(scores))}"
            f"{'' if labels is None else f' and labels of shape {tuple(np.shape(labels))}'}); "
            "a metric must take (scores (N, classes), labels (N,)) and return a number"
        ) from exc
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
    if arr is None or arr.size != 1 or arr.dtype.kind not in "biuf":
        shown = f"an array of shape {np.shape(value)}" if np.ndim(value) > 0 else f"{value!r}"[:80]
        raise ConfigurationError(
            f"metric {name!r} returned {shown} ({type(value).__name__}) for the {network} network; "
            "a metric must return one number (a Python or numpy int or float)"
        )
    return float(arr.reshape(()))


def resolve_metrics(metrics: Any) -> dict[str, Metric]:
    """``None`` -> top-1; a name (``"top1"``, ``"top5"``), a callable, or a list or dict of them."""
    if metrics is None:
        return {"top1_accuracy": top1_accuracy}
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    if isinstance(metrics, dict):
        items: Iterable = metrics.items()
    else:
        items = []
        for m in metrics:
            if isinstance(m, str):
                if m not in _NAMED:
                    extra = option(" or a function(scores, labels)", " (--metric NAME, repeated for several)")
                    raise ConfigurationError(f"unknown metric {m!r}; use one of {', '.join(_NAMED)}{extra}")
                items.append((_NAMED[m].__name__, _NAMED[m]))
            elif callable(m):
                items.append((getattr(m, "__name__", "metric"), m))
            else:
                raise ConfigurationError(f"a metric must be a name or a function(scores, labels), got {m!r}")
    out: dict[str, Metric] = {}
    for name, fn in items:
        if not callable(fn):
            raise ConfigurationError(f"metric {name!r} is not callable")
        out[str(name)] = fn
    if not out:
        raise ConfigurationError("no metric given")
    return out


def _ragged(scores: Any) -> bool:
    """``scores`` is an object array of one output per sample (outputs of different
    shapes: sequences of several lengths), as validation makes them."""
    return isinstance(scores, np.ndarray) and scores.dtype == object


def cosine_similarity(reference: np.ndarray, other: np.ndarray) -> float:
    """The mean over samples of the cosine between ``other``'s and ``reference``'s
    output vectors (each sample's output flattened; float64). Two all-zero vectors
    count as 1, one all-zero vector against another as 0. Either may be an object
    array of one output per sample, of different shapes."""
    if _ragged(reference) or _ragged(other):
        return float(
            np.mean(
                [
                    _cosines(
                        np.asarray(a, dtype=np.float64).reshape(1, -1), np.asarray(b, dtype=np.float64).reshape(1, -1)
                    )[0]
                    for a, b in zip(reference, other)
                ]
            )
        )
    a = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    b = np.asarray(other, dtype=np.float64).reshape(len(other), -1)
    return float(np.mean(_cosines(a, b)))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each row of ``a`` with the same row of ``b`` (float64 ``(N, D)``)."""
    dot = np.einsum("ij,ij->i", a, b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na == 0) & (nb == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(both, 1.0, np.where((na == 0) | (nb == 0), 0.0, dot / (na * nb)))


def output_sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """``10 log10(sum reference^2 / sum (reference - other)^2)`` over every sample and
    value (dB); inf when they are equal. Either may be an object array of one output
    per sample, of different shapes (each sample's sums added in sample order)."""
    if _ragged(reference) or _ragged(other):
        signal = noise = 0.0
        for f, q in zip(reference, other):
            a = np.asarray(f, dtype=np.float64)
            noise += float(np.sum((a - np.asarray(q, dtype=np.float64)) ** 2))
            signal += float(np.sum(a * a))
    else:
        a = np.asarray(reference, dtype=np.float64)
        noise = float(np.sum((a - np.asarray(other, dtype=np.float64)) ** 2))
        signal = float(np.sum(a * a))
    if noise == 0:
        return math.inf
    return -math.inf if signal == 0 else 10.0 * math.log10(signal / noise)


def agreement_metrics(float_out: np.ndarray, int8_out: np.ndarray) -> dict[str, tuple[float, float]]:
    """The metrics of data without labels, comparing the int8 network's first output
    with the float one's: ``{name: (Floating-Point value, Quantized value)}``.

    ``top1_agreement`` (only when the output is a 2-D score matrix ``(N, classes)``):
    the fraction of samples whose highest score is the same class; ``cosine_similarity``
    (:func:`cosine_similarity`) and ``output_sqnr_db`` (:func:`output_sqnr_db`). The
    float network agrees with itself: 1, 1 and inf dB.

    Outputs of different shapes (object arrays of one output per sample, sequences of
    several lengths) are compared sample by sample: ``top1_agreement`` when every
    sample's output is a vector of more than one score, the argmax of each.
    """
    out: dict[str, tuple[float, float]] = {}
    if _ragged(float_out) or _ragged(int8_out):
        if all(np.ndim(f) == 1 and np.size(f) > 1 for f in float_out):
            same = [np.argmax(f) == np.argmax(q) for f, q in zip(float_out, int8_out)]
            out["top1_agreement"] = (1.0, float(np.mean(same)))
    elif np.ndim(float_out) == 2 and np.shape(float_out)[1] > 1:
        same = np.asarray(float_out).argmax(axis=1) == np.asarray(int8_out).argmax(axis=1)
        out["top1_agreement"] = (1.0, float(np.mean(same)))
    out["cosine_similarity"] = (1.0, cosine_similarity(float_out, int8_out))
    out["output_sqnr_db"] = (math.inf, output_sqnr_db(float_out, int8_out))
    return out
