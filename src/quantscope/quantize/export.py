"""Export a quantization plan as a QDQ ONNX model (and its parameters as JSON).

The QDQ format (QuantizeLinear/DequantizeLinear pairs) is what onnxruntime and
other runtimes read to run int8 kernels: onnxruntime fuses ``DQ -> Conv -> Q``
into QLinearConv, ``DQ -> MatMul/Gemm -> Q`` into QLinearMatMul/QGemm, and drops
a Relu before a Q whose zero point is the type's minimum.

What is written:
- every quantized activation ``v`` gets ``v_prequant -> QuantizeLinear -> DequantizeLinear -> v``
  (the producer's output is renamed so consumers and graph outputs keep their names);
- every quantized Conv/Gemm/MatMul weight is an int8 initializer behind a
  DequantizeLinear (per output channel along ``axis`` for the CPU scheme), and its
  bias an int32 initializer behind a DequantizeLinear at scale ``s_x * s_w``;
- layers the plan keeps in float are left as they are.

A model below opset 13 is converted first; the converter adds nodes without names
(Softmax 12 -> 13 becomes Shape, Flatten, Softmax, Reshape, the original output
written by the unnamed Reshape), so the nodes are placed by their position in the
graph, never by name. A model that fails ``onnx.checker`` is an
:class:`~quantscope.errors.UnsupportedModelError` naming the layers involved.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .._io import replace_atomic, write_atomic
from ..errors import UnsupportedModelError, option
from ..network.protos import node_reads
from .numerics import FloatScale, cpu_int8_saturates
from .plan import QParams, QuantPlan

__all__ = ["to_qdq", "save_qdq", "save_params"]

_MIN_OPSET = 13  # per-channel DequantizeLinear (axis)


def _qdq_tensors(name: str, qp: QParams, dtype=np.int8) -> list[onnx.TensorProto]:
    scale = qp.scale.astype(np.float32)
    zp = qp.zero_point.astype(dtype)
    return [numpy_helper.from_array(scale, f"{name}_scale"), numpy_helper.from_array(zp, f"{name}_zero_point")]


def to_qdq(plan: QuantPlan) -> onnx.ModelProto:
    """The plan as a QDQ ONNX model that onnxruntime runs with int8 kernels.

    For the CPU scheme it is the deployable model. For the power-of-two (FPGA) scheme
    it carries the same scales, but onnxruntime rounds ties to even and requantizes
    in float32, so it approximates the FPGA arithmetic; the bit-exact FPGA results are
    the emulation's (``QuantizedNetwork.predict``, ``fpga.Workflow.predict``).

    Warns (``UserWarning``) when the scheme has full 8-bit weights and this machine is
    an x86 CPU without VNNI, where onnxruntime's int8 kernels saturate (docs/int8.md (9)).

    Raises:
        UnsupportedModelError: the model cannot be converted to opset 13, or the
            exported model fails ``onnx.checker`` (the message names the layers involved).
    """
    model, involved = _build(plan)
    if not plan.network.large:  # a large one's weights are external: save_qdq checks the written file
        _check(model, involved, plan)
    return model


def _build(plan: QuantPlan) -> tuple[onnx.ModelProto, dict[str, set[str]]]:
    """The QDQ model, unchecked, and for each name it writes the layers whose quantization
    wrote it (to name them if the checker fails)."""
    if isinstance(plan.scheme, FloatScale) and not plan.scheme.reduce_range and cpu_int8_saturates():
        warnings.warn(
            "this CPU is x86 without VNNI: onnxruntime's int8 kernels add pairs of 8-bit products in int16 "
            "with saturation here, so this model can compute other results than quantscope's emulation "
            "(and lose accuracy) when run on this machine. Quantize with FloatScale(reduce_range=True) "
            "(--reduce-range) for 7-bit weights that cannot saturate (docs/int8.md (9)).",
            UserWarning,
            stacklevel=3,  # to_qdq's caller
        )
    network = plan.network
    model = network.to_proto()
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, _MIN_OPSET)
        except Exception as exc:  # the converter's own error types are not public
            raise UnsupportedModelError(
                f"cannot export a QDQ model: converting the network from opset {opset} to opset {_MIN_OPSET} "
                f"(needed for per-channel DequantizeLinear) failed: {_short(exc)}. Convert the model to opset "
                f"{_MIN_OPSET} or later before preparing it."
            ) from exc
        graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    new_inits: list[onnx.TensorProto] = []
    # node position in graph.node -> nodes to put before / after it. By position, not by
    # name: nodes added by the version converter have none (and "" would match them all)
    dq_before: dict[int, list[onnx.NodeProto]] = {}
    position = {}
    for i, node in enumerate(graph.node):
        if node.name:
            position.setdefault(node.name, i)
    involved: dict[str, set[str]] = {}  # a name the export writes -> the layers to keep in float if it fails

    def blame(names, layers) -> None:
        for name in names:
            involved.setdefault(name, set()).update(layers)

    taken = {t.name for t in graph.initializer} | {v for n in graph.node for v in n.output}
    taken |= {v.name for v in graph.input}

    def unique(name: str) -> str:
        """``name``, or ``name_2``, ``name_3``...: a tensor shared by two layers (an
        exporter deduplicates equal constants) is quantized once per layer."""
        out, i = name, 1
        while out in taken:
            i += 1
            out = f"{name}_{i}"
        taken.add(out)
        return out

    # weights and biases
    for layer in network.layers:
        if layer.name not in plan.weights:
            continue
        head = layer.members[0]
        qw, w_qp = plan.weights[layer.name]
        wq_name = unique(f"{layer.weight}_quantized")
        new_inits.append(numpy_helper.from_array(qw.astype(np.int8), wq_name))
        new_inits += _qdq_tensors(wq_name, w_qp)
        attrs = {"axis": w_qp.axis} if w_qp.axis is not None else {}
        nodes = [
            helper.make_node(
                "DequantizeLinear",
                [wq_name, f"{wq_name}_scale", f"{wq_name}_zero_point"],
                [wdq := unique(f"{layer.weight}_dequantized")],
                name=f"{wq_name}_DequantizeLinear",
                **attrs,
            )
        ]
        w_elem = initializers[layer.weight].data_type
        if w_elem != onnx.TensorProto.FLOAT:  # float16 weights: dequantize to float32, then cast back
            nodes.append(helper.make_node("Cast", [wdq], [wcast := unique(f"{layer.weight}_cast")], to=w_elem))
            wdq = wcast
        replace = {layer.weight: wdq}
        if layer.name in plan.biases:
            qb, b_qp = plan.biases[layer.name]
            bq_name = unique(f"{layer.bias}_quantized")
            new_inits.append(numpy_helper.from_array(qb.astype(np.int32), bq_name))
            scale = np.broadcast_to(b_qp.scale, qb.shape).astype(np.float32)
            new_inits.append(numpy_helper.from_array(scale, f"{bq_name}_scale"))
            new_inits.append(numpy_helper.from_array(np.zeros(qb.shape, np.int32), f"{bq_name}_zero_point"))
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [bq_name, f"{bq_name}_scale", f"{bq_name}_zero_point"],
                    [bdq := unique(f"{layer.bias}_dequantized")],
                    name=f"{bq_name}_DequantizeLinear",
                    axis=0,
                )
            )
            b_elem = initializers[layer.bias].data_type
            if b_elem != onnx.TensorProto.FLOAT:
                nodes.append(helper.make_node("Cast", [bdq], [bcast := unique(f"{layer.bias}_cast")], to=b_elem))
                bdq = bcast
            replace[layer.bias] = bdq
        for member in layer.members:
            node = graph.node[position[member]]
            for i, name in enumerate(node.input):
                if name in replace:
                    node.input[i] = replace[name]
        dq_before.setdefault(position[head], []).extend(nodes)
        blame([*replace.values(), *(n.name for n in nodes), *(v for n in nodes for v in n.input)], [layer.name])

    # activations
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output}
    producer_layer = {layer.output: layer for layer in network.layers}
    int8_readers: dict[str, list[str]] = {}
    for layer in network.layers:
        if plan.is_int(layer) and layer.kind != "input":
            for value in dict.fromkeys(layer.inputs):
                int8_readers.setdefault(value, []).append(layer.name)
    elem_types = {
        v.name: v.dtype.value
        for v in [*network.model.graph.inputs, *(o for n in network.model.graph for o in n.outputs)]
        if v.dtype is not None
    }
    qdq_after: dict[int, list[onnx.NodeProto]] = {}
    input_qdq: list[onnx.NodeProto] = []
    for value, qp in plan.activations.items():
        if value in producers:
            node = graph.node[producers[value]]
            pre = unique(f"{value}_prequant")
            node.output[list(node.output).index(value)] = pre
        elif value in network.input_names:
            pre = value
        else:
            continue
        q_name = unique(f"{value}_quantized")
        dq_name = value if value in producers else unique(f"{value}_dequantized")
        new_inits += _qdq_tensors(q_name, qp)
        elem = elem_types.get(value, onnx.TensorProto.FLOAT)
        # QuantizeLinear takes float32 (float16 only from opset 19): other floats go through a Cast
        q_in = pre if elem == onnx.TensorProto.FLOAT else unique(f"{value}_float32")
        dq_out = dq_name if elem == onnx.TensorProto.FLOAT else unique(f"{value}_dequantized_float32")
        pair = [
            helper.make_node(
                "QuantizeLinear",
                [q_in, f"{q_name}_scale", f"{q_name}_zero_point"],
                [q_name],
                name=f"{value}_QuantizeLinear",
            ),
            helper.make_node(
                "DequantizeLinear",
                [q_name, f"{q_name}_scale", f"{q_name}_zero_point"],
                [dq_out],
                name=f"{value}_DequantizeLinear",
            ),
        ]
        if elem != onnx.TensorProto.FLOAT:
            pair.insert(
                0, helper.make_node("Cast", [pre], [q_in], name=f"{value}_to_float32", to=onnx.TensorProto.FLOAT)
            )
            pair.append(helper.make_node("Cast", [dq_out], [dq_name], name=f"{value}_from_float32", to=elem))
        source = producer_layer.get(value)
        blame(
            [value, pre, q_name, *(n.name for n in pair), *(v for n in pair for v in n.output)],
            [source.name] if source is not None and plan.is_int(source) and source.kind != "input" else [],
        )
        blame([value, pre, q_name, *(n.name for n in pair)], int8_readers.get(value, []))
        if value in producers:
            qdq_after.setdefault(producers[value], []).extend(pair)
        else:
            input_qdq.extend(pair)
            for node in graph.node:
                for i, name in enumerate(node.input):
                    if name == value:
                        node.input[i] = dq_name

    ordered = list(input_qdq)
    for i, node in enumerate(graph.node):
        ordered.extend(dq_before.get(i, []))
        ordered.append(node)
        ordered.extend(qdq_after.get(i, []))
    del graph.node[:]
    graph.node.extend(ordered)
    used = {name for node in graph.node for name in node_reads(node)}  # subgraphs' outer names included
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    del graph.value_info[:]
    model.producer_name = "quantscope"
    del initializers
    return model, involved


def _short(exc: BaseException, limit: int = 600) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check(checked: onnx.ModelProto | str, involved: dict[str, set[str]], plan: QuantPlan) -> None:
    """``onnx.checker`` on ``checked`` (the model or the file it was written to); a failure
    is an :class:`UnsupportedModelError` naming the layers whose quantization wrote the
    names in the checker's message, with ``--keep-float`` for them."""
    try:
        onnx.checker.check_model(checked)
    except onnx.checker.ValidationError as exc:
        text = str(exc)
        quoted = {part for i, part in enumerate(text.split("'")) if i % 2}  # the checker quotes names
        named = [n for n in sorted(involved, key=len, reverse=True) if n in quoted]
        if not named:  # unquoted: a name that appears as a word
            words = set(text.replace(",", " ").replace(":", " ").split())
            named = [n for n in sorted(involved, key=len, reverse=True) if n in words]
        layers = sorted({layer for n in named for layer in involved[n]})
        if layers:
            flags = option(f"keep_float={layers!r}", " ".join(f"--keep-float {name}" for name in layers))
            hint = (
                f" It concerns the quantization of {', '.join(repr(n) for n in named[:3])} (layer(s) "
                f"{', '.join(layers)}); leaving them in float ({flags}) avoids it."
            )
        else:
            flags = option("keep_float=[...]", "--keep-float LAYER")
            hint = f" Leaving the layers around the node it names in float ({flags}) may avoid it."
        raise UnsupportedModelError(
            f"the exported QDQ model is not a valid ONNX model (onnx.checker: {_short(exc)}). This is a "
            f"quantscope export defect for this network; please report it.{hint}",
            nodes=[(layer, plan.network.layer(layer).op_types[-1]) for layer in layers],
        ) from exc


def save_qdq(plan: QuantPlan, path: str | Path) -> Path:
    """Write :func:`to_qdq` to ``path`` atomically. A :attr:`~quantscope.network.Network.large`
    network's model keeps its weights as external data in ``<path>.data`` beside it
    (one protobuf message holds at most 2 GiB)."""
    folder = plan.network.external_folder
    if folder is None:
        return write_atomic(path, to_qdq(plan).SerializeToString())
    model, involved = _build(plan)  # checked once written, below
    path = Path(path)
    data_name = f"{path.name}.data"
    onnx.external_data_helper.load_external_data_for_model(model, str(folder))
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        onnx.save_model(
            model,
            str(Path(tmp) / path.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=0,
        )
        _check(str(Path(tmp) / path.name), involved, plan)
        replace_atomic(Path(tmp) / data_name, path.parent / data_name)  # the data first, then the model
        replace_atomic(Path(tmp) / path.name, path)
    return path


def save_params(plan: QuantPlan, path: str | Path) -> Path:
    """Write the exponents/scales of every tensor (``plan.to_dict()``) as JSON, atomically."""
    return write_atomic(path, json.dumps(plan.to_dict(), indent=1))
