"""Loading: good models load, bad ones get clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from tinymodels import make_model, small_cnn, tensor

import quantscope as qs


def test_load_file_and_modelproto(tmp_path):
    model = small_cnn()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    a = qs.prepare(path)
    b = qs.prepare(model)
    assert [x.name for x in a.layers] == [x.name for x in b.layers]


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a network\n" * 20)
    with pytest.raises(qs.ModelLoadError, match="notes.onnx"):
        qs.prepare(path)


def test_missing_and_empty(tmp_path):
    with pytest.raises(qs.ModelLoadError, match="no such file"):
        qs.prepare(tmp_path / "nothere.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(qs.ModelLoadError, match="empty"):
        qs.prepare(tmp_path / "empty.onnx")


def test_truncated_model(tmp_path):
    data = small_cnn().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(qs.ModelLoadError, match="cut.onnx"):
        qs.prepare(path)


def _custom_op_model():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok_relu"),
        helper.make_node("Hardmax", ["a"], ["b"], name="nms_1"),
        helper.make_node("Relu", ["x"], ["c"], name="ok2"),
        helper.make_node("MyCustomOp", ["c"], ["d"], name="custom_7", domain="com.example"),
    ]
    graph = helper.make_graph(nodes, "g", [tensor("x", ["N", 4])], [tensor("b", ["N", 4]), tensor("d", ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    return model


def test_an_operator_onnxruntime_cannot_run_gets_its_reason_with_the_node():
    """No allow-list: Hardmax (no int8 kernel) is fine; a custom operator that
    onnxruntime has no kernel for is refused with onnxruntime's reason, naming the node."""
    net = qs.prepare(_custom_op_model())
    assert {layer.kind for layer in net.layers} >= {"Hardmax", "MyCustomOp"}
    with pytest.raises(qs.UnsupportedModelError) as info:
        qs.calibrate(net, np.ones((4, 4), np.float32), progress=False)
    msg = str(info.value)
    assert "custom_7 (MyCustomOp)" in msg and "not a registered function/op" in msg
    assert info.value.nodes == [("custom_7", "MyCustomOp")]


def _with_external_weights(tmp_path, location: str) -> onnx.ModelProto:
    w = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    model = make_model(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")],
        [tensor("x", ["N", 64])],
        [tensor("y", ["N", 64])],
        {"w": w},
    )
    tensor_proto = model.graph.initializer[0]
    (tmp_path / "weights.bin").write_bytes(w.tobytes())
    tensor_proto.ClearField("raw_data")
    tensor_proto.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(w.nbytes))):
        entry = tensor_proto.external_data.add()
        entry.key, entry.value = key, value
    return model


def test_external_data_inside_folder_loads(tmp_path):
    model = _with_external_weights(tmp_path, "weights.bin")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    net = qs.prepare(path)
    np.testing.assert_array_equal(net.constant("w"), np.arange(64 * 64, dtype=np.float32).reshape(64, 64))


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "sub/../../weights.bin"])
def test_external_data_outside_folder_refused(tmp_path, location):
    sub = tmp_path / "model_dir"
    sub.mkdir()
    model = _with_external_weights(tmp_path, location)
    path = sub / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(qs.ModelLoadError, match="outside the model's folder"):
        qs.prepare(path)


def test_wrong_type_of_source():
    with pytest.raises(qs.ModelLoadError, match="cannot load"):
        qs.prepare(12345)


def test_two_inputs_take_a_mapping_keyed_by_input_name():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    model = make_model(nodes, [tensor("a", ["N", 2]), tensor("b", ["N", 2])], [tensor("y", ["N", 2])], {})
    net = qs.prepare(model)
    assert net.input_names == ["a", "b"] and [layer.kind for layer in net.input_layers] == ["input", "input"]
    a = np.arange(8, dtype=np.float32).reshape(4, 2)
    cal = qs.calibrate(net, {"a": a, "b": -2 * a}, progress=False)
    assert cal.stats("add").min == -7.0 and cal.stats("add").max == 0.0  # a + b = -a
    with pytest.raises(qs.CalibrationDataError, match="lacks b"):
        qs.calibrate(net, {"a": a}, progress=False)
    with pytest.raises(qs.CalibrationDataError, match=r"input 'b' is given as an array of shape \(\d+, 5\) \(samples"):
        qs.calibrate(net, {"a": a, "b": np.zeros((len(a), 5), np.float32)}, progress=False)
    with pytest.raises(qs.CalibrationDataError, match="has unknown key\\(s\\) c"):
        qs.calibrate(net, {"a": a, "b": a, "c": a}, progress=False)


def test_torch_module_export():
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3)
    )
    net = qs.prepare(module, example_input=torch.zeros(1, 1, 6, 6))
    kinds = [layer.kind for layer in net.layers]
    assert kinds[:2] == ["input", "conv"] and kinds[-1] == "fc"
    assert net.input_shape == (None, 1, 6, 6)
    with pytest.raises(qs.ModelLoadError, match="example_input"):
        qs.prepare(module)


