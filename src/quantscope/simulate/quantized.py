"""The quantized network: a plan with its int8 emulation. It runs (``predict``), says what
was quantized and why, and saves the deployables (QDQ ONNX, exponents/scales)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..calibrate.result import Calibration
from ..calibrate.source import as_source
from ..errors import ConfigurationError
from ..quantize.export import save_params, save_qdq, to_qdq
from ..quantize.numerics import FloatScale, PowerOfTwo
from ..quantize.plan import QuantPlan, Target, make_plan
from .bias_correction import correct_biases
from .engine import Kernels, Simulator
from .gptq import compensate_weights

__all__ = ["QuantizedNetwork", "quantize_network"]


class QuantizedNetwork:
    """A network with integer types chosen for every tensor (MATLAB's ``quantize(quantObj)``).

    Attributes:
        plan: the :class:`QuantPlan` (scheme, parameters, float layers and why).
    """

    def __init__(self, plan: QuantPlan, kernels: str | Kernels = Kernels.FAST):
        self.plan = plan
        self.network = plan.network
        self._sim = Simulator(plan, kernels=kernels)

    def predict(self, data: Any, batch_size: int = 64, layout: str = "NCHW") -> np.ndarray:
        """Outputs of the emulated int8 network (float64, dequantized), one row per sample."""
        net = self.network
        source = as_source(
            data, layout=layout, input_shape=net.input_shape, dtype=net.input_dtype, inputs=net.input_spec
        )
        outs = [self._sim.run(b.x)[0] for b in source.batches(batch_size)]
        return np.concatenate(outs)

    @property
    def layers(self) -> pd.DataFrame:
        """One row per optimized layer: ``Layer``, ``Precision`` (int8/float), ``Reason``,
        ``Exponent`` (power-of-two) or ``Scale``/``ZeroPoint`` of its output,
        ``ONNXNodes``: its nodes' names in the model file, ``Equalized``: what
        cross-layer equalization did to it (``prepare(..., equalize=True)``: its output
        channels divided by ``s``, or its input channels multiplied, and the range of
        ``s``; with :func:`~quantscope.absorb_biases`, the bias moved out of it or into
        it and its activation's largest |value| before -> after), and ``BiasShift``:
        the largest |shift| bias correction took out of its output
        (``bias_correction=``), in the output's units; ``RoundingGain(dB)``: how much
        GPTQ lowered the weights' share of its output error on the calibration data
        (``gptq=``, eq. (10) of docs/accuracy.md; 0.0 where nearest rounding was kept)."""
        equalized = _equalized_by_layer(self.network)
        rows = []
        for name, precision, reason in self.plan.summary():
            layer = self.network.layer(name)
            qp = self.plan.activations.get(layer.output)
            shift = self.plan.bias_corrections.get(name)
            rows.append(
                (
                    name,
                    precision,
                    reason,
                    qp.exponent if qp is not None and qp.exponent is not None else None,
                    float(qp.scale) if qp is not None and qp.axis is None else None,
                    int(qp.zero_point) if qp is not None and qp.axis is None else None,
                    ", ".join(self.network.onnx_names(layer)),
                    "; ".join(equalized.get(name, ())),
                    float(np.max(np.abs(shift))) if shift is not None and np.size(shift) else None,
                    self.plan.weight_rounding.get(name),
                )
            )
        columns = [
            "Layer",
            "Precision",
            "Reason",
            "Exponent",
            "Scale",
            "ZeroPoint",
            "ONNXNodes",
            "Equalized",
            "BiasShift",
            "RoundingGain(dB)",
        ]
        return pd.DataFrame(rows, columns=columns)

    def to_onnx(self):
        """The QDQ ONNX model (``onnx.ModelProto``)."""
        return to_qdq(self.plan)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write the QDQ ONNX model to ``path`` and the exponents/scales to
        ``path`` with suffix ``.json``; both atomically. Returns both paths."""
        path = Path(path)
        onnx_path = save_qdq(self.plan, path)
        json_path = save_params(self.plan, path.with_suffix(".json"))
        return onnx_path, json_path

    @property
    def memory(self) -> tuple[int, int]:
        """(float bytes, quantized bytes) of learnable parameters (docs/published.md)."""
        return self.plan.memory_bytes()

    def __repr__(self) -> str:
        n_float = len(self.plan.float_layers)
        return (
            f"QuantizedNetwork({type(self.plan.scheme).__name__}, {len(self.network.layers) - n_float} int8 layers, "
            f"{n_float} float)"
        )


def quantize_network(
    calibration: Calibration,
    target: str | Target | PowerOfTwo | FloatScale = Target.FPGA,
    keep_float: Iterable[str] = (),
    kernels: str | Kernels = Kernels.FAST,
    require_int8: Iterable[str] = (),
    *,
    bias_correction: Any = None,
    range_methods: Mapping[str, str] | None = None,
    gptq: Any = None,
) -> QuantizedNetwork:
    """Quantize a calibrated network for a :class:`~quantscope.quantize.Target` (``"fpga"``:
    power-of-two scales, ``"cpu"``: float scales) or a scheme object.

    ``keep_float``: layers to leave in float; ``require_int8``: layers that must run in
    int8 (refused with the reason when they cannot); ``range_methods``: per-layer range
    or exponent methods; see :func:`~quantscope.quantize.make_plan`. ``bias_correction``:
    the calibration data, to take each layer's mean output shift out of its int32 bias
    (:func:`~quantscope.simulate.correct_biases`, docs/accuracy.md (4)-(5)). ``gptq``: the
    calibration data, to round the int8 conv/fc weights by GPTQ against each layer's
    inputs (:func:`~quantscope.simulate.compensate_weights`, docs/accuracy.md (8)-(10));
    with both, GPTQ comes first.
    """
    for keyword, value in (("bias_correction", bias_correction), ("gptq", gptq)):
        if value is True:
            raise ConfigurationError(
                f"{keyword} measures each layer on the calibration data: pass that data ({keyword}=calibration_data)"
            )
    plan = make_plan(calibration, target, keep_float, require_int8=require_int8, range_methods=range_methods)
    if gptq is not None and gptq is not False:
        plan = compensate_weights(plan, gptq)
    if bias_correction is not None and bias_correction is not False:
        plan = correct_biases(plan, bias_correction)
    return QuantizedNetwork(plan, kernels=kernels)


def _equalized_by_layer(network) -> dict[str, list[str]]:
    """What cross-layer equalization did to each optimized layer, in words."""
    out: dict[str, list[str]] = {}
    layer_of = network.layer_of
    for pair in getattr(network.log, "equalized", ()):
        first, second = layer_of.get(pair.first, pair.first), layer_of.get(pair.second, pair.second)
        span = f"s {pair.scale_min:.3g}..{pair.scale_max:.3g}"
        ceilings = ", ceilings per channel" if pair.ceiling else ""
        out.setdefault(first, []).append(
            f"outputs / s ({span}{ceilings}) for {second}; channel spread {pair.spread_before:.3g} -> "
            f"{pair.spread_after:.3g}"
        )
        out.setdefault(second, []).append(f"inputs * s ({span}) from {first}")
    for pair in getattr(network.log, "absorbed", ()):
        first, second = layer_of.get(pair.first, pair.first), layer_of.get(pair.second, pair.second)
        out.setdefault(first, []).append(
            f"bias - c in {pair.channels} of {pair.total} channels (c up to {pair.amount:.3g}) absorbed by {second}; "
            f"activation range {pair.range_before:.3g} -> {pair.range_after:.3g}"
        )
        out.setdefault(second, []).append(f"bias + W c absorbed from {first}")
    return out
