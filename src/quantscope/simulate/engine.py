"""Run a quantized network: integer layers with the integer kernels, the rest in float.

The simulator runs the steps of :func:`~quantscope.simulate.segments.schedule`. Each
value is held as integers with their :class:`QParams` (an :class:`IntTensor`), as a
float array, or as an integer/boolean array (token ids, masks, shapes: never
quantized):

- a float network input is quantized with its planned parameters (eq. (2)) when the
  plan quantizes it;
- Conv / fully connected layers: the exact integer accumulator of the integer
  input, int8 weights and int32 bias (eq. (4)), requantized to the output's
  parameters (eq. (5) power-of-two, eq. (9) float scale), then the fused
  activation on the output grid (eq. (8)); products of two activations (13) and
  embedding tables (14) likewise;
- pooling, Add, Concat, standalone activations and data movement run on
  integers and are requantized to the layer's output parameters;
- every other node (the input normalization, Softmax, LayerNorm, shape
  computations, anything without an integer kernel, layers kept in float) runs
  through onnxruntime in float segments on the dequantized values (docs/int8.md
  (15)); a value the plan quantizes comes out of its segment as integers.

``kernels="reference"`` uses :mod:`quantscope.simulate.reference` (the
definition); ``kernels="fast"`` swaps Conv/Gemm/MatMul for the exact BLAS kernels
of :mod:`quantscope.simulate.fast`, MaxPool for onnxruntime's, and runs each
Conv layer (and power-of-two Add) as one onnxruntime graph where it is provably
exact (docs/int8.md (12)). Both give the same integers.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from .._compiled import prepare
from ..errors import ConfigurationError, option
from ..network import Inputs, Network, OptimizedLayer
from ..network.network import batch_pieces
from ..ops import ops_with
from ..quantize.numerics import (
    AccumulatorOverflowError,
    FloatScale,
    Overflow,
    PowerOfTwo,
    Saturation,
    divide_round,
    int_dtype,
    requantize_pow2,
    requantize_scale,
    saturate,
)
from ..quantize.plan import QParams, QuantPlan, int8_family
from . import fast, lut, reference
from .segments import Segment, schedule

__all__ = ["FastEngine", "IntTensor", "Kernels", "ReferenceEngine", "Simulator"]


@dataclass
class IntTensor:
    """Integers ``q`` (int8 for activations) standing for ``(q - zero_point) * scale``."""

    q: np.ndarray
    qp: QParams

    def dequantize(self) -> np.ndarray:
        return self.qp.dequantize(self.q)


Value = IntTensor | np.ndarray


def _real(t: IntTensor, dtype) -> np.ndarray:
    """``t``'s real values in ``dtype``: :meth:`IntTensor.dequantize` then the cast, or,
    for power-of-two integers of at most 16 bits going to float32, one float32 product
    ``q * 2**e``: exact (at most 16 significant bits, ``2**-126 <= 2**e`` and ``2**(e+15)
    < 2**128``), so the same values with a quarter of the memory traffic."""
    qp = t.qp
    if (
        np.dtype(dtype) == np.float32
        and qp.exponent is not None
        and qp.axis is None
        and int(qp.zero_point) == 0
        and -126 <= qp.exponent <= 112
        and t.q.dtype.kind in "iu"
        and t.q.dtype.itemsize <= 2
    ):
        return np.multiply(t.q, np.float32(2.0**qp.exponent), dtype=np.float32)
    return t.dequantize().astype(dtype)


def _first(value: Value, count: int) -> Value:
    """The first ``count`` samples of a layer's value."""
    return IntTensor(value.q[:count], value.qp) if isinstance(value, IntTensor) else value[:count]


def _concat(values: list[Value]) -> Value:
    """Layer values of consecutive pieces, joined along the batch axis."""
    if isinstance(values[0], IntTensor):
        return IntTensor(np.concatenate([v.q for v in values]), values[0].qp)
    return np.concatenate(values)


