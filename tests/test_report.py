"""The report (issue 12): its data as a plain dict, the page rendered from it, escaping,
determinism, the front doors (write_report, quantscope.report, .report methods) and
the command line's --report. The browser checks are in test_report_browser.py."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from reportcases import DATE, FILE, IMG, SCRIPT, demo_results, hostile_results
from tinymodels import images, small_cnn

import quantscope as qs
from quantscope.cli import main
from quantscope.report import build_report, render_html, write_report


@pytest.fixture(scope="module")
def demo():
    return demo_results()


@pytest.fixture(scope="module")
def demo_report(demo):
    return build_report(
        validation=demo["validation"],
        profile=demo["profile"],
        compiled=demo["workflow"].compiled,
        command="quantscope demo",
        date=DATE,
    )


def _strict_json(obj) -> str:
    return json.dumps(obj, allow_nan=False)


# ---------------------------------------------------------------- the data
def test_the_report_data_is_plain_json(demo_report):
    text = _strict_json(demo_report)  # no NaN, no numpy types, no objects
    assert json.loads(text) == demo_report
    assert demo_report["format"] == "quantscope.report" and demo_report["version"] == 1
    assert set(demo_report["sources"]) == {"calibration", "validation", "plan", "profile"}


def test_the_data_holds_every_panel(demo, demo_report):
    r = demo_report
    cal, res = demo["calibration"], demo["validation"]
    # verdict: float and int8 metric, memory, Frames/s, the costliest layer, the command
    (metric,) = r["verdict"]["metrics"]
    table = res.metric_results["top1_accuracy"]
    assert metric["float"] == table["MetricOutput"][0] and metric["int8"] == table["MetricOutput"][1]
    assert math.isclose(metric["difference"], metric["int8"] - metric["float"])
    assert r["verdict"]["memory"] == dict(zip(("float_bytes", "int8_bytes"), res.memory))
    assert r["verdict"]["frames_per_second"]["int8"] > 0
    assert r["verdict"]["worst_layer"] == res.verdict.split(" costs most")[0]
    assert r["verdict"]["command"] == "quantscope demo"
    # the error along the network: every layer, network order, the validation's numbers
    assert [row["name"] for row in r["layers"]] == [layer.name for layer in demo["network"].layers]
    errors = res.layer_errors.set_index("Layer")
    for row in r["layers"]:
        e = errors.loc[row["name"]]
        assert row["sqnr_db"] == pytest.approx(e["SQNR(dB)"], rel=1e-3)
        assert row["flushed"] == pytest.approx(e["FlushedToZero"], rel=1e-3, abs=1e-9)
    assert sum(row["worst"] for row in r["layers"]) == 3
    # the heat map and the ranges table: one row per calibrated tensor
    assert [t["row"] for t in r["tensors"]] == list(cal.table["Optimized Layer Name"])
    lo, hi = r["heatmap"]["octaves"]
    for t in r["tensors"]:
        assert all(lo <= k <= hi for k, _, _ in t["cells"])
        shares = sum(s for _, s, _ in t["cells"]) + (t["zero"] or 0)
        assert shares == pytest.approx(1.0, abs=1e-3)
        if t["in_range"] is not None:
            assert t["in_range"] + t["saturated"] + t["flushed"] == pytest.approx(1.0, abs=1e-3)
    # coverage, FPGA
    assert all(row["precision"] in ("int8", "float") and row["reason"] for row in r["layers"])
    assert all(row["placement"] in ("HW Layer", "SW Layer") for row in r["layers"])
    assert len(r["fpga"]["layers"]) == len(demo["profile"].layers)
    assert r["fpga"]["memory_map"][-1]["name"] == "EndOffset"
    assert r["fpga"]["resources"]["rows"][0][0] == "Available"
    # footer
    f = r["footer"]
    assert f["date"] == DATE and f["model_sha256"] == demo["network"].fingerprint
    assert len(f["calibration_sha256"]) == 64 and len(f["validation_sha256"]) == 64
    assert f["numpy"] == np.__version__


def test_heat_map_windows_are_the_plans(demo, demo_report):
    """The window of every activation row is the plan's int8 grid: from half a step
    (2^(e-1)) to 128.5 steps (-128 is the int8 value of largest magnitude) for a
    power-of-two exponent e."""
    plan = demo["validation"].plan
    net = demo["network"]
    checked = 0
    for t in demo_report["tensors"]:
        if t["kind"] != "Activations" or t["exponent"] is None:
            continue
        e = plan.activations[net.layer(t["layer"]).output].exponent
        assert t["exponent"] == e
        assert t["window"][0] == pytest.approx(e - 1, abs=1e-3)
        assert t["window"][1] == pytest.approx(e + math.log2(128.5), abs=1e-3)
        checked += 1
    assert checked > 10


def test_weight_shares_are_exact(demo, demo_report):
    """Flushed weights are counted on the tensor itself: the int8 weights that are 0
    where the float weight is not."""
    plan = demo["validation"].plan
    net = demo["network"]
    row = next(t for t in demo_report["tensors"] if t["kind"] == "Weights")
    qw, _ = plan.weights[row["layer"]]
    w = net.constant(net.layer(row["layer"]).weight)
    assert row["flushed"] == pytest.approx(np.mean((qw == 0) & (w != 0)), abs=1e-4)
    assert row["saturated"] == 0


def test_calibration_alone(demo, tmp_path):
    """A calibration reports its ranges under the fpga windows; loaded from a file
    without its network, under MATLAB's power-of-two rule per tensor."""
    cal = demo["calibration"]
    r = build_report(calibration=cal, date=DATE)
    assert r["sources"] == ["calibration", "plan"] and r["fpga"] is None
    assert all(row["sqnr_db"] is None for row in r["layers"])
    cal.save(tmp_path / "ranges.json")
    loaded = qs.Calibration.load(tmp_path / "ranges.json")
    r2 = build_report(calibration=loaded, date=DATE)
    assert r2["layers"] == [] and len(r2["tensors"]) == len(cal.entries)
    acts = [t for t in r2["tensors"] if t["kind"] == "Activations"]
    assert all(t["exponent"] is not None for t in acts)
    page = render_html(r2)
    assert 'id="heatmap"' in page and 'id="errors"' not in page


