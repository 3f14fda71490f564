"""The QDQ export of attention: a Softmax (kept in float) whose output two int8 MatMuls
read, in a model below opset 13 (PP-OCRv4's recognizer). Converting it to opset 13
turns each Softmax into Shape, Flatten, Softmax, Reshape, the original output written by
an unnamed Reshape; the export placed its Q/DQ pairs by node name, so the pair went
after every unnamed node and the model failed onnx.checker. (The converter keeps a
Softmax over the last axis as it is when it knows the rank; PP-OCRv4's, of unknown
rank, were all converted.)"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import quantscope as qs
from quantscope.cli import main
from quantscope.errors import UnsupportedModelError
from quantscope.quantize.export import save_qdq, to_qdq

TOKENS, WIDTH = 6, 8


def _attention(opset: int = 12) -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name)

    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="query"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="key"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="value"),
        helper.make_node("Transpose", ["k"], ["kt"], name="key_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        # below opset 13 a Softmax over the coerced 2-D input; not over the last axis, where
        # the converter would keep one Softmax
        helper.make_node("Softmax", ["scores"], ["attn"], name="softmax", axis=1),
        helper.make_node("MatMul", ["attn", "v"], ["mixed"], name="mix"),  # two activations
        helper.make_node("MatMul", ["attn", "wa"], ["proj"], name="attn_proj"),  # a second int8 reader
        helper.make_node("Add", ["mixed", "proj"], ["y"], name="sum"),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", TOKENS, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", TOKENS, WIDTH])],
        [
            weight("wq", (WIDTH, WIDTH)),
            weight("wk", (WIDTH, WIDTH)),
            weight("wv", (WIDTH, WIDTH)),
            weight("wa", (TOKENS, WIDTH)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def _data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, TOKENS, WIDTH)).astype(np.float32)


@pytest.fixture(scope="module", params=[12, 13])
def calibrated(request):
    model = _attention(request.param)
    return model, qs.calibrate(qs.prepare(model), _data(64, 1), progress=False)


def _sqnr(ref: np.ndarray, out: np.ndarray) -> float:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - out) ** 2)))


@pytest.mark.parametrize("target", [qs.FloatScale(reduce_range=True), "fpga"], ids=["cpu", "fpga"])
def test_softmax_read_by_two_int8_matmuls_exports_and_agrees_with_the_emulation(calibrated, target):
    model, cal = calibrated
    qnet = qs.quantize_network(cal, target)
    attn = qnet.plan.network.layer("softmax")
    assert not qnet.plan.is_int(attn)  # float Softmax, its output quantized for the int8 MatMuls
    assert "attn" in qnet.plan.activations
    assert all(qnet.plan.is_int(qnet.plan.network.layer(name)) for name in ("mix", "attn_proj"))

    exported = to_qdq(qnet.plan)
    onnx.checker.check_model(exported, full_check=True)
    quantize_attn = [n for n in exported.graph.node if n.op_type == "QuantizeLinear" and "attn" in n.input[0]]
    assert len(quantize_attn) == 1  # one Q/DQ pair for the Softmax output, however many read it
    readers = [n.name for n in exported.graph.node if "attn" in n.input]
    assert {"mix", "attn_proj"} <= set(readers)

    x = _data(32, 2)
    out = ort.InferenceSession(exported.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    emulated = qnet.predict(x)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # the export computes what the emulation does (for the FPGA scheme approximately:
    # onnxruntime rounds ties to even and requantizes in float32)
    assert _sqnr(emulated, out) > (30 if isinstance(target, qs.FloatScale) else 20)
    validated = qs.validate(cal, x, target=target, progress=False)  # no labels: SQNR, cosine
    table = validated.metric_results["output_sqnr_db"]
    reported = float(table.loc[table["NetworkImplementation"] == "Quantized", "MetricOutput"].iloc[0])
    assert abs(_sqnr(ref, out) - reported) < 1.0  # what validate reports is what the export does


def test_save_qdq_writes_a_checked_model(calibrated, tmp_path):
    _, cal = calibrated
    path = save_qdq(qs.quantize_network(cal, "fpga").plan, tmp_path / "attention.onnx")
    onnx.checker.check_model(str(path))


def _fail_checker(message):
    """onnx.checker failing on the export's model only (the loader checks the input too)."""
    check = onnx.checker.check_model

    def check_model(model, *args, **kwargs):
        if isinstance(model, onnx.ModelProto) and model.producer_name == "quantscope":
            raise onnx.checker.ValidationError(message)
        return check(model, *args, **kwargs)

    return check_model


def test_a_checker_failure_names_the_layers_and_keep_float(calibrated, monkeypatch):
    _, cal = calibrated
    qnet = qs.quantize_network(cal, "cpu")
    message = (
        "Nodes in a graph must be topologically sorted, however input 'attn_prequant' of node: "
        "name: attn_QuantizeLinear OpType: QuantizeLinear is not output of any previous nodes."
    )
    monkeypatch.setattr(onnx.checker, "check_model", _fail_checker(message))
    with pytest.raises(UnsupportedModelError) as info:
        to_qdq(qnet.plan)
    text = str(info.value)
    assert "onnx.checker" in text and "attn_prequant" in text
    assert "keep_float=['attn_proj', 'mix']" in text  # the int8 layers that read the quantized Softmax output
    assert {name for name, _ in info.value.nodes} == {"attn_proj", "mix"}


def test_a_checker_failure_naming_nothing_known_still_is_a_quantscope_error(calibrated, monkeypatch):
    _, cal = calibrated
    qnet = qs.quantize_network(cal, "fpga")
    monkeypatch.setattr(onnx.checker, "check_model", _fail_checker("something unexpected"))
    with pytest.raises(UnsupportedModelError, match="keep_float"):
        to_qdq(qnet.plan)


def test_the_command_line_reports_a_checker_failure_with_exit_2(calibrated, monkeypatch, tmp_path, capsys):
    model, cal = calibrated
    onnx.save(model, tmp_path / "attention.onnx")
    cal.save(tmp_path / "ranges.json")
    monkeypatch.setattr(
        onnx.checker, "check_model", _fail_checker("input 'attn_prequant' of node is not output of any previous nodes")
    )
    argv = ["quantize", str(tmp_path / "attention.onnx"), "--ranges", str(tmp_path / "ranges.json")]
    status = main([*argv, "-o", str(tmp_path / "q.onnx"), "--target", "cpu", "--reduce-range"])
    err = " ".join(capsys.readouterr().err.split())
    assert status == 2
    assert "error:" in err and "Traceback" not in err
    assert "--keep-float attn_proj --keep-float mix" in err
    assert not (tmp_path / "q.onnx").exists()
