"""Any model onnxruntime runs: float segments for operators without an int8 kernel,
shapes and masks computed at run time, integer and several inputs, transformer
encoders in int8, already-quantized models refused, metrics for any output."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from tinymodels import encoder_data, make_model, tensor, tiny_encoder

import quantscope as qs
from quantscope.cli import main
from quantscope.simulate.engine import IntTensor, Simulator


@pytest.fixture(scope="module")
def encoder():
    model = tiny_encoder()
    net = qs.prepare(model)
    cal = qs.calibrate(net, encoder_data(64, seed=1), progress=False)
    return model, net, cal


def _float_outputs(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]


@pytest.mark.parametrize("target", ["cpu", "fpga"])
def test_encoder_fast_path_equals_reference_bit_for_bit(encoder, target):
    _, net, cal = encoder
    plan = qs.quantize_network(cal, target).plan
    data = encoder_data(120, seed=2)
    x = qs.network.Inputs(data)
    fast_out, fast_layers = Simulator(plan, kernels="fast").run(x, collect=True)
    ref_out, ref_layers = Simulator(plan, kernels="reference").run(x, collect=True)
    np.testing.assert_array_equal(fast_out, ref_out)
    compared = 0
    for name, ref in ref_layers.items():
        fast = fast_layers[name]
        if isinstance(ref, IntTensor):
            assert isinstance(fast, IntTensor) and fast.qp.same_as(ref.qp), name
            np.testing.assert_array_equal(fast.q, ref.q, err_msg=name)
            compared += 1
        else:
            np.testing.assert_array_equal(fast, ref, err_msg=name)
    assert compared >= 15  # embeddings, projections, attention products... in integers


def test_encoder_in_int8_on_the_cpu_target(encoder):
    model, net, cal = encoder
    data = encoder_data(100, seed=3)
    res = qs.validate(cal, data, target="cpu", progress=False)
    assert set(res.metric_results) == {"top1_agreement", "cosine_similarity", "output_sqnr_db"}
    cos = res.metric_results["cosine_similarity"]
    assert cos["MetricOutput"].tolist()[0] == 1.0 and cos["MetricOutput"].tolist()[1] >= 0.99
    precision = dict(zip(res.layer_errors["Layer"], res.layer_errors["Precision"]))
    # the attention products, the projections and the embedding tables are int8 ...
    for name in ("attn.scores", "attn.context", "attn.q_attn.q.bias", "embeddings.word", "embeddings.position"):
        assert precision[name] == "int8", name
    assert res.plan.weights["embeddings.word"][0].dtype == np.int8
    # ... the mask arithmetic, LayerNorm, Softmax and GELU stay float, with the reason
    for name in ("attn.mask", "attn.softmax", "embeddings.norm", "gelu.erf", "mask.cast"):
        assert precision[name] == "float", name
    assert "attention mask" in res.plan.float_layers["attn.mask"]
    # integer inputs pass exactly
    assert "input_ids" not in res.plan.activations and "passed on exactly" in res.plan.float_layers["input_ids"]
    # the emulation's int8 output is close to onnxruntime's float output
    ours = res.int8_scores
    theirs = _float_outputs(model, data)
    cosine = np.sum(ours * theirs, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert float(cosine.mean()) >= 0.99


def test_every_layer_in_float_gives_onnxruntimes_outputs(encoder):
    model, net, cal = encoder
    data = encoder_data(40, seed=4)
    keep = [layer.name for layer in net.layers if layer.kind != "input"]
    res = qs.validate(cal, data, target="cpu", keep_float=keep, progress=False)
    assert res.metric_results["output_sqnr_db"]["MetricOutput"].iloc[1] > 100
    np.testing.assert_allclose(res.int8_scores, _float_outputs(model, data), rtol=1e-6, atol=1e-6)


def test_shapes_computed_at_run_time_hold_for_any_batch_and_sequence(encoder):
    _, net, cal = encoder
    plan = qs.quantize_network(cal, "fpga").plan
    sim = Simulator(plan)
    data = encoder_data(9, seq=7, seed=5)  # another sequence length than calibrated
    whole = sim.run(qs.network.Inputs(data))[0]
    one_by_one = np.concatenate([sim.run(qs.network.Inputs(data)[i : i + 1])[0] for i in range(9)])
    np.testing.assert_array_equal(whole, one_by_one)


def test_encoder_qdq_export_runs_on_onnxruntime(encoder):
    model, _, cal = encoder
    qnet = qs.quantize_network(cal, qs.FloatScale(reduce_range=True))
    data = encoder_data(32, seed=6)
    proto = qnet.to_onnx()  # 7-bit weights: no saturation warning on any CPU
    ran = ort.InferenceSession(proto.SerializeToString()).run(None, data)[0]
    emulated = qnet.predict(data)
    cos = np.sum(ran * emulated, axis=1) / np.linalg.norm(ran, axis=1) / np.linalg.norm(emulated, axis=1)
    assert float(cos.min()) > 0.99
    kinds = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds


def test_data_forms_of_a_network_with_several_inputs(encoder, tmp_path):
    _, net, cal = encoder
    data = encoder_data(16, seed=7)
    np.savez(tmp_path / "enc.npz", **data)
    from_file = qs.calibrate(net, tmp_path / "enc.npz", progress=False).table
    from_dict = qs.calibrate(net, data, progress=False).table
    batches = [{k: v[i : i + 5] for k, v in data.items()} for i in range(0, 16, 5)]
    from_batches = qs.calibrate(net, batches, progress=False).table
    assert from_file.equals(from_dict) and from_dict.equals(from_batches)
    with pytest.raises(qs.CalibrationDataError, match="takes integers"):
        qs.calibrate(net, {"input_ids": data["input_ids"] + 0.5, "attention_mask": data["attention_mask"]})


def test_the_command_line_on_a_two_input_encoder(tmp_path, capsys):
    model = tiny_encoder()
    onnx.save(model, tmp_path / "enc.onnx")
    np.savez(tmp_path / "cal.npz", **encoder_data(32, seed=8))
    np.savez(tmp_path / "val.npz", **encoder_data(24, seed=9))
    out = tmp_path / "result.json"
    code = main(
        [
            "validate",
            str(tmp_path / "enc.onnx"),
            "--calibration",
            str(tmp_path / "cal.npz"),
            "--validation",
            str(tmp_path / "val.npz"),
            "--target",
            "cpu",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "cosine_similarity" in printed and "output_sqnr_db" in printed
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["cosine_similarity"][0]["MetricOutput"] == 1.0
    assert metrics["output_sqnr_db"][0]["MetricOutput"] is None  # inf: equal to itself
    assert metrics["output_sqnr_db"][1]["MetricOutput"] > 20
    assert main(["quantize", str(tmp_path / "enc.onnx"), "--calibration", str(tmp_path / "cal.npz"), "--target",
                 "cpu", "-o", str(tmp_path / "enc.int8.onnx"), "--quiet"]) == 0  # fmt: skip
    ort.InferenceSession(str(tmp_path / "enc.int8.onnx")).run(None, encoder_data(3, seed=10))


def test_unlabelled_metrics_fit_the_output():
    """A 3-D output gets no top-1 agreement, only the cosine and the SQNR."""
    w = (np.random.default_rng(0).standard_normal((4, 6)) * 0.5).astype(np.float32)
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")],
        [tensor("x", ["N", 5, 4])],
        [tensor("y", ["N", 5, 6])],
        {"w": w},
    )
    x = np.random.default_rng(1).standard_normal((20, 5, 4)).astype(np.float32)
    cal = qs.calibrate(model, x, progress=False)
    res = qs.validate(cal, x, target="cpu", progress=False)
    assert set(res.metric_results) == {"cosine_similarity", "output_sqnr_db"}
    sqnr = res.metric_results["output_sqnr_db"]["MetricOutput"].iloc[1]
    expected = 10 * np.log10(np.sum(res.float_scores**2) / np.sum((res.float_scores - res.int8_scores) ** 2))
    assert sqnr == pytest.approx(expected)


def _qdq_model() -> onnx.ModelProto:
    from tinymodels import images, small_cnn

    cal = qs.calibrate(small_cnn(), images(8), progress=False)
    return qs.quantize_network(cal, qs.FloatScale(reduce_range=True)).to_onnx()


def test_an_already_quantized_model_is_refused_by_name(tmp_path, capsys):
    proto = _qdq_model()
    count = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)
    with pytest.raises(qs.UnsupportedModelError, match=f"already quantized: {count} of its nodes"):
        qs.prepare(proto)
    onnx.save(proto, tmp_path / "q.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 8, 8), np.float32))
    assert main(["calibrate", str(tmp_path / "q.onnx"), str(tmp_path / "x.npy"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already quantized" in err and "float model" in err and "Traceback" not in err


def test_dynamic_quantization_operators_are_refused_too():
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dq"),
        helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["y"], name="mmi"),
    ]
    model = make_model(
        nodes, [tensor("x", ["N", 4])], [tensor("y", ["N", 2], TensorProto.INT32)], {"w": np.ones((4, 2), np.uint8)}
    )
    with pytest.raises(qs.UnsupportedModelError, match="DynamicQuantizeLinear, MatMulInteger"):
        qs.prepare(model)


def test_control_flow_runs_in_float():
    """An If whose branches read a value of the outer graph runs through onnxruntime."""
    then_graph = helper.make_graph(
        [helper.make_node("Relu", ["c"], ["t"], name="then_relu")], "then", [], [tensor("t", ["N", 4])]
    )
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["c"], ["e"], name="else_neg")], "else", [], [tensor("e", ["N", 4])]
    )
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["c"], name="fc"),
        helper.make_node("ReduceSum", ["x"], ["s"], name="total", keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"], name="positive"),
        helper.make_node("If", ["cond"], ["branch"], name="choose", then_branch=then_graph, else_branch=else_graph),
        helper.make_node("Gemm", ["branch", "w2"], ["y"], name="fc2"),
    ]
    model = make_model(
        nodes,
        [tensor("x", ["N", 3])],
        [tensor("y", ["N", 2])],
        {"w": w, "w2": np.ones((4, 2), np.float32), "zero": np.float32(0)},
    )
    x = np.abs(np.random.default_rng(1).standard_normal((10, 3))).astype(np.float32)
    net = qs.prepare(model)
    assert net.layer("choose").kind == "If"
    cal = qs.calibrate(net, x, progress=False)
    keep = [layer.name for layer in net.layers if layer.kind != "input"]
    res = qs.validate(cal, x, target="cpu", keep_float=keep, progress=False)
    np.testing.assert_allclose(res.int8_scores, _float_outputs(model, {"x": x}), rtol=1e-6)
    assert qs.validate(cal, x, target="fpga", progress=False).metric_results["cosine_similarity"].iloc[1, 1] > 0.99


# ------------------------------------------------------------------ the one op table

_SRC = Path(qs.__file__).parent


def _op_lists_outside_the_table() -> list[str]:
    """Literal sets/tuples/lists of two or more ONNX operator names in the package,
    outside ops.py."""
    found = []
    for path in sorted(_SRC.rglob("*.py")):
        if path == _SRC / "ops.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                ops = [n for n in names if n[:1].isupper() and onnx.defs.has(n)]
                if len(ops) >= 2 and len(ops) == len(node.elts):
                    found.append(f"{path.relative_to(_SRC)}:{node.lineno} {ops}")
    return found


def test_operator_lists_live_only_in_the_op_table():
    assert _op_lists_outside_the_table() == []


def test_the_op_list_check_can_fail():
    """The check above finds a list planted outside the table."""
    planted = _SRC / "network" / "_planted_for_test.py"
    planted.write_text('_KINDS = ("Relu", "Clip")\n')
    try:
        assert any("_planted_for_test.py" in hit for hit in _op_lists_outside_the_table())
    finally:
        planted.unlink()


def _paddle_style_cnn() -> onnx.ModelProto:
    """A CNN whose classifier flattens with a shape computed as Paddle2ONNX writes it
    (Shape -> Slice -> Concat with -1): prepare cannot fold it to a constant."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["s"], name="shape"),
        helper.make_node("Slice", ["s", "start", "stop"], ["n"], name="batch"),
        helper.make_node("Concat", ["n", "minus_one"], ["flat_shape"], name="flat_shape", axis=0),
        helper.make_node("Reshape", ["p", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    init = {
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "start": np.array([0], np.int64),
        "stop": np.array([1], np.int64),
        "minus_one": np.array([-1], np.int64),
        "fw": (rng.standard_normal((5, 4 * 4 * 4)) * 0.2).astype(np.float32),
        "fb": np.zeros(5, np.float32),
    }
    return make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 5])], init)


