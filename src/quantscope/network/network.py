"""The prepared network: an onnx_ir model plus its optimized layers.

``prepare(source)`` loads a model, runs the preparation passes (fold
BatchNormalization, drop Dropout/Identity) and groups nodes into *optimized
layers* the way MATLAB's ``prepareNetwork`` does:

- the network input is a layer of its own (kind ``"input"``);
- a chain of Sub/Div/Mul/Add with constant operands right after the input is
  one layer ``<input>_normalization`` (kind ``"normalization"``);
- each Conv or fully connected layer (Gemm, or MatMul + Add with constant
  weights) together with the activation after it (Relu, Clip, LeakyRelu, PRelu)
  is one layer, named by joining the member names with ``_``
  (``conv1`` + ``relu_conv1`` -> ``conv1_relu_conv1``);
- every other node with a floating-point output computed from the input is a
  layer of its own. Shape computations and constant subgraphs are not layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from ..errors import ConfigurationError, UnsupportedModelError
from ..ops import check_not_quantized, info
from ..passes import BiasTarget, PrepareLog, absorb_biases, bias_targets, equalize_model, run_prepare_passes
from . import storage
from .load import load_model
from .storage import ExternalStore, initializer_bytes

__all__ = ["Inputs", "LayerKind", "Network", "OptimizedLayer", "prepare"]

_FLOAT_TYPES = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}


class LayerKind(StrEnum):
    """The kinds of optimized layer that group or stand for more than one operator.
    A single-node layer's kind is its ONNX op type (``"MaxPool"``, ``"Softmax"``...).
    Members compare equal to their strings (``LayerKind.CONV == "conv"``)."""

    INPUT = "input"
    NORMALIZATION = "normalization"
    CONV = "conv"
    FC = "fc"
    EMBEDDING = "embedding"
    #: ``x * Sigmoid(x)`` (a Sigmoid and the Mul by its own input): one activation,
    #: ONNX's Swish (opset 24), MATLAB's swishLayer, PyTorch's SiLU
    SWISH = "Swish"


@dataclass(frozen=True)
class OptimizedLayer:
    """One optimized layer of a prepared network.

    Attributes:
        name: optimized layer name (member names joined with ``_``).
        network_layer: the name of the last member (MATLAB's "Network Layer Name").
        members: names of the network layers (ONNX nodes) grouped here, in order.
            For the input layer, the input's name.
        kind: ``"input"``, ``"normalization"``, ``"conv"``, ``"fc"``, ``"embedding"``
            (a Gather of rows from a constant 2-D table), or the ONNX op type of a
            single-node layer (``"MaxPool"``, ``"Concat"``, ``"MatMul"`` of two activations...).
        op_types: op type of each member (``"Input"`` for the input layer).
        output: name of the value holding this layer's output activation.
        inputs: names of the activation values this layer reads.
        weight: initializer name of the weights (conv/fc/embedding only), in the
            prepared model: Conv ``(M, C/group, kH, kW)``, Gemm/MatMul as stored, an
            embedding table ``(rows, width)``.
        bias: initializer name of the bias ``(M,)`` (conv/fc only, None if absent).
        folded: names of the BatchNormalization (and constant bias Add) nodes folded into
            this layer.
        nodes: the member nodes themselves, in the prepared ``onnx_ir`` graph (empty
            for an input layer); ``value``: the ``onnx_ir.Value`` of ``output``.
    """

    name: str
    network_layer: str
    members: tuple[str, ...]
    kind: LayerKind | str
    op_types: tuple[str, ...]
    output: str
    inputs: tuple[str, ...] = ()
    weight: str | None = None
    bias: str | None = None
    folded: tuple[str, ...] = ()
    nodes: tuple[ir.Node, ...] = field(default=(), compare=False, repr=False)
    value: ir.Value | None = field(default=None, compare=False, repr=False)

    @property
    def has_learnables(self) -> bool:
        return self.weight is not None


class Network:
    """A prepared float network, ready to calibrate.

    Attributes:
        model: the prepared ``onnx_ir.Model`` (BN folded, Dropout/Identity dropped).
        layers: optimized layers in topological order, the input layers first (one
            per network input).
        log: what the preparation passes did and why some rewrites did not apply.
        input_names: names of the network inputs, in the model's order.
        input_shapes, input_dtypes: each input's shape (``None`` for symbolic dims,
            e.g. ``(None, 3, 224, 224)``) and numpy dtype (float32 images, int64 token ids...).
        input_name, input_shape, input_dtype: those of the first input.
        output_names: names of the network outputs.
    """

    def __init__(self, model: ir.Model, layers: list[OptimizedLayer], log: PrepareLog, source_name: str = ""):
        self.model = model
        self.layers = layers
        self.log = log
        self.source_name = source_name
        graph_inputs = [v for v in model.graph.inputs if not v.is_initializer()]
        self.input_names: list[str] = [v.name for v in graph_inputs]
        self.input_shapes: dict[str, tuple[int | None, ...]] = {
            v.name: tuple(d if isinstance(d, int) else None for d in (v.shape or ())) for v in graph_inputs
        }
        self.input_dtypes: dict[str, np.dtype] = {
            v.name: v.dtype.numpy() if v.dtype is not None else np.dtype(np.float32) for v in graph_inputs
        }
        self.input_name: str = self.input_names[0]
        self.input_shape: tuple[int | None, ...] = self.input_shapes[self.input_name]
        self.input_dtype = self.input_dtypes[self.input_name]
        self.output_names: list[str] = [v.name for v in model.graph.outputs]
        #: the output validation judges: the first of a floating-point type (a scikit-learn
        #: classifier's first output is its int64 label, its second the probabilities),
        #: else the first
        self.judged_output: str = next((v.name for v in model.graph.outputs if _float_tensor(v)), self.output_names[0])
        self._by_name = {layer.name: layer for layer in layers}
        #: whether cross-layer equalization ran (``prepare(..., equalize=True)``); what it
        #: did is in ``log.equalized``
        self.equalized = False
        #: whether bias absorption ran on the equalized network
        #: (:func:`quantscope.absorb_biases`); what it did is in ``log.absorbed``
        self.bias_absorbed = False

    @property
    def input_spec(self) -> dict[str, tuple[tuple[int | None, ...], np.dtype]]:
        """``{input name: (shape, dtype)}`` of every network input."""
        return {n: (self.input_shapes[n], self.input_dtypes[n]) for n in self.input_names}

    @property
    def input_layers(self) -> list[OptimizedLayer]:
        """The input layers, one per network input, in the model's order."""
        return self.layers[: len(self.input_names)]

    def feeds(self, x: Any) -> dict[str, np.ndarray]:
        """onnxruntime feeds for a batch ``x``: one array (a single-input network) or
        :class:`Inputs`, each cast to its input's dtype, C-contiguous."""
        if isinstance(x, Inputs):
            feeds = {n: np.ascontiguousarray(x.arrays[n], dtype=self.input_dtypes[n]) for n in self.input_names}
            self._check_shared_axes(feeds)
            return feeds
        return {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}

    def _check_shared_axes(self, feeds: dict[str, np.ndarray]) -> None:
        """Refuse inputs whose sizes differ along an axis the model names alike in
        several inputs (a transformer's ``sequence`` in ``input_ids`` and
        ``attention_mask``): onnxruntime would fail deep inside with a broadcast error."""
        axes = self.__dict__.get("_shared_axes")
        if axes is None:
            named: dict[str, list[tuple[str, int]]] = {}
            for value in self.model.graph.inputs:
                for axis, dim in enumerate(value.shape or ()):
                    if axis and not isinstance(dim, int) and dim.value:
                        named.setdefault(str(dim.value), []).append((value.name, axis))
            axes = self.__dict__["_shared_axes"] = {k: v for k, v in named.items() if len(v) > 1}
        for dim, uses in axes.items():
            sizes = [(name, axis, feeds[name].shape[axis]) for name, axis in uses if feeds[name].ndim > axis]
            if len({size for _, _, size in sizes}) > 1:
                from ..errors import CalibrationDataError

                raise CalibrationDataError(
                    f"the model's inputs share axis {dim!r}, and the data gives it "
                    + ", ".join(f"{size} in {name!r} (axis {axis})" for name, axis, size in sizes)
                    + "; give those inputs the same size along it"
                )

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model was exported with when its batch axis is fixed
        (``input_shape[0]``, e.g. 1), else None. quantscope then runs it that many
        samples at a time (padding the last piece with copies of its last sample,
        whose results are dropped), whatever batch size the user asks for."""
        n = self.input_shape[0] if self.input_shape else None
        return n if isinstance(n, int) and n > 0 else None

    # ---- lookups -------------------------------------------------------------------
    def layer(self, name: str) -> OptimizedLayer:
        """The optimized layer called ``name`` (or containing network layer ``name``)."""
        if name in self._by_name:
            return self._by_name[name]
        mapped = self.layer_of.get(name)
        if mapped is not None:
            return self._by_name[mapped]
        raise KeyError(f"no layer {name!r} in the network; layers are: {', '.join(self._by_name)}")

    @property
    def layer_of(self) -> dict[str, str]:
        """Map from each network layer name (node, folded BN included, by its readable and
        its ONNX name) to its optimized layer."""
        onnx_names = getattr(self.log, "onnx_names", {})
        mapping: dict[str, str] = {}
        for layer in self.layers:
            for member in layer.members + layer.folded:
                mapping[member] = layer.name
                if member in onnx_names:
                    mapping[onnx_names[member]] = layer.name
        return mapping

    def onnx_names(self, layer: OptimizedLayer | str) -> tuple[str, ...]:
        """The ONNX node names (as in the model file) of a layer's members: PyTorch
        exports' nodes are shown by module path (``features.0``), see
        :class:`~quantscope.passes.ReadableNamesPass`."""
        layer = self.layer(layer) if isinstance(layer, str) else layer
        if layer.kind == "input":
            return ()
        renamed = getattr(self.log, "onnx_names", {})
        return tuple(renamed.get(m, m) for m in layer.members)

    def value_shape(self, name: str) -> tuple[int | None, ...] | None:
        """Shape of value ``name`` (activation or initializer) from shape inference,
        ``None`` for symbolic dims (the batch), or None when unknown. NCHW for images."""
        if name in self.model.graph.initializers:
            return tuple(self.model.graph.initializers[name].const_value.shape)
        value = self._values().get(name)
        if value is None or value.shape is None:
            return None
        return tuple(d if isinstance(d, int) else None for d in value.shape)

    def batch_first(self, name: str) -> bool | None:
        """Whether value ``name``'s first axis is the batch axis: True when shape
        inference gave it the same symbol (or fixed size) as an input's first axis,
        False for a scalar or another fixed size, None when unknown (another symbol:
        a position table's sequence axis, or the batch renamed by inference)."""
        value = self._values().get(name)
        if value is None or value.shape is None:
            return None
        if len(value.shape) == 0:
            return False
        first = value.shape[0]
        batch = [v.shape[0] for v in self.model.graph.inputs if v.shape is not None and len(v.shape) > 0]
        if isinstance(first, int):
            return True if any(isinstance(b, int) and b == first for b in batch) else False
        if first.value is not None and any(not isinstance(b, int) and b.value == first.value for b in batch):
            return True
        return None  # another symbol: inference may have renamed the batch

    def node_attributes(self, node_name: str) -> dict[str, Any]:
        """Attributes of ONNX node ``node_name`` as plain Python values (ints, floats, lists)."""
        node = self._nodes()[node_name]
        return {k: a.value for k, a in node.attributes.items()}

    def _values(self) -> dict[str, ir.Value]:
        values = {v.name: v for v in self.model.graph.inputs}
        for node in self.model.graph:
            for out in node.outputs:
                values[out.name] = out
        return values

    def _nodes(self) -> dict[str, ir.Node]:
        return {node.name: node for node in self.model.graph}

    def node(self, name: str) -> ir.Node:
        """The ONNX node called ``name`` in the prepared graph."""
        nodes = self.__dict__.get("_node_index")
        if nodes is None or name not in nodes:
            nodes = self.__dict__["_node_index"] = self._nodes()
        return nodes[name]

    def mask_values(self) -> set[str]:
        """Names of the values computed (directly or not) from a constant holding an
        infinity, or a scalar constant of magnitude above 1e30: the fill values of attention masks
        (``masked_fill(mask, -inf)``, ``finfo.min``). Their -inf/+inf is expected; any
        other value that turns infinite overflowed."""
        cached = self.__dict__.get("_mask_values")
        if cached is not None:
            return cached

        def huge(v: ir.Value) -> bool:
            if not _is_const(v) or not _is_float(v):
                return False
            arr = v.const_value.numpy()
            if not arr.size:
                return False
            return bool(np.isinf(arr).any() or (arr.size == 1 and abs(float(arr.reshape(-1)[0])) > 1e30))

        masks: set[str] = set()
        for node in self.model.graph:
            if any(v is not None and (v.name in masks or huge(v)) for v in node.inputs):
                masks.update(out.name for out in node.outputs)
        self.__dict__["_mask_values"] = masks
        return masks

    def data_values(self) -> set[str]:
        """Names of the floating-point values computed from data: the float network
        input, and every float output of a node that reads such a value or a constant
        float tensor of more than one element (weights, an embedding table). The
        others are computed from integer tensors and scalars alone: attention masks,
        positions, shapes."""
        cached = self.__dict__.get("_data_values")
        if cached is not None:
            return cached
        data = {v.name for v in self.model.graph.inputs if _is_float(v)}
        for node in self.model.graph:
            reads_data = any(
                v is not None and (v.name in data or (_is_const(v) and _is_float(v) and v.const_value.size > 1))
                for v in node.inputs
            )
            if reads_data:
                data.update(out.name for out in node.outputs if _is_float(out))
        self.__dict__["_data_values"] = data
        return data

    def constant(self, name: str) -> np.ndarray:
        """The array of initializer ``name`` in the prepared model."""
        value = self.model.graph.initializers[name]
        return value.const_value.numpy()

    # ---- conversions ---------------------------------------------------------------
    def to_proto(self, extra_outputs: list[str] | tuple[str, ...] = ()) -> onnx.ModelProto:
        """The prepared model as an ``onnx.ModelProto``, with ``extra_outputs`` added as
        graph outputs (value names, e.g. every layer's output for calibration).

        A :attr:`large` network's initializers are external data (``weights.bin`` in
        its private folder, :mod:`quantscope.network.storage`): give onnxruntime
        :meth:`session_model` or :meth:`session_source`, not these bytes."""
        if self.large:
            self._external_store()
        proto = ir.to_proto(self.model)
        present = {o.name for o in proto.graph.output}
        for name in extra_outputs:
            if name not in present:
                proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                present.add(name)
        return proto

    @property
    def large(self) -> bool:
        """Whether the weights are too large to travel in one protobuf message
        (more than :data:`~quantscope.network.storage.LARGE_BYTES`)."""
        cached = self.__dict__.get("_large")
        if cached is None:
            cached = self.__dict__["_large"] = initializer_bytes(self.model) > storage.LARGE_BYTES
        return cached

    def session_model(self, extra_outputs: list[str] | tuple[str, ...] = ()) -> bytes | str:
        """The prepared model (with ``extra_outputs``) as onnxruntime opens it: its
        bytes, or for a :attr:`large` network the path of a file next to its weights."""
        return self.session_source(self.to_proto(extra_outputs))

    def session_source(self, proto: onnx.ModelProto) -> bytes | str:
        """``proto``, a model made of this network's graph (a part of it, or with other
        outputs), as onnxruntime opens it: see :meth:`session_model`."""
        if not self.large:
            return proto.SerializeToString()
        return self._external_store().path_of(proto)

    @property
    def external_folder(self) -> Path | None:
        """The private folder holding a :attr:`large` network's weights once a session
        needed them (None for other networks)."""
        return self._external_store().folder if self.large else None

    def _external_store(self) -> ExternalStore:
        store = self.__dict__.get("_store")
        if store is None:
            store = self.__dict__["_store"] = ExternalStore(self.model)
        return store

    # ---- pickling (Dask ships plans to workers) ----------------------------------------
    def __getstate__(self) -> dict:
        """The model as ONNX bytes and the layers without their graph references: an
        ``onnx_ir`` graph pickles node by node, recursively, and a deep network (a few
        hundred layers) exceeds Python's recursion limit. The lazily built caches are left
        out. A large network (more than one protobuf message holds) is pickled as it is."""
        if self.large:  # more than a protobuf holds: pickled as it is (its weights are external)
            return dict(self.__dict__)
        keep = ("_fingerprint",)
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k in keep}
        state["model"] = ir.to_proto(self.model).SerializeToString()
        state["layers"] = [
            (dataclasses.replace(layer, nodes=(), value=None), len(layer.nodes)) for layer in self.layers
        ]
        state["_large"] = False
        return state

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state.get("model"), bytes):  # a large network, pickled as it was
            self.__dict__.update(state)
            return
        state = dict(state)
        model = ir.from_proto(onnx.load_from_string(state.pop("model")))
        nodes = {node.name: node for node in model.graph}
        values: dict[str, ir.Value] = {v.name: v for v in model.graph.inputs}
        values.update(model.graph.initializers)
        for node in model.graph:
            values.update((out.name, out) for out in node.outputs)
        layers = []
        for layer, count in state.pop("layers"):
            members = tuple(nodes[m] for m in layer.members[:count])  # the member nodes, in order
            layers.append(dataclasses.replace(layer, nodes=members, value=values.get(layer.output)))
        self.__dict__.update(state, model=model, layers=layers)
        self._by_name = {layer.name: layer for layer in layers}

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of the prepared model: the same model file gives the same
        fingerprint, any change to its graph or weights another (a saved calibration
        records it, to refuse ranges measured on another model)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            import hashlib

            digest = hashlib.sha256(self.to_proto().SerializeToString())
            if self.large:  # the graph points to the weights: hash them too
                digest.update(self._external_store().weights_sha256().encode())
            cached = self.__dict__["_fingerprint"] = digest.hexdigest()
        return cached

    def summary(self) -> str:
        lines = [f"{len(self.layers)} optimized layers"]
        lines += [f"  {layer.name} [{layer.kind}]" for layer in self.layers]
        lines += [f"  note: {n}" for n in self.log.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        name = self.source_name or "model"
        return f"Network({name}, {len(self.layers)} layers, input {self.input_name} {self.input_shape})"


def _float_tensor(value: ir.Value) -> bool:
    """Whether ``value`` is a floating-point tensor of at least one axis."""
    try:
        return (
            isinstance(value.type, ir.TensorType)
            and value.dtype.numpy().kind == "f"
            and value.shape is not None
            and len(value.shape) >= 1
        )
    except Exception:  # noqa: BLE001 - a type numpy has no dtype for
        return False


def prepare(source: Any, example_input: Any = None, *, equalize: bool = False) -> Network:
    """Load and prepare a network.

    Args:
        source: an ``.onnx`` path, ``onnx.ModelProto``, ``torch.nn.Module``, or an
            already prepared :class:`Network` (returned as is, or equalized as a copy
            with ``equalize=True``).
        example_input: for a torch module, an example input ``(N, C, H, W)``, or a tuple
            or dict of them for several inputs (:func:`~quantscope.network.load.load_model`).
        equalize: cross-layer equalization after the other passes
            (:class:`~quantscope.passes.EqualizePass`, docs/accuracy.md): the float
            network computes the same function with weights that suit one scale per
            tensor; ``net.log.equalized`` lists each equalized pair and by how much.
            Calibrate the equalized network (its activations' ranges change).
    """
    if not isinstance(equalize, bool):
        raise ConfigurationError(f"equalize must be True or False, got {equalize!r}")
    if isinstance(source, Network):
        if not equalize or source.equalized:
            return source
        return _equalized_copy(source)
    proto = load_model(source, example_input)
    name = str(source) if isinstance(source, (str,)) or hasattr(source, "__fspath__") else ""
    model = ir.from_proto(proto)
    if name:  # the external data a large model left in place is read from its folder
        ir.external_data.set_base_dir(model.graph, Path(name).resolve().parent)
    check_not_quantized(model.graph, where=name or "the model")
    if not [v for v in model.graph.inputs if not v.is_initializer()]:
        raise UnsupportedModelError(f"{name or 'the model'} has no input; quantscope runs networks on data")
    log = run_prepare_passes(model, equalize=equalize)
    _complete_types(model, log)
    layers = _group_layers(model, log)
    network = Network(model, layers, log, source_name=name)
    network.equalized = equalize
    return network


def _copy_parts(network: Network) -> tuple[ir.Model, PrepareLog]:
    """A copy of ``network``'s model that owns its weights (those of a :attr:`large`
    network live in the original's private folder and are read in) and a copy of its
    log that a pass may extend, for a rewritten copy of the network."""
    model = ir.from_proto(network.to_proto())
    if network.large:
        ir.external_data.set_base_dir(model.graph, network._external_store().folder)
        model = ir.external_data.load_to_model(model)
    log = dataclasses.replace(
        network.log,
        folded=dict(network.log.folded),
        notes=list(network.log.notes),
        onnx_names=dict(network.log.onnx_names),
        equalized=list(network.log.equalized),
    )
    return model, log


def _equalized_copy(network: Network) -> Network:
    """An equalized copy of a prepared network (the original is left as it is)."""
    model, log = _copy_parts(network)
    equalize_model(model, log)
    copy = Network(model, _group_layers(model, log), log, source_name=network.source_name)
    copy.equalized = True
    return copy


def absorption_targets(network: Network) -> tuple[list[BiasTarget], list[str]]:
    """The equalized pairs of ``network`` whose bias can be absorbed
    (:func:`~quantscope.passes.bias_targets`), and a note for each that cannot."""
    return bias_targets(network.model, list(network.log.equalized))


def absorbed_copy(network: Network, ranges: dict[str, tuple[np.ndarray, np.ndarray]]) -> Network:
    """A copy of the equalized ``network`` with the biases of its absorbable pairs moved
    into the next layer (:func:`~quantscope.passes.absorb_biases`; the original is left
    as it is). ``ranges``: each target's pre-activation value name -> its per-channel
    (minimum, maximum) on the data, arrays of shape ``(C,)``."""
    model, log = _copy_parts(network)
    targets, notes = bias_targets(model, log.equalized)
    log.absorbed = absorb_biases(model, targets, ranges)
    log.notes.extend(notes)
    RemoveUnusedNodesPass()(model)  # the biases and ceilings it replaced
    copy = Network(model, _group_layers(model, log), log, source_name=network.source_name)
    copy.equalized = network.equalized
    copy.bias_absorbed = True
    return copy


_ORT_TYPES = {
    "tensor(float)": ir.DataType.FLOAT,
    "tensor(float16)": ir.DataType.FLOAT16,
    "tensor(double)": ir.DataType.DOUBLE,
    "tensor(bfloat16)": ir.DataType.BFLOAT16,
    "tensor(int64)": ir.DataType.INT64,
    "tensor(int32)": ir.DataType.INT32,
    "tensor(int16)": ir.DataType.INT16,
    "tensor(int8)": ir.DataType.INT8,
    "tensor(uint8)": ir.DataType.UINT8,
    "tensor(bool)": ir.DataType.BOOL,
}


def _complete_types(model: ir.Model, log: PrepareLog) -> None:
    if initializer_bytes(model) > storage.LARGE_BYTES:
        return  # no session of the whole model yet (network.storage): types stay as ONNX inferred them
    _complete_types_by_onnxruntime(model, log)


def _complete_types_by_onnxruntime(model: ir.Model, log: PrepareLog) -> None:
    """Give a type to the values ONNX's inference left untyped (outputs of operators it
    does not know, such as com.microsoft contrib operators, and everything after them),
    as onnxruntime resolves them: without a type a float layer would pass for a shape
    computation and go unmeasured."""
    unknown = [v for node in model.graph for v in node.outputs if v.name and v.dtype is None]
    if not unknown:
        return
    import onnxruntime as ort

    proto = ir.to_proto(model)
    present = {o.name for o in proto.graph.output}
    proto.graph.output.extend(
        onnx.helper.make_empty_tensor_value_info(v.name) for v in unknown if v.name not in present
    )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime's reason is reported, with the node, when the model runs
        return
    types = {o.name: o.type for o in session.get_outputs()}
    filled = 0
    for v in unknown:
        dtype = _ORT_TYPES.get(types.get(v.name, ""))
        if dtype is not None:
            v.dtype = dtype
            filled += 1
    if filled:
        log.notes.append(f"types of {filled} value(s) that ONNX's inference left unknown were taken from onnxruntime")


def _is_float(value: ir.Value | None) -> bool:
    return value is not None and value.dtype in _FLOAT_TYPES


def _is_const(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def _swish_mul(sigmoid: ir.Node) -> ir.Node | None:
    """The Mul of ``x * Sigmoid(x)`` after ``sigmoid``, when its output feeds only that Mul."""
    x = sigmoid.inputs[0]
    mul = _single_consumer(sigmoid.outputs[0])
    if mul is None or mul.op_type != "Mul" or mul.domain not in ("", "ai.onnx") or len(mul.inputs) != 2:
        return None
    return mul if {id(v) for v in mul.inputs} == {id(x), id(sigmoid.outputs[0])} else None


def _single_consumer(value: ir.Value) -> ir.Node | None:
    uses = value.uses()
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0].node if hasattr(uses[0], "node") else uses[0][0]


def _group_layers(model: ir.Model, log: PrepareLog) -> list[OptimizedLayer]:
    graph = model.graph
    graph_inputs = [v for v in graph.inputs if not v.is_initializer()]
    layers = [
        OptimizedLayer(
            name=v.name,
            network_layer=v.name,
            members=(v.name,),
            kind=LayerKind.INPUT,
            op_types=("Input",),
            output=v.name,
            value=v,
        )
        for v in graph_inputs
    ]
    assigned: set[int] = set()
    taken = {layer.name for layer in layers}
    # nodes equalization added beside the original ones: left out of layer names
    added = {p.added for p in getattr(log, "equalized", ()) if p.added}

    # Values that depend on the network inputs.
    dynamic: set[int] = {id(v) for v in graph_inputs}

    # Input normalization: Sub/Div/Mul/Add chain with constant operands after a float input.
    for graph_input in graph_inputs:
        chain: list[ir.Node] = []
        value = graph_input
        while _is_float(graph_input):
            node = _single_consumer(value)
            if node is None or not info(node.op_type, node.domain).normalization or len(node.inputs) != 2:
                break
            other = node.inputs[1] if node.inputs[0] is value else node.inputs[0]
            if not _is_const(other):
                break
            if not info(node.op_type, node.domain).commutative and node.inputs[0] is not value:
                break  # c - x or c / x is not a normalization
            chain.append(node)
            value = node.outputs[0]
        if chain:
            layers.append(
                OptimizedLayer(
                    name=f"{graph_input.name}_normalization",
                    network_layer=graph_input.name,
                    members=tuple(n.name for n in chain),
                    kind=LayerKind.NORMALIZATION,
                    op_types=tuple(n.op_type for n in chain),
                    output=chain[-1].outputs[0].name,
                    inputs=(graph_input.name,),
                    nodes=tuple(chain),
                    value=chain[-1].outputs[0],
                )
            )
            for n in chain:
                assigned.add(id(n))
                dynamic.add(id(n.outputs[0]))

    for node in graph:
        if id(node) in assigned:
            continue
        is_dynamic = any(v is not None and id(v) in dynamic for v in node.inputs)
        if not is_dynamic:
            continue  # constant subgraph
        for out in node.outputs:
            dynamic.add(id(out))
        if not node.outputs or not _is_float(node.outputs[0]):
            continue  # shape computation (Shape, Size, ...)
        members = [node]
        kind = node.op_type
        weight = bias = None
        standard = node.domain in ("", "ai.onnx")
        if not standard:
            pass  # another domain's operator: a float layer of its own
        elif info(node.op_type).takes_bias and _is_const(node.inputs[1]) and _is_float(node.inputs[0]):
            kind = LayerKind.CONV if node.op_type == "Conv" else LayerKind.FC
            weight = node.inputs[1].name
            if len(node.inputs) > 2 and _is_const(node.inputs[2]):
                bias = node.inputs[2].name
        elif node.op_type == "MatMul" and _is_const(node.inputs[1]) and len(node.inputs[1].shape or ()) == 2:
            kind = LayerKind.FC
            weight = node.inputs[1].name
            nxt = _single_consumer(node.outputs[0])
            if nxt is not None and nxt.op_type == "Add" and id(nxt) not in assigned:
                other = nxt.inputs[1] if nxt.inputs[0] is node.outputs[0] else nxt.inputs[0]
                if _is_const(other) and len(other.shape or ()) == 1:
                    members.append(nxt)
                    bias = other.name
        elif (
            node.op_type == "Gather"
            and _is_const(node.inputs[0])
            and _is_float(node.inputs[0])
            and len(node.inputs[0].shape or ()) == 2
        ):
            kind = LayerKind.EMBEDDING  # rows of a constant table picked by token ids
            weight = node.inputs[0].name
        elif node.op_type == "Sigmoid" and (mul := _swish_mul(node)) is not None and id(mul) not in assigned:
            kind = LayerKind.SWISH  # x * sigmoid(x), one activation
            members.append(mul)
        if kind in ("conv", "fc"):
            # the activation after it; a chain of them (a Relu and the Min that holds
            # per-channel ceilings after equalization) joins the layer whole
            while True:
                nxt = _single_consumer(members[-1].outputs[0])
                if (
                    nxt is None
                    or id(nxt) in assigned
                    or not info(nxt.op_type, nxt.domain).fusable
                    or nxt.inputs[0] is not members[-1].outputs[0]
                    or not all(_is_const(v) for v in nxt.inputs[1:] if v is not None)
                ):
                    break
                members.append(nxt)
        for m in members:
            assigned.add(id(m))
            for out in m.outputs:
                dynamic.add(id(out))
        layer_inputs = tuple(v.name for v in node.inputs if v is not None and id(v) in dynamic and _is_float(v))
        folded = tuple(bn for bn, target in log.folded.items() if target == node.name)
        named = [m.name for m in members if m.name not in added] or [m.name for m in members]
        name = _layer_name(named, taken)
        taken.add(name)
        layers.append(
            OptimizedLayer(
                name=name,
                network_layer=named[-1],
                members=tuple(m.name for m in members),
                kind=kind,
                op_types=tuple(m.op_type for m in members),
                output=members[-1].outputs[0].name,
                inputs=layer_inputs,
                weight=weight,
                bias=bias,
                folded=folded,
                nodes=tuple(members),
                value=members[-1].outputs[0],
            )
        )
    return layers


class Inputs:
    """The inputs of one batch of a network with several inputs: named arrays with the
    batch axis first, all of the same length. ``len()`` is the number of samples and
    ``inputs[a:b]`` (or an index array) takes samples from every array, as for one array."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = dict(arrays)
        lengths = {len(v) for v in self.arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"inputs of different lengths: {', '.join(f'{k}: {len(v)}' for k, v in arrays.items())}")

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def __getitem__(self, index) -> Inputs:
        return Inputs({k: v[index] for k, v in self.arrays.items()})

    @property
    def nbytes(self) -> int:
        return sum(int(v.nbytes) for v in self.arrays.values())

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),)

    @staticmethod
    def concatenate(parts: list[Inputs]) -> Inputs:
        return Inputs({k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays})

    def __repr__(self) -> str:
        return "Inputs(" + ", ".join(f"{k}: {v.dtype}{tuple(v.shape)}" for k, v in self.arrays.items()) + ")"


def _layer_name(members: list[str], taken: set[str]) -> str:
    """An optimized layer's name: its members' names joined with ``_``; members of one
    module (``q/MatMul`` and ``q/Add``, a Linear) give the module's name, ``q``."""
    prefixes = {m.rsplit("/", 1)[0] for m in members if "/" in m}
    if len(members) > 1 and len(prefixes) == 1 and all("/" in m for m in members):
        name = prefixes.pop()
        if name and name not in taken:
            return name
    return "_".join(members)


def batch_pieces(x: np.ndarray | Inputs, size: int, fixed: bool = False):
    """Consecutive pieces of ``x`` (batch axis first) of ``size`` samples, as
    ``(piece, count)``. ``fixed``: every piece has exactly ``size`` samples (a model
    exported with a fixed batch); the last one is padded with copies of its last
    sample, and ``count`` says how many of its samples are real."""
    for start in range(0, len(x), size):
        piece = x[start : start + size]
        count = len(piece)
        if fixed and count < size:
            pad = np.full(size - count, count - 1)
            if isinstance(piece, Inputs):
                piece = Inputs.concatenate([piece, piece[pad]])
            else:
                piece = np.concatenate([piece, piece[pad]])
        yield piece, count
