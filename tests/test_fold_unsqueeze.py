"""Constant folding keeps the rank of scalars: the shape arithmetic of TorchScript
exports (``Shape -> Gather -> Cast/Div/Ceil/Mul`` on 0-D scalars, then
``Unsqueeze(axes=[0]) -> Concat -> Reshape``, as in HF MobileViT and Swin) folds to
constants of exactly the shapes onnxruntime computes."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.passes import FoldConstantsPass, run_prepare_passes

SHAPE = (2, 6, 4, 4)


def _scalar(name: str, value, dtype) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def scalar_shape_model(opset: int = 13) -> onnx.ModelProto:
    """``x.reshape(n, ceil(c / 2), h * w * 2)`` computed from the shape of ``x`` with 0-D
    scalars, the way torch.onnx.export (dynamo=False) writes it."""
    if opset >= 13:
        unsq = [
            helper.make_node("Unsqueeze", [src, "axes0"], [f"{src}_u"], name=f"unsq_{src}")
            for src in ("n", "half", "hw2")
        ]
    else:
        unsq = [
            helper.make_node("Unsqueeze", [src], [f"{src}_u"], name=f"unsq_{src}", axes=[0])
            for src in ("n", "half", "hw2")
        ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i0"], ["n"], name="gather_n", axis=0),
        helper.make_node("Gather", ["s", "i1"], ["c"], name="gather_c", axis=0),
        helper.make_node("Gather", ["s", "i2"], ["h"], name="gather_h", axis=0),
        helper.make_node("Gather", ["s", "i3"], ["w"], name="gather_w", axis=0),
        helper.make_node("Cast", ["c"], ["cf"], name="cast_f", to=TensorProto.FLOAT),
        helper.make_node("Div", ["cf", "two_f"], ["cd"], name="div"),
        helper.make_node("Ceil", ["cd"], ["cc"], name="ceil"),
        helper.make_node("Cast", ["cc"], ["half"], name="cast_i", to=TensorProto.INT64),
        helper.make_node("Mul", ["h", "w"], ["hw"], name="mul_hw"),
        helper.make_node("Mul", ["hw", "two_i"], ["hw2"], name="mul_2"),
        *unsq,
        helper.make_node("Concat", ["n_u", "half_u", "hw2_u"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["y0"], name="reshape"),
        helper.make_node("Relu", ["y0"], ["y"], name="relu_out"),
    ]
    inits = [
        _scalar("i0", 0, np.int64),
        _scalar("i1", 1, np.int64),
        _scalar("i2", 2, np.int64),
        _scalar("i3", 3, np.int64),
        _scalar("two_f", 2.0, np.float32),
        _scalar("two_i", 2, np.int64),
    ]
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0"))
    graph = helper.make_graph(
        nodes,
        "scalar_shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 32])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def _with_all_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every node output exposed as a graph output."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if out and out not in known:
                model.graph.output.append(helper.make_empty_tensor_value_info(out))
                known.add(out)
    return model


def _ort_values(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    full = _with_all_outputs(model)
    sess = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"x": x})))


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_prepared_scalar_shape_arithmetic_matches_onnxruntime(opset):
    model = scalar_shape_model(opset)
    x = _x()
    expected = _ort_values(model, x)["y"]
    net = qs.prepare(model)
    sess = ort.InferenceSession(net.session_model(), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, net.feeds(x))
    assert got.shape == expected.shape == (2, 3, 32)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_folded_constants_have_the_shapes_onnxruntime_computes(opset):
    model = scalar_shape_model(opset)
    reference = _ort_values(model, _x())
    ir_model = ir.from_proto(model)
    fold = FoldConstantsPass()
    fold(ir_model)
    assert {"shape", "gather_c", "cast_i", "unsq_half", "concat"} <= set(fold.folded)
    folded = {v.name: v.const_value.numpy() for v in ir_model.graph.initializers.values() if v.name.endswith("_folded")}
    assert folded
    for name, array in folded.items():
        want = reference[name.removesuffix("_folded")]
        assert array.shape == want.shape, name  # rank included: a 0-D scalar stays 0-D
        assert array.dtype == want.dtype, name
        np.testing.assert_array_equal(array, want, err_msg=name)
    assert folded["half_folded"].shape == ()
    assert folded["half_u_folded"].shape == (1,)
    assert folded["target_folded"].tolist() == [2, 3, 32]


def test_prepare_passes_fold_the_reshape_shape_without_notes(capfd):
    ir_model = ir.from_proto(scalar_shape_model(13))
    log = run_prepare_passes(ir_model)
    assert not log.notes
    reshape = next(n for n in ir_model.graph if n.op_type == "Reshape")
    assert reshape.inputs[1].const_value.numpy().tolist() == [2, 3, 32]
    assert list(ir_model.graph.outputs[0].shape) == [2, 3, 32]
    assert capfd.readouterr().err == ""


def test_failed_shape_inference_is_a_note_not_a_traceback(monkeypatch, capfd):
    """onnx_ir's ShapeInferencePass logs its failure with a traceback (and an unformatted
    ``%s``) and leaves the model unchanged: quantscope keeps it out of stderr and says
    it in the log's notes."""

    def fail(*args, **kwargs):
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] made up\nsecond line")

    model = ir.from_proto(scalar_shape_model(13))
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", fail)
    root = logging.getLogger()
    handlers = root.handlers[:]
    logging.basicConfig(level=logging.WARNING, force=True)  # a user's own logging setup prints too
    try:
        log = run_prepare_passes(model)
    finally:
        root.handlers[:] = handlers
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Shape inference failed" not in err, err
    assert log.notes == [
        "shape inference after the rewrites failed (InferenceError: [ShapeInferenceError] made up); "
        "some shapes stay unknown"
    ]


def test_a_result_of_another_rank_than_the_graph_knows_is_not_folded():
    """The guard for any operator: a value whose known shape disagrees with the evaluated
    result (here a declared 1-D value an evaluation would give as 0-D) stays a node."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["c"], name="add"),
        helper.make_node("Add", ["x", "c"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "mismatch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [_scalar("a", 1.0, np.float32), _scalar("b", 2.0, np.float32)],
        value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],  # wrong: Add of scalars is 0-D
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ir_model = ir.from_proto(model)
    fold = FoldConstantsPass()
    fold(ir_model)
    assert fold.folded == []
    ir_model.graph.node(0).outputs[0].shape = ir.Shape([])  # the true shape: folded
    fold = FoldConstantsPass()
    fold(ir_model)
    assert fold.folded == ["add"]
    assert ir_model.graph.initializers["c_folded"].const_value.numpy().shape == ()
