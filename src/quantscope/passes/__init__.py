"""Graph passes that prepare a network for quantization (MATLAB's ``prepareNetwork``).

One pass per file. :func:`run_prepare_passes` runs them in order and collects
each pass's explanations of what it did not rewrite.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import onnx_ir as ir
from onnx_ir.passes.common import (
    LiftConstantsToInitializersPass,
    RemoveInitializersFromInputsPass,
    RemoveUnusedNodesPass,
    ShapeInferencePass,
    TopologicalSortPass,
)

from ..ops import GLOBAL_POOL_OF
from .absorb import AbsorbedBias, BiasTarget, absorb_biases, bias_targets
from .drop_dropout import DropDropoutPass
from .equalize import EqualizedPair, EqualizePass
from .fold_batchnorm import FoldBatchNormPass
from .fold_bias_add import FoldBiasAddPass
from .fold_constants import FoldConstantsPass
from .fold_shapes import FoldReshapeShapesPass
from .merge_pad import MergePadPass
from .name_nodes import NameNodesPass
from .readable_names import ReadableNamesPass
from .reduce_mean_to_pool import ReduceMeanToPoolPass
from .split_to_slices import SplitToSlicesPass

__all__ = [
    "AbsorbedBias",
    "BiasTarget",
    "DropDropoutPass",
    "EqualizePass",
    "EqualizedPair",
    "FoldBatchNormPass",
    "FoldBiasAddPass",
    "FoldConstantsPass",
    "FoldReshapeShapesPass",
    "MergePadPass",
    "NameNodesPass",
    "PrepareLog",
    "ReadableNamesPass",
    "ReduceMeanToPoolPass",
    "SplitToSlicesPass",
    "absorb_biases",
    "bias_targets",
    "equalize_model",
    "run_prepare_passes",
]


@dataclass
class PrepareLog:
    """What the passes did: folded BatchNormalizations, dropped nodes, and notes."""

    # BatchNormalization or constant bias Add name -> the Conv/Gemm it was folded into
    folded: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # Dropout/Identity names
    pooled: list[str] = field(default_factory=list)  # ReduceMean nodes now GlobalAveragePool
    shapes: list[str] = field(default_factory=list)  # Reshape nodes whose computed shape was folded
    pads: list[str] = field(default_factory=list)  # Pad nodes merged into the Conv/AveragePool after them
    splits: list[str] = field(default_factory=list)  # Split nodes rewritten as one Slice per output
    constants: list[str] = field(default_factory=list)  # nodes folded into constants
    notes: list[str] = field(default_factory=list)  # why a rewrite did not apply
    onnx_names: dict[str, str] = field(default_factory=dict)  # readable node name -> the ONNX node name
    equalized: list[EqualizedPair] = field(default_factory=list)  # cross-layer equalization (equalize=True)
    absorbed: list[AbsorbedBias] = field(default_factory=list)  # bias absorption after it (absorb_biases)


def run_prepare_passes(model: ir.Model, equalize: bool = False) -> PrepareLog:
    """Prepare ``model`` in place: name nodes, lift constants, drop Dropout/Identity, fold
    constant bias Adds into the Conv before them, fold BN,
    rewrite spatial ReduceMean as GlobalAveragePool, fold computed Reshape shapes, rewrite
    Splits of constant sizes as Slices, merge zero Pads into the Conv/AveragePool after
    them; with ``equalize``, then equalize the layers (:class:`EqualizePass`)."""
    log = PrepareLog()
    if model.ir_version < 4:
        # IR 3 (opset 7/8 era) lists every initializer as a graph input too; the
        # rewrites add initializers, so move to IR 4, where they need not be inputs
        RemoveInitializersFromInputsPass()(model)
        model.ir_version = 4
    NameNodesPass()(model)
    LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    readable = ReadableNamesPass()
    readable(model)
    TopologicalSortPass()(model)
    drop = DropDropoutPass()
    drop(model)
    consts = FoldConstantsPass()
    consts(model)
    bias_adds = FoldBiasAddPass()  # before the BNs: Conv -> Add(bias) -> BN folds whole
    bias_adds(model)
    fold = FoldBatchNormPass()
    fold(model)
    pool = ReduceMeanToPoolPass()
    pool(model)
    shapes = FoldReshapeShapesPass()
    shapes(model)
    splits = SplitToSlicesPass()
    splits(model)
    pads = MergePadPass()
    pads(model)
    RemoveUnusedNodesPass()(model)
    TopologicalSortPass()(model)
    notes: list[str] = []
    # a pool whose input's shape a TorchScript export did not record: its one-window
    # rewrite needs the shapes inferred first, then runs again
    pools_unknown = any(
        n.op_type in GLOBAL_POOL_OF and n.inputs and n.inputs[0] is not None and n.inputs[0].shape is None
        for n in model.graph
    )
    if (
        shapes.folded or pool.rewritten or consts.folded or splits.rewritten or pools_unknown
    ):  # the shapes after the rewritten nodes were unknown or stale
        _infer_shapes(model, notes)
    if pools_unknown:
        pool(model)  # adds to pool.rewritten
    log.onnx_names = readable.renamed
    log.dropped = drop.dropped
    log.folded = {**bias_adds.folded, **fold.folded}
    log.pooled = pool.rewritten
    log.shapes = shapes.folded
    log.pads = pads.merged
    log.splits = splits.rewritten
    log.constants = consts.folded
    log.notes = drop.notes + fold.notes + notes
    if equalize:
        equalize_model(model, log)
    return log


def _infer_shapes(model: ir.Model, notes: list[str]) -> None:
    """onnx_ir's shape inference on ``model`` in place; a failure is a note."""
    try:
        with _caught_warnings(ShapeInferencePass.__module__) as warned:
            ShapeInferencePass()(model)
        failure = next((r.exc_info[1] for r in warned if r.exc_info and r.exc_info[1] is not None), None)
    except Exception as exc:  # keep the rewrite; shapes stay as they were
        failure = exc
    if failure is not None:
        first = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
        notes.append(
            f"shape inference after the rewrites failed ({type(failure).__name__}: {first}); some shapes stay unknown"
        )


@contextmanager
def _caught_warnings(logger_name: str) -> Iterator[list[logging.LogRecord]]:
    """Keep what the logger ``logger_name`` reports while the block runs, instead of
    printing it: onnx_ir's shape inference logs its failure, with a traceback, to
    stderr and leaves the model unchanged; quantscope reports it as a note."""
    logger = logging.getLogger(logger_name)
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, propagate = _Keep(logging.DEBUG), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def equalize_model(model: ir.Model, log: PrepareLog) -> None:
    """Run :class:`EqualizePass` on a prepared ``model`` in place; what it did goes to
    ``log.equalized`` and its notes to ``log.notes``."""
    eq = EqualizePass()
    if eq(model).modified:
        RemoveUnusedNodesPass()(model)  # the weights it replaced
    log.equalized = list(eq.pairs)
    log.notes.extend(eq.notes)