def test_a_computed_flatten_runs_and_compiles_for_the_fpga():
    from quantscope import fpga

    model = _paddle_style_cnn()
    net = qs.prepare(model)
    assert net.value_shape("f") is None or None in net.value_shape("f")[1:]  # not folded: computed at run time
    x = np.random.default_rng(1).standard_normal((20, 3, 8, 8)).astype(np.float32)
    cal = qs.calibrate(net, x, progress=False)
    res = qs.validate(cal, x, target="fpga", progress=False)
    assert res.plan.is_int(net.layer("flatten")) and res.top1_agreement >= 0.9
    compiled = fpga.compile_network(net, "zcu102_int8")
    assert {p.name: p.placement for p in compiled.layers}["fc"] == "HW Layer"


# ------------------------------------------------------------------ found on models the tool was not tuned on


def _masked_scores(fill: float):
    """Scores, masked_fill(mask, fill) by a Where, Softmax and a MatMul, with its data."""
    w = (np.random.default_rng(0).standard_normal((4, 4)) * 0.5).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["s"], name="scores"),
        helper.make_node("Cast", ["mask"], ["m"], name="to_bool", to=TensorProto.BOOL),
        helper.make_node("Where", ["m", "s", "fill_value"], ["masked"], name="fill"),
        helper.make_node("Softmax", ["masked"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "w"], ["y"], name="mix"),
    ]
    model = make_model(
        nodes,
        [tensor("x", ["N", 4]), tensor("mask", ["N", 4], TensorProto.INT64)],
        [tensor("y", ["N", 4])],
        {"w": w, "fill_value": np.array(fill, np.float32)},
    )
    rng = np.random.default_rng(1)
    data = {"x": rng.standard_normal((20, 4)).astype(np.float32), "mask": (rng.random((20, 4)) > 0.3).astype(np.int64)}
    data["mask"][:, 0] = 1
    return model, data


