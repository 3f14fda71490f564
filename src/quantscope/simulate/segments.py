"""The int8 emulation's schedule: integer layers, and float segments between them.

Every node of the prepared graph that is not a member of an integer layer (float
layers, the input normalization, and everything that computes shapes, indices or
masks: Shape, Gather, Slice, Concat of int64, Equal, Where, Cast...) runs through
onnxruntime exactly as in the float network. Consecutive such nodes form one
*segment*, one onnxruntime session: a segment ends where an integer layer needs
one of its values, and where a value it computes is quantized (the plan gives it
integer parameters) and a node of the same segment would read it: that node must
read the quantized value, as the QDQ export's consumers do.

Integer and boolean tensors (token ids, masks, shapes) pass between segments and
integer layers exactly; a Reshape, Squeeze or Unsqueeze whose shape or axes are
computed takes them from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import helper

from ..calibrate.collector import run_checked, session_options
from ..errors import UnsupportedModelError
from ..network import Network, OptimizedLayer
from ..network.protos import node_reads
from .fast import SESSION_THREADS

__all__ = ["Segment", "schedule"]


@dataclass
class Segment:
    """Consecutive float nodes run as one onnxruntime session.

    Attributes:
        nodes: the ONNX node names, in topological order.
        inputs: the values it reads from earlier steps (graph inputs, integer layers'
            outputs, other segments' values).
        outputs: the values later steps read, the graph outputs, and the layer
            outputs it computes (collected for the diagnostics).
    """

    nodes: list[str]
    inputs: list[str]
    outputs: list[str]
    _session: ort.InferenceSession | None = field(default=None, repr=False)

    def run(self, network: Network, proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The segment's ``outputs`` for ``feeds`` (one array per input name)."""
        if self._session is None:
            self._session = _session(self, proto, feeds, network)
        return run_checked(lambda: self._session.run(self.outputs, feeds), "the int8 network's float part")


def _input_dims(network: Network, name: str, ndim: int) -> list:
    """An input's dims for the segment's graph: the fixed sizes shape inference found in
    the whole network (onnxruntime's own inference of a Resize or Reshape needs them),
    named symbols for the others."""
    shape = network.value_shape(name) if name not in network.input_shapes else network.input_shapes[name]
    if shape is None or len(shape) != ndim:
        shape = (None,) * ndim
    return [d if isinstance(d, int) else f"{name}_dim{i}" for i, d in enumerate(shape)]


def _session(
    segment: Segment, proto: onnx.ModelProto, feeds: dict[str, np.ndarray], network: Network
) -> ort.InferenceSession:
    nodes = {n.name: n for n in proto.graph.node}
    inits = {t.name: t for t in proto.graph.initializer}
    seg_nodes = [nodes[name] for name in segment.nodes]
    used = {name for node in seg_nodes for name in node_reads(node)}
    inputs = [
        helper.make_tensor_value_info(
            name,
            helper.np_dtype_to_tensor_dtype(feeds[name].dtype),
            _input_dims(network, name, feeds[name].ndim),
        )
        for name in segment.inputs
    ]
    outputs = [helper.make_empty_tensor_value_info(name) for name in segment.outputs]
    graph = helper.make_graph(
        seg_nodes,
        "segment",
        inputs,
        outputs,
        initializer=[inits[name] for name in sorted(used) if name in inits],
    )
    model = helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    model.functions.extend(proto.functions)
    options = session_options(spinning=False, threads=SESSION_THREADS.get())  # errors: quantscope's messages
    try:
        return ort.InferenceSession(network.session_source(model), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModelError(
            f"onnxruntime cannot run the float part made of node(s) {', '.join(segment.nodes[:8])}"
            f"{' ...' if len(segment.nodes) > 8 else ''}: {first}",
            nodes=[(name, nodes[name].op_type) for name in segment.nodes],
        ) from None


def schedule(
    network: Network, int_layers: Iterable[OptimizedLayer], quantized: set[str]
) -> list[Segment | OptimizedLayer]:
    """The order in which the emulation runs the network after its input layer.

    Args:
        network: the prepared network.
        int_layers: the layers run by integer kernels (their member nodes are not
            in any segment).
        quantized: value names that hold integers (the plan's quantized activations):
            a segment's node never reads such a value computed in its own segment.

    Returns:
        Steps: :class:`Segment` objects and integer :class:`OptimizedLayer` objects.
        Segments are as few as the dependencies allow: each takes every float node
        whose inputs are ready, then every ready integer layer runs.
    """
    proto_nodes = {n.name: n for n in network.to_proto().graph.node}
    graph = network.model.graph
    int_layers = list(int_layers)
    member_of = {m: layer for layer in int_layers for m in layer.members}
    constants = set(graph.initializers)
    available = {v.name for v in graph.inputs} | constants | {""}
    float_nodes: list[ir.Node] = [n for n in graph if n.name not in member_of]
    reads = {n.name: node_reads(proto_nodes[n.name]) for n in graph}
    layer_reads = {}
    for layer in int_layers:
        inside = {out.name for node in layer.nodes for out in node.outputs}
        layer_reads[layer.name] = [r for m in layer.members for r in reads[m] if r not in inside]

    # who reads each value, to know what a segment must hand on
    readers: dict[str, set[str]] = {}
    for node in graph:
        owner = member_of[node.name].name if node.name in member_of else node.name
        for name in reads[node.name]:
            readers.setdefault(name, set()).add(owner)
    graph_outputs = {v.name for v in graph.outputs}
    layer_outputs = {layer.output for layer in network.layers}

    steps: list[Segment | OptimizedLayer] = []
    pending_layers = list(int_layers)
    while float_nodes or pending_layers:
        taken: list[ir.Node] = []
        produced: set[str] = set()
        grew = True
        while grew:
            grew = False
            rest = []
            for node in float_nodes:
                if all(r in available or (r in produced and r not in quantized) for r in reads[node.name]):
                    taken.append(node)
                    produced.update(out.name for out in node.outputs)
                    grew = True
                else:
                    rest.append(node)
            float_nodes = rest
        if taken:
            names = {n.name for n in taken}
            inputs = list(dict.fromkeys(r for n in taken for r in reads[n.name] if r not in produced and r))
            inputs = [r for r in inputs if r not in constants]
            outputs = [
                out.name
                for n in taken
                for out in n.outputs
                if out.name
                and (
                    out.name in graph_outputs
                    or out.name in layer_outputs
                    or out.name in quantized
                    or readers.get(out.name, set()) - names
                )
            ]
            steps.append(Segment([n.name for n in taken], inputs, outputs))
            available |= produced
        ran = []
        for layer in pending_layers:
            if all(r in available for r in layer_reads[layer.name]):
                steps.append(layer)
                available.add(layer.output)
                ran.append(layer.name)
        pending_layers = [layer for layer in pending_layers if layer.name not in ran]
        if not taken and not ran:
            stuck = [n.name for n in float_nodes[:5]] + [layer.name for layer in pending_layers[:5]]
            raise UnsupportedModelError(
                f"the graph cannot be ordered for the int8 emulation (a cycle?): stuck at {', '.join(stuck)}"
            )
    return steps
