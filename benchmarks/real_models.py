"""Real models from every exporter: int8 against float, quantscope beside onnxruntime.

    python benchmarks/real_models.py                       # every model, 32 + 32 samples
    python benchmarks/real_models.py --models bert magika --calibration 64 --validation 64

For each model of ``benchmarks/_real_models.py`` (Paddle2ONNX OCR models, a tf2onnx
file-type classifier, YOLO-style and CNN+LSTM ddddocr models, BERT/DistilBERT/ViT from
both PyTorch exporters, MobileNet/EfficientNet-style networks) the first output of the
int8 network is compared with the float one on a validation split the calibration
never saw: ``top1_agreement`` (2-D score outputs only), ``cosine_similarity`` (mean
over samples) and ``output_sqnr_db``, the same functions for every column:

- quantscope, ``cpu`` target (per-channel weights, per-tensor activations) and ``fpga``
  target (power-of-two scales), calibrated on the calibration split;
- onnxruntime's ``quantize_static`` (QDQ, MinMax calibration on the same split,
  uint8 activations, int8 weights) per tensor and per channel, run by onnxruntime;
- ``float check``: quantscope's emulation with every layer kept in float against
  onnxruntime's float outputs (dB; above 100 means equal up to float32 rounding).

Prints a markdown table. Needs the test extra and ``scripts/install_test_data.sh``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _real_models as rm  # noqa: E402

import quantscope as qs  # noqa: E402
from quantscope.validate.metrics import agreement_metrics  # noqa: E402

DEFAULT = [name for name in rm.MODELS if not name.startswith("quantized_")]


def _run_ort(path: str, data: dict[str, np.ndarray], batch: int | None) -> np.ndarray:
    """The first output of ``path`` on onnxruntime, ``batch`` samples at a time (all at
    once when None)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    n = len(next(iter(data.values())))
    step = batch or n
    outs = [session.run(None, {k: v[i : i + step] for k, v in data.items()})[0] for i in range(0, n, step)]
    if batch is not None and outs[0].shape[0] != batch:  # an output without the batch axis first
        outs = [np.moveaxis(o, 1, 0) if o.ndim > 1 and o.shape[1] == batch else o for o in outs]
    return np.concatenate(outs).astype(np.float64)


class _Reader:
    """onnxruntime's CalibrationDataReader over the calibration split."""

    def __init__(self, data: dict[str, np.ndarray], batch: int | None):
        n = len(next(iter(data.values())))
        step = batch or 8
        self._items = iter([{k: v[i : i + step] for k, v in data.items()} for i in range(0, n, step)])

    def get_next(self):
        return next(self._items, None)


def _ort_static(model: rm.RealModel, cal: dict, val: dict, per_channel: bool, folder: str) -> dict:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    out = os.path.join(folder, f"{model.name}.ort{'_pc' if per_channel else ''}.onnx")
    quantize_static(
        str(model.path),
        out,
        _Reader(cal, model.batch),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return {"out": _run_ort(out, val, model.batch)}


def _fmt(metrics: dict[str, tuple[float, float]]) -> str:
    parts = []
    if "top1_agreement" in metrics:
        parts.append(f"{metrics['top1_agreement'][1]:.3f}")
    parts.append(f"{metrics['cosine_similarity'][1]:.4f}")
    parts.append(f"{metrics['output_sqnr_db'][1]:.1f} dB")
    return " / ".join(parts)


def run(names: list[str], n_cal: int, n_val: int, cache: Path) -> list[str]:
    rows = [
        "| model | quantscope cpu | quantscope fpga | onnxruntime per tensor | onnxruntime per channel "
        "| float check | quantscope s |",
        "|---|---|---|---|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            try:
                model = rm.MODELS[name](cache)
            except rm.ModelUnavailable as exc:
                rows.append(f"| {name} | skipped: {exc} | | | | | |")
                continue
            cal, val = model.data(n_cal, 0), model.data(n_val, 1)
            single = len(cal) == 1
            to_qs = (lambda d: next(iter(d.values()))) if single else (lambda d: d)
            reference = _run_ort(str(model.path), val, model.batch)
            t0 = time.perf_counter()
            net = qs.prepare(str(model.path))
            calibration = qs.calibrate(net, to_qs(cal), batch_size=8, progress=False)
            cells = []
            for target in ("cpu", "fpga"):
                res = qs.validate(calibration, to_qs(val), target=target, batch_size=8, progress=False)
                cells.append(_fmt(agreement_metrics(reference, res.int8_scores.reshape(reference.shape))))
            seconds = time.perf_counter() - t0
            for per_channel in (False, True):
                try:
                    theirs = _ort_static(model, cal, val, per_channel, folder)["out"]
                    cells.append(_fmt(agreement_metrics(reference, theirs.reshape(reference.shape))))
                except Exception as exc:  # onnxruntime's quantizer fails on some graphs: say so
                    cells.append(f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}")
            keep = [layer.name for layer in net.layers if layer.kind != "input"]
            exact = qs.validate(calibration, to_qs(val), target="cpu", keep_float=keep, batch_size=8, progress=False)
            check = agreement_metrics(reference, exact.int8_scores.reshape(reference.shape))["output_sqnr_db"][1]
            rows.append(f"| {name} | {' | '.join(cells)} | {check:.0f} dB | {seconds:.1f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT, choices=sorted(rm.MODELS))
    parser.add_argument("--calibration", type=int, default=32, help="calibration samples (seed 0)")
    parser.add_argument("--validation", type=int, default=32, help="validation samples (seed 1)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "quantscope-real-models")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime quantizer advice, once per model
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = run(args.models, args.calibration, args.validation, args.cache)
    print()
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"onnxruntime {ort.__version__}, quantscope {qs.__version__}. Cells: top-1 agreement (2-D outputs) / "
        "cosine similarity / output SQNR of int8 against float, first output."
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