def test_a_mask_filled_with_minus_infinity_stays_float():
    """masked_fill(mask, -inf) before a Softmax (GPT-2, RoBERTa and ALBERT TorchScript
    exports): -inf is no error; that layer keeps float and the rest quantizes."""
    model, data = _masked_scores(-np.inf)
    cal = qs.calibrate(model, data, progress=False)
    assert cal.stats("fill").min == -np.inf
    res = qs.validate(cal, data, target="cpu", progress=False)
    assert "not finite" in res.plan.float_layers["fill"]
    assert res.metric_results["cosine_similarity"]["MetricOutput"].iloc[1] > 0.99
    assert np.isfinite(res.layer_errors.set_index("Layer").loc["fill", "SQNR(dB)"])


def test_a_mask_filled_with_the_float_minimum_has_no_sqnr_and_an_embedding_has_a_drop(encoder):
    """GPT-2's dynamo export fills masked scores with finfo(float32).min: that tensor's
    signal is the fill's (an SQNR of 830 dB, then a drop of -800 dB at the Softmax), so
    it has no SQNR and the layers computed from it alone no drop; an embedding, which
    reads token ids (exact), has the drop of its own table's quantization."""
    model, data = _masked_scores(np.finfo(np.float32).min)
    res = qs.validate(qs.calibrate(model, data, progress=False), data, target="cpu", progress=False)
    table = res.layer_errors.set_index("Layer")
    assert np.isnan(table.loc["fill", "SQNR(dB)"]) and np.isnan(table.loc["fill", "SQNRDrop(dB)"])
    assert np.isnan(table.loc["softmax", "SQNRDrop(dB)"])
    assert np.isfinite(table.loc["scores", "SQNR(dB)"]) and np.isfinite(table.loc["mix", "SQNRDrop(dB)"])
    assert table["SQNRDrop(dB)"].dropna().abs().max() < 60
    _, net, cal = encoder
    res = qs.validate(cal, encoder_data(20, seed=3), target="cpu", progress=False)
    drop = res.layer_errors.set_index("Layer").loc["embeddings.word", "SQNRDrop(dB)"]
    assert np.isfinite(drop) and drop > 0