def test_profile_alone(demo, tmp_path):
    page = demo["profile"].report(tmp_path / "p.html", date=DATE)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["sources"] == ["profile"] and data["tensors"] == [] and data["layers"] == []
    assert len(data["fpga"]["layers"]) == len(demo["profile"].layers)
    assert data["fpga"]["memory_map"] is None  # no compiled network given
    html = page.read_text()
    assert 'id="fpga"' in html and html.count('class="bar"') == len(demo["profile"].layers)
    # with the workflow, the DDR map too
    write_report(demo["profile"], demo["workflow"], path=tmp_path / "p2.html", date=DATE)
    assert json.loads((tmp_path / "p2.json").read_text())["fpga"]["memory_map"]


# ---------------------------------------------------------------- the page
def test_page_is_self_contained(demo_report):
    page = render_html(demo_report)
    assert page.startswith("<!DOCTYPE html>")
    # no request can leave the page: no external reference, and a policy forbidding any
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page
    # panels in the order
    ids = re.findall(r'<section class="panel" id="(\w+)"', page)
    assert ids == ["verdict", "errors", "heatmap", "ranges", "coverage", "layers", "fpga", "graph"]
    assert 'id="footer"' in page
    # a few KB of script, one per page
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(script) < 5000
    # one heat-map row per ranges-table row, one bar per profiled layer
    ranges = re.search(r'<table class="sortable wide" id="ranges-table">.*?</table>', page, re.S).group(0)
    assert page.count('class="hm-row"') == ranges.count("<tr>") - 1 == len(demo_report["tensors"])
    assert page.count('class="bar"') == len(demo_report["fpga"]["layers"])
    assert page.count('<details class="layer"') == len(demo_report["layers"])


def test_the_script_hash_matches_the_script(demo_report):
    import base64
    import hashlib

    page = render_html(demo_report)
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page


def test_names_are_text_never_markup(tmp_path):
    results = hostile_results(tmp_path)
    res = results["validation"]
    names = {layer.name for layer in results["network"].layers}
    assert any(SCRIPT in n for n in names) and any(IMG in n for n in names)
    page = res.report(tmp_path / "r.html", date=DATE, command=f"quantscope validate '{FILE}'").read_text()
    assert "<script>alert" not in page and "<img" not in page and "<i>model" not in page
    assert "onerror=alert(2)>" not in page.replace("&gt;", "")  # every > of the name escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert (
        "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page or "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    )
    assert "&lt;i&gt;model&lt;i&gt;" in page
    # the only script element is the page's own
    assert page.count("<script") == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert any(SCRIPT in row["name"] for row in data["layers"])  # the JSON keeps the names as they are


