"""Calibration on tiny models: exact ranges, determinism, files, errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from tinymodels import images, make_model, small_cnn, tensor

import quantscope as qs
from quantscope.calibrate.result import COLUMNS


def reference_activations(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Every named value computed by onnx.reference (independent of onnxruntime)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for name in names:
        m.graph.output.append(helper.make_empty_tensor_value_info(name))
    outs = ReferenceEvaluator(m).run(None, {m.graph.input[0].name: x})
    return dict(zip(names, outs))


def test_every_range_equals_numpy_exactly():
    model = small_cnn(seed=5, exact=True)
    x = images(20, seed=2)
    net = qs.prepare(model)
    cal = qs.calibrate(net, x, batch_size=8, progress=False)
    t = cal.table
    assert list(t.columns[:5]) == COLUMNS
    layers_out = [layer.output for layer in net.layers[1:]]
    ref = reference_activations(model, x, layers_out)
    ref[net.input_name] = x
    init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    checked = 0
    for row in t.itertuples(index=False):
        name, network_layer, kind, lo, hi, tensor_name, count = row[:7]
        values = init[tensor_name] if kind in ("Weights", "Bias") else ref[tensor_name]
        assert lo == values.min() and hi == values.max(), (name, lo, hi, values.min(), values.max())
        assert count == values.size
        checked += 1
    # 13 layers: 6 with weights and bias, all with activations
    assert checked == 6 * 2 + 12
    row = t[t["Optimized Layer Name"] == "fire2-squeeze1x1_fire2-relu_squeeze1x1_Weights"].iloc[0]
    assert row["Network Layer Name"] == "fire2-relu_squeeze1x1" and row["Learnables / Activations"] == "Weights"
    assert list(t["Optimized Layer Name"][:5]) == [
        "imageinput",
        "imageinput_normalization",
        "conv1_relu_conv1_Weights",
        "conv1_relu_conv1_Bias",
        "conv1_relu_conv1",
    ]
    assert list(t["Network Layer Name"][:2]) == ["imageinput", "imageinput"]


def test_table_identical_for_batch_sizes_and_order():
    net = qs.prepare(small_cnn(seed=1))
    x = images(150, seed=3)
    base = qs.calibrate(net, x, batch_size=1, progress=False)
    for bs in (7, 64):
        other = qs.calibrate(net, x, batch_size=bs, progress=False)
        assert other == base
        assert other.table.equals(base.table)
        assert other.to_json() == base.to_json()
    perm = np.random.default_rng(0).permutation(len(x))
    shuffled = qs.calibrate(net, x[perm], batch_size=7, progress=False)
    assert shuffled == base and shuffled.to_json() == base.to_json()


def test_json_and_csv_round_trip(tmp_path):
    net = qs.prepare(small_cnn())
    cal = qs.calibrate(net, images(10), batch_size=4, progress=False)
    cal.save(tmp_path / "ranges.json")
    back = qs.Calibration.load(tmp_path / "ranges.json")
    assert back == cal
    assert back.table.equals(cal.table)
    cal.save(tmp_path / "ranges.csv")
    from_csv = qs.Calibration.load(tmp_path / "ranges.csv")
    assert from_csv.table.equals(cal.table)
    assert from_csv.entries[0].stats.hist is None
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind
    with pytest.raises(qs.CalibrationDataError, match="unknown format"):
        cal.save(tmp_path / "ranges.txt")
    json.loads((tmp_path / "ranges.json").read_text())


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    net = qs.prepare(small_cnn())
    cal = qs.calibrate(net, images(4), progress=False)
    target = tmp_path / "ranges.json"
    target.write_text("previous result")

    def boom(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(qs.Calibration, "to_json", boom)
    with pytest.raises(RuntimeError):
        cal.save(target)
    assert target.read_text() == "previous result"
    assert list(tmp_path.iterdir()) == [target]


def test_nan_activation_names_the_layer():
    # log of a negative value: NaN in layer "log_layer"
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], name="fc"),
        helper.make_node("Log", ["g"], ["y"], name="log_layer"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])], {"w": -np.eye(2, dtype=np.float32)})
    x = np.array([[-1.0, -2.0], [-1.0, -2.0], [1.0, 0.5]], np.float32)
    with pytest.raises(qs.NonFiniteActivationError, match="log_layer") as info:
        qs.calibrate(model, x, batch_size=2, progress=False)
    assert info.value.layer == "log_layer"
    assert "sample 2" in str(info.value)


def test_inf_activation_names_the_layer():
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="huge_fc")]
    model = make_model(
        nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])], {"w": np.full((2, 2), 3e38, np.float32)}
    )
    with pytest.raises(qs.NonFiniteActivationError, match="Inf in the output of layer 'huge_fc'"):
        qs.calibrate(model, np.ones((2, 2), np.float32), progress=False)


def test_shape_that_does_not_fit():
    with pytest.raises(qs.CalibrationDataError, match="shape"):
        qs.calibrate(small_cnn(), np.zeros((4, 3, 9, 9), np.float32), progress=False)


def test_empty_data():
    with pytest.raises(qs.CalibrationDataError, match="no samples"):
        qs.calibrate(small_cnn(), np.zeros((0, 3, 8, 8), np.float32), progress=False)


def test_streaming_iterable_and_labels():
    net = qs.prepare(small_cnn())
    x = images(30)
    y = np.arange(30) % 3
    base = qs.calibrate(net, x, progress=False)
    pairs = [(x[i : i + 9], y[i : i + 9]) for i in range(0, 30, 9)]
    assert qs.calibrate(net, pairs, batch_size=4, progress=False) == base
    assert qs.calibrate(net, (x, y), batch_size=5, progress=False) == base


def test_nhwc_layout():
    net = qs.prepare(small_cnn())
    x = images(6)
    a = qs.calibrate(net, x, progress=False)
    b = qs.calibrate(net, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), layout="NHWC", progress=False)
    assert a == b


def test_use_gpu_without_gpu_is_a_clear_error():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a GPU provider")
    with pytest.raises(qs.DeviceError, match="GPU"):
        qs.calibrate(small_cnn(), images(2), use_gpu=True, progress=False)


def test_gpu_without_gpu_on_the_command_line_names_the_flag(tmp_path, capsys):
    import onnxruntime as ort

    from quantscope.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a GPU provider")
    onnx.save(small_cnn(), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", images(2))
    assert main(["calibrate", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), "--gpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--gpu was asked for" in err and "use_gpu" not in err


def test_bad_batch_size():
    with pytest.raises(qs.CalibrationDataError, match="batch_size"):
        qs.calibrate(small_cnn(), images(2), batch_size=0, progress=False)


def test_runs_in_pieces_give_the_same_table_and_name_the_right_sample(monkeypatch):
    """A batch is run through onnxruntime in pieces of ``run_samples`` samples (their
    outputs within RUN_BYTES): the table does not depend on it, and a NaN still names
    its sample."""
    collector = __import__("importlib").import_module("quantscope.calibrate.collector")

    net = qs.prepare(small_cnn(seed=4))
    x = images(40, seed=8)
    whole = qs.calibrate(net, x, batch_size=40, progress=False)
    assert collector.StatsCollector(net).run_samples >= 40
    monkeypatch.setattr(collector, "RUN_BYTES", 1)
    assert collector.StatsCollector(net).run_samples == 1
    assert qs.calibrate(net, x, batch_size=40, progress=False).to_json() == whole.to_json()
    per_sample = sum(4 * int(np.prod(s[1:])) for s in collector.StatsCollector(net).shapes[1:])
    monkeypatch.setattr(collector, "RUN_BYTES", 3 * per_sample)
    assert collector.StatsCollector(net).run_samples == 3
    assert qs.calibrate(net, x, batch_size=16, progress=False).to_json() == whole.to_json()
    # NaN in the log of sample 6 of a batch of 8, run 3 at a time
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], name="fc"),
        helper.make_node("Log", ["g"], ["y"], name="log_layer"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])], {"w": np.eye(2, dtype=np.float32)})
    monkeypatch.setattr(collector, "RUN_BYTES", 3 * 8)
    xs = np.ones((8, 2), np.float32)
    xs[6] = -1.0
    with pytest.raises(qs.NonFiniteActivationError, match="sample 6"):
        qs.calibrate(model, xs, batch_size=8, progress=False)


def test_compiled_statistics_pass_gives_the_numpy_table(monkeypatch):
    """Once numba has loaded (validation loads it; `quantscope validate` starts it before
    calibrating), the statistics come from the compiled pass: the table is the same as
    numpy's alone, and a NaN still names its layer and sample through it."""
    from quantscope._compiled import kernel

    net = qs.prepare(small_cnn(seed=6))
    x = images(30, seed=9)
    monkeypatch.setenv("QUANTSCOPE_KERNELS", "numpy")
    plain = qs.calibrate(net, x, batch_size=10, progress=False)
    monkeypatch.delenv("QUANTSCOPE_KERNELS")
    assert kernel("quantscope.calibrate._numba_stats", "row_stats") is not None  # loaded from now on
    compiled = qs.calibrate(net, x, batch_size=10, progress=False)
    assert compiled == plain and compiled.to_json() == plain.to_json()
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], name="fc"),
        helper.make_node("Log", ["g"], ["y"], name="log_layer"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])], {"w": np.eye(2, dtype=np.float32)})
    xs = np.ones((4, 2), np.float32)
    xs[3, 1] = -2.0  # log of a negative value in sample 3, the second batch
    with pytest.raises(qs.NonFiniteActivationError, match="NaN in the output of layer 'log_layer'.*sample 3"):
        qs.calibrate(model, xs, batch_size=2, progress=False)


