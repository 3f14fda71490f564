"""Validation batches: outputs of different shapes from batch to batch (sequences of
several lengths through a dynamic-axis model), and batches measured in pieces within a
memory budget (validate/measure.py's BATCH_BYTES), bit for bit as unsplit runs."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper
from tinymodels import images, make_model, small_cnn, tensor

import quantscope as qs
from quantscope.errors import CalibrationDataError, ConfigurationError
from quantscope.quantize.plan import make_plan

# the facade's name quantscope.validate is the function: the module through importlib
measure = importlib.import_module("quantscope.validate.measure")
metrics = importlib.import_module("quantscope.validate.metrics")

VOCAB, WIDTH, OUT = 40, 8, 6


def token_model(reduce: bool = False):
    """input_ids, attention_mask (int64, (b, s), any s) -> embedding * mask -> MatMul +
    Add -> Relu: out (b, s, 6); ``reduce``: then the mean over the last axis, (b, s)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"], name="embed"),
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Unsqueeze", ["mf", "axis2"], ["m3"], name="unsq"),
        helper.make_node("Mul", ["e", "m3"], ["em"], name="mask"),
        helper.make_node("MatMul", ["em", "W"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "B"], ["fa"], name="fc_bias"),
        helper.make_node("Relu", ["fa"], ["relu" if reduce else "out"], name="relu"),
    ]
    if reduce:
        nodes.append(helper.make_node("ReduceMean", ["relu"], ["out"], axes=[2], keepdims=0, name="mean"))
    init = {
        "emb": rng.standard_normal((VOCAB, WIDTH)).astype(np.float32),
        "axis2": np.array([2], np.int64),
        "W": (rng.standard_normal((WIDTH, OUT)) * 0.5).astype(np.float32),
        "B": (rng.standard_normal(OUT) * 0.1).astype(np.float32),
    }
    inputs = [
        tensor("input_ids", ["b", "s"], TensorProto.INT64),
        tensor("attention_mask", ["b", "s"], TensorProto.INT64),
    ]
    return make_model(nodes, inputs, [tensor("out", ["b", "s"] if reduce else ["b", "s", OUT])], init, name="tokens")


def tokens(n: int, s: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(1, VOCAB, (n, s)), "attention_mask": np.ones((n, s), np.int64)}


@pytest.fixture(scope="module")
def token_cal():
    return qs.calibrate(qs.prepare(token_model()), [tokens(8, 16, 0)], progress=False)