def test_an_integer_first_output_and_float16_tensors():
    """An ArgMax (int64) first output: validation judges the first floating-point output
    (the scores it is computed from); float16 tensors inside the network run too."""
    w = (np.random.default_rng(0).standard_normal((6, 5)) * 0.5).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
        helper.make_node("Cast", ["h"], ["h16"], name="half", to=TensorProto.FLOAT16),
        helper.make_node("Relu", ["h16"], ["r16"], name="relu16"),
        helper.make_node("Cast", ["r16"], ["r"], name="single", to=TensorProto.FLOAT),
        helper.make_node("ArgMax", ["r"], ["cls"], name="argmax", axis=1, keepdims=0),
    ]
    model = make_model(
        nodes, [tensor("x", ["N", 6])], [tensor("cls", ["N"], TensorProto.INT64), tensor("r", ["N", 5])], {"w": w}
    )
    x = np.random.default_rng(2).standard_normal((30, 6)).astype(np.float32)
    cal = qs.calibrate(model, x, progress=False)
    res = qs.validate(cal, x, target="cpu", progress=False)
    assert res.plan.network.judged_output == "r"
    assert res.float_scores.dtype.kind == "f" and res.float_scores.shape == (30, 5)
    assert res.metric_results["cosine_similarity"]["MetricOutput"].iloc[1] > 0.9
    # the QDQ export quantizes the float16 tensors through float32 Casts, and runs
    proto = qs.quantize_network(cal, qs.FloatScale(reduce_range=True)).to_onnx()
    ran = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})
    assert (ran[0] == res.float_scores.argmax(axis=1)).mean() > 0.9


