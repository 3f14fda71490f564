"""Peak memory of ``quantscope calibrate`` from the command line, per data form,
against the number of samples: it should not grow with the data.

For each form (``.npy``, ``.npz`` stored, ``.npz`` compressed, an image folder) and
each sample count, the data is written to a scratch folder, then ``quantscope
calibrate MODEL DATA`` runs in a fresh process while this one samples that process's
**anonymous** resident memory (``RssAnon`` in ``/proc/PID/status``, every 10 ms).
Anonymous memory is what the process itself allocates; pages of a memory-mapped
file (``RssFile``) are the kernel's page cache, shared and dropped under pressure,
and are not counted.

    python benchmarks/data_memory.py                      # SqueezeNet 1.1, 200 vs 1000
    python benchmarks/data_memory.py --samples 100 400 --forms npy npz

The model is SqueezeNet 1.1 at 227x227 with random weights (``quantscope.zoo``);
the data are seeded random images (uint8 pixels for the image folder, the same
values as float32 for the arrays).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FORMS = ("npy", "npz", "npz-compressed", "images")
SIZE = 227


def _pixels(n: int, start: int = 0) -> np.ndarray:
    rng = np.random.default_rng(start)
    return rng.integers(0, 256, size=(n, 3, SIZE, SIZE), dtype=np.uint8)


def write_data(form: str, n: int, folder: Path) -> Path:
    """``n`` seeded samples as ``form`` under ``folder``; returns the path to pass."""
    if form == "images":
        from PIL import Image

        out = folder / f"images{n}"
        out.mkdir()
        for i in range(0, n, 100):
            block = _pixels(min(100, n - i), i)
            for j, img in enumerate(block):
                Image.fromarray(img.transpose(1, 2, 0)).save(out / f"{i + j:05d}.png", compress_level=1)
        return out
    x = np.concatenate([_pixels(min(100, n - i), i) for i in range(0, n, 100)]).astype(np.float32)
    if form == "npy":
        path = folder / f"x{n}.npy"
        np.save(path, x)
    elif form == "npz":
        path = folder / f"x{n}.npz"
        np.savez(path, x=x)
    else:
        path = folder / f"x{n}c.npz"
        np.savez_compressed(path, x=x)
    return path


def _rss_anon_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(model: Path, data: Path, batch: int) -> tuple[float, float]:
    """``(peak anonymous MiB, seconds)`` of ``quantscope calibrate model data``."""
    code = "import sys; from quantscope.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "calibrate", str(model), str(data), "--quiet", "--batch-size", str(batch)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _rss_anon_kib(proc.pid))
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    return peak / 1024, seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)

    import onnx

    from quantscope.zoo import squeezenet

    scratch = Path(tempfile.mkdtemp(prefix="qs-mem-", dir=os.environ.get("TMPDIR")))
    try:
        model_path = scratch / "squeezenet.onnx"
        onnx.save(squeezenet(1000, input_size=SIZE), str(model_path))
        rows = []
        for form in args.forms:
            peaks = []
            for n in args.samples:
                data = write_data(form, n, scratch)
                peak, seconds = measure(model_path, data, args.batch_size)
                peaks.append(peak)
                rows.append((form, n, peak, seconds))
                shutil.rmtree(data) if data.is_dir() else data.unlink()
            rows.append((form, "growth", 100 * (peaks[-1] / peaks[0] - 1), None))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'data form':<16} {'samples':>8} {'peak anon MiB':>14} {'seconds':>8}")
    for form, n, peak, seconds in rows:
        if n == "growth":
            print(f"{form:<16} {'growth':>8} {peak:>13.1f}%")
        else:
            print(f"{form:<16} {n:>8} {peak:>14.1f} {seconds:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
