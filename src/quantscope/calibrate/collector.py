"""Calibration: run the prepared float network once over the data, streaming.

For every batch, onnxruntime computes every optimized layer's output; each
output updates that tensor's :class:`TensorStats` and is dropped. Memory holds
one batch of activations and the fixed-size statistics, whatever the number of
samples.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ..errors import (
    CalibrationDataError,
    DeviceError,
    NonFiniteActivationError,
    UnsupportedModelError,
    option,
)
from ..network import Network
from ..network.network import Inputs, batch_pieces
from ..ops import ops_with
from .result import Calibration, RangeEntry
from .stats import TensorStats

__all__ = [
    "BoundOutputs",
    "StatsCollector",
    "create_session",
    "derived_layers",
    "run_checked",
    "session_options",
    "weight_entries",
]


def create_session(
    model: bytes | str, use_gpu: bool = False, spinning: bool = True, threads: int = 0
) -> ort.InferenceSession:
    """An onnxruntime session of ``model`` (serialized bytes, or a file path: see
    :meth:`~quantscope.network.Network.session_model`) on the CPU, or on the GPU when
    ``use_gpu`` (CUDA provider).

    ``spinning=False`` stops onnxruntime's idle threads from spinning between runs,
    for loops that alternate onnxruntime with numpy work. ``threads``: onnxruntime's
    threads per operator (0: its default, one per core); a Dask worker, whose own
    threads are the parallelism, uses 1.

    Raises:
        DeviceError: ``use_gpu`` and this onnxruntime has no GPU provider.
    """
    options = session_options(spinning=spinning, threads=threads)
    if use_gpu:
        available = ort.get_available_providers()
        gpu = [p for p in ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider") if p in available]
        if not gpu:
            raise DeviceError(
                f"{option('use_gpu=True', '--gpu')} was asked for, but this onnxruntime has no GPU execution "
                f"provider (available: {', '.join(available)}). Install onnxruntime-gpu on a machine "
                f"with a CUDA GPU, or calibrate on the CPU (drop {option('use_gpu=True', '--gpu')})."
            )
        providers = [gpu[0], "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidGraph, NotImplemented...)
        message, nodes = _ort_reason(exc, model)
        raise UnsupportedModelError(message, nodes=nodes) from None


def session_options(spinning: bool = True, threads: int = 0, log_severity: int = 4) -> ort.SessionOptions:
    """onnxruntime session options as quantscope's sessions use them: ``spinning=False``
    keeps idle threads from spinning between runs; ``threads`` per operator (0: one per
    core); ``log_severity`` 4 leaves errors to quantscope's own messages."""
    options = ort.SessionOptions()
    options.log_severity_level = log_severity
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
    return options


def _ort_reason(exc: Exception, model: bytes | str) -> tuple[str, list[tuple[str, str]]]:
    """onnxruntime's reason for refusing a model, with the node(s) it names or, when it
    names none, the nodes of the operator it names."""
    import onnx

    text = " ".join(str(exc).split()) or type(exc).__name__
    for prefix in ("[ONNXRuntimeError] : ",):
        text = text.split(prefix, 1)[-1]
    graph = (
        onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model, load_external_data=False)
    ).graph
    named = [n for n in graph.node if n.name and (f"'{n.name}'" in text or f" {n.name} " in text)]
    if not named:
        named = [n for n in graph.node if f"{n.op_type}(" in text or f":{n.op_type}" in text]
    where = f" (node{'s' if len(named) > 1 else ''} {', '.join(f'{n.name} ({n.op_type})' for n in named[:10])})"
    message = (
        f"onnxruntime cannot run this model{where if named else ''}: {text}. quantscope runs every operator "
        "through onnxruntime; export the model with operators onnxruntime implements, or register the "
        "custom operator's library with onnxruntime."
    )
    return message, [(n.name, n.op_type) for n in named]