def test_a_resize_whose_sizes_come_from_another_segment():
    """Resize to a size computed from the input's shape (a segmentation head upsampling
    to the input size): the float segment gets the fixed sizes inference knows."""
    w = (np.random.default_rng(0).standard_normal((2, 3, 3, 3)) * 0.3).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["xs"], name="in_shape"),
        helper.make_node("Slice", ["xs", "two", "four"], ["hw"], name="in_hw"),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["rs"], name="r_shape"),
        helper.make_node("Slice", ["rs", "zero", "two"], ["nc"], name="r_nc"),
        helper.make_node("Concat", ["nc", "hw"], ["sizes"], name="sizes", axis=0),
        helper.make_node("Resize", ["r", "", "", "sizes"], ["y"], name="upsample", mode="nearest"),
    ]
    init = {"w": w, "zero": np.array([0]), "two": np.array([2]), "four": np.array([4])}
    model = make_model(nodes, [tensor("x", ["N", 3, "H", "W"])], [tensor("y", ["N", 2, "H", "W"])], init)
    x = np.random.default_rng(3).standard_normal((8, 3, 12, 16)).astype(np.float32)
    cal = qs.calibrate(model, x, progress=False)
    for target in ("cpu", "fpga"):
        res = qs.validate(cal, x, target=target, progress=False)
        assert res.int8_scores.shape == (8, 2, 12, 16)


