"""The command line, run as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.cli import main


@pytest.fixture()
def model_and_data(tmp_path):
    model = tmp_path / "small.onnx"
    onnx.save(small_cnn(), model)
    data = tmp_path / "cal.npz"
    np.savez(data, x=images(12), y=np.arange(12) % 3)
    return model, data


def test_calibrate_writes_json_and_csv(model_and_data, tmp_path, capsys):
    model, data = model_and_data
    assert (
        main(["calibrate", str(model), str(data), "--batch-size", "5", "--out", str(tmp_path / "r.json"), "--quiet"])
        == 0
    )
    out = capsys.readouterr().out
    assert "fire2-squeeze1x1_fire2-relu_squeeze1x1_Weights" in out.replace("\n", "") or "fire2-squeeze1x1" in out
    assert "12 samples" in out
    saved = qs.Calibration.load(tmp_path / "r.json")
    direct = qs.calibrate(qs.prepare(model), np.load(data)["x"], progress=False)
    assert saved == direct
    assert main(["calibrate", str(model), str(data), "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
    assert qs.Calibration.load(tmp_path / "r.csv").table.equals(direct.table)


def test_errors_exit_2_with_message(model_and_data, tmp_path, capsys):
    model, data = model_and_data
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    assert main(["calibrate", str(bad), str(data), "--quiet"]) == 2
    assert "bad.onnx" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((2, 3, 5, 5), np.float32))
    assert main(["calibrate", str(model), str(wrong), "--quiet"]) == 2
    assert "shape" in capsys.readouterr().err


def test_console_script_installed(model_and_data, tmp_path):
    exe = shutil.which("quantscope")
    if exe is None:
        pytest.skip("quantscope console script not on PATH")
    model, data = model_and_data
    out = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run(
        [exe, "calibrate", str(model), str(data), "--out", str(out)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "Calibrating" not in result.stderr  # no progress bar when not a terminal
    assert json.loads(out.read_text())["num_samples"] == 12


def test_demo_runs(capsys):
    from quantscope.demo import run_demo

    result = run_demo(quiet=True)
    table = result["calibration"].table
    row = table[table["Optimized Layer Name"] == "fire2-squeeze1x1_fire2-relu_squeeze1x1_Weights"]
    assert len(row) == 1 and row.iloc[0]["Network Layer Name"] == "fire2-relu_squeeze1x1"
    assert table.iloc[0]["Optimized Layer Name"] == "imageinput"
    assert table.iloc[0]["MinValue"] >= 0 and table.iloc[0]["MaxValue"] <= 255
    assert (table["Optimized Layer Name"] == "imageinput_normalization").any()
    metric = result["validation"].metric_results["top1_accuracy"]
    float_acc, int8_acc = metric["MetricOutput"]
    assert float_acc > 0.8 and abs(float_acc - int8_acc) < 0.02
    assert (metric["FramesPerSecond"] > 0).all()
    profile = result["profile"]
    assert profile.frames_per_second > 0
    out = capsys.readouterr().out
    assert "Deep Learning Processor Profiler Performance Results" in out and "EndOffset" in out


def test_quantize_reduce_range_writes_7bit_weights(model_and_data, tmp_path, capsys):
    model, data = model_and_data
    out = tmp_path / "m.int8.onnx"
    args = ["quantize", str(model), "--calibration", str(data), "-o", str(out), "--target", "cpu", "--quiet"]
    assert main(args + ["--reduce-range"]) == 0
    exported = onnx.load(out)
    weights = [
        onnx.numpy_helper.to_array(t)
        for t in exported.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1
    ]
    assert weights and max(int(np.abs(w.astype(np.int64)).max()) for w in weights) == 64
    assert main(args) == 0  # without it: full 8-bit weights
    exported = onnx.load(out)
    weights = [
        onnx.numpy_helper.to_array(t)
        for t in exported.graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1
    ]
    assert max(int(np.abs(w.astype(np.int64)).max()) for w in weights) == 127
    capsys.readouterr()
    assert main(["quantize", str(model), "--calibration", str(data), "-o", str(out), "--reduce-range", "--quiet"]) == 2
    assert "--reduce-range applies to --target cpu" in capsys.readouterr().err


def test_image_folder_preprocessing_options(tmp_path, capsys):
    """--pixel-scale/--mean/--std give the network the inputs it was trained on."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "imgs" / label / f"{i}.png"
            )
    model = tmp_path / "small.onnx"
    onnx.save(small_cnn(with_norm=False), model)
    folder = str(tmp_path / "imgs")
    assert main(["calibrate", str(model), folder, "--out", str(tmp_path / "raw.json"), "--quiet"]) == 0
    raw = qs.Calibration.load(tmp_path / "raw.json").table.iloc[0]
    assert raw["MaxValue"] > 1.0  # raw pixels
    args = ["--pixel-scale", str(1 / 255), "--mean", "0.5", "0.5", "0.5", "--std", "0.25"]
    assert main(["calibrate", str(model), folder, "--out", str(tmp_path / "norm.json"), "--quiet", *args]) == 0
    norm = qs.Calibration.load(tmp_path / "norm.json").table.iloc[0]
    assert norm["MinValue"] == pytest.approx((raw["MinValue"] / 255 - 0.5) / 0.25, abs=1e-6)
    assert norm["MaxValue"] == pytest.approx((raw["MaxValue"] / 255 - 0.5) / 0.25, abs=1e-6)
    assert main(["validate", str(model), "--calibration", folder, "--validation", folder, "--quiet", *args]) == 0
    assert "NumSamples: 6" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", images(4))
    assert main(["calibrate", str(model), str(tmp_path / "x.npy"), "--quiet", "--mean", "1"]) == 2
    assert "--mean is an option of image folders" in capsys.readouterr().err
    assert main(["calibrate", str(model), str(tmp_path / "x.npy"), "--quiet", "--skip-bad"]) == 2
    err = capsys.readouterr().err
    assert "--skip-bad is an option of image folders" in err and "normalize" not in err


