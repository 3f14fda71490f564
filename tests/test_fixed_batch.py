"""Models exported with a fixed batch (an input of shape (1, C, H, W), a Reshape to
(1, -1)): quantscope runs them that many samples at a time, whatever batch size the
user asks for, and every result is the one of running the samples one by one."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from tinymodels import images, make_model, tensor

import quantscope as qs


def fixed_batch_cnn(seed: int = 0) -> onnx.ModelProto:
    """x (1, 3, 8, 8) -> conv + relu -> maxpool -> Reshape to (1, -1) -> Gemm -> Softmax."""
    rng = np.random.default_rng(seed)
    init = {
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "b": (rng.standard_normal(4) * 0.1).astype(np.float32),
        "shape": np.array([1, -1], np.int64),
        "fw": (rng.standard_normal((64, 5)) * 0.3).astype(np.float32),
        "fb": np.zeros(5, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "shape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], name="fc"),
        helper.make_node("Softmax", ["g"], ["y"], name="prob"),
    ]
    return make_model(nodes, [tensor("x", [1, 3, 8, 8])], [tensor("y", [1, 5])], init)


def test_calibration_runs_one_sample_at_a_time_and_matches_numpy():
    import onnxruntime as ort

    model = fixed_batch_cnn()
    net = qs.prepare(model)
    assert net.fixed_batch == 1
    x = images(11, seed=3)
    cal = qs.calibrate(net, x, batch_size=4, progress=False)  # pieces of 1; 4 + 4 + 3
    assert cal.num_samples == 11
    sess = ort.InferenceSession(net.to_proto([layer.output for layer in net.layers[1:]]).SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    per_sample = [dict(zip(names, sess.run(None, {"x": x[i : i + 1]}))) for i in range(len(x))]
    for layer in net.layers[1:]:
        values = np.concatenate([d[layer.output] for d in per_sample])
        stats = cal.stats(layer.name)
        assert (stats.min, stats.max, stats.count) == (float(values.min()), float(values.max()), values.size), (
            layer.name
        )
    assert cal.to_json() == qs.calibrate(net, x, batch_size=1, progress=False).to_json()


def test_validate_predict_and_fpga_on_a_fixed_batch_model():
    from quantscope.fpga import Workflow
    from quantscope.simulate import Simulator

    net = qs.prepare(fixed_batch_cnn(seed=1))
    x = images(9, seed=4)
    y = np.arange(9) % 5
    cal = qs.calibrate(net, x, batch_size=5, progress=False)
    for target in ("fpga", "cpu"):
        res = qs.validate(cal, (x, y), target=target, batch_size=4, progress=False)
        assert res.num_samples == 9 and res.float_scores.shape == (9, 5)
        qnet = qs.quantize_network(cal, target)
        out = qnet.predict(x)
        one_by_one = np.concatenate([qnet.predict(x[i : i + 1]) for i in range(len(x))])
        np.testing.assert_array_equal(out, one_by_one)
        np.testing.assert_array_equal(res.int8_scores, out)
        _, layers = Simulator(qnet.plan).run(x, collect=True)
        assert all(len(v.q if hasattr(v, "q") else v) == 9 for v in layers.values())
    frames, _ = Workflow(qs.quantize_network(cal, "fpga"), "zcu102_int8", print_fn=lambda line: None).predict(x[:3])
    assert frames.shape == (3, 5)
