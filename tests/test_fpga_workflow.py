"""The FPGA target end to end: quantized network -> compile -> deploy -> predict/profile, CLI, validate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import quantscope as qs
from quantscope.cli import main
from quantscope.fpga import Workflow
from tinymodels import images, small_cnn


@pytest.fixture(scope="module")
def calibrated():
    net = qs.prepare(small_cnn(seed=11, with_norm=False))
    x = images(24, seed=4)
    return net, qs.calibrate(net, x, progress=False), x


def test_predict_is_the_int8_emulation_and_profiles(calibrated):
    net, cal, x = calibrated
    qnet = cal.quantize("fpga")
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


def test_validate_reports_frames_per_second(calibrated):
    net, cal, x = calibrated
    res = qs.validate(cal, x, target="fpga", processor="arria10soc_int8", progress=False)
    table = res.metric_results["top1_agreement"]
    assert "FramesPerSecond" in table.columns
    fps_float, fps_int8 = table["FramesPerSecond"]
    assert fps_int8 > fps_float > 0
    assert res.extra["processor"] == "arria10soc_int8"


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
    assert main(["profile", str(model), "--bitstream", "zcu102_int8", "--calibration", str(tmp_path / "cal.npz"), "--frames", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Measured on the simulated board with 2 frame(s)" in out
    assert main(["compile", str(model), "--bitstream", "no_such_board"]) == 2
    assert "no_such_board" in capsys.readouterr().err