def test_bad_out_name_is_refused_before_calibrating_and_ctrl_c_is_a_message(
    model_and_data, tmp_path, capsys, monkeypatch
):
    calibrate_module = __import__("importlib").import_module("quantscope.calibrate")

    model, data = model_and_data
    ran = []
    monkeypatch.setattr(calibrate_module, "calibrate", lambda *a, **k: ran.append(1))
    assert main(["calibrate", str(model), str(data), "--out", str(tmp_path / "r.txt"), "--quiet"]) == 2
    assert "unknown format '.txt'" in " ".join(capsys.readouterr().err.split()) and not ran

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(calibrate_module, "calibrate", interrupted)
    ckpt = tmp_path / "c.ckpt"
    assert main(["calibrate", str(model), str(data), "--checkpoint", str(ckpt), "--quiet"]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupted" in err and "rerun the same command to resume" in err and "Traceback" not in err


def test_calibrate_once_validate_and_quantize_from_saved_ranges(model_and_data, tmp_path, capsys):
    model, data = model_and_data
    ranges = tmp_path / "ranges.json"
    assert main(["calibrate", str(model), str(data), "--out", str(ranges), "--quiet"]) == 0
    assert json.loads(ranges.read_text())["model_sha256"]
    args = ["validate", str(model), "--validation", str(data), "--quiet", "--out"]
    assert main([*args, str(tmp_path / "a.json"), "--calibration", str(data)]) == 0
    assert main([*args, str(tmp_path / "b.json"), "--ranges", str(ranges)]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["metrics"] == b["metrics"] and a["layer_errors"] == b["layer_errors"]
    assert main(["quantize", str(model), "--ranges", str(ranges), "-o", str(tmp_path / "m.onnx"), "--quiet"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.onnx"
    onnx.save(small_cnn(seed=1), other)  # same layers, other weights
    assert main(["validate", str(other), "--ranges", str(ranges), "--validation", str(data)]) == 2
    err = capsys.readouterr().err
    assert "measured on another model" in err and "small.onnx" in err and "other.onnx" in err


def test_image_folder_flags_and_messages_in_command_line_words(tmp_path, capsys):
    """--size/--channels/--extensions/--skip-bad/--no-labels reach the datastore, and
    its messages name those flags, not Python keywords."""
    from PIL import Image

    folder = tmp_path / "images"
    for cls, shade in (("cats", 40), ("dogs", 200)):
        (folder / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((10 + i, 12, 3), shade + i, np.uint8)).save(folder / cls / f"{i}.png")
    (folder / "dogs" / "broken.png").write_bytes(b"not an image")
    model = tmp_path / "m.onnx"
    onnx.save(small_cnn(), model)  # takes (N, 3, 8, 8)
    assert main(["calibrate", str(model), str(folder), "--size", "8", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--skip-bad" in err and "skip_bad" not in err
    assert main(["calibrate", str(model), str(folder), "--size", "8", "8", "--skip-bad", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.png" in captured.err
    assert "4 samples" in captured.out
    assert main(["calibrate", str(model), str(folder), "--extensions", "jpg", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--extensions" in err and "extensions=" not in err
    (folder / "stray.png").write_bytes((folder / "cats" / "0.png").read_bytes())
    assert main(["calibrate", str(model), str(folder), "--size", "8", "8", "--skip-bad", "--quiet"]) == 2
    assert "--no-labels" in capsys.readouterr().err
    assert main(["calibrate", str(model), str(folder), "--size", "8", "8", "--skip-bad", "--no-labels", "--quiet"]) == 0
    assert main(["calibrate", str(model), str(folder), "--skip-bad", "--no-labels", "--layout", "NHWC", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--layout NHWC" in err and "layout=" not in err and "ImageDatastore" not in err


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--bitstream", "zcu102"], "unknown bitstream 'zcu102'"),
        (["--bitstream", "zcu102_int8", "--frames", "0"], "--frames"),
    ],
)
def test_fpga_flag_messages_in_command_line_words(model_and_data, capsys, extra, flag):
    model, _ = model_and_data
    assert main(["profile", str(model), *extra]) == 2
    err = capsys.readouterr().err
    assert flag in err and "ProcessorConfig" not in err and "error: frames" not in err


def test_folder_classes_against_the_networks_classes(tmp_path, capsys):
    """Class subfolders that cannot be the network's classes (2 folders, 3 outputs) get
    a warning; --classes maps folder names to the network's own output indices."""
    from PIL import Image

    folder = tmp_path / "val"
    for cls in ("c", "a"):
        (folder / cls).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(folder / cls / "0.png")
    model = tmp_path / "m.onnx"
    onnx.save(small_cnn(), model)  # 3 classes
    cal = tmp_path / "cal.npz"
    np.savez(cal, x=images(6))
    base = ["validate", str(model), "--calibration", str(cal), "--validation", str(folder), "--quiet"]
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "the data has 2 classes" in err and "3 outputs" in err and "--classes FILE" in err
    names = tmp_path / "classes.txt"
    names.write_text("a\nb\n")
    assert main([*base, "--classes", str(names)]) == 2
    assert "class subfolder(s) c are not in the class list" in capsys.readouterr().err
    names.write_text("c\nb\na\n")
    out = tmp_path / "r.json"
    assert main([*base, "--classes", str(names), "--out", str(out)]) == 0
    assert "the data has" not in capsys.readouterr().err  # 3 names for 3 outputs: no warning
    assert json.loads(out.read_text())["NumSamples"] == 2


def test_ctrl_c_during_start_up_is_a_message(monkeypatch, capsys):
    import quantscope.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["--help"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_markup_in_names_and_paths_is_printed_as_text(tmp_path, capsys):
    """rich markup in node names or output paths: printed as it is, never a
    MarkupError traceback ('[/]' closes nothing)."""
    model = small_cnn()
    for node in model.graph.node:
        if node.name == "conv1":
            node.name = "[/]"
        elif node.name == "relu_conv1":
            node.name = "[bold red]evil[/bold red]"
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", images(8))
    out = tmp_path / "[red]r.json"
    assert main(["calibrate", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.replace("\n", "")
    assert "[bold red]evil[/bold red]" in printed and "[red]r.json" in printed and out.exists()
    args = ["validate", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path / "x.npy")]
    assert main([*args, "--validation", str(tmp_path / "x.npy"), "--keep-float", "nosuch", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--keep-float names 'nosuch'" in err and "keep_float" not in err
    layer = "[/]_[bold red]evil[/bold red]"  # the conv and its ReLU, one layer
    both = ["--validation", str(tmp_path / "x.npy"), "--keep-float", layer, "--require-int8", layer, "--quiet"]
    assert main([*args, *both]) == 2
    err = capsys.readouterr().err
    assert "both in --keep-float and --require-int8" in err and "keep_float" not in err


def test_outputs_never_replace_the_commands_inputs_and_os_errors_are_messages(model_and_data, tmp_path, capsys):
    """A quantized model written over its float source, ranges overwritten by the
    quantized model's scales or a report's data, a scales file that is a folder: each
    refused before any work, the inputs untouched; an unreadable file is a message."""
    model, data = (str(p) for p in model_and_data)
    ranges = tmp_path / "q.json"
    assert main(["calibrate", model, data, "--out", str(ranges), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in (Path(model), ranges)}
    capsys.readouterr()
    cases = [
        (["quantize", model, "--calibration", data, "-o", model], "would replace MODEL"),
        (["quantize", model, "--ranges", str(ranges), "-o", str(tmp_path / "q.onnx")], "would replace --ranges"),
        (
            ["validate", model, "--ranges", str(ranges), "--validation", data, "--report", str(tmp_path / "q.html")],
            "would replace --ranges",
        ),
    ]
    for args, message in cases:
        assert main([*args, "--quiet"]) == 2, args
        assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before
    (tmp_path / "s.json").mkdir()
    assert main(["quantize", model, "--calibration", data, "-o", str(tmp_path / "s.onnx"), "--quiet"]) == 2
    assert "s.json beside it, which is a folder" in capsys.readouterr().err
    assert not (tmp_path / "s.onnx").exists()
    # an OSError the checks cannot foresee (a file name longer than the system allows) is a message
    assert main(["calibrate", str(tmp_path / ("m" * 300 + ".onnx")), data, "--quiet"]) == 2
    assert "File name too long" in capsys.readouterr().err


def test_image_and_checkpoint_flags_are_named_as_flags(model_and_data, tmp_path, capsys):
    from PIL import Image

    model, data = (str(p) for p in model_and_data)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    folder = str(tmp_path / "imgs")
    cases = [
        ([folder, "--mean", "1", "2"], "--mean has 2 values"),
        ([folder, "--std", "0"], "--std must be positive"),
        ([folder, "--std", "-1"], "--std must be positive"),
        ([folder, "--size", "0", "0"], "--size must be positive"),
        ([data, "--checkpoint-every", "5"], "add --checkpoint"),
        ([data, "--checkpoint", str(tmp_path / "c.json"), "--checkpoint-every", "0"], "--checkpoint-every must be"),
    ]
    for args, message in cases:
        assert main(["calibrate", model, *args, "--quiet"]) == 2, args
        err = capsys.readouterr().err
        assert message in err, err
        assert "checkpoint_every" not in err and "checkpoint=" not in err