@pytest.mark.parametrize(
    "shape, stride",
    [
        ((1, 96, 112, 112), 61),  # 1.2M values per sample: the largest stride
        ((1, 24, 56, 56), 17),  # 75,264 / 4,096 = 18 -> 17
        ((1, 512, 13, 13), 19),  # 86,528 / 4,096 = 21 -> 19 (13 divides the width)
        ((1, 1280, 7, 7), 13),  # 62,720 / 4,096 = 15: 13 (7 would divide the width)
        ((1, 16, 28, 28), 5),  # 12,544 / 4,096 = 3: at least 5
        ((1, 35, 35, 35), 11),  # 42,875 / 4,096 = 10, but 5 and 7 divide 35: the next prime
        ((1, 8, 8, 8), 1),  # fewer than 4,096 values: every value
        ((1, 1000), 1),  # 2-D: every value
        (None, 1),
    ],
)
def test_auto_histogram_stride(shape, stride):
    from quantscope.calibrate.collector import _histogram_stride

    got = _histogram_stride(shape, "auto")
    if shape is not None and len(shape) >= 3 and got > 1:
        assert shape[-1] % got != 0  # never divides the width
    assert got == stride


def test_loaded_ranges_quantize_once_given_their_network(tmp_path):
    net = qs.prepare(small_cnn(seed=2))
    x = images(12, seed=1)
    cal = qs.calibrate(net, x, progress=False)
    cal.save(tmp_path / "r.json")
    loaded = qs.Calibration.load(tmp_path / "r.json")
    with pytest.raises(qs.ConfigurationError, match=r"Calibration.load\(path, network=model\)"):
        qs.quantize_network(loaded, "fpga")
    model = tmp_path / "m.onnx"
    onnx.save(small_cnn(seed=2), model)
    again = qs.Calibration.load(tmp_path / "r.json", network=model)
    np.testing.assert_array_equal(
        qs.quantize_network(again, "fpga").predict(x), qs.quantize_network(cal, "fpga").predict(x)
    )
    assert qs.validate(again, x, progress=False).num_samples == 12
    other = qs.prepare(
        make_model(
            [helper.make_node("Relu", ["x"], ["y"], name="only")],
            [tensor("x", ["N", 3, 8, 8])],
            [tensor("y", ["N", 3, 8, 8])],
            {},
        )
    )
    with pytest.raises(qs.ConfigurationError, match="measured on another model"):
        loaded.attach(other)


