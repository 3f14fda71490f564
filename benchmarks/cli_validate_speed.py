"""``quantscope validate`` through the command line against a plain onnxruntime loop.

On the same folder of images (``--images`` JPEG files of 227x227 pixels, crops and
mirror images of scikit-image's photos, ``benchmarks/_models.py``'s ``ImageBatches``),
it times, each as one fresh process started with ``subprocess`` (interpreter start,
imports, model loading and image decoding included on both sides):

``onnxruntime``  a plain loop: decode each image with Pillow as quantscope's image
                 folders do (RGB, float32 0..255, CHW), stack batches of
                 ``--batch-size``, ``InferenceSession.run`` on the model file, keep
                 the top-1 class of each image;
``quantscope``   ``quantscope validate MODEL --ranges RANGES.json --validation FOLDER
                 --batch-size B --quiet``: the float network with every layer output,
                 the int8 emulation, the per-layer diagnostics and the metrics.

The ranges come from ``quantscope calibrate MODEL CALIB --out RANGES.json`` on
``--calibration-images`` other crops (not timed: validation is what is measured).
The fastest of ``--repeat`` runs of each is reported with the ratio
``onnxruntime seconds / quantscope seconds`` (the speed of validate as a fraction of
plain inference's; issue "Speed and scale" asks at least 0.25)::

    python benchmarks/cli_validate_speed.py                      # SqueezeNet, 1,000 images
    python benchmarks/cli_validate_speed.py --images 200 --repeat 1

Images and ranges are written once into ``--work-dir`` (default: the benchmarks'
cache directory, ``_models.default_cache_dir()``) and reused.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The plain loop, run as ``python -c`` (argv: model, folder, batch size).
PLAIN_LOOP = r"""
import sys
from pathlib import Path
import numpy as np
import onnxruntime as ort
from PIL import Image

model, folder, batch = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")

def decode(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)

top1 = []
for start in range(0, len(files), batch):
    x = np.ascontiguousarray(np.stack([decode(p) for p in files[start : start + batch]]))
    top1.append(session.run(None, {name: x})[0].argmax(axis=1))
print(len(np.concatenate(top1)), "images")
"""


def write_images(folder: Path, count: int, size: int, seed: int) -> None:
    """``count`` JPEG files ``00000.jpg``... of ``size`` x ``size`` pixels (quality 95)."""
    import _models
    import numpy as np
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()
    data = _models.ImageBatches(count, size, 50, seed=seed)
    for i in range(count):
        pixels = np.clip(data.sample(i), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=95)


def timed(cmd: list[str], env: dict) -> float:
    """Wall seconds of ``cmd`` (raises if it fails)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="validation images (default 1000)")
    parser.add_argument("--calibration-images", type=int, default=100, help="images for the ranges (default 100)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch of both loops (default 32, the CLI's)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the fastest counts (default 2)")
    parser.add_argument("--work-dir", help="where the images and ranges are kept")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    import _models

    work = Path(args.work_dir) if args.work_dir else _models.default_cache_dir() / "cli-validate"
    model, _ = _models.model_files("squeezenet")
    size = _models.MODELS["squeezenet"]
    val_dir, cal_dir = work / f"val{args.images}", work / f"cal{args.calibration_images}"
    write_images(val_dir, args.images, size, seed=11)
    write_images(cal_dir, args.calibration_images, size, seed=12)
    env = dict(os.environ)
    quantscope = [sys.executable, "-m", "quantscope.cli"]
    ranges = work / f"ranges{args.calibration_images}.json"
    if not ranges.exists():
        timed([*quantscope, "calibrate", str(model), str(cal_dir), "--out", str(ranges), "--quiet"], env)

    commands = {
        "onnxruntime": [sys.executable, "-c", PLAIN_LOOP, str(model), str(val_dir), str(args.batch_size)],
        "quantscope": [
            *quantscope,
            "validate",
            str(model),
            "--ranges",
            str(ranges),
            "--validation",
            str(val_dir),
            "--batch-size",
            str(args.batch_size),
            "--quiet",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    load = os.getloadavg()[0]
    for _ in range(args.repeat):
        for name, cmd in commands.items():  # alternated, so that a burst of load hits both
            times[name].append(timed(cmd, env))
    best = {name: min(t) for name, t in times.items()}
    print(f"SqueezeNet 1.1 ({model.name}), {args.images} JPEG images of {size}x{size}, batch {args.batch_size}")
    print(f"load average (1 min) at start {load:.2f}, at end {os.getloadavg()[0]:.2f}; fastest of {args.repeat}")
    print("| run | seconds (each run) | images/s | x onnxruntime speed |")
    print("|---|---:|---:|---:|")
    for name in commands:
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(
            f"| {name} | {best[name]:.1f} ({runs}) | {args.images / best[name]:.1f} | "
            f"{best['onnxruntime'] / best[name]:.2f} |"
        )
    print("quantscope command:", " ".join(commands["quantscope"][1:]))


if __name__ == "__main__":
    main()