def test_same_run_twice_gives_the_same_bytes(tmp_path):
    """Two runs of the whole pipeline (calibrate, validate with a processor, profile)
    write byte-identical pages and JSON."""
    pages = []
    for run in ("a", "b"):
        results = demo_results(calibration=200, validation=100)
        folder = tmp_path / run
        path = write_report(
            results["validation"],
            results["profile"],
            results["workflow"],
            path=folder / "report.html",
            date=DATE,
            command="quantscope demo",
        )
        pages.append((path.read_bytes(), (folder / "report.json").read_bytes()))
    assert pages[0][0] == pages[1][0]
    assert pages[0][1] == pages[1][1]


def test_the_date_is_the_only_time_in_the_page(demo_report, monkeypatch):
    page = render_html(demo_report)
    assert re.findall(r"\b20\d\d-\d\d-\d\d\b", page) == [DATE]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert build_report(calibration=_tiny_calibration())["footer"]["date"] == "1970-01-01"


def _tiny_calibration():
    return qs.calibrate(qs.prepare(small_cnn()), images(8), progress=False)


# ---------------------------------------------------------------- front doors
def test_front_doors(demo, tmp_path):
    assert qs.report is qs.report  # a function, also after the subpackage loaded
    import quantscope.report  # noqa: F401  (the subpackage loads; qs.report stays the function)

    assert callable(qs.report) and qs.report is sys.modules["quantscope.report"].write_report
    path = demo["validation"].report(tmp_path / "v.html", date=DATE)
    assert path == tmp_path / "v.html" and (tmp_path / "v.json").exists()
    path = demo["calibration"].report(tmp_path / "c.htm", date=DATE)
    assert (tmp_path / "c.json").exists() and path.suffix == ".htm"
    qs.report(demo["validation"], demo["quantized"], tmp_path / "q.html", date=DATE)
    assert json.loads((tmp_path / "q.json").read_text())["scheme"]["name"] == "PowerOfTwo"


def test_run_demo_writes_the_report(tmp_path, capsys):
    from quantscope.demo import run_demo

    done = run_demo(quiet=True, report=tmp_path / "demo.html", report_date=DATE, calibration_samples=200)
    assert done["report"] == tmp_path / "demo.html" and (tmp_path / "demo.json").exists()
    out = capsys.readouterr().out
    assert "Report:" in out and "demo.html" in out.replace("\n", "")


def test_bad_input_is_a_message(demo, tmp_path):
    with pytest.raises(qs.ConfigurationError, match=r"\.html"):
        write_report(demo["validation"], tmp_path / "r.pdf")
    with pytest.raises(qs.ConfigurationError, match="folder"):
        (tmp_path / "d.html").mkdir()
        write_report(demo["validation"], tmp_path / "d.html")
    with pytest.raises(qs.ConfigurationError, match="nothing to report"):
        write_report(path=tmp_path / "r.html")
    with pytest.raises(qs.ConfigurationError, match="cannot report a int"):
        write_report(3, tmp_path / "r.html")
    with pytest.raises(qs.ConfigurationError, match="YYYY-MM-DD"):
        write_report(demo["validation"], tmp_path / "r.html", date="31/01/2026")
    assert not (tmp_path / "r.html").exists()


