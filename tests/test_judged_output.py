"""Validation judges the first floating-point output: a scikit-learn classifier's first
output is its int64 label (cosine over class numbers said 1.0 with labels changed),
its second the probabilities."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from tinymodels import make_model, tensor

import quantscope as qs


def _label_first(seed: int = 0):
    rng = np.random.default_rng(seed)
    init = {
        "w": (rng.standard_normal((6, 4)) * 0.6).astype(np.float32),
        "b": rng.uniform(-0.2, 0.2, 4).astype(np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Gemm", ["x", "w", "b"], ["logits"], name="fc"),
        n("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
        n("ArgMax", ["probabilities"], ["label"], name="argmax", axis=1, keepdims=0),
    ]
    outputs = [tensor("label", ["N"], TensorProto.INT64), tensor("probabilities", ["N", 4])]
    return make_model(nodes, [tensor("x", ["N", 6])], outputs, init, name="label_first")


def test_the_first_float_output_is_judged():
    net = qs.prepare(_label_first())
    assert net.output_names == ["label", "probabilities"] and net.judged_output == "probabilities"
    x = np.random.default_rng(1).standard_normal((64, 6)).astype(np.float32)
    cal = qs.calibrate(net, x, progress=False)
    res = qs.validate(cal, x, target="cpu", progress=False)
    assert res.float_scores.shape == (64, 4)  # the probabilities, not the (N,) labels
    assert set(res.metric_results) >= {"top1_agreement", "cosine_similarity"}
    y = res.float_scores.argmax(1)
    labelled = qs.validate(cal, (x, y), target="cpu", progress=False)  # labels: top-1 over the probabilities
    table = labelled.metric_results["top1_accuracy"]
    assert table["MetricOutput"].iloc[0] == 1.0
    # predict keeps the first output
    assert qs.quantize_network(cal, "cpu").predict(x).shape == (64,)


def _joined(scale: float):
    rng = np.random.default_rng(3)
    init = {
        "w": (rng.standard_normal((6, 4)) * 0.6).astype(np.float32),
        "b": rng.uniform(-0.2, 0.2, 4).astype(np.float32),
        "k": np.array(scale, np.float32),
    }
    n = helper.make_node
    nodes = [
        n("Gemm", ["x", "w", "b"], ["h"], name="fc"),
        n("Mul", ["h", "k"], ["boxes"], name="boxes"),
        n("Sigmoid", ["h"], ["scores"], name="scores"),
        n("Concat", ["boxes", "scores"], ["y"], name="head", axis=1),
    ]
    return make_model(nodes, [tensor("x", ["N", 6])], [tensor("y", ["N", 8])], init, name="joined")


def test_a_concat_of_very_different_ranges_is_warned_about():
    """YOLOv8's head joins boxes (0..320) and class scores (0..1) on one int8 grid: every
    score became 0 while the output SQNR said 30 dB."""
    import logging

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    log = logging.getLogger("quantscope")  # a handler of its own: the command line's tests stop propagation
    x = np.random.default_rng(4).standard_normal((64, 6)).astype(np.float32)
    for target in ("cpu", "fpga"):
        for scale, warned in ((300.0, True), (2.0, False)):
            net = qs.prepare(_joined(scale))
            cal = qs.calibrate(net, x, progress=False)
            keep = Keep()
            log.addHandler(keep)
            try:
                qs.validate(cal, x, target=target, progress=False)
            finally:
                log.removeHandler(keep)
            said = [m for m in keep.messages if "joins values of very different ranges" in m]
            assert bool(said) is warned, (target, scale, said)
            if warned:
                assert "layer 'head'" in said[0] and "'scores' (its own grid" in said[0]
                assert "keep_float=['head']" in said[0]


def test_fpga_layers_with_weights_left_in_float_are_warned_about():
    """A ConvTranspose runs in float in the fpga emulation (docs/fpga.md): a generator of
    them showed cosine 1 and the float memory as its int8 figures, without a word."""
    import logging

    rng = np.random.default_rng(5)
    n = helper.make_node
    nodes = [
        n("ConvTranspose", ["x", "w"], ["u"], name="up", strides=[2, 2]),
        n("Relu", ["u"], ["y"], name="relu"),
    ]
    init = {"w": (rng.standard_normal((3, 4, 2, 2)) * 0.5).astype(np.float32)}
    model = make_model(nodes, [tensor("x", ["N", 3, 4, 4])], [tensor("y", ["N", 4, 8, 8])], init, name="up")
    x = rng.standard_normal((8, 3, 4, 4)).astype(np.float32)
    cal = qs.calibrate(qs.prepare(model), x, progress=False)
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    log, keep = logging.getLogger("quantscope"), Keep(logging.WARNING)
    log.addHandler(keep)
    try:
        qs.validate(cal, x, target="fpga", progress=False)
        said = [m for m in messages if "with weights run in float in the emulation" in m]
        assert len(said) == 1 and "(up)" in said[0]
        messages.clear()
        qs.validate(cal, x, target="cpu", progress=False)  # the cpu target runs float layers in float
        assert not [m for m in messages if "in the emulation" in m]
    finally:
        log.removeHandler(keep)
