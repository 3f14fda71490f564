"""The FPGA target end to end: quantized network -> compile -> deploy -> predict/profile, CLI, validate."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope import fpga
from quantscope.cli import main
from quantscope.fpga import Workflow


@pytest.fixture(scope="module")
def calibrated():
    net = qs.prepare(small_cnn(seed=11, with_norm=False))
    x = images(24, seed=4)
    return net, qs.calibrate(net, x, progress=False), x


def test_predict_is_the_int8_emulation_and_profiles(calibrated):
    net, cal, x = calibrated
    qnet = qs.quantize_network(cal, "fpga")
    lines: list[str] = []
    workflow = Workflow(qnet, "zcu102_int8", print_fn=lines.append)
    out, profile = workflow.predict(x[:5])
    np.testing.assert_array_equal(out, qnet.predict(x[:5]))
    assert any("Loading weights to Conv Processor" in line for line in lines)
    assert profile.frames_per_second == pytest.approx(5 * 250e6 / profile.total_latency)
    # the weight images hold the quantizer's int8 weights
    image = workflow.compiled.weight_images["conv1_relu_conv1"]
    qw = qnet.plan.weights["conv1_relu_conv1"][0]
    np.testing.assert_array_equal(image.weights[tuple(slice(0, s) for s in qw.shape)], qw)


def test_estimate_compile_and_optimize_take_a_quantized_network(calibrated):
    """A QuantizedNetwork goes where a network goes (as Workflow takes it): the same
    cycles as its float network, the quantizer's weights in compile's weight images,
    a CPU-quantized one refused with the reason."""
    net, cal, x = calibrated
    qnet = qs.quantize_network(cal, "fpga")
    float_profile = fpga.estimate_performance(net, "zc706_int8", frames=2)
    assert fpga.estimate_performance(qnet, "zc706_int8", frames=2).network_cycles == float_profile.network_cycles
    compiled = fpga.compile_network(qnet, "zcu102_int8")
    qw = qnet.plan.weights["conv1_relu_conv1"][0]
    image = compiled.weight_images["conv1_relu_conv1"]
    np.testing.assert_array_equal(image.weights[tuple(slice(0, s) for s in qw.shape)], qw)
    assert fpga.optimize_config(qnet, "zcu102", 30).config == fpga.optimize_config(net, "zcu102", 30).config
    with pytest.raises(qs.ConfigurationError, match="CPU target"):
        fpga.compile_network(qs.quantize_network(cal, "cpu"), "zcu102_int8")


def test_validate_reports_frames_per_second(calibrated):
    net, cal, x = calibrated
    res = qs.validate(cal, x, target="fpga", processor="arria10soc_int8", progress=False)
    table = res.metric_results["top1_agreement"]
    assert "FramesPerSecond" in table.columns
    fps_float, fps_int8 = table["FramesPerSecond"]
    assert fps_int8 > fps_float > 0
    assert res.extra["processor"] == "arria10soc_int8"
    # the float bitstream named instead: the same two columns, each on its own processor
    single = qs.validate(cal, x, target="fpga", processor="arria10soc_single", progress=False)
    assert list(single.metric_results["top1_agreement"]["FramesPerSecond"]) == [fps_float, fps_int8]
    assert single.extra["processor"] == "arria10soc_int8"


def test_cli_compile_and_profile(calibrated, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(small_cnn(seed=11, with_norm=False), model)
    np.savez(tmp_path / "cal.npz", x=images(8, seed=4))
    assert main(["compile", str(model), "--bitstream", "arria10soc_int8"]) == 0
    out = capsys.readouterr().out
    assert "InputDataOffset" in out and "EndOffset" in out and "HW Layer" in out
    assert main(["profile", str(model), "--bitstream", "arria10soc_int8", "--frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "Deep Learning Processor Profiler Performance Results" in out and "150MHz" in out
    assert (
        main(
            [
                "profile",
                str(model),
                "--bitstream",
                "zcu102_int8",
                "--calibration",
                str(tmp_path / "cal.npz"),
                "--frames",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Measured on the simulated board with 2 frame(s)" in out and "fewer than --frames" not in out
    args = ["profile", str(model), "--bitstream", "zcu102_int8", "--calibration", str(tmp_path / "cal.npz")]
    assert main([*args, "--frames", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "holds 8 frame(s), fewer than --frames 20: the profile is of 8" in out
    assert main(["compile", str(model), "--bitstream", "no_such_board"]) == 2
    assert "no_such_board" in capsys.readouterr().err


def _real_networks():
    """(name, prepared network, calibration inputs, frames to predict) of the real networks."""
    from quantscope.demo import demo_data, demo_model_path

    x, _, _ = demo_data()
    yield "demo", qs.prepare(onnx.load(str(demo_model_path()))), x[:200], x[200:232]
    torch = pytest.importorskip("torch")
    from realdata import ccexam_mnist_module, mnist_normalized

    module, _ = ccexam_mnist_module()
    digits, _ = mnist_normalized(1300)
    yield (
        "ccexam MNIST CNN",
        qs.prepare(module, example_input=torch.zeros(1, 1, 28, 28)),
        digits[:1000],
        digits[1000:1032],
    )


@pytest.mark.parametrize("bitstream", ["arria10soc_int8", "zcu102_int8"])
def test_predict_on_real_networks_is_the_int8_reference_bit_for_bit(bitstream):
    from quantscope.simulate import Simulator

    for name, net, cal_x, frames in _real_networks():
        qnet = qs.quantize_network(qs.calibrate(net, cal_x, progress=False), "fpga")
        workflow = Workflow(qnet, bitstream, print_fn=lambda line: None)
        out, profile = workflow.predict(frames)
        reference, _ = Simulator(qnet.plan, "reference").run(frames)
        np.testing.assert_array_equal(out, reference, err_msg=name)
        np.testing.assert_array_equal(out, qnet.predict(frames), err_msg=name)
        assert profile.frames == len(frames) and profile.frames_per_second > 0


def test_workflow_refuses_a_cpu_quantized_network_and_validate_checks_the_processor_first(calibrated, monkeypatch):
    net, cal, x = calibrated
    with pytest.raises(qs.ConfigurationError, match=r"power-of-two scales.*quantize_network\(calibration, \"fpga\"\)"):
        Workflow(qs.quantize_network(cal, "cpu"), "zcu102_int8")
    # a network the processor cannot run fails before the validation pass, not after it
    from onnx import helper
    from tinymodels import make_model, tensor

    from quantscope.simulate import ReferenceEngine

    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Elu", ["c"], ["h"], name="elu"),
        helper.make_node("GlobalAveragePool", ["h"], ["y"], name="gap"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 1, 1])], {"w": w})
    other = qs.calibrate(qs.prepare(model), x, progress=False)

    def never(*args, **kwargs):
        raise AssertionError("the validation pass ran")

    monkeypatch.setattr(ReferenceEngine, "run", never)  # FastEngine inherits it
    with pytest.raises(qs.UnsupportedModelError, match="1 Elu layer"):
        qs.validate(other, x, processor="zcu102_int8", progress=False)


def test_cli_compile_and_profile_refuse_a_network_the_processor_cannot_run_before_calibrating(
    tmp_path, capsys, monkeypatch
):
    from onnx import helper
    from tinymodels import make_model, tensor

    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Elu", ["c"], ["h"], name="elu"),
        helper.make_node("GlobalAveragePool", ["h"], ["y"], name="gap"),
    ]
    model = tmp_path / "elu.onnx"
    onnx.save(make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 1, 1])], {"w": w}), model)
    np.save(tmp_path / "cal.npy", np.random.default_rng(1).standard_normal((6, 3, 8, 8)).astype(np.float32))

    def never(*args, **kwargs):
        raise AssertionError("calibration ran")

    monkeypatch.setattr(sys.modules["quantscope.calibrate"], "calibrate", never)
    for command in ("compile", "profile"):
        args = [command, str(model), "--bitstream", "zcu102_int8", "--calibration", str(tmp_path / "cal.npy")]
        assert main([*args, "--gptq", "--bias-correction"]) == 2, command
        err = capsys.readouterr().err
        assert "cannot run this network" in err and "1 Elu layer" in err, err


def test_cli_compile_refuses_data_options_it_would_not_read(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(small_cnn(seed=11, with_norm=False), model)
    for extra, named in (
        (["--batch-size", "0", "--layout", "NHWC"], "--batch-size, --layout apply"),
        (["--size", "8", "8", "--mean", "3"], "--mean, --size apply"),
    ):
        assert main(["compile", str(model), "--bitstream", "zcu102_int8", *extra]) == 2
        assert named in capsys.readouterr().err
    assert main(["compile", str(model), "--bitstream", "zcu102_int8"]) == 0