class ReferenceEngine:
    """Executes a :class:`QuantPlan` with the reference kernels
    (:mod:`quantscope.simulate.reference`, the definition of the integers).

    Args:
        plan: the quantization plan (network + scheme + parameters).
        overflow: what an int32 accumulator overflow does (``Overflow.RAISE`` or ``WRAP``).
    """

    #: operator -> integer kernel
    kernels = reference.KERNELS

    def __init__(self, plan: QuantPlan, overflow: Overflow = Overflow.RAISE):
        self.plan = plan
        self.network: Network = plan.network
        self.overflow = overflow
        #: the output :meth:`run` returns (validation sets ``network.judged_output``)
        self.output: str = self.network.output_names[0]
        self._nodes = {node.name: node for node in self.network.model.graph}
        self._proto: onnx.ModelProto | None = None
        self._steps: list | None = None
        self._env: dict[str, Value] = {}
        #: float dtype of each value (the dequantized integers fed to a float segment)
        self._float_dtypes = {
            v.name: v.dtype.numpy()
            for node in self.network.model.graph
            for v in node.outputs
            if v.dtype is not None and v.dtype.numpy().kind == "f"
        }
        for v in self.network.model.graph.inputs:
            if v.dtype is not None and v.dtype.numpy().kind == "f":
                self._float_dtypes[v.name] = v.dtype.numpy()

    # ---------------------------------------------------------------- public
    def run(
        self, x: np.ndarray, collect: bool = False, on_layer: Callable[[str, Value], None] | None = None
    ) -> tuple[np.ndarray, dict[str, Value]]:
        """Run a batch ``x``: an array in the network's input layout (NCHW floats, token
        ids...), or :class:`~quantscope.network.Inputs` for a network with several inputs.

        Returns ``(output, layers)``: the network's first output as float64
        (dequantized), and, when ``collect``, every layer's output value
        (:class:`IntTensor` or float array) keyed by optimized layer name.

        ``on_layer(name, value)``, when given, is called with each optimized layer's
        output value as soon as it is computed (in the order of the schedule), while
        the rest of the network runs on: validation measures a layer meanwhile. The
        value must not be modified.
        """
        fixed = self.network.fixed_batch
        if fixed is not None and len(x) != fixed:
            # a model exported with a fixed batch: its shapes (a Reshape to (1, -1)...)
            # hold only for that many samples at a time
            parts = [
                # a padded piece drops its padding; a full one is kept whole (an output
                # whose batch axis is not first, such as an LSTM's (T, N, ...), stays whole)
                (out[:count], {k: _first(v, count) for k, v in layers.items()}) if count < fixed else (out, layers)
                for piece, count in batch_pieces(x if isinstance(x, Inputs) else np.asarray(x), fixed, fixed=True)
                for out, layers in [self.run(piece, collect or on_layer is not None)]
            ]
            outputs = np.concatenate([p[0] for p in parts])
            merged = {k: _concat([p[1][k] for p in parts]) for k in parts[0][1]} if collect or on_layer else {}
            if on_layer is not None:
                for name, value in merged.items():
                    on_layer(name, value)
            return outputs, merged if collect else {}
        if self._steps is None:
            self._steps = schedule(self.network, self._int_layers(), set(self.plan.activations))
            self._proto = self.network.to_proto()
        env: dict[str, Value] = {}
        layers_of: dict[str, list[str]] = {}  # value name -> the layers whose output it is
        if on_layer is not None:
            for layer in self.network.layers:
                layers_of.setdefault(layer.output, []).append(layer.name)

        def done(*names: str) -> None:
            for name in names:
                for layer_name in layers_of.get(name, ()):
                    on_layer(layer_name, env[name])

        for name, array in self.network.feeds(x).items():
            in_qp = self.plan.activations.get(name)
            env[name] = IntTensor(self._quantize(array, in_qp), in_qp) if in_qp is not None else array
            done(name)
        self._env = env
        # One BLAS thread: the products here are small, and a multi-threaded BLAS
        # that competes with onnxruntime's threads for 2 cores runs 10-100x slower.
        with threadpool_limits(limits=1, user_api="blas"):
            for step in self._steps:
                if isinstance(step, Segment):
                    self._run_segment(step, env)
                    done(*step.outputs)
                else:
                    env[step.output] = self._run_int(step, env)
                    done(step.output)
        self._env = {}
        collected = {layer.name: env[layer.output] for layer in self.network.layers} if collect else {}
        return _as_float(env[self.output]), collected

    # ---------------------------------------------------------------- layers
    def _int_layers(self) -> list[OptimizedLayer]:
        """The layers run by integer kernels: integer in the plan, with a handler."""
        return [
            layer
            for layer in self.network.layers
            if layer.kind != "input" and self.plan.is_int(layer) and int8_family(layer) in _INT_HANDLERS
        ]

    def _run_segment(self, segment: Segment, env: dict[str, Value]) -> None:
        """Run float nodes through onnxruntime on the (dequantized) values they read;
        values the plan quantizes come out as integers."""
        feeds = {}
        for name in segment.inputs:
            value = env[name]
            if isinstance(value, IntTensor):
                value = _real(value, self._float_dtypes.get(name, np.float32))
            feeds[name] = value
        for name, out in zip(segment.outputs, segment.run(self.network, self._proto, feeds)):
            qp = self.plan.activations.get(name)
            env[name] = IntTensor(self._quantize(out, qp), qp) if qp is not None else out

    def _run_int(self, layer: OptimizedLayer, env: dict[str, Value]) -> Value:
        out_qp = self.plan.activations.get(layer.output)
        inputs = [self._as_int(env[name], self.plan.activations.get(name, out_qp)) for name in layer.inputs]
        try:
            return _INT_HANDLERS[int8_family(layer)](self, layer, inputs, out_qp)
        except AccumulatorOverflowError as exc:
            raise AccumulatorOverflowError(
                f"layer {layer.name!r} ({'/'.join(layer.op_types)}): {exc} To go on: keep this layer in "
                + option(
                    f"float (keep_float=[{layer.name!r}]), or emulate hardware whose accumulator wraps with "
                    "Simulator(plan, overflow=Overflow.WRAP).",
                    f"float (--keep-float {shlex.quote(layer.name)}).",
                )
            ) from None

    def _quantize(self, x: np.ndarray, qp: QParams) -> np.ndarray:
        """Real values to ``qp``'s integers (eq. (2))."""
        return qp.quantize(x, self.plan.rounding, self.plan.saturation)

    def _as_int(self, value: Value, fallback: QParams) -> IntTensor:
        if isinstance(value, IntTensor):
            return value
        return IntTensor(fallback.quantize(value, self.plan.rounding, self.plan.saturation), fallback)

    def _attrs(self, node_name: str) -> dict[str, Any]:
        node = self._nodes[node_name]
        return {k: a.value for k, a in node.attributes.items()}

    def _const_input(self, node_name: str, index: int) -> np.ndarray | None:
        """Input ``index`` of a node: a constant, or a value computed at run time
        (a shape, axes, bounds: from the float segments before); None when absent."""
        node = self._nodes[node_name]
        if index >= len(node.inputs) or node.inputs[index] is None:
            return None
        value = node.inputs[index]
        if value.const_value is not None:
            return value.const_value.numpy()
        computed = self._env.get(value.name)
        if computed is None:
            raise ConfigurationError(f"input {index} of {node.op_type} {node_name!r} is not computed yet")
        return _as_float(computed) if isinstance(computed, IntTensor) else np.asarray(computed)

    def requantize(self, t: IntTensor, qp: QParams) -> IntTensor:
        """Move integers to other parameters (eq. (5) or (9)); a no-op when they match."""
        if t.qp.same_as(qp):
            return t
        if t.qp.exponent is not None and qp.exponent is not None:
            q = requantize_pow2(t.q, t.qp.exponent, qp.exponent, qp.bits, self.plan.rounding, self.plan.saturation)
        else:
            q = requantize_scale(
                t.q.astype(np.int64) - t.qp.zero_point,
                t.qp.scale / qp.scale,
                qp.zero_point,
                qp.bits,
                self.plan.rounding,
                self.plan.saturation,
            )
        return IntTensor(q, qp)

    # learnable layers
    def _learnable(self, layer: OptimizedLayer, inputs: list[IntTensor], out_qp: QParams) -> IntTensor:
        plan = self.plan
        xin = inputs[0]
        qw, w_qp = plan.weights[layer.name]
        qb = plan.biases[layer.name][0] if layer.name in plan.biases else None
        fused, clamps_fused = None, False
        if layer.op_types[0] == "Conv":
            fused, clamps_fused = self._fused_conv(layer, xin, qw, qb, w_qp, out_qp)
        activations = [(m, t) for m, t in zip(layer.members[1:], layer.op_types[1:]) if t in _ACTIVATIONS]
        slope = None
        if fused is not None:
            out = IntTensor(fused(xin.q), out_qp)
        else:
            slope = self._real_slope(layer, activations)
            if slope is not None:
                activations = activations[1:]  # applied to the real output, eq. (9a)
            out = self._accumulate_requantize(layer, xin, qw, qb, w_qp, out_qp, slope)
        if not clamps_fused:
            for member, op_type in activations:
                out = self._activation(member, op_type, out)
        return out

    def _real_slope(self, layer, activations: list[tuple[str, str]]):
        """The CPU scheme's first fused activation when it is a LeakyRelu or PRelu right
        after the layer's kernel: its slope (``alpha``, or the PRelu's slopes shaped to
        broadcast over the output), which eq. (9a) applies to the real output before
        rounding, as onnxruntime runs ``Conv -> LeakyRelu -> QuantizeLinear`` (the
        output's grid holds the activation's range, into which the negative
        pre-activations would saturate before the slope). None otherwise: the power-of-two
        scheme applies eq. (8c) on the output's integers, as the FPGA processor does."""
        if isinstance(self.plan.scheme, PowerOfTwo) or not activations:
            return None
        member, op_type = activations[0]
        if layer.members.index(member) != 1:
            return None
        if op_type == "LeakyRelu":
            return np.float64(self._attrs(member).get("alpha", 0.01))
        if op_type == "PRelu":
            slope = self._const_input(member, 1)
            if slope is None:
                return None
            slope = np.asarray(slope, np.float64)
            rank = len(self.plan.network.value_shape(layer.output) or ()) or 4
            if rank >= 3 and slope.ndim == 1:
                slope = slope.reshape(-1, *([1] * (rank - 2)))
            return slope
        return None

    def _accumulate_requantize(
        self, layer, xin: IntTensor, qw, qb, w_qp: QParams, out_qp: QParams, slope=None
    ) -> IntTensor:
        """The exact accumulator of the layer's kernel (eq. (4)), requantized to ``out_qp``
        (``slope``: a fused LeakyRelu/PRelu applied before rounding, eq. (9a))."""
        plan, k = self.plan, self.kernels
        head = layer.members[0]
        op = layer.op_types[0]
        zx = int(xin.qp.zero_point)
        if op == "Conv":
            attrs = self._attrs(head)
            acc = k["Conv"](
                xin.q,
                qw,
                qb,
                x_zero_point=zx,
                overflow=self.overflow,
                **{
                    a: attrs[a]
                    for a in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
                    if a in attrs
                },
            )
            channel_axis = 1
        elif op == "Gemm":
            attrs = self._attrs(head)
            acc = k["Gemm"](
                xin.q,
                qw,
                qb,
                trans_a=attrs.get("transA", 0),
                trans_b=attrs.get("transB", 0),
                alpha=attrs.get("alpha", 1.0),
                beta=attrs.get("beta", 1.0),
                a_zero_point=zx,
                overflow=self.overflow,
            )
            channel_axis = 1
        else:  # MatMul (+ Add)
            acc = k["MatMul"](xin.q, qw, a_zero_point=zx, overflow=self.overflow)
            if qb is not None:
                acc = acc + qb.astype(np.int64)
            channel_axis = acc.ndim - 1
        if isinstance(plan.scheme, PowerOfTwo) and w_qp.exponent is not None:
            q = requantize_pow2(
                acc, w_qp.exponent + xin.qp.exponent, out_qp.exponent, out_qp.bits, plan.rounding, plan.saturation
            )
        else:
            # per-channel power-of-two weights: each multiplier is an exact power of two, so
            # eq. (9) rounds the exact A * 2^(e_x + e_w[c] - e_y), the integers of eq. (5)
            multiplier = xin.qp.scale * w_qp.scale / out_qp.scale
            axis = channel_axis if np.ndim(multiplier) else None
            q = requantize_scale(
                acc,
                multiplier,
                out_qp.zero_point,
                out_qp.bits,
                plan.rounding,
                plan.saturation,
                axis=axis,
                negative_slope=slope,
            )
        return IntTensor(q, out_qp)

    def _fused_conv(self, layer, xin: IntTensor, qw, qb, w_qp: QParams, out_qp: QParams):
        """``(kernel, clamps_fused)`` of a Conv layer run as one graph; the reference
        engine has none: ``(None, False)``."""
        return None, False

    def _activation(self, node_name: str, op_type: str, t: IntTensor) -> IntTensor:
        """A fused/standalone activation on ``t``'s own grid (eq. (8))."""
        plan = self.plan
        z = int(t.qp.zero_point)
        if op_type == "Relu":
            return IntTensor(self.kernels["Relu"](t.q, zero_point=z), t.qp)
        if op_type == "Clip":
            attrs = self._attrs(node_name)
            lo = self._const_input(node_name, 1)
            hi = self._const_input(node_name, 2)
            lo = attrs.get("min") if lo is None else float(lo)
            hi = attrs.get("max") if hi is None else float(hi)
            bounds = []
            for bound in (lo, hi):
                if bound is None:
                    bounds.append(None)
                else:
                    qb = int(t.qp.quantize(np.array(bound, np.float64), plan.rounding, plan.saturation))
                    bounds.append(qb)
            return IntTensor(self.kernels["Clip"](t.q, bounds[0], bounds[1]), t.qp)
        if op_type == "Min":
            # constant ceilings (one per channel after equalization) on t's grid, as Clip's (8b)
            q = t.q
            for index in range(1, len(self._nodes[node_name].inputs)):
                bound = np.asarray(self._const_input(node_name, index), np.float64)
                q = np.minimum(q, t.qp.quantize(bound, plan.rounding, plan.saturation).astype(q.dtype))
            return IntTensor(q, t.qp)
        if op_type == "LeakyRelu":
            alpha = self._attrs(node_name).get("alpha", 0.01)
            return IntTensor(
                self.kernels["LeakyRelu"](t.q, alpha, rounding=plan.rounding, zero_point=z, saturation=plan.saturation),
                t.qp,
            )
        if op_type == "PRelu":
            slope = self._const_input(node_name, 1)
            if t.q.ndim >= 3 and slope.ndim == 1:
                slope = slope.reshape(-1, *([1] * (t.q.ndim - 2)))
            return IntTensor(
                self.kernels["PRelu"](t.q, slope, rounding=plan.rounding, zero_point=z, saturation=plan.saturation),
                t.qp,
            )
        raise ConfigurationError(f"no integer activation {op_type}")

    def _matmul(self, layer, inputs, out_qp):
        """A product of two int8 activations (attention scores ``Q K^T``, context
        ``P V``): the exact accumulator of both operands less their zero points,
        requantized to the output's parameters (docs/int8.md (13))."""
        a, b = inputs
        plan = self.plan
        acc = self.kernels["MatMul"](
            a.q, b.q, a_zero_point=int(a.qp.zero_point), b_zero_point=int(b.qp.zero_point), overflow=self.overflow
        )
        if a.qp.exponent is not None and b.qp.exponent is not None and out_qp.exponent is not None:
            q = requantize_pow2(
                acc, a.qp.exponent + b.qp.exponent, out_qp.exponent, out_qp.bits, plan.rounding, plan.saturation
            )
        else:
            multiplier = np.float64(a.qp.scale) * np.float64(b.qp.scale) / np.float64(out_qp.scale)
            q = requantize_scale(acc, multiplier, out_qp.zero_point, out_qp.bits, plan.rounding, plan.saturation)
        return IntTensor(q, out_qp)

    def _embedding(self, layer, inputs, out_qp):
        """Rows of the int8 table picked by the ids (ONNX Gather; negative ids count
        from the end): exact, the output has the table's parameters."""
        table, qp = self.plan.weights[layer.name]
        ids = np.asarray(self._const_input(layer.members[0], 1)).astype(np.int64)
        axis = self._attrs(layer.members[0]).get("axis", 0)
        return IntTensor(np.take(table, np.where(ids < 0, ids + table.shape[axis], ids), axis=axis), qp)

    def _lut(self, layer, inputs, out_qp):
        """Sigmoid, Tanh, HardSigmoid, HardSwish, Swish (SiLU): the layer's table of one
        output per integer input, looked up (docs/int8.md (16), :mod:`.lut`)."""
        t = inputs[0]
        key = (layer.name, t.qp.exponent, float(np.ravel(t.qp.scale)[0]), int(t.qp.zero_point), t.qp.bits)
        tables = self.__dict__.setdefault("_tables", {})
        if key not in tables:
            attrs = lut.layer_attributes(self.network, layer)
            plan = self.plan
            tables[key] = lut.lookup_table(layer.kind, attrs, t.qp, out_qp, plan.rounding, plan.saturation)
        return IntTensor(lut.apply_table(t.q, tables[key], t.qp), out_qp)

    def _standalone_activation(self, layer, inputs, out_qp):
        t = self._activation(layer.members[0], layer.kind, inputs[0])
        return self.requantize(t, out_qp)

    def _pool(self, layer, inputs, out_qp):
        t = inputs[0]
        k = self.kernels
        attrs = self._attrs(layer.members[0])
        if layer.kind == "MaxPool":
            keys = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides")
            q = k["MaxPool"](t.q, **{a: attrs[a] for a in keys if a in attrs})
        else:
            return self._average(layer, t, attrs, out_qp)
        return self.requantize(IntTensor(q, t.qp), out_qp)

    def _average(self, layer, t: IntTensor, attrs: dict, out_qp: QParams) -> IntTensor:
        """Average pooling rounded once, straight to the output's grid (docs/int8.md (6d)):
        power of two ``sat(R(S * 2^(e_x - e_y) / n))``; float scales
        ``sat(R(S' * s_x / (n * s_y)) + z_y)`` with ``S'`` the window sum of ``q - z_x``."""
        plan = self.plan
        zero = np.asarray(t.qp.zero_point, dtype=np.int64)
        if layer.kind != "AveragePool" and zero.ndim == 0 and t.q.ndim >= 3 and t.q.dtype.kind in "iu":
            # global: the window sums straight from the integers, in int64 (no int64 copy
            # of the tensor), less the zero point once per value summed; the same sums
            axes = tuple(range(2, t.q.ndim))
            n = int(np.prod(t.q.shape[2:]))
            total = t.q.sum(axis=axes, keepdims=True, dtype=np.int64) - int(zero) * n
        else:
            x = t.q.astype(np.int64) - zero
            if layer.kind == "AveragePool":
                keys = ("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides")
                total, n = reference.average_pool_sums(x, **{a: attrs[a] for a in keys if a in attrs})
            else:
                total, n = reference.global_average_pool_sums(x)
        if out_qp is None:
            return self.requantize(IntTensor(divide_round(total, n, plan.rounding), t.qp), out_qp)
        if t.qp.exponent is not None and out_qp.exponent is not None:
            d = t.qp.exponent - out_qp.exponent  # >= 0: the output grid is finer
            n = np.asarray(n, dtype=np.int64)
            q = divide_round(total << d, n, plan.rounding) if d >= 0 else divide_round(total, n << -d, plan.rounding)
            q = saturate(q, out_qp.bits, True, plan.saturation).astype(int_dtype(out_qp.bits))
            return IntTensor(q, out_qp)
        multiplier = float(t.qp.scale) / (np.asarray(n, dtype=np.float64) * float(out_qp.scale))
        q = requantize_scale(
            total,
            np.broadcast_to(multiplier, total.shape),
            out_qp.zero_point,
            out_qp.bits,
            plan.rounding,
            plan.saturation,
        )
        return IntTensor(q, out_qp)

    def _add(self, layer, inputs, out_qp):
        a, b = inputs
        fused = self._fused_add(layer, a, b, out_qp)
        if fused is not None:
            return fused
        if isinstance(self.plan.scheme, PowerOfTwo):
            q = self.kernels["Add"](
                a.q,
                b.q,
                a.qp.exponent,
                b.qp.exponent,
                out_qp.exponent,
                bits=out_qp.bits,
                rounding=self.plan.rounding,
                saturation=self.plan.saturation,
            )
            return IntTensor(q, out_qp)
        total = a.dequantize() + b.dequantize()  # eq. (9b): float-scale Add in float64
        return IntTensor(out_qp.quantize(total, self.plan.rounding, self.plan.saturation), out_qp)

    def _fused_add(self, layer, a: IntTensor, b: IntTensor, out_qp: QParams) -> IntTensor | None:
        """A power-of-two Add run as one graph; the reference engine has none."""
        return None

    def _concat(self, layer, inputs, out_qp):
        axis = self._attrs(layer.members[0])["axis"]
        parts = [self.requantize(t, out_qp).q for t in inputs]
        return IntTensor(np.concatenate(parts, axis=axis), out_qp)

    def _move(self, layer, inputs, out_qp):
        t = inputs[0]
        name = layer.members[0]
        attrs = self._attrs(name)
        if layer.kind == "Flatten":
            q = reference.flatten(t.q, axis=attrs.get("axis", 1))
        elif layer.kind == "Reshape":
            q = reference.reshape(t.q, self._const_input(name, 1), allowzero=attrs.get("allowzero", 0))
        elif layer.kind == "Slice":
            steps = self._const_input(name, 4)
            q = reference.slice_(
                t.q, self._const_input(name, 1), self._const_input(name, 2), self._const_input(name, 3), steps
            )
        elif layer.kind == "Transpose":
            q = reference.transpose(t.q, perm=attrs.get("perm"))
        else:
            axes = self._const_input(name, 1)
            axes = attrs.get("axes") if axes is None else axes
            if layer.kind == "Squeeze":
                q = np.squeeze(t.q, axis=None if axes is None else tuple(int(a) for a in np.ravel(axes)))
            else:
                q = t.q
                for a in sorted(int(v) % (t.q.ndim + len(np.ravel(axes))) for v in np.ravel(axes)):
                    q = np.expand_dims(q, a)
        return self.requantize(IntTensor(q, t.qp), out_qp)


