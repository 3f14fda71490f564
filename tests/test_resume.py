"""Resumable calibration: a run killed part-way and resumed from its checkpoint ends
with the table of an uninterrupted run, bit for bit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image
from tinymodels import images, make_model, small_cnn, tensor

import quantscope as qs
from quantscope.calibrate.collector import StatsCollector
from quantscope.cli import main

MODEL = small_cnn()
X = images(100, seed=5)


def same(a: qs.Calibration, b: qs.Calibration) -> None:
    assert a == b
    assert a.to_json() == b.to_json()


def conv_model(channels: int = 16, size: int = 48) -> onnx.ModelProto:
    """Two 3x3 convolutions at ``size`` x ``size``: slow enough per batch to be killed mid-run."""
    rng = np.random.default_rng(0)
    f = lambda *s: (rng.standard_normal(s) * 0.2).astype(np.float32)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["y"], name="fc", transB=1),
    ]
    init = {
        "w1": f(channels, 3, 3, 3),
        "b1": f(channels),
        "w2": f(channels, channels, 3, 3),
        "b2": f(channels),
        "w3": f(4, channels),
        "b3": f(4),
    }
    return make_model(nodes, [tensor("x", ["N", 3, size, size])], [tensor("y", ["N", 4])], init, name="convs")


def test_killed_cli_run_resumes_to_the_same_table(tmp_path, capsys):
    model_path, data_path = tmp_path / "convs.onnx", tmp_path / "x.npy"
    onnx.save(conv_model(), model_path)
    n = 400
    np.save(data_path, np.random.default_rng(1).standard_normal((n, 3, 48, 48)).astype(np.float32))
    ckpt, out = tmp_path / "cal.ckpt.json", tmp_path / "ranges.json"
    argv = [
        "calibrate",
        str(model_path),
        str(data_path),
        "--batch-size",
        "4",
        "--checkpoint",
        str(ckpt),
        "--checkpoint-every",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantscope.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    position = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists():
                position = json.loads(ckpt.read_text())["position"]
                if position >= 40:
                    break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        stderr = proc.communicate()[1].decode()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {stderr}"
    saved = json.loads(ckpt.read_text())
    assert 40 <= saved["position"] < n and saved["position"] % 4 == 0
    assert not out.exists()

    assert main(argv) == 0  # resumes
    assert "resuming from checkpoint" in capsys.readouterr().err
    assert not ckpt.exists()  # removed at the end
    reference = qs.calibrate(str(model_path), data_path, batch_size=4, progress=False)
    assert reference.num_samples == n
    assert out.read_text() == reference.to_json()


def batches(x, stop_at=None, step=5):
    """A generator function over ``x`` in chunks of ``step``; raises KeyboardInterrupt
    (Ctrl-C) when reaching sample ``stop_at``."""

    def gen():
        for i in range(0, len(x), step):
            if stop_at is not None and i >= stop_at:
                raise KeyboardInterrupt
            yield x[i : i + step]

    return gen


def test_interrupted_stream_resumes(tmp_path):
    ckpt = tmp_path / "c.json"
    reference = qs.calibrate(MODEL, X, batch_size=8, progress=False)
    with pytest.raises(KeyboardInterrupt):
        qs.calibrate(MODEL, batches(X, stop_at=60), batch_size=8, checkpoint=ckpt, checkpoint_every=2, progress=False)
    saved = json.loads(ckpt.read_text())
    assert (saved["position"], saved["batches"], saved["partial"]["num_samples"]) == (48, 6, 48)
    assert saved["stream_sha256"]
    result = qs.calibrate(MODEL, batches(X), batch_size=8, checkpoint=ckpt, checkpoint_every=2, progress=False)
    same(result, reference)
    assert not ckpt.exists()


def test_a_changed_stream_is_refused(tmp_path):
    ckpt = tmp_path / "c.json"
    with pytest.raises(KeyboardInterrupt):
        qs.calibrate(MODEL, batches(X, stop_at=60), batch_size=8, checkpoint=ckpt, checkpoint_every=2, progress=False)
    other = X.copy()
    other[3] += 1
    with pytest.raises(qs.ConfigurationError, match="same samples in the same order"):
        qs.calibrate(MODEL, batches(other), batch_size=8, checkpoint=ckpt, progress=False)
    with pytest.raises(qs.ConfigurationError, match="yields only"):
        qs.calibrate(MODEL, batches(X[:30]), batch_size=8, checkpoint=ckpt, progress=False)


def interrupt_after(monkeypatch, calls: int) -> None:
    """Make the collector raise KeyboardInterrupt at its ``calls``-th batch."""
    original = StatsCollector.update
    count = [0]

    def update(self, batch):
        count[0] += 1
        if count[0] == calls:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(StatsCollector, "update", update)


@pytest.mark.parametrize("kind", ["array", "npy", "folder"])
def test_interrupted_sized_data_resumes(tmp_path, monkeypatch, kind):
    if kind == "array":
        data = X
    elif kind == "npy":
        data = tmp_path / "x.npy"
        np.save(data, X)
    else:
        data = tmp_path / "photos"
        rng = np.random.default_rng(2)
        for cls in ("a", "b"):
            (data / cls).mkdir(parents=True)
            for i in range(9):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(data / cls / f"{i}.png")
    reference = qs.calibrate(MODEL, data, batch_size=3, progress=False)
    ckpt = tmp_path / "c.json"
    with monkeypatch.context() as m:
        interrupt_after(m, 5)
        with pytest.raises(KeyboardInterrupt):
            qs.calibrate(MODEL, data, batch_size=3, checkpoint=ckpt, checkpoint_every=2, progress=False)
    assert json.loads(ckpt.read_text())["position"] == 12  # 4 batches of 3 saved
    same(qs.calibrate(MODEL, data, batch_size=3, checkpoint=ckpt, progress=False), reference)
    assert not ckpt.exists()


def test_checkpoint_of_another_run_is_refused_unless_restart(tmp_path, monkeypatch):
    ckpt = tmp_path / "c.json"
    with monkeypatch.context() as m:
        interrupt_after(m, 4)
        with pytest.raises(KeyboardInterrupt):
            qs.calibrate(MODEL, X, batch_size=8, checkpoint=ckpt, checkpoint_every=1, progress=False)
    with pytest.raises(qs.ConfigurationError, match=r"differs in: model\b.*Pass restart=True "):
        qs.calibrate(small_cnn(seed=1), X, batch_size=8, checkpoint=ckpt, progress=False)
    with pytest.raises(qs.ConfigurationError, match="differs in: batch_size"):
        qs.calibrate(MODEL, X, batch_size=4, checkpoint=ckpt, progress=False)
    with pytest.raises(qs.ConfigurationError, match="differs in: data"):
        qs.calibrate(MODEL, images(100, seed=6), batch_size=8, checkpoint=ckpt, progress=False)
    other = small_cnn(seed=1)
    same(
        qs.calibrate(other, X, batch_size=8, checkpoint=ckpt, restart=True, progress=False),
        qs.calibrate(other, X, batch_size=8, progress=False),
    )
    assert not ckpt.exists()


def test_unreadable_checkpoint_and_bad_options(tmp_path):
    ckpt = tmp_path / "c.json"
    ckpt.write_text("{ half a file")
    with pytest.raises(qs.ConfigurationError, match="not a readable quantscope calibration checkpoint"):
        qs.calibrate(MODEL, X, checkpoint=ckpt, progress=False)
    same(qs.calibrate(MODEL, X, checkpoint=ckpt, restart=True, progress=False), qs.calibrate(MODEL, X, progress=False))
    with pytest.raises(qs.ConfigurationError, match="checkpoint path"):
        qs.calibrate(MODEL, X, checkpoint_every=3, progress=False)
    with pytest.raises(qs.ConfigurationError, match="positive"):
        qs.calibrate(MODEL, X, checkpoint=ckpt, checkpoint_every=0, progress=False)
    model_path = tmp_path / "m.onnx"
    onnx.save(MODEL, model_path)
    np.save(tmp_path / "x.npy", X)
    assert main(["calibrate", str(model_path), str(tmp_path / "x.npy"), "--checkpoint-every", "2", "--quiet"]) == 2


def test_the_command_line_says_resuming_only_for_a_checkpoint_it_resumes(tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "c.json"
    model = tmp_path / "m.onnx"
    onnx.save(MODEL, model)
    np.save(tmp_path / "a.npy", X)
    np.save(tmp_path / "b.npy", images(100, seed=6))
    with monkeypatch.context() as m:
        interrupt_after(m, 4)
        assert main(["calibrate", str(model), str(tmp_path / "a.npy"), "--batch-size", "8", "--checkpoint", str(ckpt),
                     "--checkpoint-every", "1", "--quiet"]) == 130  # fmt: skip
    capsys.readouterr()
    argv = ["calibrate", str(model), "--batch-size", "8", "--checkpoint", str(ckpt), "--quiet"]
    assert main([*argv[:2], str(tmp_path / "b.npy"), *argv[2:]]) == 2  # another data file
    err = capsys.readouterr().err
    assert "written by another calibration" in err and "resuming" not in err
    assert "Pass --restart" in err and "restart=True" not in err  # the flag, not the keyword
    assert main([*argv[:2], str(tmp_path / "a.npy"), *argv[2:]]) == 0
    assert "resuming from checkpoint" in capsys.readouterr().err
