"""Empirical bias correction (Nagel et al. 2019, section 4.2; docs/accuracy.md (4)-(5)).

Quantizing a layer's weights, and everything before it, shifts the mean of its
pre-activation output per channel: ``E[W_q x_q] != E[W x]``. The shift is measured
on calibration data and taken out of the layer's int32 bias, layer by layer in
network order, each layer seeing the int8 network with the layers before it already
corrected:

    d_c = E[(W x + b)_c] - E[(W_q x_q + b_q)_c]                        (4)
    q_b'[c] = sat_32( q_b[c] + R(d_c / s_b[c]) )                        (5)

``x`` is the float network's input to the layer and ``x_q`` the int8 network's
(dequantized), ``E`` the mean over the samples and the positions of channel ``c``.
The float network itself is not changed: only the int8 biases move, so the exported
QDQ model and the FPGA weight images carry the correction.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..calibrate.collector import create_session, run_checked
from ..calibrate.source import as_source
from ..errors import CalibrationDataError, ConfigurationError, option
from ..network import Inputs, OptimizedLayer
from ..network.network import batch_pieces
from ..quantize.numerics import round_values, saturate
from ..quantize.plan import QuantPlan
from .engine import FastEngine

__all__ = ["DEFAULT_SAMPLES", "calibration_samples", "check_max_samples", "correct_biases"]

#: Samples of the calibration data bias correction and GPTQ use at most (the first ones).
DEFAULT_SAMPLES = 256


def correct_biases(
    plan: QuantPlan,
    data: Any,
    *,
    max_samples: int = DEFAULT_SAMPLES,
    batch_size: int = 32,
    layout: str = "NCHW",
) -> QuantPlan:
    """A copy of ``plan`` whose int32 biases take out the mean output shift that
    quantization leaves in each int8 conv/fc layer (eq. (4)-(5) of docs/accuracy.md).

    Args:
        plan: the plan to correct (left unchanged).
        data: calibration data (anything :func:`quantscope.calibrate` takes); the
            first ``max_samples`` samples are used, all at once (the int8 network runs
            them as one batch, so that each layer's correction sees the layers before
            it corrected).
        max_samples: at most this many samples (default 256).
        batch_size: samples per run of the float network.

    Returns:
        the corrected plan; ``plan.bias_corrections`` maps each corrected layer to the
        shift ``d`` taken out, per output channel (float64, in the output's units).
    """
    check_max_samples(max_samples)
    network = plan.network
    targets = [
        layer
        for layer in network.layers
        if layer.kind in ("conv", "fc") and layer.name in plan.biases and layer.name in plan.weights
    ]
    corrected = dataclasses.replace(plan, biases=dict(plan.biases), bias_corrections={})
    if not targets:
        return corrected
    x = calibration_samples(plan, data, max_samples, batch_size, layout, "--bias-correction", "bias_correction")
    fixed = network.fixed_batch
    if fixed is not None and len(x) > fixed:  # whole batches only: no padded copies in either mean
        x = x[: len(x) // fixed * fixed]
    float_means = _float_means(plan, targets, x, batch_size)
    engine = _CorrectingEngine(corrected, float_means)
    engine.run(x)
    return corrected


def check_max_samples(max_samples: Any) -> None:
    """``max_samples`` of bias correction and GPTQ: a positive integer."""
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ConfigurationError(f"max_samples must be a positive integer, got {max_samples!r}")


def calibration_samples(
    plan: QuantPlan, data: Any, max_samples: int, batch_size: int, layout: str, flag: str, keyword: str
):
    """The first ``max_samples`` samples of ``data`` as one array (or :class:`Inputs`),
    fed as ``plan``'s network takes them; ``flag``/``keyword`` name the option in errors."""
    network = plan.network
    source = as_source(
        data, layout=layout, input_shape=network.input_shape, dtype=network.input_dtype, inputs=network.input_spec
    )
    parts, n = [], 0
    for batch in source.batches(min(batch_size, max_samples)):
        feeds = network.feeds(batch.x)
        piece = Inputs(feeds) if len(feeds) > 1 else feeds[network.input_name]
        parts.append(piece[: max_samples - n])
        n += len(parts[-1])
        if n >= max_samples:
            break
    if n == 0:
        raise CalibrationDataError(f"the data for {option(keyword, flag)} contains no samples")
    if isinstance(parts[0], Inputs):
        return Inputs.concatenate(parts)
    return np.concatenate(parts)


def _pre_activation(layer: OptimizedLayer) -> str:
    """The value holding ``layer``'s output before its activation (bias included)."""
    index = 1 if layer.op_types[0] == "MatMul" and len(layer.nodes) > 1 and layer.op_types[1] == "Add" else 0
    return layer.nodes[index].outputs[0].name


def _channel_means(y: np.ndarray, op: str) -> tuple[np.ndarray, int]:
    """Sum per output channel (axis 1 for Conv/Gemm, the last for MatMul) and the count per channel."""
    y = np.asarray(y, np.float64)
    axis = y.ndim - 1 if op == "MatMul" else 1
    moved = np.moveaxis(y, axis, 0).reshape(y.shape[axis], -1)
    return moved.sum(axis=1), moved.shape[1]


def _float_means(plan: QuantPlan, targets: list[OptimizedLayer], x, batch_size: int) -> dict[str, np.ndarray]:
    """Each target's mean pre-activation output per channel in the float network."""
    network = plan.network
    names = [_pre_activation(layer) for layer in targets]
    session = create_session(network.to_proto(names).SerializeToString(), spinning=False)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    fixed = network.fixed_batch
    size = fixed or batch_size
    for piece, count in batch_pieces(x, size, fixed=fixed is not None):
        outs = run_checked(lambda piece=piece: session.run(names, network.feeds(piece)))
        n = len(piece)
        for layer, out in zip(targets, outs):
            # the real samples of a padded piece, where the batch axis is first (an LSTM's
            # (T, N, ...) and the Gemm after it, (T * N, C), are taken whole)
            out = out[:count] if count < n and len(out) == n else out
            s, c = _channel_means(out, layer.op_types[0])
            sums[layer.name] = sums.get(layer.name, 0.0) + s
            counts[layer.name] = counts.get(layer.name, 0) + c
    return {name: sums[name] / counts[name] for name in sums}


class _CorrectingEngine(FastEngine):
    """The fast engine, correcting each target layer's int32 bias from the batch it
    runs, just before the layer runs (its fused kernel is built after; no chains of
    layers, which would run a layer before its correction)."""

    chains = False

    def __init__(self, plan: QuantPlan, float_means: dict[str, np.ndarray]):
        super().__init__(plan)
        self.float_means = float_means
        self._original = dict(plan.biases)  # the biases before correction
        self._sums: dict[str, tuple[np.ndarray, int]] = {}  # int8 output sums so far (original bias)

    def _run_int(self, layer, env):
        if layer.name in self.float_means:
            name = layer.inputs[0]
            out_qp = self.plan.activations.get(layer.output)
            xin = self._as_int(env[name], self.plan.activations.get(name, out_qp))
            self._correct(layer, xin.dequantize())
        return super()._run_int(layer, env)

    def _correct(self, layer: OptimizedLayer, x: np.ndarray) -> None:
        """Correct from every sample run so far: a network with a fixed batch runs the
        samples a batch at a time, each batch through the layer adding to its mean."""
        plan = self.plan
        qw, w_qp = plan.weights[layer.name]
        qb, b_qp = self._original[layer.name]
        w = w_qp.dequantize(qw).astype(np.float32)
        b = b_qp.dequantize(qb)
        op = layer.op_types[0]
        attrs = self.network.node_attributes(layer.members[0])
        y = _run_node(op, attrs, x.astype(np.float32), w, b.astype(np.float32) if op != "MatMul" else None)
        if op == "MatMul":
            y = y.astype(np.float64) + b.reshape(-1)
        sums, count = _channel_means(y, op)
        if layer.name in self._sums:
            before, n = self._sums[layer.name]
            sums, count = before + sums, n + count
            self._fused = {k: v for k, v in self._fused.items() if not k.startswith(f"{layer.name}|")}  # new bias
        self._sums[layer.name] = (sums, count)
        shift = self.float_means[layer.name] - sums / count
        scale = np.broadcast_to(b_qp.scale, qb.shape).astype(np.float64)
        if op == "Gemm":
            scale = scale * float(attrs.get("beta", 1.0))
        step = round_values(shift.reshape(qb.shape) / scale, plan.rounding)
        new = saturate(qb.astype(np.float64) + step, b_qp.bits).astype(qb.dtype)
        plan.biases[layer.name] = (new, b_qp)
        plan.bias_corrections[layer.name] = shift


def _run_node(op: str, attrs: dict, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """One Conv/Gemm/MatMul in float32 through onnxruntime."""
    inputs = ["x", "w"] + (["b"] if b is not None else [])
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b.reshape(-1), "b")] if b is not None else [])
    node = helper.make_node(op, inputs, ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "layer",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = create_session(model.SerializeToString(), spinning=False)
    return run_checked(lambda: session.run(["y"], {"x": x})[0], "a layer for bias correction")