def test_files_are_atomic_and_follow_the_umask(demo, tmp_path):
    old = os.umask(0o027)
    try:
        path = write_report(demo["calibration"], tmp_path / "r.html", date=DATE)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o640 and (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


# ---------------------------------------------------------------- the command line
@pytest.fixture()
def cli_files(tmp_path):
    model = tmp_path / "small.onnx"
    onnx.save(small_cnn(), model)
    data = tmp_path / "cal.npz"
    np.savez(data, x=images(12), y=np.arange(12) % 3)
    return model, data


def test_cli_report_flags(cli_files, tmp_path, capsys):
    model, data = cli_files
    page = tmp_path / "out" / "v.html"
    args = ["validate", str(model), "--calibration", str(data), "--validation", str(data), "--quiet"]
    assert main(args + ["--report", str(page), "--report-date", DATE]) == 0
    assert "wrote" in capsys.readouterr().out
    data_json = json.loads(page.with_suffix(".json").read_text())
    assert data_json["verdict"]["command"].startswith("quantscope validate ") and data_json["footer"]["date"] == DATE
    assert main(["calibrate", str(model), str(data), "--quiet", "--report", str(tmp_path / "c.html")]) == 0
    assert main(["profile", str(model), "--bitstream", "zcu102_int8", "--report", str(tmp_path / "p.html")]) == 0
    profiled = json.loads((tmp_path / "p.json").read_text())
    assert profiled["fpga"]["layers"] and profiled["fpga"]["memory_map"] and profiled["layers"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--report", "r.txt"], "--report r.txt: unknown format"),
        (["--report", "r.html", "--out", "r.json"], "also --out"),
        (["--report", "r.html", "--report-date", "tomorrow"], "--report-date 'tomorrow': give a date"),
        (["--report-date", DATE], "add --report"),
        (["--report", ""], "--report '': give a file name"),  # an empty $VAR: not silently no report
        (["--report", "taken.html"], "--report taken.html writes taken.json beside it, which is a folder"),
        (["--out", ""], "--out '': give a file name"),
    ],
)
def test_cli_report_flags_are_checked_before_work(cli_files, tmp_path, capsys, monkeypatch, extra, message):
    model, data = cli_files
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.json").mkdir()

    def no_work(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("work started before the flags were checked")

    monkeypatch.setattr("quantscope.network.prepare", no_work)
    args = ["validate", str(model), "--calibration", str(data), "--validation", str(data), "--quiet"]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err
    # a malformed SOURCE_DATE_EPOCH (the footer's default date) too, before any work
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert main([*args, "--report", "page.html"]) == 2
    assert "SOURCE_DATE_EPOCH='yesterday'" in capsys.readouterr().err


def test_import_and_help_stay_light():
    code = (
        "import sys, quantscope, quantscope.cli; print(sorted(m for m in ('jinja2', 'markupsafe') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cpu_scheme_and_an_encoder(tmp_path):
    """Per-channel weight scales and zero points (target cpu); an encoder with masks,
    embeddings and float layers: the data stays plain JSON and the page renders."""
    from tinymodels import encoder_data, tiny_encoder

    cal = qs.calibrate(qs.prepare(small_cnn()), images(32), progress=False)
    res = qs.validate(cal, images(16, seed=3), target="cpu", progress=False)
    r = build_report(validation=res, date=DATE)
    weights = [t for t in r["tensors"] if t["kind"] == "Weights"]
    assert weights and all(t["per_channel"] and t["exponent"] is None for t in weights)
    assert any(t["zero_point"] not in (None, 0) for t in r["tensors"] if t["kind"] == "Activations")
    qw, qp = res.plan.weights[weights[0]["layer"]]
    w = res.plan.network.constant(res.plan.network.layer(weights[0]["layer"]).weight)
    assert weights[0]["flushed"] == pytest.approx(np.mean((qw == 0) & (w != 0)), abs=1e-4)
    assert "<svg" in render_html(r)
    enc = qs.prepare(tiny_encoder())
    data = encoder_data(16)
    res = qs.validate(qs.calibrate(enc, data, progress=False), data, target="cpu", progress=False)
    path = res.report(tmp_path / "encoder.html", date=DATE)
    data_json = json.loads(path.with_suffix(".json").read_text())
    assert any(row["precision"] == "float" for row in data_json["layers"])
    assert len(data_json["tensors"]) == len(res.calibration.entries)


def test_the_heat_map_says_an_infinite_range():
    """JSON has no infinity (the data's min is null); the heat map's tooltip says -inf,
    where it said 'min None' for an attention mask's fill."""
    from quantscope.report.svg import heatmap

    row = {"row": "mask_add", "kind": "Add", "min": None, "max": 3.5, "range_text": "min -inf, max 3.5"}
    row.update({"layer_index": None, "cells": [], "window": None, "in_range": None, "zero": 0.0})
    page = str(heatmap([row], (0, 2)))
    assert "min -inf, max 3.5" in page and "min None" not in page
    from quantscope.report.build import _g

    assert (_g(float("-inf")), _g(float("inf")), _g(3.5), _g(1 / 3)) == ("-inf", "inf", "3.5", "0.333333")