def test_torch_module_with_several_inputs():
    """A tuple (positional) or dict (keyword) example_input exports every input, integer
    token ids kept integer; it raised numpy's and torch's own errors before."""
    torch = pytest.importorskip("torch")

    class Bag(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(50, 8)
            self.fc = torch.nn.Linear(8, 3)

        def forward(self, ids, mask):
            return self.fc((self.embed(ids) * mask.unsqueeze(-1)).mean(1))

    torch.manual_seed(0)
    module = Bag().eval()
    ids, mask = np.random.default_rng(0).integers(0, 50, (4, 6)), np.ones((4, 6), np.int64)
    mask[:, 4:] = 0
    want = module(torch.as_tensor(ids), torch.as_tensor(mask)).detach().numpy()
    for example, names in (
        ((ids[:1], mask[:1]), ["input_0", "input_1"]),
        ({"ids": ids[:1], "mask": mask[:1]}, ["ids", "mask"]),
    ):
        net = qs.prepare(module, example_input=example)
        assert net.input_names == names
        import onnxruntime as ort

        session = ort.InferenceSession(net.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, dict(zip(names, (ids, mask))))[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(qs.ModelLoadError, match="example_input 'mask': expected a tensor"):
        qs.prepare(module, example_input={"ids": ids, "mask": {"not": "a tensor"}})


def test_ir3_model_with_initializers_as_inputs_prepares_and_exports():
    """IR 3 (opset 7/8 era) lists initializers as graph inputs; BatchNormalization folding
    adds new initializers, so prepare moves the model to IR 4 and the QDQ export loads."""
    import onnxruntime as ort
    from tinymodels import images, small_cnn

    model = small_cnn(seed=1, with_bn=True)
    inits = [i for i in model.graph.initializer]
    for t in inits:
        model.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    model.ir_version = 3
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 8))
    # Softmax/Gemm/Concat exist at opset 8; MatMul+Add too
    onnx.checker.check_model(model)
    net = qs.prepare(model)
    assert [i.name for i in net.to_proto().graph.input] == ["imageinput"]
    x = images(10, seed=2)
    cal = qs.calibrate(net, x, progress=False)
    qnet = qs.quantize_network(cal, qs.FloatScale(reduce_range=True))
    out = ort.InferenceSession(qnet.to_onnx().SerializeToString()).run(None, {"imageinput": x})[0]
    assert np.mean(out.argmax(1) == qnet.predict(x).argmax(1)) >= 0.9


def test_a_pytorch_checkpoint_given_as_the_model_is_named(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(qs.ModelLoadError, match="this is a PyTorch checkpoint.*Export the network to ONNX first"):
        qs.prepare(path)


def test_a_large_model_keeps_its_weights_external_and_gives_the_same_results(tmp_path, monkeypatch):
    """A model whose weights exceed what one protobuf message holds is read from its
    file (checker and shape inference by path), and its weights go to onnxruntime as
    external data, never in one message. Shown here with the threshold lowered to 1 kB
    (the code paths are those of a > 2 GiB model): the results equal those of the same
    model held in memory, and the exported QDQ model keeps its weights beside it."""
    from tinymodels import images, small_cnn

    from quantscope.network import storage

    model = small_cnn()
    on_disk = onnx.ModelProto()
    on_disk.CopyFrom(model)  # onnx.save turns the tensors it writes out into references
    onnx.save(on_disk, tmp_path / "m.onnx", save_as_external_data=True, location="m.weights", size_threshold=0)
    x = images(40, seed=4)
    y = np.arange(len(x)) % 3
    small = qs.prepare(model)
    ref_cal = qs.calibrate(small, x, batch_size=16, progress=False)
    ref_val = qs.validate(ref_cal, (x, y), batch_size=16, progress=False)

    monkeypatch.setattr(storage, "LARGE_BYTES", 1000)
    net = qs.prepare(tmp_path / "m.onnx")
    assert net.large and not small.large
    import pickle

    again = pickle.loads(pickle.dumps(net))  # a large network pickles as it is (its weights external)
    assert again.large and again.layers == net.layers and again.fingerprint == net.fingerprint
    cal = qs.calibrate(net, x, batch_size=16, progress=False)
    assert cal.table.equals(ref_cal.table)
    val = qs.validate(cal, (x, y), batch_size=16, progress=False)
    np.testing.assert_array_equal(val.int8_scores, ref_val.int8_scores)
    assert val.layer_errors.equals(ref_val.layer_errors)
    folder = net.external_folder
    assert (folder / "weights.bin").is_file() and net.fingerprint == qs.prepare(tmp_path / "m.onnx").fingerprint

    qnet = qs.quantize_network(cal, "fpga")
    qnet.save(tmp_path / "q.onnx")
    assert (tmp_path / "q.onnx.data").stat().st_size > 0
    assert (tmp_path / "q.onnx.data").stat().st_mode & 0o777 == (tmp_path / "q.json").stat().st_mode & 0o777
    assert onnx.load(tmp_path / "q.onnx", load_external_data=False).graph.initializer[0].data_location == 1
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    ref_q = qs.quantize_network(ref_cal, "fpga")
    ref_q.save(tmp_path / "ref.onnx")
    ref_session = ort.InferenceSession(str(tmp_path / "ref.onnx"), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x[:8]}
    np.testing.assert_array_equal(session.run(None, feed)[0], ref_session.run(None, feed)[0])
    del net, cal, val, qnet
    import gc

    gc.collect()
    assert not folder.exists()  # the private weights go with the network


def test_an_onnx_file_over_2_gb_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as fh:
        fh.truncate(2**31)  # sparse: no disk used
    with pytest.raises(qs.ModelLoadError, match=r"save the model with its weights as external data"):
        qs.prepare(path)
