"""A model with If branches (Silero VAD) is prepared: onnx_ir's Identity elimination
raised on an Identity that is a branch's output ("already an output of a different
graph") as a traceback before any work."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from tinymodels import make_model, tensor

import quantscope as qs


def _if_model():
    n = helper.make_node
    then_branch = helper.make_graph(
        [n("Identity", ["h"], ["then_out"], name="then_identity")],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1, 4])],
    )
    else_branch = helper.make_graph(
        [n("Identity", ["h"], ["else_out"], name="else_identity")],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [1, 4])],
    )
    nodes = [
        n("Relu", ["x"], ["r"], name="relu"),
        n("Identity", ["r"], ["r2"], name="main_identity"),
        n("Mul", ["r2", "r2"], ["h"], name="square"),
        n("ReduceSum", ["x"], ["total"], name="total", keepdims=0),
        n("Greater", ["total", "zero"], ["positive"], name="positive"),
        n("If", ["positive"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch),
    ]
    init = {"zero": np.array(0.0, np.float32)}
    return make_model(nodes, [tensor("x", [1, 4])], [tensor("y", [1, 4])], init, name="with_if")


def test_identities_in_if_branches_do_not_stop_prepare():
    model = _if_model()
    net = qs.prepare(model)
    assert "main_identity" in net.log.dropped
    session = ort.InferenceSession(net.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for x in (np.array([[1.0, -2.0, 3.0, 0.5]], np.float32), np.array([[-1.0, -2.0, 0.5, 0.0]], np.float32)):
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], want.run(None, {"x": x})[0])


def test_an_internal_error_is_one_message_on_the_command_line(monkeypatch, capsys):
    """A defect of quantscope's own (any exception that is not a QuantscopeError) is one
    line with exit status 1, not a traceback; QUANTSCOPE_TRACEBACK=1 shows it."""
    import pytest

    from quantscope import cli

    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "_check_args", broken)
    monkeypatch.delenv("QUANTSCOPE_TRACEBACK", raising=False)
    assert cli.main(["calibrate", "model.onnx", "data.npy"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom." in err and "second line" not in err and "Traceback" not in err
    monkeypatch.setenv("QUANTSCOPE_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["calibrate", "model.onnx", "data.npy"])