def run_checked(run, what: str = "the model"):
    """``run()`` (an onnxruntime call); onnxruntime's failures on the data (an index out
    of range, a shape its kernels refuse) become a :class:`CalibrationDataError` with
    its reason, instead of a traceback."""
    try:
        return run()
    except Exception as exc:
        from_ort = type(exc).__module__.startswith("onnxruntime") or (
            isinstance(exc, RuntimeError) and "Error in execution" in str(exc)  # run_with_iobinding's
        )
        if not from_ort:
            raise
        text = " ".join(str(exc).split())
        raise CalibrationDataError(
            f"onnxruntime failed running {what} on this data: {text}. Check that the data fits the model "
            "(token ids within the vocabulary, image sizes the model accepts, the input's dtype)."
        ) from None


class BoundOutputs:
    """Runs ``session`` for the float32 outputs ``names`` (static ``shapes`` but for the
    batch axis) into buffers reused from run to run (onnxruntime I/O binding): no
    allocation or copy of the activations per run. The arrays returned are overwritten
    by the next run of the same batch size; ``keep`` batch sizes keep their buffers."""

    def __init__(self, session: ort.InferenceSession, names: list[str], shapes: list, keep: int = 4):
        self.session, self.names, self.shapes, self.keep = session, names, shapes, keep
        self._bindings: dict[int, tuple] = {}
        #: set once an output did not fit its buffer: every run is a plain one from then on
        self.unbound = False

    @staticmethod
    def possible(shapes: list) -> bool:
        """Every shape is known but for the batch axis."""
        return all(s is not None and len(s) > 0 and all(isinstance(d, int) for d in s[1:]) for s in shapes)

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs for ``feeds`` (input name -> array, batch axis first). An output
        whose first axis is not the batch though its shape said so (time steps x batch
        before a Gemm; a dynamo export's batch x heads, "4*N") does not fit a buffer of
        ``(samples, ...)``: from then on the outputs are run without binding (a failure
        of the data itself is raised again by the plain run)."""
        if self.unbound:
            return run_checked(lambda: self.session.run(self.names, feeds))
        n = len(next(iter(feeds.values())))
        if n not in self._bindings:
            if len(self._bindings) >= self.keep:
                self._bindings.pop(next(iter(self._bindings)))
            binding = self.session.io_binding()
            buffers = []
            for name, shape in zip(self.names, self.shapes):
                buf = np.empty((n, *shape[1:]), dtype=np.float32)
                binding.bind_output(name, "cpu", 0, np.float32, buf.shape, buf.ctypes.data)
                buffers.append(buf)
            self._bindings[n] = (binding, buffers)
        binding, buffers = self._bindings[n]
        for name, x in feeds.items():
            binding.bind_cpu_input(name, x)
        try:
            run_checked(lambda: self.session.run_with_iobinding(binding))
        except CalibrationDataError:
            self.unbound, self._bindings = True, {}
            return run_checked(lambda: self.session.run(self.names, feeds))
        return buffers


def weight_entries(network: Network, layer) -> list[RangeEntry]:
    """Weights and Bias entries of a conv/fc layer, from the prepared (folded) constants."""
    entries = []
    for kind, name in (("Weights", layer.weight), ("Bias", layer.bias)):
        if name is not None:
            stats = TensorStats.of(network.constant(name).astype(np.float32, copy=False))
            entries.append(RangeEntry(layer.name, layer.network_layer, kind, name, stats))
    return entries


#: Layers whose output holds exactly the values of their single input, rearranged.
_SAME_VALUES = ops_with(same_values=True)


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


class StatsCollector:
    """The streaming state of one calibration: the float network in onnxruntime and
    one :class:`TensorStats` per activation it measures.

    ``update(batch)`` adds a batch; ``partial()`` returns the state (sample count
    and statistics, small and picklable) and ``merge_partial`` adds another
    collector's, so shards run on different workers or a resumed run combine
    exactly; ``result()`` builds the :class:`Calibration`.
    """

    def __init__(
        self,
        network: Network,
        use_gpu: bool = False,
        histogram_stride: int | str = "auto",
        session: ort.InferenceSession | None = None,
    ):
        self.network = network
        self.derived = derived_layers(network)
        # a derived tensor merges its sources' histograms, which needs one stride for
        # all of them: measure it directly where the sources' strides differ
        stride_of: dict[str, int] = {}
        for layer in network.layers:
            sources = self.derived.get(layer.name)
            if sources is not None and len({stride_of[n] for n in sources}) > 1:
                del self.derived[layer.name]
                sources = None
            stride_of[layer.output] = (
                stride_of[sources[0]]
                if sources
                else _histogram_stride(network.value_shape(layer.output), histogram_stride)
            )
        self.measured = [layer for layer in network.layers if layer.name not in self.derived]
        #: the input layers come first in ``measured``; onnxruntime computes the rest
        self.k = k = len(network.input_names)
        self.output_names = [layer.output for layer in self.measured[k:]]
        self.shapes = [network.value_shape(layer.output) for layer in self.measured]
        self.strides = [_histogram_stride(shape, histogram_stride) for shape in self.shapes]
        #: Samples per onnxruntime run: a batch is run in pieces whose measured outputs
        #: take at most RUN_BYTES (statistics do not depend on it).
        self.run_samples = network.fixed_batch or _run_samples(self.shapes[k:])
        self.stats = [TensorStats(hist_stride=s) for s in self.strides]
        #: per measured output: True (batch axis first), False (no batch axis: a
        #: position table, a scalar), None (unknown: batch first when its first axis
        #: has the run's length)
        self.batch_first = [network.batch_first(layer.output) for layer in self.measured]
        #: per measured output: computed from a mask's fill value, so -inf/+inf is expected
        #: (or from integers and scalars alone, positions and shapes: T5's relative-position
        #: buckets take log(0) = -inf by design before a cast to integers)
        masks, data = network.mask_values(), network.data_values()
        self.masked = [
            layer.output in masks or (layer.kind != "input" and layer.output not in data) for layer in self.measured
        ]
        self.num_samples = 0
        self._use_gpu = use_gpu
        #: the onnxruntime session of ``network`` computing ``output_names`` (made on first
        #: use when not given: a Dask worker shares one between its tasks)
        self._session = session
        # Outputs go straight into preallocated arrays (onnxruntime I/O binding) when
        # every measured shape is known but for the batch: no allocation or copy per run
        # (kept for 4 run sizes: the run size, a batch's remainder, the last batch's).
        self._bound: BoundOutputs | None = None
        self._bind = not use_gpu and BoundOutputs.possible(self.shapes[k:])

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            self._session = create_session(self.network.session_model(self.output_names), use_gpu=self._use_gpu)
        return self._session

    def run_outputs(self, x) -> list[np.ndarray]:
        """The measured outputs (``output_names``) of one run of ``x`` (at most
        ``run_samples`` samples), in buffers reused by the next run."""
        feeds = self.network.feeds(x)
        if self._bind and not all(o.type == "tensor(float)" for o in self.session.get_outputs()):
            self._bind = False  # float16/float64 outputs: the reused buffers are float32
        if not self._bind:
            return run_checked(lambda: self.session.run(self.output_names, feeds))
        if self._bound is None:
            self._bound = BoundOutputs(self.session, self.output_names, self.shapes[self.k :])
        return self._bound(feeds)

    def update(self, batch) -> None:
        """Run the network on ``batch`` (a :class:`~quantscope.calibrate.data.Batch`) and
        add every measured tensor's values."""
        k = self.k
        feeds = self.network.feeds(batch.x)
        for stats, layer in zip(self.stats[:k], self.measured[:k]):
            _update(stats, feeds[layer.output], layer, batch.index)
        x = Inputs(feeds) if k > 1 else feeds[self.network.input_name]
        run, start = self._run_size(feeds), 0
        # Pieces keep each run's outputs small (cache-friendly, and the memory held is
        # RUN_BYTES whatever the batch size); a model with a fixed batch runs pieces of
        # exactly that size, the last one padded (its padding is not counted).
        for piece, count in batch_pieces(x, run, fixed=self.network.fixed_batch is not None):
            index = batch.index[start : start + count]
            outs = self.run_outputs(piece)
            for i, (stats, layer, out) in enumerate(zip(self.stats[k:], self.measured[k:], outs), k):
                batched, masked = self.batch_first[i], self.masked[i]
                if batched or (batched is None and out.ndim and len(out) == len(piece)):
                    _update(stats, out[:count], layer, index, masked)
                else:
                    _update_shared(stats, out, count, layer, index, masked)
            start += count
        self.num_samples += len(x)

    def _run_size(self, feeds: dict[str, np.ndarray]) -> int:
        """:attr:`run_samples`, or where a measured shape depends on a size the model
        leaves free (a sequence length, an image size), the samples per run for the
        shapes one sample of these inputs gives, run once per input size: counted as 1,
        those sizes made runs of 32 OCR lines at 3x48x320 take 7 GB."""
        if self.network.fixed_batch is not None or not any(
            shape is None or None in shape[1:] for shape in self.shapes[self.k :]
        ):
            return self.run_samples
        key = tuple((name, a.shape[1:]) for name, a in feeds.items())
        sizes = self.__dict__.setdefault("_run_sizes", {})
        if key not in sizes:
            one = {name: a[:1] for name, a in feeds.items()}
            outs = self.run_outputs(Inputs(one) if len(one) > 1 else one[self.network.input_name])
            sizes[key] = _run_samples([np.shape(out) if np.ndim(out) else None for out in outs])
        return sizes[key]

    def partial(self) -> dict:
        """The state so far: ``{"num_samples": int, "stats": [TensorStats.to_dict()...]}``."""
        return {"num_samples": self.num_samples, "stats": [s.to_dict() for s in self.stats]}

    def merge_partial(self, partial: dict) -> None:
        """Add another collector's :meth:`partial` (same network) to this one, exactly."""
        if len(partial["stats"]) != len(self.stats):
            raise CalibrationDataError("partial statistics of another network cannot be merged here")
        self.stats = [a.merge(TensorStats.from_dict(b)) for a, b in zip(self.stats, partial["stats"])]
        self.num_samples += int(partial["num_samples"])

    def result(self) -> Calibration:
        """The :class:`Calibration` of everything added so far."""
        network = self.network
        if self.num_samples == 0:
            raise CalibrationDataError("the calibration data contains no samples; give at least one input")
        measured = {layer.name: stats for layer, stats in zip(self.measured, self.stats)}
        by_output: dict[str, TensorStats] = {}
        entries: list[RangeEntry] = []
        for layer in network.layers:  # topological order: sources are final before use
            entries.extend(weight_entries(network, layer))
            if layer.name in self.derived:
                stats = TensorStats()
                for name in self.derived[layer.name]:
                    stats = stats.merge(by_output[name])
            else:
                stats = measured[layer.name]
            by_output[layer.output] = stats
            entries.append(RangeEntry(layer.name, layer.network_layer, "Activations", layer.output, stats))
        return Calibration(entries, self.num_samples, network=network, model_name=network.source_name)


#: Odd primes used as histogram strides; a stride never divides the tensor's last
#: (width) axis, so the sampled positions sweep every column.
_STRIDE_PRIMES = (5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61)
#: Tensors with fewer values per sample than this are histogrammed completely; larger
#: ones histogram about this many values per sample (at least one in 61).
_MIN_SAMPLED = 4096


def _histogram_stride(shape: tuple | None, option: int | str) -> int:
    """The histogram stride of a tensor of (static) ``shape`` ``(N, C, H, W)``.

    ``option="auto"``: 1 (every value) for tensors of fewer than 3 dims, unknown
    shape or fewer than 4,096 values per sample; else the largest prime of
    ``5, 7, 11, ..., 61`` that is at most ``values per sample / 4,096`` (5 at least)
    and does not divide the width: each sample adds at least about 4,096 values to
    the histogram, and never fewer than one value in 61. An int forces that stride
    for every tensor of 3 or more dims (1: exact histograms everywhere).
    """
    if option == "auto":
        if shape is None or len(shape) < 3 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
            return 1
        values = int(np.prod(shape[1:]))
        if values < _MIN_SAMPLED:
            return 1
        target = values // _MIN_SAMPLED
        fits = [p for p in _STRIDE_PRIMES if shape[-1] % p]
        below = [p for p in fits if p <= target]
        return below[-1] if below else (fits[0] if fits else 1)
    if isinstance(option, bool) or not isinstance(option, (int, np.integer)) or option < 1:
        raise CalibrationDataError(f"histogram_stride must be 'auto' or an integer >= 1, got {option!r}")
    return int(option) if shape is not None and len(shape) >= 3 else 1


#: Largest size (bytes) of the measured outputs of one onnxruntime run.
RUN_BYTES = 64 * 2**20


def _run_samples(shapes: list) -> int:
    """Samples per onnxruntime run: as many as keep the measured outputs (float32
    ``shapes``, batch axis first) within :data:`RUN_BYTES`; at least 1. Unknown
    dimensions count as 1; unknown shapes as nothing."""
    per_sample = 0
    for shape in shapes:
        if shape is None:
            continue
        per_sample += 4 * int(np.prod([d if isinstance(d, int) and d > 0 else 1 for d in shape[1:]]))
    return max(1, RUN_BYTES // max(per_sample, 1))


def _update_shared(
    stats: TensorStats, values: np.ndarray, count: int, layer, index: np.ndarray, expected_inf: bool = False
) -> None:
    """Add a tensor without a batch axis (computed from shapes: position embeddings,
    a scalar) once for each of ``count`` samples, as if every sample had its own copy:
    the statistics then do not depend on how the samples were batched."""
    one = TensorStats(hist_stride=stats.hist_stride)
    _update(one, np.asarray(values)[None], layer, index, expected_inf)
    one.count *= count
    if one.hist is not None:
        one.hist *= count
    merged = stats.merge(one)
    stats.min, stats.max, stats.count, stats.hist = merged.min, merged.max, merged.count, merged.hist


def _update(stats: TensorStats, values: np.ndarray, layer, index: np.ndarray, expected_inf: bool = False) -> None:
    """Add ``values`` (a layer's output for samples ``index``) to ``stats``. A NaN raises
    :class:`NonFiniteActivationError` naming the layer and the first bad sample; -inf and
    +inf are kept (an attention mask's fill value): such a layer's range is not finite and
    it stays in float. ``expected_inf``: the layer is computed from a mask's fill value
    (``Network.mask_values``) or from integers and scalars alone (not
    ``Network.data_values``); elsewhere an infinity is an overflow and raises too."""
    stats.update(values)
    if np.isnan(stats.min) or np.isnan(stats.max) or (not stats.finite and not expected_inf):
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1) if values.ndim else np.array([True])
        where = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        sample = int(index[where]) if len(index) > where else where
        what = "NaN" if np.isnan(values).any() else "Inf"
        raise NonFiniteActivationError(
            f"{what} in the output of layer {layer.name!r} (network layer {layer.network_layer!r}, "
            f"{'/'.join(layer.op_types)}) for sample {sample}. Check that input's values and the "
            "layer's weights; an overflow in float32 or a division by zero produces this.",
            layer=layer.name,
        )
