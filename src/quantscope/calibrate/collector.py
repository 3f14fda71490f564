"""Calibration: run the prepared float network once over the data, streaming.

For every batch, onnxruntime computes every optimized layer's output; each
output updates that tensor's :class:`TensorStats` and is dropped. Memory holds
one batch of activations and the fixed-size statistics, whatever the number of
samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from .._progress import progress_bar
from ..errors import CalibrationDataError, DeviceError, NonFiniteActivationError
from ..network import Network, prepare
from .data import as_source
from .result import Calibration, RangeEntry
from .stats import TensorStats

__all__ = ["calibrate", "create_session", "weight_entries"]


def create_session(proto_bytes: bytes, use_gpu: bool = False, spinning: bool = True) -> ort.InferenceSession:
    """An onnxruntime session on the CPU, or on the GPU when ``use_gpu`` (CUDA provider).

    ``spinning=False`` stops onnxruntime's idle threads from spinning between runs,
    for loops that alternate onnxruntime with numpy work.

    Raises:
        DeviceError: ``use_gpu`` and this onnxruntime has no GPU provider.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if use_gpu:
        available = ort.get_available_providers()
        gpu = [p for p in ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider") if p in available]
        if not gpu:
            raise DeviceError(
                "use_gpu was asked for, but this onnxruntime has no GPU execution provider "
                f"(available: {', '.join(available)}). Install onnxruntime-gpu on a machine "
                "with a CUDA GPU, or calibrate on the CPU (drop --gpu / use_gpu=True)."
            )
        providers = [gpu[0], "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(proto_bytes, options, providers=providers)


def weight_entries(network: Network, layer) -> list[RangeEntry]:
    """Weights and Bias entries of a conv/fc layer, from the prepared (folded) constants."""
    entries = []
    for kind, name in (("Weights", layer.weight), ("Bias", layer.bias)):
        if name is not None:
            stats = TensorStats.of(network.constant(name).astype(np.float32, copy=False))
            entries.append(RangeEntry(layer.name, layer.network_layer, kind, name, stats))
    return entries


#: Layers whose output holds exactly the values of their single input, rearranged.
_SAME_VALUES = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose"})


def derived_layers(network: Network) -> dict[str, tuple[str, ...]]:
    """Layers whose output statistics follow exactly from other layers' outputs:
    ``{layer name: value names whose statistics merge into it}``.

    A Flatten/Reshape/Squeeze/Unsqueeze/Transpose output holds the same multiset
    of values as its input, and a Concat output the union of its inputs', so
    their min, max, count and histogram are those of the inputs merged. The
    collector does not fetch these tensors from onnxruntime at all.
    """
    outputs = {layer.output for layer in network.layers}
    derived: dict[str, tuple[str, ...]] = {}
    for layer in network.layers[1:]:
        if layer.kind not in _SAME_VALUES and layer.kind != "Concat":
            continue
        if layer.kind in _SAME_VALUES and len(layer.inputs) != 1:
            continue
        node_inputs = layer.inputs
        if layer.kind == "Concat" and len(node_inputs) != _num_node_inputs(network, layer):
            continue  # a constant operand: compute it directly
        if node_inputs and all(name in outputs for name in node_inputs):
            derived[layer.name] = node_inputs
    return derived


def _num_node_inputs(network: Network, layer) -> int:
    node = next(n for n in network.model.graph if n.name == layer.members[0])
    return sum(1 for v in node.inputs if v is not None)


def calibrate(
    network: Any,
    data: Any,
    *,
    batch_size: int = 32,
    use_gpu: bool = False,
    progress: bool | None = None,
    layout: str = "NCHW",
    example_input: Any = None,
) -> Calibration:
    """Run the float network over ``data`` and collect every tensor's range.

    Args:
        network: a :class:`~quantscope.network.Network`, an ``.onnx`` path, an
            ``onnx.ModelProto`` or a ``torch.nn.Module`` (with ``example_input``).
        data: anything :func:`~quantscope.calibrate.data.as_source` accepts: an
            array ``(N, C, H, W)`` (or NHWC with ``layout="NHWC"``), ``(x, y)``,
            an iterable of batches or ``(inputs, labels)`` pairs, a DataLoader,
            a ``.npy``/``.npz`` path, an image folder or ``ImageDatastore``.
        batch_size: samples per onnxruntime run. The table does not depend on it.
        use_gpu: run the float network on a GPU (MATLAB's ``UseGPU``).
        progress: show a progress bar (None: only when stderr is a terminal).
        layout: ``"NCHW"`` or ``"NHWC"`` for array data.

    Returns:
        A :class:`Calibration`; ``.table`` is MATLAB's table.

    Raises:
        CalibrationDataError: empty data, wrong shapes, undecodable images.
        NonFiniteActivationError: a NaN or Inf in some layer's output (the layer is named).
    """
    if batch_size < 1:
        raise CalibrationDataError(f"batch_size must be at least 1, got {batch_size}")
    network = prepare(network, example_input)
    source = as_source(data, layout=layout, input_shape=network.input_shape)

    # Weights and biases: from the prepared constants, once.
    entries: list[RangeEntry] = []
    act_index: dict[str, int] = {}
    for layer in network.layers:
        entries.extend(weight_entries(network, layer))
        act_index[layer.name] = len(entries)
        entries.append(RangeEntry(layer.name, layer.network_layer, "Activations", layer.output, TensorStats()))

    input_layer = network.layers[0]
    derived = derived_layers(network)
    act_layers = [layer for layer in network.layers[1:] if layer.name not in derived]
    output_names = [layer.output for layer in act_layers]
    session = create_session(network.to_proto(output_names).SerializeToString(), use_gpu=use_gpu)
    input_dtype = network.input_dtype

    num_samples = 0
    with progress_bar("Calibrating", source.num_samples, enabled=progress) as bar:
        for batch in source.batches(batch_size):
            x = np.ascontiguousarray(batch.x, dtype=input_dtype)
            _update(entries[act_index[input_layer.name]].stats, x, input_layer, batch)
            outputs = session.run(output_names, {network.input_name: x})
            for layer, out in zip(act_layers, outputs):
                _update(entries[act_index[layer.name]].stats, out, layer, batch)
            num_samples += len(x)
            bar.advance(len(x))
    if num_samples == 0:
        raise CalibrationDataError("the calibration data contains no samples; give at least one input")
    by_output = {layer.output: entries[act_index[layer.name]] for layer in network.layers}
    for layer in network.layers:  # topological order: sources are final before use
        if layer.name in derived:
            stats = TensorStats()
            for name in derived[layer.name]:
                stats = stats.merge(by_output[name].stats)
            entries[act_index[layer.name]] = RangeEntry(
                layer.name, layer.network_layer, "Activations", layer.output, stats
            )
            by_output[layer.output] = entries[act_index[layer.name]]
    return Calibration(entries, num_samples, network=network, model_name=network.source_name)


def _update(stats: TensorStats, values: np.ndarray, layer, batch) -> None:
    stats.update(values)
    if not stats.finite:
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1) if values.ndim else np.array([True])
        where = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        sample = int(batch.index[where]) if len(batch.index) > where else where
        what = "NaN" if np.isnan(values).any() else "Inf"
        raise NonFiniteActivationError(
            f"{what} in the output of layer {layer.name!r} (network layer {layer.network_layer!r}, "
            f"{'/'.join(layer.op_types)}) for sample {sample}. Check that input's values and the "
            "layer's weights; an overflow in float32 or a division by zero produces this.",
            layer=layer.name,
        )