class FastEngine(ReferenceEngine):
    """The same integers as :class:`ReferenceEngine`, fast: Conv/Gemm/MatMul on exact
    BLAS kernels and MaxPool on onnxruntime (:mod:`quantscope.simulate.fast`), each
    Conv layer and each power-of-two Add as one onnxruntime graph where a bound on the
    partial sums proves it exact (docs/int8.md (12)), and the input quantized in place.
    The tests check it against the reference bit for bit."""

    kernels = fast.KERNELS
    #: Join consecutive fused power-of-two Conv layers into one graph (:func:`fast.chain`).
    chains = True

    def __init__(self, plan: QuantPlan, overflow: Overflow = Overflow.RAISE):
        super().__init__(plan, overflow)
        #: Conv (and power-of-two Add) layers as one onnxruntime graph each where
        #: provably exact (key -> (FusedLayer or None: not applicable, clamps fused)).
        self._fused: dict[str, tuple] = {}
        #: first layer's name -> the layers of its chain (computed with the schedule)
        self._chains: dict[str, list[OptimizedLayer]] | None = None
        #: outputs a chain computed ahead of their layers' turn in the schedule
        self._ahead: dict[str, IntTensor] = {}
        self._keep_all = False
        # numba loads while the input is read (numpy quantizes until it is there)
        prepare(fast.REQUANTIZE_MODULE, "quantize_values")
        if isinstance(plan.scheme, FloatScale):
            prepare(fast.REQUANTIZE_MODULE, "requantize_conv")

    def run(self, x, collect=False, on_layer=None):
        """:meth:`ReferenceEngine.run`; the float-scale Conv layers' accumulator buffer is
        freed when the batch is done."""
        self._keep_all = bool(collect or on_layer is not None)  # a chain then gives every layer's output
        try:
            return super().run(x, collect, on_layer)
        finally:
            self._ahead = {}
            fast.release_scratch()

    def _run_int(self, layer, env):
        if layer.name in self._ahead:
            return self._ahead.pop(layer.name)
        if self.chains and self._steps is not None:
            if self._chains is None:
                self._chains = self._find_chains()
            members = self._chains.get(layer.name)
            if members is not None:
                outs = self._run_chain(members, env)
                if outs is not None:
                    self._ahead.update({m.name: out for m, out in zip(members[1:], outs[1:])})
                    return outs[0]
        return super()._run_int(layer, env)

    def _chain_link(self, layer: OptimizedLayer, xin: IntTensor):
        """The layer's fused power-of-two Conv with its clamps fused, or None."""
        plan = self.plan
        if not isinstance(plan.scheme, PowerOfTwo) or layer.kind != "conv" or layer.op_types[0] != "Conv":
            return None
        if int8_family(layer) != "learnable" or layer.name not in plan.weights:
            return None
        out_qp = plan.activations.get(layer.output)
        if out_qp is None:
            return None
        qw, w_qp = plan.weights[layer.name]
        qb = plan.biases[layer.name][0] if layer.name in plan.biases else None
        fused, clamps_fused = self._fused_conv(layer, xin, qw, qb, w_qp, out_qp)
        return fused if fused is not None and clamps_fused and getattr(fused, "recipe", None) else None

    def _find_chains(self) -> dict[str, list[OptimizedLayer]]:
        """Runs of consecutive int8 Conv steps, each reading only the one before, whose
        value nothing else reads (no other step, not a network output)."""
        readers: dict[str, int] = {}
        for step in self._steps:
            for name in step.inputs:
                readers[name] = readers.get(name, 0) + 1
        for name in self.network.output_names:
            readers[name] = readers.get(name, 0) + 1
        chains: dict[str, list[OptimizedLayer]] = {}
        run: list[OptimizedLayer] = []
        for step in [*self._steps, None]:
            linked = (
                isinstance(step, OptimizedLayer)
                and run
                and tuple(step.inputs) == (run[-1].output,)
                and readers.get(run[-1].output) == 1
                and self._can_link(step)
            )
            if linked:
                run.append(step)
                continue
            if len(run) > 1:
                chains[run[0].name] = run
            run = [step] if isinstance(step, OptimizedLayer) and self._can_link(step) else []
        return chains

    def _can_link(self, layer: OptimizedLayer) -> bool:
        """Whether ``layer`` can be in a chain, reading its one input as the int8
        integers the plan gives that value (the output of the link before it)."""
        name = layer.inputs[0] if len(layer.inputs) == 1 else None
        qp = self.plan.activations.get(name) if name is not None else None
        if qp is None or qp.bits > 8:
            return False
        probe = IntTensor(np.zeros(0, dtype=np.int8), qp)
        return self._chain_link(layer, probe) is not None

    def _run_chain(self, members: list[OptimizedLayer], env) -> list[IntTensor] | None:
        """Every member's output from one graph; None where the first member's input is
        not int8 (then each layer runs alone)."""
        first = members[0]
        out_qp = self.plan.activations.get(first.output)
        xin = self._as_int(env[first.inputs[0]], self.plan.activations.get(first.inputs[0], out_qp))
        if xin.q.dtype != np.int8:
            return None
        links = [self._chain_link(first, xin)]
        for before, layer in zip(members, members[1:]):
            links.append(self._chain_link(layer, IntTensor(np.zeros(0, np.int8), self.plan.activations[before.output])))
        if any(link is None for link in links):
            return None
        keep = [self._keep_all] * (len(members) - 1)
        key = "chain|" + "|".join(m.name for m in members) + f"|{self._keep_all}"
        if key not in self._fused:
            self._fused[key] = (fast.chain(links, keep), False)
        joined = self._fused[key][0]
        if joined is None:
            return None
        outs = joined(xin.q)
        if not self._keep_all:  # only the last output is needed: the others are never read
            outs = [None] * (len(members) - 1) + outs
        return [IntTensor(q, self.plan.activations[m.output]) if q is not None else None for m, q in zip(members, outs)]

    def _quantize(self, x: np.ndarray, qp: QParams) -> np.ndarray:
        """The in-place version of eq. (2) for per-tensor power-of-two parameters that
        saturate (the same integers)."""
        plan = self.plan
        if (
            qp.exponent is not None
            and qp.axis is None
            and int(qp.zero_point) == 0
            and plan.saturation is Saturation.SATURATE
        ):
            return fast.quantize_pow2(x, qp.exponent, qp.bits, plan.rounding)
        return super()._quantize(x, qp)

    def _fused_conv(self, layer, xin: IntTensor, qw, qb, w_qp: QParams, out_qp: QParams):
        """``(kernel, clamps_fused)``: the layer's :class:`~quantscope.simulate.fast.FusedLayer`,
        or None where it does not apply (the exact float64 kernel runs instead).

        When every fused activation is a Relu/Clip they become the kernel's clamp
        bounds (``clamps_fused``), computed by applying them, with the same kernels, to
        the extremes ``qmin``/``qmax`` of the saturated output: a chain of clamps is
        the clamp between its images of those two. Otherwise (a LeakyRelu...) the
        kernel only saturates and the caller applies the activations in order."""
        key = f"{layer.name}|{xin.q.dtype}|{xin.qp.exponent}|{np.ravel(xin.qp.scale)[0]!r}|{int(xin.qp.zero_point)}"
        if key not in self._fused:
            plan = self.plan
            pow2 = isinstance(plan.scheme, PowerOfTwo)
            if (
                out_qp is not None
                and plan.saturation is Saturation.SATURATE
                and out_qp.bits <= 8
                and np.ndim(xin.qp.zero_point) == 0
                and np.ndim(out_qp.zero_point) == 0
                and (
                    not pow2
                    or (int(xin.qp.zero_point) == 0 and None not in (xin.qp.exponent, w_qp.exponent, out_qp.exponent))
                )
            ):
                dtype = int_dtype(out_qp.bits)
                ends = IntTensor(np.array([out_qp.qmin, out_qp.qmax], dtype=dtype), out_qp)
                activations = [(m, t) for m, t in zip(layer.members[1:], layer.op_types[1:]) if t in _ACTIVATIONS]
                clamps_fused = all(t in _CLAMPS for _, t in activations)
                if not pow2 and self._real_slope(layer, activations) is not None:
                    self._fused[key] = (None, False)  # eq. (9a) in the exact kernel
                    return self._fused[key]
                if clamps_fused:
                    for member, op_type in activations:
                        ends = self._activation(member, op_type, ends)
                lo, hi = (int(v) for v in ends.q)
                attrs = self._attrs(layer.members[0])
                if pow2:
                    fused = fast.FusedLayer.conv(
                        qw,
                        qb,
                        attrs,
                        xin.q.dtype,
                        out_qp.exponent - (w_qp.exponent + xin.qp.exponent),
                        plan.rounding,
                        lo,
                        hi,
                    )
                else:
                    fused = fast.FusedLayer.conv_scale(
                        qw,
                        w_qp.zero_point,
                        qb,
                        attrs,
                        xin.q.dtype,
                        int(xin.qp.zero_point),
                        xin.qp.scale * w_qp.scale / out_qp.scale,
                        int(out_qp.zero_point),
                        plan.rounding,
                        lo,
                        hi,
                    )
                self._fused[key] = (fused, clamps_fused) if fused is not None else (None, False)
            else:
                self._fused[key] = (None, False)
        return self._fused[key]

    def requantize(self, t: IntTensor, qp: QParams) -> IntTensor:
        """Per-tensor power-of-two 8-bit integers moved to another exponent as one
        onnxruntime graph (:meth:`~quantscope.simulate.fast.FusedLayer.requantize`,
        the same integers); anything else as the reference does."""
        plan = self.plan
        if (
            qp is None
            or t.qp.same_as(qp)
            or None in (t.qp.exponent, qp.exponent)
            or t.qp.axis is not None
            or qp.axis is not None
            or int(t.qp.zero_point) != 0
            or int(qp.zero_point) != 0
            or qp.bits > 8
            or plan.saturation is not Saturation.SATURATE
        ):
            return super().requantize(t, qp)
        key = f"requantize|{t.q.dtype}|{t.qp.exponent}|{qp.exponent}|{qp.bits}"
        if key not in self._fused:
            fused = fast.FusedLayer.requantize(t.q.dtype, t.qp.exponent, qp.exponent, plan.rounding, qp.qmin, qp.qmax)
            self._fused[key] = (fused, False)
        fused = self._fused[key][0]
        return IntTensor(fused(t.q), qp) if fused is not None else super().requantize(t, qp)

    def _fused_add(self, layer, a: IntTensor, b: IntTensor, out_qp: QParams) -> IntTensor | None:
        plan = self.plan
        if isinstance(plan.scheme, PowerOfTwo):
            key = f"{layer.name}|{a.q.dtype}|{b.q.dtype}|{a.qp.exponent}|{b.qp.exponent}"
            if key not in self._fused:
                fused = None
                if plan.saturation is Saturation.SATURATE and out_qp.bits <= 8:
                    fused = fast.FusedLayer.add(
                        a.q.dtype,
                        b.q.dtype,
                        a.qp.exponent,
                        b.qp.exponent,
                        out_qp.exponent,
                        plan.rounding,
                        out_qp.qmin,
                        out_qp.qmax,
                    )
                self._fused[key] = (fused, False)
            fused = self._fused[key][0]
            if fused is not None:
                return IntTensor(fused(a.q, b.q), out_qp)
        return None


