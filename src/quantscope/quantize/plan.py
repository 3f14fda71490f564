"""The quantization plan: integer types of every tensor, chosen from the calibration.

A :class:`QuantPlan` says, for a prepared network and a scheme, how each
activation tensor, each weight and each bias is stored as integers
(:class:`QParams`), which layers run in integers, and which stay in float and why.
It is pure data: the simulator (``quantscope.simulate``) executes it and the
exporter writes it as QDQ ONNX.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..calibrate.ranges import RangeMethod, clipping_range
from ..calibrate.result import Calibration
from ..calibrate.stats import NUM_BINS, TensorStats, bin_edges
from ..errors import ConfigurationError, option
from ..network import Network, OptimizedLayer
from ..ops import info
from .numerics import (
    ExponentMethod,
    FloatScale,
    PowerOfTwo,
    Rounding,
    Saturation,
    pow2_exponent,
    quantize,
    round_values,
)

__all__ = [
    "QParams",
    "QuantPlan",
    "Target",
    "histogram_exponent",
    "int8_family",
    "make_plan",
    "resolve_scheme",
]


def int8_family(layer: OptimizedLayer) -> str | None:
    """The integer kernel family of a layer (:class:`~quantscope.ops.OpInfo`
    ``int8``): ``"learnable"`` for conv/fc layers, ``"input"`` and ``"normalization"``
    for those two layers, the op table's family for a single-node layer, or None
    (no integer kernel: the layer computes in float)."""
    if layer.kind in ("conv", "fc"):
        return "learnable"
    if layer.kind in ("input", "normalization", "embedding"):
        return layer.kind
    if layer.kind == "MatMul" and len(layer.inputs) == 2:
        return "matmul"  # a product of two activations (attention scores and context)
    family = info(layer.kind).int8
    return None if family == "learnable" else family


@dataclass(frozen=True)
class QParams:
    """How a real tensor is stored as integers: ``x = (q - zero_point) * scale``.

    Attributes:
        scale: float64, shape ``()`` (per tensor) or ``(C,)`` (per channel along ``axis``).
        zero_point: int64, same shape as ``scale``.
        bits: integer width (8 for weights and activations, 32 for biases).
        axis: the channel axis for per-channel parameters, else None.
        exponent: for power-of-two parameters, ``scale == 2.0 ** exponent``; else None.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    bits: int = 8
    axis: int | None = None
    exponent: int | None = None

    @classmethod
    def pow2(cls, exponent: int, bits: int = 8) -> QParams:
        return cls(np.array(2.0**exponent), np.array(0, np.int64), bits, None, int(exponent))

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def quantize(self, x: np.ndarray, rounding: Rounding, saturation: Saturation) -> np.ndarray:
        """Integers for real ``x`` (eq. (2) of docs/int8.md)."""
        return quantize(x, self.scale, self.zero_point, self.bits, rounding, saturation, axis=self.axis)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Real values (float64) of integers ``q`` (eq. (10))."""
        s, z = self.scale, self.zero_point
        if self.axis is not None:
            shape = [1] * q.ndim
            shape[self.axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return (q.astype(np.float64) - z) * s

    def to_dict(self) -> dict:
        d: dict = {"bits": self.bits}
        if self.exponent is not None:
            d["exponent"] = self.exponent
        d["scale"] = self.scale.tolist()
        d["zero_point"] = self.zero_point.tolist()
        if self.axis is not None:
            d["axis"] = self.axis
        return d

    def same_as(self, other: QParams | None) -> bool:
        return (
            other is not None
            and self.bits == other.bits
            and self.axis == other.axis
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )


@dataclass
class QuantPlan:
    """Integer types for a prepared network under one scheme.

    Attributes:
        network: the prepared network.
        scheme: :class:`PowerOfTwo` (FPGA) or :class:`FloatScale` (CPU).
        activations: value name -> :class:`QParams` of every quantized activation
            (the network input and each integer layer's output).
        weights: layer name -> (int8 weights, their QParams).
        biases: layer name -> (int32 bias, its QParams at ``s_w * s_x``).
        float_layers: layer name -> why that layer computes in float. A float
            layer's output is quantized (has an entry in ``activations``) when an
            integer layer reads it; between float layers values stay float.
        float_outputs: layers whose output is never quantized (its calibrated
            range is not finite).
        bias_corrections: layer name -> the mean output shift per channel that bias
            correction took out of its int32 bias (docs/accuracy.md (4)-(5)).
        weight_rounding: layer name -> how much GPTQ's rounding of its weights lowered
            their share of its output error on the calibration data, in dB
            (docs/accuracy.md (8)-(10); 0.0 where nearest rounding was kept).
    """

    network: Network
    scheme: PowerOfTwo | FloatScale
    activations: dict[str, QParams] = field(default_factory=dict)
    weights: dict[str, tuple[np.ndarray, QParams]] = field(default_factory=dict)
    biases: dict[str, tuple[np.ndarray, QParams]] = field(default_factory=dict)
    float_layers: dict[str, str] = field(default_factory=dict)
    float_outputs: set[str] = field(default_factory=set)
    bias_corrections: dict[str, np.ndarray] = field(default_factory=dict)
    weight_rounding: dict[str, float] = field(default_factory=dict)

    @property
    def rounding(self) -> Rounding:
        return self.scheme.rounding

    @property
    def saturation(self) -> Saturation:
        return self.scheme.saturation

    def is_int(self, layer: OptimizedLayer) -> bool:
        return layer.name not in self.float_layers

    def summary(self) -> list[tuple[str, str, str]]:
        """(layer, "int8" or "float", reason) for every layer."""
        rows = []
        for layer in self.network.layers:
            if layer.name in self.float_layers:
                rows.append((layer.name, "float", self.float_layers[layer.name]))
            else:
                how = "int8 weights, int32 bias" if layer.name in self.weights else "int8 output"
                rows.append((layer.name, "int8", how))
        return rows

    def memory_bytes(self) -> tuple[int, int]:
        """LearnableParameterMemory (bytes) of the float network and of the quantized one.

        Float: 4 bytes per learnable. Quantized: 1 byte per int8 weight and 4 per
        int32 bias of each quantized layer, 4 bytes per learnable of layers left in
        float (docs/published.md, "Learnable-parameter memory"). The learnables of a
        layer: its weights and bias, and every other float constant of more than one
        value that its nodes read (an LSTM's or a ConvTranspose's weights, a LayerNorm's
        scale and bias, a BatchNormalization left unfolded, position embeddings added
        as a constant, a PRelu's slopes), each counted once however many nodes read it;
        the input normalization's mean and std are not learnables.
        """
        network = self.network
        float_bytes = quant_bytes = 0
        seen: set[str] = set()
        for layer in network.layers:
            own = [n for n in (layer.weight, layer.bias) if n is not None]
            others = [] if layer.kind == "normalization" else _float_constants(layer, set(own))
            for name in own + others:
                if name in seen:
                    continue
                seen.add(name)
                size = int(network.constant(name).size)
                float_bytes += 4 * size
                if name == layer.weight and layer.name in self.weights:
                    quant_bytes += self.weights[layer.name][0].size
                elif name == layer.bias and layer.name in self.biases:
                    quant_bytes += 4 * self.biases[layer.name][0].size
                else:
                    quant_bytes += 4 * size
        return float_bytes, quant_bytes

    def to_dict(self) -> dict:
        """Exponents/scales of every tensor, JSON-ready."""
        return {
            "scheme": type(self.scheme).__name__,
            "rounding": self.rounding.name,
            "saturation": self.saturation.name,
            "activations": {k: v.to_dict() for k, v in self.activations.items()},
            "weights": {k: v[1].to_dict() for k, v in self.weights.items()},
            "biases": {k: v[1].to_dict() for k, v in self.biases.items()},
            "float_layers": dict(self.float_layers),
            # what the accuracy options did (docs/accuracy.md): GPTQ's gain (10) per layer
            # in dB (null: no error left) and bias correction's largest |shift| per layer
            "gptq_gain_db": {k: (float(v) if np.isfinite(v) else None) for k, v in self.weight_rounding.items()},
            "bias_correction_max_shift": {
                k: float(np.max(np.abs(v))) for k, v in self.bias_corrections.items() if np.size(v)
            },
        }


def _float_constants(layer, skip: set[str]) -> list[str]:
    """Names of the float initializers of more than one value that ``layer``'s nodes
    read, in order, without those in ``skip``."""
    names: list[str] = []
    for node in layer.nodes:
        if info(node.op_type, node.domain).sizes_only:
            continue  # a Resize's scales are not learnables
        for value in node.inputs:
            if value is None or value.const_value is None or value.name in skip or value.name in names:
                continue
            if value.const_value.dtype.is_floating_point() and value.const_value.size > 1:
                names.append(value.name)
    return names


class Target(StrEnum):
    """A quantization target by name; each names a scheme with its defaults."""

    #: power-of-two scales, per tensor (MATLAB's FPGA processor): ``PowerOfTwo()``
    FPGA = "fpga"
    #: the same scheme, named for what it is
    POW2 = "pow2"
    #: float scales, per-channel weights, onnxruntime's int8: ``FloatScale()``
    CPU = "cpu"

    def scheme(self) -> PowerOfTwo | FloatScale:
        return FloatScale() if self is Target.CPU else PowerOfTwo()


def resolve_scheme(scheme: str | Target | PowerOfTwo | FloatScale) -> PowerOfTwo | FloatScale:
    """A :class:`Target` (or its name, any case) -> its scheme; scheme objects as they are."""
    if isinstance(scheme, (PowerOfTwo, FloatScale)):
        return scheme
    if isinstance(scheme, str):
        try:
            return Target(scheme.lower()).scheme()
        except ValueError:
            pass
    raise ConfigurationError(f"unknown target/scheme {scheme!r}: use 'fpga', 'cpu', PowerOfTwo(...) or FloatScale(...)")


# ---------------------------------------------------------------- exponent choice

_LO, _HI = bin_edges()


def histogram_exponent(stats: TensorStats, word_length: int = 8, search: int = 8) -> int:
    """The power-of-two exponent with the least expected squared error over the
    histogram (the "Histogram" exponent method), saturation included.

    For each candidate ``e`` in ``[e_minmax - search, e_minmax]``, every histogram
    bin contributes ``count * err``, with the bin's value ``v`` taken at its
    centre (clamped to the observed range): ``(v - qmax * 2^e)^2`` when ``v``
    saturates, ``v^2`` when it flushes to zero (``v < 2^e / 2``), and the uniform
    rounding noise ``4^e / 12`` otherwise. Ties go to the larger exponent.
    """
    e_max = pow2_exponent(stats.max_abs, word_length)
    if stats.hist is None or stats.count == 0 or stats.max_abs == 0:
        return e_max
    qmax = (1 << (word_length - 1)) - 1
    centre = np.where(np.isfinite(_HI), (_LO + _HI) / 2, _LO)
    best_e, best_err = e_max, None
    pos, neg = stats.hist[:NUM_BINS].astype(np.float64), stats.hist[NUM_BINS:].astype(np.float64)
    v_pos = np.minimum(centre, max(stats.max, 0.0))
    v_neg = np.minimum(centre, max(-stats.min, 0.0))
    for e in range(e_max, e_max - search - 1, -1):
        step = 2.0**e
        err = 0.0
        for counts, v, top in ((pos, v_pos, qmax * step), (neg, v_neg, (qmax + 1) * step)):
            sat = v > top + step / 2
            flush = v < step / 2
            per = np.where(sat, (v - top) ** 2, np.where(flush, v**2, step * step / 12.0))
            err += float(np.dot(counts, per))
        if best_err is None or err < best_err:
            best_e, best_err = e, err
    return best_e


# ---------------------------------------------------------------- the plan


def _weight_axis(network: Network, layer: OptimizedLayer) -> int:
    """The output-channel axis of a layer's weight tensor."""
    if layer.op_types[0] == "Conv":
        return 0
    if layer.op_types[0] == "Gemm":
        return 0 if network.node_attributes(layer.members[0]).get("transB", 0) else 1
    return 1  # MatMul (K, M)


def _float_activation_qparams(
    stats: TensorStats,
    symmetric: bool,
    method: RangeMethod = RangeMethod.MINMAX,
    scheme: FloatScale | None = None,
) -> QParams:
    """onnxruntime's int8 activation parameters (quant_utils.compute_scale_zp) for the
    clipping range ``method`` chooses (docs/ranges.md; minmax: the observed range)."""
    lo, hi = stats.min, stats.max
    if method is not RangeMethod.MINMAX and stats.count and lo < hi:
        one_sign = lo >= 0 or hi <= 0
        try:
            lo, hi = clipping_range(
                stats,
                method,
                percentile=scheme.percentile if scheme is not None else 99.999,
                symmetric=None if one_sign else symmetric,
            )
        except ConfigurationError:
            lo, hi = stats.min, stats.max  # statistics without a histogram (a ranges CSV): the observed range
    rmin, rmax = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        absmax = max(abs(rmin), abs(rmax))
        scale = 2 * absmax / 254 if absmax > 0 else 1.0
        return QParams(np.array(scale), np.array(0, np.int64))
    scale = (rmax - rmin) / 255.0
    if scale == 0:
        return QParams(np.array(1.0), np.array(0, np.int64))
    zp = int(np.clip(round_values(np.array(-128 - rmin / scale), Rounding.HALF_EVEN), -128, 127))
    return QParams(np.array(scale), np.array(zp, np.int64))


def make_plan(
    calibration: Calibration,
    scheme: str | PowerOfTwo | FloatScale = "fpga",
    keep_float: Iterable[str] = (),
    network: Network | None = None,
    require_int8: Iterable[str] = (),
    range_methods: Mapping[str, str] | None = None,
) -> QuantPlan:
    """Choose integer types for every tensor of the calibrated network.

    Args:
        calibration: ranges from :func:`quantscope.calibrate`.
        scheme: ``"fpga"`` / :class:`PowerOfTwo` or ``"cpu"`` / :class:`FloatScale`.
        keep_float: names of layers (optimized or network layer names) to leave in float.
        network: the prepared network, when the calibration was loaded from a file.
        require_int8: names of layers that must compute in int8. A layer of these
            that cannot (an operator with no int8 kernel, such as Softmax, or a layer
            after a float one) is refused with the reason, instead of being left in
            float quietly.
        range_methods: per-layer overrides of the scheme's method for the layer's
            output range, ``{layer name: method}``: an exponent method
            (``"MinMax"``, ``"Histogram"``) for :class:`PowerOfTwo`, a range method
            (``"minmax"``, ``"percentile"``, ``"mse"``, ``"entropy"``) for
            :class:`FloatScale`; the other layers use the scheme's.

    Raises:
        ConfigurationError: a name in ``keep_float``, ``require_int8`` or
            ``range_methods`` is not a layer of the network, a layer is in both
            ``keep_float`` and ``require_int8``, a method does not suit the scheme, a
            required layer cannot run in int8, or the calibration does not match the
            network.
    """
    scheme = resolve_scheme(scheme)
    network = network or calibration.network
    if network is None:
        raise ConfigurationError(
            "this calibration has no network (it was loaded from a file): load it with "
            "Calibration.load(path, network=model) or call calibration.attach(quantscope.prepare(model))"
        )
    methods = _range_methods(network, scheme, range_methods or {})
    # The network's outputs keep their whole range (min/max) unless a layer's method is
    # given: clipping them (a classifier's top logits, a softmax near 1) is an error the
    # user reads directly, where inside the network the clipped tail costs less than
    # the finer grid gains.
    default = ExponentMethod.MINMAX if isinstance(scheme, PowerOfTwo) else RangeMethod.MINMAX
    for layer in network.layers:
        if layer.output in network.output_names and layer.name not in methods:
            methods[layer.name] = default
    keep = _layer_names(network, keep_float, option("keep_float", "--keep-float"))
    required = _layer_names(network, require_int8, option("require_int8", "--require-int8"))
    if keep & required:
        raise ConfigurationError(
            f"layer(s) {', '.join(sorted(keep & required))} are both in "
            f"{option('keep_float and require_int8', '--keep-float and --require-int8')}"
        )
    if any(layer.name in keep for layer in network.input_layers):
        raise ConfigurationError("the input layer cannot be kept in float alone; keep the layers after it instead")

    plan = QuantPlan(network, scheme)
    wl = scheme.word_length if isinstance(scheme, PowerOfTwo) else 8

    def act_qparams(layer: OptimizedLayer) -> QParams:
        try:
            stats = calibration.stats(layer.name)
        except KeyError:
            raise ConfigurationError(
                f"the calibration has no range for layer {layer.name!r}: was it made for another network?"
            ) from None
        if not stats.finite:
            raise ConfigurationError(f"layer {layer.name!r} has a non-finite calibrated range")
        pow2 = isinstance(scheme, PowerOfTwo)
        method = methods.get(layer.name) or (scheme.exponent_method if pow2 else scheme.range_method)
        if stats.hist is None and stats.count and method not in (ExponentMethod.MINMAX, RangeMethod.MINMAX):
            raise ConfigurationError(_no_histogram(layer.name, method))
        if pow2:
            if method is ExponentMethod.HISTOGRAM:
                return QParams.pow2(histogram_exponent(stats, wl), wl)
            return QParams.pow2(pow2_exponent(stats.max_abs, wl), wl)
        return _float_activation_qparams(stats, scheme.symmetric_activations, method, scheme)

    producers = {layer.output: layer for layer in network.layers}
    data_values = network.data_values()

    def input_qparams(name: str) -> QParams | None:
        """The parameters of activation ``name`` read by an integer layer; a float
        layer's output gets its own from the calibration when an integer layer reads it."""
        if name not in plan.activations:
            producer = producers.get(name)
            if producer is None or producer.name in plan.float_outputs:
                return None
            plan.activations[name] = act_qparams(producer)
        return plan.activations[name]

    for layer in network.layers:
        family = int8_family(layer)
        if layer.kind == "input":
            if network.input_dtypes[layer.output].kind != "f":
                plan.float_layers[layer.name] = "an integer input (token ids, bytes...): passed on exactly"
                plan.float_outputs.add(layer.name)
            continue  # a float input is quantized when an integer layer reads it
        if not calibration_finite(calibration, layer):
            plan.float_layers[layer.name] = "its calibrated range is not finite (-inf/inf): stays in float"
            plan.float_outputs.add(layer.name)
            continue
        if layer.name in keep:
            # computed in float with float weights; its output is quantized when an
            # integer layer reads it
            plan.float_layers[layer.name] = "kept in float at the user's request"
            continue
        why_not = _why_float(network, layer, family, data_values)
        if why_not is not None:
            plan.float_layers[layer.name] = why_not
            continue
        if family == "embedding":
            _plan_table(plan, layer, wl)
            continue
        if family not in ("learnable", "normalization", "matmul") and not any(
            n in plan.activations for n in layer.inputs
        ):
            # quantizing float values only to move, pool or add them gains nothing
            plan.float_layers[layer.name] = f"{layer.kind} of float tensors (after float layers): computed in float"
            continue
        in_q = [input_qparams(name) for name in layer.inputs]
        if any(q is None for q in in_q):
            bad = [name for name, q in zip(layer.inputs, in_q) if q is None]
            plan.float_layers[layer.name] = (
                f"its input {', '.join(bad)} is not an int8 activation (computed from integer tensors or not "
                "finite): computed in float"
            )
            continue
        if family == "move" and in_q:
            plan.activations[layer.output] = in_q[0]
        else:
            plan.activations[layer.output] = act_qparams(layer)
        if family == "learnable":
            _plan_learnables(plan, layer, in_q[0], wl)
            saturated = _saturated_bias(plan, layer, in_q[0])
            if saturated:
                # the output stays quantized for the integer layers after it
                plan.weights.pop(layer.name)
                plan.biases.pop(layer.name)
                plan.float_layers[layer.name] = saturated
    for layer in network.input_layers:
        if layer.output not in plan.activations and layer.name not in plan.float_layers:
            plan.float_layers[layer.name] = "read by float layers only: not quantized"
    refused = [f"{name} ({plan.float_layers[name]})" for name in sorted(required) if name in plan.float_layers]
    if refused:
        raise ConfigurationError(
            f"{option('require_int8', '--require-int8')} asks for {len(refused)} layer(s) that cannot run in "
            f"int8: {'; '.join(refused)}. Leave them in float (drop them from "
            f"{option('require_int8', '--require-int8')}), or change the network."
        )
    return plan


def calibration_finite(calibration: Calibration, layer: OptimizedLayer) -> bool:
    """The layer's calibrated activation range is finite (no -inf/inf, no NaN)."""
    try:
        return calibration.stats(layer.name).finite
    except KeyError:
        raise ConfigurationError(
            f"the calibration has no range for layer {layer.name!r}: was it made for another network?"
        ) from None


def _why_float(network: Network, layer: OptimizedLayer, family: str | None, data_values: set[str]) -> str | None:
    """Why ``layer`` computes in float although the plan could quantize it, else None."""
    if family is None:
        on = " on dequantized inputs" if layer.inputs else ""
        return f"no int8 kernel for {layer.kind}: computed in float{on}"
    if family in ("input", "normalization", "learnable", "pool", "move", "embedding", "matmul"):
        return None
    operands = [v for v in layer.nodes[0].inputs if v is not None]
    if family == "add" and (len(operands) != 2 or len(layer.inputs) != 2):
        return "Add with a constant or integer operand: computed in float"
    if family == "add" and not all(name in data_values for name in layer.inputs):
        mask = next(name for name in layer.inputs if name not in data_values)
        return f"adds {mask}, computed from integer tensors alone (an attention mask...): computed in float"
    if family == "concat" and len(operands) != len(layer.inputs):
        return "Concat with a constant or integer operand: computed in float"
    if family == "activation" and any(v.const_value is None for v in operands[1:]):
        return f"{layer.kind} with computed bounds or slopes: computed in float"
    return None


def _saturated_bias(plan: QuantPlan, layer: OptimizedLayer, x_q: QParams) -> str | None:
    """Why ``layer`` cannot run in int8 when its int32 bias saturates, else None.

    The bias scale is ``s_w * s_x``; when the layer's input has a tiny calibrated
    range (an activation that all but vanishes), ``bias / (s_w * s_x)`` leaves int32
    and the accumulator would overflow: such a layer computes in float."""
    if layer.name not in plan.biases:
        return None
    qb, b_q = plan.biases[layer.name]
    limit = (1 << 31) - 1
    big = np.abs(qb.astype(np.int64)) >= limit
    if not big.any():
        return None
    b = plan.network.constant(layer.bias).astype(np.float64).reshape(-1)
    i = int(np.flatnonzero(big.reshape(-1))[0])
    scale = float(np.broadcast_to(b_q.scale, b.shape)[i])
    return (
        f"its int32 bias saturates: bias {b[i]:.4g} at the accumulator scale s_w*s_x = {scale:.3g} is "
        f"{b[i] / scale:.3g}, beyond int32, because its input's calibrated range is tiny (input scale "
        f"{float(np.ravel(x_q.scale)[0]):.3g}); it computes in float. Check that the calibration data "
        "reaches this layer with realistic values"
    )


def _no_histogram(layer: str, method: ExponentMethod | RangeMethod) -> str:
    """The message for a histogram method on statistics without a histogram."""
    exponent = isinstance(method, ExponentMethod)
    flag = "--exponent-method" if exponent else "--range-method"
    return (
        f"layer {layer!r}: the {method.value!r} {'exponent' if exponent else 'range'} method needs each "
        "activation's histogram, and these ranges have none (a ranges .csv keeps the min and max only): "
        + option(
            "calibrate again, or load ranges saved as .json (Calibration.save('ranges.json')), or use the "
            "MinMax/minmax method",
            f"give --calibration DATA, or --ranges with a .json saved by 'quantscope calibrate --out ranges.json', "
            f"or drop {flag}",
        )
    )


def _range_methods(
    network: Network, scheme: PowerOfTwo | FloatScale, methods: Mapping[str, str]
) -> dict[str, ExponentMethod | RangeMethod]:
    """``range_methods`` by optimized layer name, each checked against the scheme."""
    if not isinstance(methods, Mapping):
        raise ConfigurationError(f"range_methods must be a mapping {{layer name: method}}, got {methods!r}")
    out: dict[str, ExponentMethod | RangeMethod] = {}
    for name, method in methods.items():
        (layer,) = _layer_names(network, [name], "range_methods")
        try:
            if isinstance(scheme, PowerOfTwo):
                out[layer] = ExponentMethod(method)
            else:
                out[layer] = RangeMethod(str(method).lower())
        except ValueError:
            kinds = ExponentMethod if isinstance(scheme, PowerOfTwo) else RangeMethod
            raise ConfigurationError(
                f"range_methods[{name!r}] = {method!r} is not a method of the {type(scheme).__name__} scheme; "
                f"use one of {', '.join(repr(m.value) for m in kinds)}"
            ) from None
    return out


def _layer_names(network: Network, names: Iterable[str], option: str) -> set[str]:
    """The optimized-layer names of ``names`` (optimized or network layer names)."""
    if isinstance(names, str):
        names = [names]
    out: set[str] = set()
    unknown = []
    for name in names:
        try:
            out.add(network.layer(name).name)
        except KeyError:
            unknown.append(name)
    if unknown:
        dropped = set(getattr(network.log, "dropped", ()))
        removed = [n for n in unknown if n in dropped]
        why = (
            f" ({', '.join(repr(n) for n in removed)}: a Dropout/Identity that prepare removed, which computes nothing)"
            if removed
            else ""
        )
        raise ConfigurationError(
            f"{option} names {', '.join(repr(n) for n in unknown)}, which {'is' if len(unknown) == 1 else 'are'} "
            f"not a layer of the network{why}; layers are: {', '.join(layer.name for layer in network.layers)}"
        )
    return out


def _plan_table(plan: QuantPlan, layer: OptimizedLayer, wl: int) -> None:
    """An embedding table in int8, one scale for the table (power of two or
    ``max|w| / qmax``): the rows the ids pick are the layer's output integers, so the
    output's parameters are the table's (no rounding beyond the table's own)."""
    w = plan.network.constant(layer.weight).astype(np.float64)
    absmax = float(np.abs(w).max()) if w.size else 0.0
    if isinstance(plan.scheme, PowerOfTwo):
        qp = QParams.pow2(pow2_exponent(absmax, wl), wl)
    else:
        qp = QParams(np.array(absmax / 127 if absmax > 0 else 1.0), np.array(0, np.int64))
    plan.weights[layer.name] = (qp.quantize(w, plan.rounding, plan.saturation), qp)
    plan.activations[layer.output] = qp


#: Float-scale biases: at most this many accumulator steps in magnitude (int32 with room).
_BIAS_STEPS = 2.0**30
#: A weight channel whose largest value is at most this fraction of its layer's is dead.
_DEAD_CHANNEL = 1e-6


def _plan_learnables(plan: QuantPlan, layer: OptimizedLayer, x_q: QParams, wl: int) -> None:
    network, scheme = plan.network, plan.scheme
    w = network.constant(layer.weight).astype(np.float64)
    b = network.constant(layer.bias).astype(np.float64) if layer.bias is not None else None
    if isinstance(scheme, PowerOfTwo) and scheme.per_channel:
        # one exponent per output channel, eq. (1) on each channel's max |w| (docs/accuracy.md (6))
        axis = _weight_axis(network, layer)
        absmax = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis))
        exponents = np.array([pow2_exponent(float(m), wl) for m in absmax], np.int64)
        w_q = QParams(np.ldexp(1.0, exponents), np.zeros(exponents.shape, np.int64), wl, axis)
        plan.weights[layer.name] = (w_q.quantize(w, scheme.rounding, scheme.saturation), w_q)
        if b is not None:
            b_q = QParams(np.ldexp(1.0, exponents + x_q.exponent), np.zeros(b.size, np.int64), 32, 0)
            plan.biases[layer.name] = (b_q.quantize(b.reshape(-1), scheme.rounding, scheme.saturation), b_q)
        return
    if isinstance(scheme, PowerOfTwo):
        e_w = pow2_exponent(float(np.abs(w).max()), wl)
        w_q = QParams.pow2(e_w, wl)
        qw = w_q.quantize(w, scheme.rounding, scheme.saturation)
        plan.weights[layer.name] = (qw, w_q)
        if b is not None:
            b_q = QParams.pow2(e_w + x_q.exponent, 32)
            plan.biases[layer.name] = (b_q.quantize(b, scheme.rounding, scheme.saturation), b_q)
        return
    axis = _weight_axis(network, layer)
    # A channel whose weights all but vanish (max|w| ~ 1e-18) beside a real bias would
    # need an int32 bias far beyond range at s_w * s_x: its weight scale is raised until
    # the bias fits in 2**30 steps, where its weights round to 0 at that scale anyway or
    # are below a millionth of the layer's largest (so nothing that matters is lost),
    # rather than the whole layer computing in float. Real weights keep their scale:
    # their layer computes in float and says why.
    floor = 0.0
    if b is not None and np.ndim(x_q.scale) == 0 and float(x_q.scale) > 0:
        floor = np.abs(b.reshape(-1)) / (float(x_q.scale) * _BIAS_STEPS)
    if scheme.per_channel:
        reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
        absmax = np.abs(w).max(axis=reduce_axes)
        scale = np.where(absmax > 0, absmax / scheme.weight_qmax, 1.0)
        dead = (absmax < np.asarray(floor) / 2) | (absmax <= _DEAD_CHANNEL * absmax.max(initial=0.0))
        scale = np.where(dead, np.maximum(scale, floor), scale)
        w_q = QParams(scale, np.zeros(scale.shape, np.int64), 8, axis)
    else:
        absmax = float(np.abs(w).max())
        scale = absmax / scheme.weight_qmax if absmax > 0 else 1.0
        top = float(np.max(floor, initial=0.0))
        if absmax < top / 2:
            scale = max(scale, top)
        w_q = QParams(np.array(scale), np.array(0, np.int64))
    qw = w_q.quantize(w, scheme.rounding, scheme.saturation)
    plan.weights[layer.name] = (qw, w_q)
    if b is not None:
        b_scale = np.broadcast_to(w_q.scale * x_q.scale, (b.size,)).astype(np.float64)
        b_q = QParams(b_scale, np.zeros(b.size, np.int64), 32, 0)
        plan.biases[layer.name] = (b_q.quantize(b, scheme.rounding, scheme.saturation), b_q)
