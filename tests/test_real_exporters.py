"""Real ONNX models from several exporters, through the whole workflow.

Paddle2ONNX (rapidocr's OCR recognizer), tf2onnx (magika's file-type classifier),
a YOLO-style detector with a fixed batch (ddddocr), transformers' BERT from both
PyTorch exporters, and MobileNetV3-style networks (HardSwish, squeeze-excitation,
``x.reshape(x.shape[0], -1)``) from both exporters: each calibrates, validates on the
cpu and the fpga target, and exports a QDQ model that onnxruntime runs; with every
layer kept in float the emulation gives onnxruntime's float outputs. The models are
built by ``benchmarks/_real_models.py`` from packages installed by
``scripts/install_test_data.sh`` (nothing is downloaded); a missing one is skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import quantscope as qs
from quantscope.validate.metrics import agreement_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _real_models as rm  # noqa: E402

#: model -> lowest cosine similarity of the cpu target's int8 output to the float one
MODELS = {
    "rapidocr_rec": 0.90,
    "magika": 0.98,
    "ddddocr_det": 0.95,
    "ddddocr_ocr": 0.95,
    "bert": 0.99,
    "bert_dynamo": 0.99,
    "mobilenetv3_style": 0.95,
    "efficientnet_style_dynamo": 0.95,
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-models")


def _build(name, cache):
    try:
        return rm.MODELS[name](cache)
    except rm.ModelUnavailable as exc:
        pytest.skip(str(exc))


def _ort(path, data, batch):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = len(next(iter(data.values())))
    step = batch or n
    return np.concatenate(
        [session.run(None, {k: v[i : i + step] for k, v in data.items()})[0] for i in range(0, n, step)]
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_real_model_through_the_workflow(name, cache, tmp_path):
    model = _build(name, cache)
    cal_data, val_data = model.data(8, 0), model.data(6, 1)
    single = len(cal_data) == 1
    arg = (lambda d: next(iter(d.values()))) if single else (lambda d: d)
    net = qs.prepare(str(model.path))
    cal = qs.calibrate(net, arg(cal_data), batch_size=4, progress=False)
    reference = _ort(model.path, val_data, model.batch).astype(np.float64)

    cpu = qs.validate(cal, arg(val_data), target="cpu", batch_size=4, progress=False)
    metrics = agreement_metrics(reference, cpu.int8_scores.reshape(reference.shape))
    assert metrics["cosine_similarity"][1] >= MODELS[name], metrics
    assert set(cpu.metric_results) >= {"cosine_similarity", "output_sqnr_db"}

    fpga = qs.validate(cal, arg(val_data), target="fpga", batch_size=4, progress=False)
    assert fpga.metric_results["cosine_similarity"]["MetricOutput"].iloc[1] > 0.8

    keep = [layer.name for layer in net.layers if layer.kind != "input"]
    exact = qs.validate(cal, arg(val_data), target="cpu", keep_float=keep, batch_size=4, progress=False)
    assert agreement_metrics(reference, exact.int8_scores.reshape(reference.shape))["output_sqnr_db"][1] > 100

    qnet = qs.quantize_network(cal, qs.FloatScale(reduce_range=True))
    path = tmp_path / f"{name}.int8.onnx"
    qnet.save(path)
    ran = _ort(path, val_data, model.batch).astype(np.float64).reshape(reference.shape)
    assert agreement_metrics(reference, ran)["cosine_similarity"][1] >= MODELS[name] - 0.03


def test_pytorch_layer_names_read_as_module_paths(cache):
    model = _build("mobilenetv3_style", cache)
    net = qs.prepare(str(model.path))
    names = [layer.name for layer in net.layers]
    assert "stem.0" in names and not any(name.startswith("/") for name in names)
    assert net.onnx_names("stem.0") == ("/stem/stem.0/Conv",)
    assert net.layer("/stem/stem.0/Conv").name == "stem.0"  # the ONNX name still finds it
    dynamo = qs.prepare(str(_build("mobilenetv3_style_dynamo", cache).path))
    assert "stem.2" in [layer.name for layer in dynamo.layers]  # from the node's name scopes