class Kernels(StrEnum):
    """Which engine runs a plan; both give the same integers."""

    FAST = "fast"  # :class:`FastEngine` (the default)
    REFERENCE = "reference"  # :class:`ReferenceEngine`, the definition

    @classmethod
    def parse(cls, value: str | Kernels) -> Kernels:
        try:
            return cls(value)
        except ValueError:
            raise ConfigurationError(f"kernels must be 'fast' or 'reference', got {value!r}") from None


def Simulator(
    plan: QuantPlan, kernels: str | Kernels = Kernels.FAST, overflow: Overflow = Overflow.RAISE
) -> ReferenceEngine:
    """The engine that runs ``plan``: :attr:`Kernels.FAST` (default) a :class:`FastEngine`,
    :attr:`Kernels.REFERENCE` a :class:`ReferenceEngine`. Both give the same integers."""
    engine = FastEngine if Kernels.parse(kernels) is Kernels.FAST else ReferenceEngine
    return engine(plan, overflow)


def _as_float(value: Value) -> np.ndarray:
    return value.dequantize() if isinstance(value, IntTensor) else np.asarray(value, dtype=np.float64)


#: Activations merged into a conv/fc layer, and those that are clamps on the integer
#: grid (fused into the bounds of the layer's FusedLayer), from the op table.
_ACTIVATIONS = ops_with(int8="activation")
_CLAMPS = ops_with(int8="activation", clamp=True)

#: Integer kernel family (``int8_family``) -> the simulator's handler.
_INT_HANDLERS = {
    "learnable": ReferenceEngine._learnable,
    "pool": ReferenceEngine._pool,
    "add": ReferenceEngine._add,
    "concat": ReferenceEngine._concat,
    "activation": ReferenceEngine._standalone_activation,
    "move": ReferenceEngine._move,
    "lut": ReferenceEngine._lut,
    "matmul": ReferenceEngine._matmul,
    "embedding": ReferenceEngine._embedding,
}