def test_the_qdq_export_keeps_what_a_branch_reads():
    """A weight read only inside an If branch stays in the exported model."""
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    then_graph = helper.make_graph(
        [helper.make_node("MatMul", ["c", "inner"], ["t"], name="then_mm")], "then", [], [tensor("t", ["N", 4])]
    )
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["c"], ["e"], name="neg")], "else", [], [tensor("e", ["N", 4])]
    )
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["c"], name="fc"),
        helper.make_node("ReduceSum", ["x"], ["s"], name="total", keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"], name="positive"),
        helper.make_node("If", ["cond"], ["y"], name="choose", then_branch=then_graph, else_branch=else_graph),
    ]
    init = {"w": w, "inner": np.eye(4, dtype=np.float32), "zero": np.float32(0)}
    model = make_model(nodes, [tensor("x", ["N", 3])], [tensor("y", ["N", 4])], init)
    x = np.abs(np.random.default_rng(1).standard_normal((10, 3))).astype(np.float32)
    qnet = qs.quantize_network(qs.calibrate(model, x, progress=False), qs.FloatScale(reduce_range=True))
    ran = ort.InferenceSession(qnet.to_onnx().SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(ran, qnet.predict(x), atol=0.05)


def test_layers_after_a_contrib_operator_are_typed_by_onnxruntime_and_quantized():
    """ONNX's inference cannot type com.microsoft operators' outputs (nor anything after
    them); onnxruntime can, so the plain MatMul after them is still an int8 layer."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("FusedMatMul", ["x", "w1"], ["h"], name="fused", domain="com.microsoft", alpha=1.0),
        helper.make_node("Gelu", ["h"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("MatMul", ["g", "w2"], ["y"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes,
        "contrib",
        [tensor("x", ["N", 6])],
        [tensor("y", ["N", 4])],
        [
            onnx.numpy_helper.from_array((rng.standard_normal((6, 8)) * 0.4).astype(np.float32), "w1"),
            onnx.numpy_helper.from_array((rng.standard_normal((8, 4)) * 0.4).astype(np.float32), "w2"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    x = rng.standard_normal((32, 6)).astype(np.float32)
    cal = qs.calibrate(model, x, progress=False)
    assert "proj_Weights" in set(cal.table["Optimized Layer Name"])
    res = qs.validate(cal, x, target="cpu", progress=False)
    assert "proj" in res.plan.weights and res.plan.is_int(res.plan.network.layer("proj"))
    assert res.metric_results["cosine_similarity"]["MetricOutput"].iloc[1] > 0.99


def test_token_ids_outside_the_vocabulary_get_a_message(encoder, tmp_path, capsys):
    model, _, _ = encoder
    onnx.save(model, tmp_path / "enc.onnx")
    bad = encoder_data(4, seed=11)
    bad["input_ids"][0, 0] = 5000  # the vocabulary has 50 ids
    np.savez(tmp_path / "bad.npz", **bad)
    assert main(["calibrate", str(tmp_path / "enc.onnx"), str(tmp_path / "bad.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime failed running the model on this data" in err and "Traceback" not in err


def _time_major_gemm(output_shape: list | None) -> onnx.ModelProto:
    """(N, C, T) -> Transpose (T, N, C) -> Reshape (T*N, C) -> Gemm -> Relu: a value whose
    first axis is time steps x batch, not the batch (an RNN-style head); the graph
    output declared with ``output_shape`` (None: no shape at all)."""
    w = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["r"]),
        helper.make_node("Gemm", ["r", "W", "b"], ["g"]),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "time_major",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [
            onnx.numpy_helper.from_array(w, "W"),
            onnx.numpy_helper.from_array(np.zeros(5, np.float32), "b"),
            onnx.numpy_helper.from_array(np.array([-1, 8], np.int64), "shape"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("output_shape", [None, ["TN", 5]])
def test_time_major_values_and_outputs_without_shape(tmp_path, capsys, output_shape):
    """An output declared without a shape (onnxruntime runs it; the checker alone
    refused it) loads, and a value whose first axis is time x batch calibrates and
    validates (the reused output buffers assumed the batch first: onnxruntime refused
    the run, blamed on the data)."""
    model = _time_major_gemm(output_shape)
    path = tmp_path / "tm.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal((20, 8, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cal = qs.calibrate(str(path), x, batch_size=7, progress=False)
    assert cal.stats("Gemm_1_Relu_1").max == pytest.approx(float(_float_outputs(model, {"x": x}).max()))
    qnet = qs.quantize_network(cal, "cpu")
    y = qnet.predict(x)
    assert y.shape == (120, 5)
    ref = _float_outputs(model, {"x": x})
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()  # int8: within a few steps of float
    argv = ["validate", str(path), "--calibration", str(tmp_path / "x.npy"), "--validation", str(tmp_path / "x.npy")]
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err


def test_values_whose_first_axis_is_batch_times_heads_validate():
    """The dynamo exporter reshapes attention to (batch x heads, S, D), a first axis whose
    symbol ("4*N") is not the batch's: the float network's reused output buffers, sized
    by the batch, do not fit it, and validation runs those outputs unbound."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((8, 8)) * 0.5).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
        helper.make_node("Reshape", ["h", "heads"], ["bh"], name="split_heads"),
        helper.make_node("Softmax", ["bh"], ["p"], name="softmax", axis=-1),
        helper.make_node("Reshape", ["p", "back"], ["merged"], name="merge_heads"),
        helper.make_node("MatMul", ["merged", "w"], ["y"], name="out"),
    ]
    init = {"w": w, "heads": np.array([-1, 5, 4], np.int64), "back": np.array([-1, 5, 8], np.int64)}
    model = make_model(nodes, [tensor("x", ["N", 5, 8])], [tensor("y", ["N", 5, 8])], init)
    model.graph.value_info.append(tensor("bh", ["2*N", 5, 4]))
    model.graph.value_info.append(tensor("p", ["2*N", 5, 4]))
    x = rng.standard_normal((12, 5, 8)).astype(np.float32)
    cal = qs.calibrate(model, x[:6], progress=False)
    res = qs.validate(cal, x[6:], target="cpu", progress=False, batch_size=3)
    assert res.num_samples == 6 and res.metric_results["cosine_similarity"]["MetricOutput"].iloc[1] > 0.99


