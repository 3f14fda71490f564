"""Peak memory of quantscope's calibration against the number of samples.

Each run is a fresh process (so its peak RSS is its own): it loads the model,
streams N samples through ``quantscope.calibrate`` and reports its peak resident
set size (``getrusage(RUSAGE_SELF).ru_maxrss``). The data is streamed batch by
batch from a generator, so the data itself does not grow the process.

    python benchmarks/calibration_memory.py                    # demo model, 200 vs 2000
    python benchmarks/calibration_memory.py --model squeezenet --samples 200 1000

Models: ``demo`` (the shipped SqueezeNet-style CNN, real Fashion-MNIST images,
cycled when N exceeds the slice) and ``squeezenet`` (SqueezeNet 1.1 at 227x227,
random weights, random images from a seeded generator).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _batches(model: str, n: int, batch: int):
    if model == "demo":
        from quantscope.demo import demo_data

        x, y, _ = demo_data()
        for start in range(0, n, batch):
            idx = np.arange(start, min(start + batch, n)) % len(x)
            yield x[idx], y[idx]
    else:
        for start in range(0, n, batch):
            rng = np.random.default_rng(start)
            yield rng.uniform(0, 255, size=(min(batch, n - start), 3, 227, 227)).astype(np.float32)


def child(model: str, n: int, batch: int) -> dict:
    import quantscope as qs

    if model == "demo":
        from quantscope.demo import demo_model_path

        net = qs.prepare(str(demo_model_path()))
    else:
        from quantscope.zoo import squeezenet

        net = qs.prepare(squeezenet(1000))
    start = time.perf_counter()
    cal = qs.calibrate(net, _batches(model, n, batch), batch_size=batch, progress=False)
    seconds = time.perf_counter() - start
    assert cal.num_samples == n
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": model, "samples": n, "seconds": seconds, "peak_rss_mib": peak_kib / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("demo", "squeezenet"), default="demo")
    parser.add_argument("--samples", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.samples[0], args.batch_size)))
        return
    rows = []
    for n in args.samples:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--model",
            args.model,
            "--samples",
            str(n),
            "--batch-size",
            str(args.batch_size),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]["peak_rss_mib"]
    print(f"model: {args.model}, batch size {args.batch_size}")
    print(f"{'samples':>8} {'seconds':>8} {'peak RSS (MiB)':>15} {'vs first':>9}")
    for r in rows:
        print(f"{r['samples']:>8} {r['seconds']:>8.2f} {r['peak_rss_mib']:>15.1f} {r['peak_rss_mib'] / base:>9.3f}")


if __name__ == "__main__":
    main()
