"""The model and data that ``quantscope demo`` ships (made by scripts/train_demo.py)."""

from __future__ import annotations

import importlib.resources

import numpy as np
import onnx
import onnxruntime as ort
import pytest

# Float top-1 accuracy of firenet.onnx on fashion_mnist_slice.npz measured by
# scripts/train_demo.py (see assets/README.md), less a small margin.
MEASURED_SLICE_ACCURACY = 0.9040
MIN_SLICE_ACCURACY = MEASURED_SLICE_ACCURACY - 0.01

ASSETS = importlib.resources.files("quantscope.demo") / "assets"


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return (ASSETS / "firenet.onnx").read_bytes()


@pytest.fixture(scope="module")
def model(model_bytes: bytes) -> onnx.ModelProto:
    return onnx.load_from_string(model_bytes)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    with (ASSETS / "fashion_mnist_slice.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}


def test_assets_are_shipped_files():
    for name in ("firenet.onnx", "fashion_mnist_slice.npz", "README.md"):
        assert (ASSETS / name).is_file(), name
    assert len((ASSETS / "firenet.onnx").read_bytes()) < 1_000_000
    assert len((ASSETS / "fashion_mnist_slice.npz").read_bytes()) < 1_500_000


def test_model_passes_checker(model: onnx.ModelProto):
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


def _dims(value_info: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_input_and_output(model: onnx.ModelProto):
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    assert [i.name for i in inputs] == ["imageinput"]
    assert inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(inputs[0]) == ["N", 1, 28, 28]
    assert [o.name for o in model.graph.output] == ["prob"]
    assert _dims(model.graph.output[0]) == ["N", 10]


def test_squeezenet_style_node_names(model: onnx.ModelProto):
    ops = {n.name: n.op_type for n in model.graph.node}
    expected = {
        "conv1": "Conv",
        "relu_conv1": "Relu",
        "pool1": "MaxPool",
        "fire2-squeeze1x1": "Conv",
        "fire2-relu_squeeze1x1": "Relu",
        "fire2-expand1x1": "Conv",
        "fire2-relu_expand1x1": "Relu",
        "fire2-expand3x3": "Conv",
        "fire2-relu_expand3x3": "Relu",
        "fire2-concat": "Concat",
        "fire3-concat": "Concat",
        "drop9": "Dropout",
        "conv10": "Conv",
        "relu_conv10": "Relu",
        "pool10": "GlobalAveragePool",
        "prob": "Softmax",
    }
    for name, op in expected.items():
        assert ops.get(name) == op, f"node {name!r}: {ops.get(name)!r}, want {op!r}"
    assert "BatchNormalization" not in ops.values()
    nodes = {n.name: n for n in model.graph.node}
    concat_axis = {a.name: a.i for a in nodes["fire2-concat"].attribute}["axis"]
    assert concat_axis == 1
    softmax_axis = {a.name: a.i for a in nodes["prob"].attribute}["axis"]
    assert softmax_axis == 1
    # Inference-mode Dropout: no training_mode input.
    assert len(nodes["drop9"].input) < 3


def test_input_normalization_is_constant_sub_div(model: onnx.ModelProto):
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    first = [n for n in model.graph.node if "imageinput" in n.input]
    assert [n.op_type for n in first] == ["Sub"]
    sub = first[0]
    assert sub.input[0] == "imageinput" and sub.input[1] in inits
    after = [n for n in model.graph.node if sub.output[0] in n.input]
    assert [n.op_type for n in after] == ["Div"]
    div = after[0]
    assert div.input[0] == sub.output[0] and div.input[1] in inits
    mean = float(inits[sub.input[1]].reshape(-1)[0])
    std = float(inits[div.input[1]].reshape(-1)[0])
    assert 0 < mean < 255 and 0 < std < 255  # raw-pixel statistics


def test_parameter_count(model: onnx.ModelProto):
    params = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    assert 50_000 <= params <= 150_000


def test_slice_arrays(data: dict[str, np.ndarray]):
    x, y, classes = data["x"], data["y"], data["classes"]
    assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == (1, 28, 28)
    assert y.dtype == np.int64 and y.shape == (x.shape[0],)
    assert len(classes) == 10 and classes.dtype.kind == "U"
    assert set(np.unique(y)) == set(range(10))
    assert x.max() > 200  # raw 0..255 values, not normalized


def test_slice_accuracy_with_onnxruntime(model_bytes: bytes, data: dict[str, np.ndarray]):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    x, y = data["x"].astype(np.float32), data["y"]
    probs = np.concatenate([sess.run(["prob"], {"imageinput": x[i : i + 500]})[0] for i in range(0, len(x), 500)])
    assert probs.shape == (len(x), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((probs.argmax(axis=1) == y).mean())
    assert accuracy >= MIN_SLICE_ACCURACY, accuracy
