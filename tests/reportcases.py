"""Runs the report tests share: the demo model end to end, a model with hostile names."""

from __future__ import annotations

from importlib.resources import as_file
from pathlib import Path

import onnx
from tinymodels import images, small_cnn

import quantscope as qs

DATE = "2026-01-31"
#: Node names that are markup: the page must show them as text.
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
#: A file name that is markup too.
FILE = "<i>model<i>'\"&.onnx"


def demo_results(calibration: int = 300, validation: int = 200, processor: str = "arria10soc_int8") -> dict:
    """The shipped demo model: calibrated, validated with a processor, profiled (4 frames)."""
    from quantscope.demo import demo_data, demo_model_path
    from quantscope.fpga import Workflow

    x, y, _ = demo_data()
    with as_file(demo_model_path()) as path:
        net = qs.prepare(path)
    cal = qs.calibrate(net, (x[:calibration], y[:calibration]), batch_size=64, progress=False)
    val = (x[calibration : calibration + validation], y[calibration : calibration + validation])
    res = qs.validate(cal, val, target="fpga", processor=processor, progress=False)
    qnet = qs.quantize_network(cal, "fpga")
    workflow = Workflow(qnet, processor, print_fn=lambda line: None)
    _, profile = workflow.predict(val[0][:4], profile=True)
    return {
        "network": net,
        "calibration": cal,
        "validation": res,
        "quantized": qnet,
        "workflow": workflow,
        "profile": profile,
    }


def hostile_model(folder: Path) -> Path:
    """small_cnn with its first conv and ReLU named as markup, saved under a markup file name."""
    model = small_cnn()
    for node in model.graph.node:
        if node.name == "conv1":
            node.name = SCRIPT
        elif node.name == "relu_conv1":
            node.name = IMG
    path = folder / FILE
    onnx.save(model, path)
    return path


def hostile_results(folder: Path) -> dict:
    path = hostile_model(folder)
    net = qs.prepare(path)
    cal = qs.calibrate(net, images(24), batch_size=8, progress=False)
    res = qs.validate(cal, images(16, seed=2), target="fpga", progress=False)
    return {"network": net, "calibration": cal, "validation": res}