def test_batches_of_several_lengths_validate(token_cal):
    short, long = tokens(8, 12, 1), tokens(8, 20, 2)
    res = qs.validate(token_cal, [short, long], target="cpu", progress=False)
    assert res.num_samples == 16
    assert set(res.metric_results) == {"cosine_similarity", "output_sqnr_db"}
    # one array per sample, of its own length
    assert res.float_scores.dtype == object and res.float_scores.shape == (16,)
    assert [s.shape for s in res.float_scores] == [(12, OUT)] * 8 + [(20, OUT)] * 8
    assert [s.shape for s in res.int8_scores] == [(12, OUT)] * 8 + [(20, OUT)] * 8
    # the metrics over the samples of both lengths: the cosine per sample, the SQNR over every value
    pairs = [
        (f.astype(np.float64).ravel(), q.astype(np.float64).ravel()) for f, q in zip(res.float_scores, res.int8_scores)
    ]
    cos = [float(np.dot(f, q) / (np.linalg.norm(f) * np.linalg.norm(q))) for f, q in pairs]
    f_all = np.concatenate([f.astype(np.float64).ravel() for f in res.float_scores])
    q_all = np.concatenate([q.astype(np.float64).ravel() for q in res.int8_scores])
    sqnr = 10 * math.log10(np.sum(f_all**2) / np.sum((f_all - q_all) ** 2))
    cos_table, sqnr_table = res.metric_results["cosine_similarity"], res.metric_results["output_sqnr_db"]
    assert list(cos_table["MetricOutput"]) == [1.0, pytest.approx(np.mean(cos), rel=1e-12)]
    assert sqnr_table["MetricOutput"].iloc[0] == math.inf
    assert sqnr_table["MetricOutput"].iloc[1] == pytest.approx(sqnr, rel=1e-9)
    # each length on its own gives the same outputs, and the per-layer sums count both
    alone = [qs.validate(token_cal, [d], target="cpu", progress=False) for d in (short, long)]
    for i, f in enumerate(res.float_scores):
        part = alone[i // 8]
        np.testing.assert_array_equal(f, part.float_scores[i % 8])
        np.testing.assert_array_equal(res.int8_scores[i], part.int8_scores[i % 8])
    assert res.layer_errors["SQNR(dB)"].notna().any()
    assert 0.0 <= res.top1_agreement <= 1.0
    assert len(res.labels) == 16  # without labels, the float network's top-1 per sample
    assert res.to_dict()["NumSamples"] == 16


def test_equal_lengths_keep_one_array(token_cal):
    res = qs.validate(token_cal, [tokens(8, 12, 1), tokens(4, 12, 2)], target="cpu", progress=False)
    assert res.float_scores.dtype == np.float32 and res.float_scores.shape == (12, 12, OUT)
    # the per-sample path of the metrics gives what the array path gives
    ragged_f = np.empty(12, object)
    ragged_q = np.empty(12, object)
    for i in range(12):
        ragged_f[i], ragged_q[i] = res.float_scores[i], res.int8_scores[i]
    assert metrics.cosine_similarity(ragged_f, ragged_q) == pytest.approx(
        metrics.cosine_similarity(res.float_scores, res.int8_scores), rel=1e-12
    )
    assert metrics.output_sqnr_db(ragged_f, ragged_q) == pytest.approx(
        metrics.output_sqnr_db(res.float_scores, res.int8_scores), rel=1e-9
    )


def test_a_metric_function_on_several_lengths_is_refused_naming_the_shapes(token_cal):
    calls = []

    def mine(scores, labels):
        calls.append(scores.shape)
        return 0.0

    data = [tokens(8, 12, 1), tokens(8, 20, 2), tokens(8, 16, 3)]
    with pytest.raises(ConfigurationError, match=r"\(8, 12, 6\).*\(8, 20, 6\).*'mine'") as info:
        qs.validate(token_cal, data, target="cpu", metrics=mine, progress=False)
    assert "sample 8" in str(info.value)
    assert calls == []  # refused at the batch whose shape differs, before the rest runs


def test_label_metrics_on_several_lengths_are_refused():
    net = qs.prepare(token_model(reduce=True))
    cal = qs.calibrate(net, [tokens(8, 16, 0)], progress=False)
    data = [{**tokens(4, 5, 1), "y": np.zeros(4, np.int64)}, {**tokens(4, 7, 2), "y": np.zeros(4, np.int64)}]
    with pytest.raises(ConfigurationError, match=r"\(4, 5\).*\(4, 7\).*'top1_accuracy'"):
        qs.validate(cal, data, target="cpu", progress=False)
    # without labels: a vector of scores per sample, so top-1 agreement per sample too
    res = qs.validate(cal, [tokens(4, 5, 1), tokens(4, 7, 2)], target="cpu", progress=False)
    assert set(res.metric_results) == {"top1_agreement", "cosine_similarity", "output_sqnr_db"}
    same = np.mean([np.argmax(f) == np.argmax(q) for f, q in zip(res.float_scores, res.int8_scores)])
    assert res.metric_results["top1_agreement"]["MetricOutput"].iloc[1] == same == res.top1_agreement
    assert list(res.labels) == [int(np.argmax(f)) for f in res.float_scores]


def test_labels_of_several_shapes_are_refused():
    net = qs.prepare(token_model(reduce=True))
    cal = qs.calibrate(net, [tokens(8, 16, 0)], progress=False)
    data = [
        {**tokens(4, 5, 1), "y": np.zeros(4, np.int64)},
        {**tokens(4, 5, 2), "y": np.zeros((4, 5), np.int64)},
    ]
    with pytest.raises((CalibrationDataError, ConfigurationError), match="labels"):
        qs.validate(cal, data, target="cpu", metrics=lambda s, y: 0.0, progress=False)


# ---- batches measured in pieces within the memory budget ---------------------------------


@pytest.fixture(scope="module")
def cnn_cal():
    net = qs.prepare(small_cnn())
    return qs.calibrate(net, images(24, seed=3), progress=False)


def _budget_for(monkeypatch, plan, samples: int) -> None:
    """Make BATCH_BYTES hold ``samples`` samples of ``plan``'s network at once."""
    per_sample = measure.sample_bytes(plan)
    assert per_sample
    monkeypatch.setattr(measure, "BATCH_BYTES", samples * per_sample + per_sample // 2)
    assert measure.samples_at_once(plan) == samples


def _same(a, b) -> None:
    """Two validations equal bit for bit: metrics, layer table, scores."""
    assert a.num_samples == b.num_samples
    assert a.metric_results.keys() == b.metric_results.keys()
    for name in a.metric_results:
        pd.testing.assert_frame_equal(a.metric_results[name], b.metric_results[name], check_exact=True)
    pd.testing.assert_frame_equal(a.layer_errors, b.layer_errors, check_exact=True)
    assert a.verdict == b.verdict
    np.testing.assert_array_equal(a.float_scores, b.float_scores)
    np.testing.assert_array_equal(a.int8_scores, b.int8_scores)


@pytest.mark.parametrize("target", ["cpu", "fpga"])
def test_batches_split_within_the_budget_equal_unsplit_runs(cnn_cal, monkeypatch, target):
    x = images(21, seed=5)
    unsplit = qs.validate(cnn_cal, x, target=target, batch_size=3, progress=False)  # tiny network: never split
    _budget_for(monkeypatch, make_plan(cnn_cal, target), 3)
    for batch_size in (3, 8, 32):  # the same pieces of 3 samples whatever the batch size
        _same(qs.validate(cnn_cal, x, target=target, batch_size=batch_size, progress=False), unsplit)


def test_batches_a_source_keeps_are_split_from_their_start(monkeypatch):
    """Mappings of several inputs are batches as given: one larger than the budget is
    measured in pieces from its start, as the same samples given in those pieces."""
    fixed = make_model(*_fixed_length(token_model(), 10))  # a fixed sequence length: its size per sample is known
    cal = qs.calibrate(qs.prepare(fixed), [tokens(8, 10, 0)], progress=False)
    whole = [tokens(7, 10, 1), tokens(5, 10, 2)]
    pieces = [
        {k: v[a:b] for k, v in d.items()}
        for d in whole
        for a, b in ((0, 2), (2, 4), (4, 6), (6, 8))
        if a < len(d["input_ids"])
    ]
    unsplit = qs.validate(cal, pieces, target="cpu", progress=False)
    _budget_for(monkeypatch, make_plan(cal, "cpu"), 2)
    _same(qs.validate(cal, whole, target="cpu", progress=False), unsplit)


def _fixed_length(model, length: int):
    """``model``'s nodes, inputs, outputs and weights with the sequence axis fixed."""
    from onnx import numpy_helper

    g = model.graph
    inputs = [tensor(i.name, ["b", length], TensorProto.INT64) for i in g.input]
    outputs = [tensor("out", ["b", length, OUT])]
    return list(g.node), inputs, outputs, {t.name: numpy_helper.to_array(t) for t in g.initializer}


def test_the_samples_at_once(cnn_cal, token_cal, monkeypatch):
    plan = make_plan(cnn_cal, "cpu")
    per_sample = measure.sample_bytes(plan)
    net = plan.network
    values = sum(int(np.prod(net.value_shape(layer.output)[1:])) for layer in net.layers)
    assert 5 * values <= per_sample <= 8 * values  # float32 twice at most, an int8 copy at least
    assert measure.samples_at_once(plan) == measure.BATCH_BYTES // per_sample
    monkeypatch.setattr(measure, "BATCH_BYTES", 1)
    assert measure.samples_at_once(plan) == 1  # at least one sample
    # a sequence of unknown length: its size is not known, batches are measured whole
    assert measure.sample_bytes(make_plan(token_cal, "cpu")) is None
    assert measure.samples_at_once(make_plan(token_cal, "cpu")) is None
    res = qs.validate(token_cal, [tokens(8, 12, 1)], target="cpu", progress=False)
    assert res.num_samples == 8


def test_the_report_fingerprint_of_several_lengths_is_stable(token_cal):
    """An object array's bytes are addresses: the report's validation fingerprint hashes
    each sample's output instead, so two runs give the same page."""
    from quantscope.report.build import _fingerprint_validation

    data = [tokens(8, 12, 1), tokens(8, 20, 2)]
    one = qs.validate(token_cal, data, target="cpu", progress=False)
    two = qs.validate(token_cal, data, target="cpu", progress=False)
    assert one.float_scores.dtype == object
    assert _fingerprint_validation(one) == _fingerprint_validation(two)
    two.float_scores[3] = two.float_scores[3] + 1.0
    assert _fingerprint_validation(one) != _fingerprint_validation(two)


def test_free_sizes_are_measured_in_pieces_too(token_cal, monkeypatch):
    """A sequence length (or image size) the model leaves free: the sizes one sample
    gives, run once per input size, bound the samples measured at once (an OCR
    recognizer at 3x48x320 took 10.3 GB to validate 24 lines, now 1.6 GB) and the
    samples per calibration run (7.3 GB for 40 lines, now 0.7 GB)."""
    plan = make_plan(token_cal, "cpu")
    validator = measure.BatchValidator(plan)
    from quantscope.calibrate.data import Batch

    data = tokens(9, 12, 1)
    from quantscope.network import Inputs

    batch = Batch(x=Inputs(data), y=None, index=np.arange(9))
    shapes = validator.shapes_of(batch)
    assert shapes["out"] == (1, 12, OUT) and shapes["input_ids"] == (1, 12)
    per_sample = measure.sample_bytes(plan, shapes)
    assert per_sample is not None and measure.sample_bytes(plan) is None
    monkeypatch.setattr(measure, "BATCH_BYTES", 2 * per_sample + 1)
    assert measure.samples_at_once(plan, shapes) == 2
    seen = []
    call = measure.BatchValidator.__call__
    monkeypatch.setattr(measure.BatchValidator, "__call__", lambda self, b: seen.append(len(b)) or call(self, b))
    split = qs.validate(token_cal, [data], target="cpu", progress=False)
    assert seen == [2, 2, 2, 2, 1]
    monkeypatch.setattr(measure, "BATCH_BYTES", 1 << 40)
    whole = qs.validate(token_cal, [data], target="cpu", progress=False)
    np.testing.assert_array_equal(split.int8_scores, whole.int8_scores)
    # calibration: runs sized from one sample's outputs; the statistics are the same
    collector_module = importlib.import_module("quantscope.calibrate.collector")
    big = qs.calibrate(token_cal.network, [data], progress=False)
    monkeypatch.setattr(collector_module, "RUN_BYTES", 1)
    runs = []
    run_outputs = collector_module.StatsCollector.run_outputs
    monkeypatch.setattr(
        collector_module.StatsCollector, "run_outputs", lambda self, x: runs.append(len(x)) or run_outputs(self, x)
    )
    small = qs.calibrate(token_cal.network, [data], progress=False)
    assert runs == [1] + [1] * 9  # one sample to learn the sizes, then runs of one sample
    pd.testing.assert_frame_equal(small.table, big.table, check_exact=True)
