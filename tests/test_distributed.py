"""Calibration on a Dask LocalCluster of 2 worker processes: the table equals the
single-process one bit for bit (== and identical JSON), for every kind of data."""

from __future__ import annotations

import importlib
import json
import logging
import sys

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image
from tinymodels import images, make_model, small_cnn, tensor

import quantscope as qs
from quantscope.cli import main

distributed = pytest.importorskip("distributed")

MODEL = small_cnn()
X = images(203, seed=3)  # not a multiple of the batch size: the last batch is short


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def reference():
    return qs.calibrate(MODEL, X, batch_size=16, progress=False)


def same(a: qs.Calibration, b: qs.Calibration) -> None:
    assert a == b
    assert a.to_json() == b.to_json()
    assert a.table.equals(b.table)


def test_array_shards_run_on_both_workers(client, reference):
    with distributed.get_task_stream(client) as ts:
        result = qs.calibrate(MODEL, X, batch_size=16, client=client, shards=8, progress=False)
    same(result, reference)
    workers = {t["worker"] for t in ts.data if "_run_shard" in str(t["key"])}
    assert len(workers) == 2


def test_npy_and_npz_paths_are_read_by_the_workers(client, reference, tmp_path):
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "x.npz", x=X, y=np.arange(len(X)))
    for name in ("x.npy", "x.npz"):
        same(qs.calibrate(MODEL, tmp_path / name, batch_size=16, client=client, progress=False), reference)


def test_streams_are_sent_in_shards(client, reference):
    chunks = [X[i : i + 7] for i in range(0, len(X), 7)]  # re-chunked to batches of 16
    same(qs.calibrate(MODEL, iter(chunks), batch_size=16, client=client, progress=False), reference)
    same(qs.calibrate(MODEL, lambda: iter(chunks), batch_size=16, client=client, progress=False), reference)


def test_image_folder_and_datastore(client, tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(11):
            pixels = rng.integers(0, 256, (9 + i % 4, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    ds = qs.ImageDatastore(tmp_path, skip_bad=True)
    ref = qs.calibrate(MODEL, ds, batch_size=4, progress=False)
    same(qs.calibrate(MODEL, ds, batch_size=4, client=client, shards=5, progress=False), ref)
    (tmp_path / "cat" / "broken.png").unlink()
    ref = qs.calibrate(MODEL, str(tmp_path), batch_size=4, progress=False)
    same(qs.calibrate(MODEL, str(tmp_path), batch_size=4, client=client, progress=False), ref)


def test_scheduler_address_string(client, reference):
    result = qs.calibrate(MODEL, X, batch_size=16, client=client.scheduler.address, progress=False)
    same(result, reference)


def test_worker_errors_reach_the_caller_with_sample_positions(client):
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], name="fc"),
        helper.make_node("Log", ["g"], ["y"], name="log_layer"),
    ]
    model = make_model(nodes, [tensor("x", ["N", 2])], [tensor("y", ["N", 2])], {"w": -np.eye(2, dtype=np.float32)})
    x = np.array([[-1.0, -2.0], [-1.0, -2.0], [1.0, 0.5]], np.float32)
    with pytest.raises(qs.NonFiniteActivationError, match="sample 2") as info:
        qs.calibrate(model, x, batch_size=2, client=client, progress=False)
    assert info.value.layer == "log_layer"
    bad = X[:40].copy()
    bad[37, 0, 0, 0] = np.nan
    with pytest.raises(qs.CalibrationDataError, match="sample 37"):
        qs.calibrate(MODEL, bad, batch_size=16, client=client, progress=False)


def test_checkpoints_resume_across_single_process_and_dask(client, reference, tmp_path, monkeypatch):
    from quantscope.calibrate.checkpoint import Resumer
    from quantscope.calibrate.collector import StatsCollector

    np.save(tmp_path / "x.npy", X)
    ckpt = tmp_path / "c.json"
    update, count = StatsCollector.update, [0]

    def interrupted(self, batch):  # Ctrl-C at the 6th batch of a single-process run
        count[0] += 1
        if count[0] == 6:
            raise KeyboardInterrupt
        return update(self, batch)

    with monkeypatch.context() as m:
        m.setattr(StatsCollector, "update", interrupted)
        with pytest.raises(KeyboardInterrupt):
            qs.calibrate(MODEL, tmp_path / "x.npy", batch_size=16, checkpoint=ckpt, checkpoint_every=2, progress=False)
    assert ckpt.exists()
    result = qs.calibrate(MODEL, tmp_path / "x.npy", batch_size=16, client=client, checkpoint=ckpt, progress=False)
    same(result, reference)
    assert not ckpt.exists()

    save, saves = Resumer.save, [0]

    def save_then_stop(self, *args, **kwargs):  # a Dask run stopped after its 2nd checkpoint
        save(self, *args, **kwargs)
        saves[0] += 1
        if saves[0] == 2:
            raise KeyboardInterrupt

    chunks = [X[i : i + 10] for i in range(0, len(X), 10)]
    with monkeypatch.context() as m:
        m.setattr(Resumer, "save", save_then_stop)
        m.setattr(importlib.import_module("quantscope.calibrate.distributed"), "_STREAM_SHARD_BATCHES", 2)
        with pytest.raises(KeyboardInterrupt):
            qs.calibrate(
                MODEL,
                lambda: iter(chunks),
                batch_size=16,
                client=client,
                checkpoint=ckpt,
                checkpoint_every=1,
                progress=False,
            )
    assert 0 < json.loads(ckpt.read_text())["position"] < len(X)
    same(qs.calibrate(MODEL, lambda: iter(chunks), batch_size=16, checkpoint=ckpt, progress=False), reference)