def test_ranges_of_the_same_file_prepared_otherwise_say_so(tmp_path):
    """Ranges of model.onnx against model.onnx, changed since (or prepared with other
    options, or by another version): the message said 'another model (m.onnx), not on
    m.onnx' and explained only at its end."""
    path = tmp_path / "m.onnx"
    onnx.save(small_cnn(seed=1), path)
    x = images(8, seed=2)
    qs.calibrate(qs.prepare(str(path)), x, progress=False).save(tmp_path / "r.json")
    onnx.save(small_cnn(seed=5), path)  # the file changed
    with pytest.raises(qs.ConfigurationError) as raised:
        qs.Calibration.load(tmp_path / "r.json", network=str(path))
    text = str(raised.value)
    assert "as it was prepared then" in text and "prepares to another network now" in text
    assert "the model file changed, or it was prepared with other options (equalize=)" in text


def test_loading_ranges_for_a_torch_module_says_to_prepare_it(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    net = qs.prepare(module, example_input=torch.zeros(1, 3, 8, 8))
    qs.calibrate(net, images(4, seed=1), progress=False).save(tmp_path / "r.json")
    with pytest.raises(qs.ConfigurationError, match=r"network=quantscope.prepare\(module, example_input="):
        qs.Calibration.load(tmp_path / "r.json", network=module)
    assert qs.Calibration.load(tmp_path / "r.json", network=net).network is net
