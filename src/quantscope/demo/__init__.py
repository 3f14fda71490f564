"""``quantscope demo``: the whole workflow on a model and data shipped with the package.

The model is a small SqueezeNet-style CNN (fire modules) trained on Fashion-MNIST;
``assets/README.md`` says how it was trained (``scripts/train_demo.py``).
"""

from __future__ import annotations

import os
import time
from importlib.resources import as_file, files

import numpy as np
from rich.console import Console
from rich.markup import escape

__all__ = ["demo_data", "demo_model_path", "run_demo"]

MODEL_FILE = "firenet.onnx"
DATA_FILE = "fashion_mnist_slice.npz"
BITSTREAM = "arria10soc_int8"


def demo_model_path():
    """Traversable of the shipped demo model (ONNX, input ``imageinput`` (N, 1, 28, 28), pixels 0..255)."""
    return files(__name__) / "assets" / MODEL_FILE


def demo_data() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The shipped data slice: x float32 (N, 1, 28, 28) raw pixels 0..255, y int64 (N,), class names."""
    with as_file(files(__name__) / "assets" / DATA_FILE) as path, np.load(path) as npz:
        x = npz["x"].astype(np.float32)
        y = npz["y"].astype(np.int64)
        classes = [str(c) for c in npz["classes"]] if "classes" in npz.files else []
    return x, y, classes


def run_demo(
    console: Console | None = None,
    quiet: bool = False,
    calibration_samples: int = 500,
    report: str | os.PathLike | None = None,
    report_date: str | None = None,
    command: str = "quantscope demo",
) -> dict:
    """Run the demo workflow and print each step. Returns what it computed.

    ``report``: write the HTML report of the run there (and its data as JSON beside
    it) and print its path; ``report_date``: the date in its footer (default today);
    ``command``: the command shown in it."""
    from ..calibrate import calibrate
    from ..display import print_ranges
    from ..network import prepare

    console = console or Console()
    x, y, classes = demo_data()
    console.rule("[bold]quantscope demo")
    console.print(
        f"Network: SqueezeNet-style CNN with fire modules ({MODEL_FILE}), trained on Fashion-MNIST.\n"
        f"Data: {len(x)} held-out Fashion-MNIST images, 28x28 grayscale, {len(classes) or 10} classes."
    )
    with as_file(demo_model_path()) as model_path:
        net = prepare(model_path)
    console.rule("1. prepare the network")
    console.print(f"{len(net.layers)} optimized layers; dropped {', '.join(net.log.dropped) or 'nothing'}")
    for note in net.log.notes:
        console.print(f"  note: {escape(note)}")
    for layer in net.layers:
        console.print(f"  {escape(layer.name):<48} [dim]{layer.kind} ({' + '.join(layer.op_types)})[/]")

    console.rule("2. calibrate")
    cal_x, cal_y = x[:calibration_samples], y[:calibration_samples]
    start = time.perf_counter()
    cal = calibrate(net, (cal_x, cal_y), batch_size=64, progress=False if quiet else None)
    seconds = time.perf_counter() - start
    print_ranges(console, cal.table, title=f"Ranges from {cal.num_samples} calibration images")
    console.print(
        f"Calibrated {cal.num_samples} images in {seconds:.2f} s ({cal.num_samples / seconds:,.0f} images/s)."
    )

    from ..display import print_validation
    from ..fpga import Workflow
    from ..simulate import quantize_network
    from ..validate import validate

    console.rule("3. validate: float vs int8 (power-of-two scaling, FPGA)")
    val_x, val_y = x[calibration_samples:], y[calibration_samples:]
    result = validate(cal, (val_x, val_y), target="fpga", processor=BITSTREAM, progress=False if quiet else None)
    print_validation(console, result, max_layers=6)

    console.rule(f"4. the FPGA target: {BITSTREAM}")
    qnet = quantize_network(cal, "fpga")
    workflow = Workflow(qnet, BITSTREAM, print_fn=lambda line: console.print(line, markup=False, highlight=False))
    workflow.compile()
    workflow.deploy()
    frames = val_x[:4]
    outputs, profile = workflow.predict(frames, profile=True)
    predicted = [classes[i] if classes else str(i) for i in outputs.argmax(axis=1)]
    console.print(
        f"Predicted classes of 4 frames: {', '.join(predicted)} "
        f"(labels: {', '.join(classes[i] if classes else str(i) for i in val_y[:4])})"
    )
    console.print(profile.format(), markup=False, highlight=False)
    done = {"network": net, "calibration": cal, "validation": result, "quantized": qnet, "profile": profile}
    if report is not None:
        from ..report import json_path_of, write_report

        console.rule("5. the report")
        path = write_report(
            result, profile, workflow=workflow, quantized=qnet, path=report, command=command, date=report_date
        )
        console.print(
            f"Report: {escape(str(path.resolve()))} (open it in a browser; its data: {escape(json_path_of(path).name)})"
        )
        done["report"] = path
    return done