def test_an_infinity_in_position_arithmetic_is_no_overflow():
    """T5's relative-position buckets take log(0) = -inf by design, computed from the
    sequence's positions alone (Shape, Range) and cast to integer indices after a Where:
    calibration keeps it (that layer stays in float); in data it would be an overflow."""
    rng = np.random.default_rng(0)
    s = 6
    init = {
        "w": (rng.standard_normal((s, s)) * 0.5).astype(np.float32),
        "table": rng.standard_normal(16).astype(np.float32),
        "zero": np.array(0, np.int64),
        "one": np.array(1, np.int64),
        "axis1": np.array([1], np.int64),
        "two": np.array(2.0, np.float32),
        "top": np.array(15, np.int64),
    }
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shape"], name="shape"),
        n("Gather", ["shape", "one"], ["length"], name="length", axis=0),
        n("Range", ["zero", "length", "one"], ["positions"], name="positions"),
        n("Cast", ["positions"], ["positions_f"], name="to_float", to=TensorProto.FLOAT),
        n("Log", ["positions_f"], ["log_positions"], name="log_positions"),
        n("Mul", ["log_positions", "two"], ["scaled"], name="scaled"),
        n("Cast", ["scaled"], ["buckets"], name="to_int", to=TensorProto.INT64),
        n("Less", ["positions", "one"], ["first"], name="first"),
        n("Where", ["first", "positions", "buckets"], ["index"], name="choose"),
        n("Clip", ["index", "zero", "top"], ["clipped"], name="clip"),
        n("Gather", ["table", "clipped"], ["bias"], name="bias", axis=0),
        n("MatMul", ["x", "w"], ["h"], name="proj"),
        n("Add", ["h", "bias"], ["y"], name="add_bias"),
    ]
    model = make_model(nodes, [tensor("x", ["N", s])], [tensor("y", ["N", s])], init)
    x = rng.standard_normal((16, s)).astype(np.float32)
    cal = qs.calibrate(model, x[:8], progress=False)
    assert cal.stats("log_positions").min == -np.inf
    res = qs.validate(cal, x[8:], target="cpu", progress=False)
    assert "log_positions" in res.plan.float_layers
    assert res.metric_results["cosine_similarity"]["MetricOutput"].iloc[1] > 0.95


def test_inputs_that_share_a_named_axis_must_agree_on_it(encoder):
    """input_ids and attention_mask both (N, S): a mask of another length is refused by
    name, not left to onnxruntime's broadcast error deep inside the attention."""
    _, net, cal = encoder
    data = encoder_data(4, seq=10, seed=2)
    data["attention_mask"] = data["attention_mask"][:, :7]
    with pytest.raises(qs.CalibrationDataError, match=r"share axis 'S'.*10 in 'input_ids'.*7 in 'attention_mask'"):
        qs.calibrate(net, data, progress=False)
    with pytest.raises(qs.CalibrationDataError, match="share axis 'S'"):
        qs.validate(cal, data, target="cpu", progress=False)