def test_cli_local_cluster(tmp_path):
    onnx.save(MODEL, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", X)
    reference = qs.calibrate(str(tmp_path / "m.onnx"), X, batch_size=16, progress=False)
    out = tmp_path / "ranges.json"
    argv = [
        "calibrate",
        str(tmp_path / "m.onnx"),
        str(tmp_path / "x.npy"),
        "--batch-size",
        "16",
        "--dask",
        "local:2",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert out.read_text() == reference.to_json()


def test_bad_options(monkeypatch):
    with pytest.raises(qs.ConfigurationError, match="local:4"):
        qs.calibrate(MODEL, X[:4], client="local:0", progress=False)
    with pytest.raises(qs.ConfigurationError, match="client"):
        qs.calibrate(MODEL, X[:4], shards=2, progress=False)
    with pytest.raises(qs.ConfigurationError, match="would start 100000 worker processes"):
        qs.calibrate(MODEL, X[:4], client="local:100000", progress=False)  # not a fork storm


@pytest.mark.parametrize(
    "address, message",
    [
        ("local:0", "--dask 'local:0': the number of local workers"),
        ("local:100000", "--dask 'local:100000' would start 100000 worker processes"),
        (" ", "--dask ' ': give a scheduler address"),
    ],
)
def test_cli_bad_dask_addresses_are_refused_before_any_work(tmp_path, monkeypatch, capsys, address, message):
    def no_work(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("work started before --dask was checked")

    monkeypatch.setattr("quantscope.network.prepare", no_work)
    onnx.save(MODEL, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", X[:4])
    for command in (
        ["calibrate", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy")],
        [
            "validate",
            str(tmp_path / "m.onnx"),
            "--calibration",
            str(tmp_path / "x.npy"),
            "--validation",
            str(tmp_path / "x.npy"),
        ],
    ):
        assert main([*command, "--dask", address, "--quiet"]) == 2
        assert message in capsys.readouterr().err


def test_missing_dask_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    with pytest.raises(qs.ConfigurationError, match=r"pip install 'quantscope\[dask\]'"):
        qs.calibrate(MODEL, X[:4], client="local:2", progress=False)


# --------------------------------------------------------------------------- validation


def same_validation(a, b) -> None:
    assert a.num_samples == b.num_samples
    assert json.dumps(a.to_dict(), default=float) == json.dumps(b.to_dict(), default=float)
    assert a.layer_errors.equals(b.layer_errors)
    np.testing.assert_array_equal(a.float_scores, b.float_scores)
    np.testing.assert_array_equal(a.int8_scores, b.int8_scores)
    for name in a.metric_results:
        assert a.metric_results[name].equals(b.metric_results[name])


@pytest.fixture(scope="module")
def calibrated():
    return qs.calibrate(MODEL, X[:64], batch_size=16, progress=False)


def test_validation_on_two_workers_equals_one_process(client, calibrated, tmp_path):
    y = np.arange(len(X)) % 3  # the model's 3 classes
    local = qs.validate(calibrated, (X, y), batch_size=16, progress=False)
    with distributed.get_task_stream(client) as ts:
        on_dask = qs.validate(calibrated, (X, y), batch_size=16, client=client, shards=6, progress=False)
    same_validation(on_dask, local)
    assert len({t["worker"] for t in ts.data if "_validate_shard" in str(t["key"])}) == 2
    np.savez_compressed(tmp_path / "v.npz", x=X, y=y)  # read by the workers, in pieces
    same_validation(qs.validate(calibrated, tmp_path / "v.npz", batch_size=16, client=client, progress=False), local)
    # a stream is read here and sent in shards; unlabelled: the agreement metrics
    unlabelled = qs.validate(calibrated, X, batch_size=16, target="cpu", progress=False)
    stream = (X[i : i + 10] for i in range(0, len(X), 10))
    same_validation(
        qs.validate(calibrated, stream, batch_size=16, target="cpu", client=client, progress=False), unlabelled
    )


def test_validation_errors_on_a_worker_reach_the_client(client, calibrated):
    bad = X.copy()
    bad[150, 0, 3, 3] = np.nan
    with pytest.raises(qs.CalibrationDataError, match="sample 150"):
        qs.validate(calibrated, bad, batch_size=16, client=client, progress=False)


def test_cli_validate_on_dask(tmp_path, calibrated, capsys):
    onnx.save(MODEL, tmp_path / "m.onnx")
    np.save(tmp_path / "cal.npy", X[:64])
    np.savez(tmp_path / "val.npz", x=X[:40], y=np.arange(40) % 3)
    common = ["validate", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path / "cal.npy")]
    common += ["--validation", str(tmp_path / "val.npz"), "--batch-size", "16", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "one.json")]) == 0
    assert main([*common, "--dask", "local:2", "--out", str(tmp_path / "two.json")]) == 0
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def _deep_chain(layers: int) -> onnx.ModelProto:
    """``layers`` 1x1 convolutions with ReLUs in a row: an onnx_ir graph that pickles
    node by node would exceed Python's recursion limit."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], {}, "x"
    for i in range(layers):
        w = (np.eye(3, dtype=np.float32) + 0.01 * rng.standard_normal((3, 3), dtype=np.float32)).reshape(3, 3, 1, 1)
        inits[f"w{i}"] = w
        nodes += [helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}")]
        nodes += [helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        prev = f"r{i}"
    return make_model(nodes, [tensor("x", [None, 3, 4, 4])], [tensor(prev, [None, 3, 4, 4])], inits)


def test_a_deep_network_pickles_and_validates_on_dask(client):
    import pickle

    net = qs.prepare(_deep_chain(60))
    again = pickle.loads(pickle.dumps(net))
    assert again.layers == net.layers and again.fingerprint == net.fingerprint
    assert again.to_proto().SerializeToString() == net.to_proto().SerializeToString()
    assert all(tuple(n.name for n in layer.nodes) == layer.members for layer in again.layers[1:])
    x = images(16, seed=5)[:, :, :4, :4] / 255
    cal = qs.calibrate(net, x, batch_size=8, progress=False)
    local = qs.validate(cal, x, batch_size=8, progress=False)
    same_validation(qs.validate(cal, x, batch_size=8, client=client, progress=False), local)


def test_cli_several_inputs_on_dask_refused_before_calibrating(tmp_path, monkeypatch, capsys):
    """A network of several inputs: validate --dask says so before the calibration runs,
    calibrate --dask/--checkpoint names the flags."""
    from tinymodels import encoder_data, tiny_encoder

    onnx.save(tiny_encoder(), tmp_path / "enc.onnx")
    np.savez(tmp_path / "d.npz", **encoder_data(4))

    def no_calibration(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("calibrated before refusing --dask")

    monkeypatch.setattr(importlib.import_module("quantscope.calibrate"), "calibrate", no_calibration)
    data = str(tmp_path / "d.npz")
    args = ["validate", str(tmp_path / "enc.onnx"), "--calibration", data, "--validation", data, "--quiet"]
    assert main([*args, "--dask", "local:2"]) == 2
    assert "Validate it in one process (without --dask)" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["calibrate", str(tmp_path / "enc.onnx"), data, "--checkpoint", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "without --dask and --checkpoint" in err and "client" not in err


def test_an_address_that_is_not_a_dask_scheduler_is_a_message():
    """A service that answers in another protocol (an HTTP server): Dask misreads its
    bytes as a message length (a MemoryError of exbibytes); the user gets a message."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/html\r\n\r\n" + b"<html>no</html>" * 20)

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(qs.ConfigurationError, match="Is a Dask scheduler listening there"):
            qs.calibrate(MODEL, X[:4], client=f"tcp://127.0.0.1:{port}", progress=False)
    finally:
        server.close()


def test_a_service_that_never_answers_is_given_up(monkeypatch):
    """A server that accepts and says nothing (an HTTP server waiting for a request
    line) held the Dask handshake forever; the connection is given up after the limit."""
    import socket
    import time

    from quantscope.calibrate import distributed as dist

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    monkeypatch.setattr(dist, "CONNECT_SECONDS", 1.0)
    start = time.perf_counter()
    try:
        with pytest.raises(qs.ConfigurationError, match="no answer in Dask's protocol"):
            qs.calibrate(MODEL, X[:4], client=f"tcp://127.0.0.1:{server.getsockname()[1]}", progress=False)
    finally:
        server.close()
    assert time.perf_counter() - start < 30
