"""The report in a real browser: headless Chromium (Debian's ``chromium``, installed by
scripts/install_test_data.sh) driven by playwright, which never downloads a browser.

The demo's page and MobileNetV2's load with no console error and no request; the
DOM holds one heat-map row per ranges-table row and one bar per profiled layer; every
panel is photographed at 1280 px (under a temporary folder, or under
$QUANTSCOPE_SCREENSHOTS when set); the tables sort, the layers expand, the page reads
with JavaScript off, and hostile names stay text.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest
from reportcases import DATE, IMG, SCRIPT, demo_results, hostile_results

from quantscope.report import write_report

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium: bash scripts/install_test_data.sh installs it")

PANELS = ["verdict", "errors", "heatmap", "ranges", "coverage", "layers", "fpga", "graph", "footer"]
MAX_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The report pages: the demo's, MobileNetV2's (when its weights are installed)."""
    folder = tmp_path_factory.mktemp("reports")
    out = {}
    r = demo_results()
    out["demo"] = write_report(
        r["validation"], r["profile"], r["workflow"], path=folder / "demo.html", date=DATE, command="quantscope demo"
    )
    out["mobilenetv2"] = _mobilenet_page(folder)
    return out


def _mobilenet_page(folder: Path) -> Path | None:
    try:
        import torch
        from realdata import imagenet_inputs, mobilenet_v2_module

        module = mobilenet_v2_module()
    except (ImportError, pytest.skip.Exception):
        return None
    import quantscope as qs

    net = qs.prepare(module, example_input=torch.zeros(1, 3, 224, 224))
    x = imagenet_inputs(16)
    cal = qs.calibrate(net, x[:8], batch_size=8, progress=False)
    res = qs.validate(cal, x[8:], target="fpga", processor="zcu102_int8", batch_size=8, progress=False)
    return res.report(folder / "mobilenetv2.html", date=DATE, command="MobileNetV2 on 8 + 8 photos")


@pytest.fixture(params=["demo", "mobilenetv2"])
def page_path(request, pages):
    path = pages[request.param]
    if path is None:
        pytest.skip("MobileNetV2's weights or torch are not installed (scripts/install_test_data.sh)")
    return path


class _Watch:
    """A page's console errors, uncaught exceptions and requests."""

    def __init__(self, page, own_url: str):
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", lambda r: self.requests.append(r.url) if r.url.split("#")[0] != own_url else None)
        page.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))


def _open(browser, path: Path, javascript: bool = True):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=javascript)
    page = context.new_page()
    url = path.resolve().as_uri()
    watch = _Watch(page, url)
    page.goto(url, wait_until="load")
    return context, page, watch


def test_page_loads_with_no_error_and_no_request(browser, page_path):
    assert page_path.stat().st_size <= MAX_BYTES
    context, page, watch = _open(browser, page_path)
    page.locator("#expand-all").click()  # every chart drawn, every detail shown
    page.wait_for_timeout(200)
    assert watch.errors == []
    assert watch.requests == []
    context.close()


def test_one_heatmap_row_per_ranges_row_and_one_bar_per_profiled_layer(browser, page_path):
    data = json.loads(page_path.with_suffix(".json").read_text())
    context, page, _ = _open(browser, page_path)
    rows = page.locator("#ranges-table tbody tr").count()
    assert rows == len(data["tensors"]) > 0
    assert page.locator("#heatmap svg g.hm-row").count() == rows
    assert page.locator("#fpga svg g.bar").count() == len(data["fpga"]["layers"]) > 0
    assert page.locator("#graph svg g.node").count() == len(data["layers"])
    context.close()


def test_screenshots_of_every_panel_at_1280_px(browser, page_path, tmp_path):
    folder = Path(os.environ.get("QUANTSCOPE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    context, page, _ = _open(browser, page_path)
    assert page.evaluate("window.innerWidth") == 1280
    for panel in PANELS:
        shot = folder / f"{page_path.stem}-{panel}.png"
        page.locator(f"#{panel}").screenshot(path=str(shot))
        width, height = struct.unpack(">II", shot.read_bytes()[16:24])  # the PNG header
        assert 1000 <= width <= 1280 and height > 20, (panel, width, height)
    context.close()


def test_tables_sort_and_layers_expand(browser, pages):
    context, page, watch = _open(browser, pages["demo"])
    header = page.locator("#ranges-table thead th", has_text="MaxValue")
    header.click()
    values = [
        float(v)
        for v in page.locator("#ranges-table tbody tr td:nth-child(5)").evaluate_all(
            "cells => cells.map(c => c.getAttribute('data-v'))"
        )
    ]
    assert values == sorted(values)
    header.click()
    values = [
        float(v)
        for v in page.locator("#ranges-table tbody tr td:nth-child(5)").evaluate_all(
            "cells => cells.map(c => c.getAttribute('data-v'))"
        )
    ]
    assert values == sorted(values, reverse=True)
    assert page.locator("details.layer[open]").count() == 0
    page.locator("#expand-all").click()
    # locator assertions poll with playwright's injected script: the page's Content
    # Security Policy forbids the eval that wait_for_function's string needs
    playwright.expect(page.locator("details.layer:not([open])")).to_have_count(0, timeout=5000)
    # a box of the graph opens its layer's detail
    page.locator("#collapse-all").click()
    page.locator("#graph g.node a").nth(2).click()
    playwright.expect(page.locator("#layer-2")).to_have_attribute("open", "", timeout=5000)  # on hashchange
    assert watch.errors == []
    context.close()


def test_readable_with_javascript_off(browser, pages):
    context, page, watch = _open(browser, pages["demo"], javascript=False)
    assert page.locator("#ranges-table tbody tr").count() > 0
    assert page.locator("#heatmap svg g.hm-row").count() == page.locator("#ranges-table tbody tr").count()
    assert not page.locator("#expand-all").is_visible()  # buttons that need the script are hidden
    page.locator("#layer-2 > summary").click()  # <details> opens without script
    assert page.locator("#layer-2 svg").first.is_visible()
    assert watch.errors == [] and watch.requests == []
    context.close()


def test_hostile_names_are_text(browser, tmp_path):
    results = hostile_results(tmp_path)
    path = results["validation"].report(tmp_path / "hostile.html", date=DATE)
    context, page, watch = _open(browser, path)
    page.locator("#expand-all").click()
    page.wait_for_timeout(200)
    assert watch.errors == [] and watch.requests == []  # no alert(), no image fetched
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1
    body = page.locator("body").inner_text()
    assert SCRIPT in body and IMG in body  # shown as the names they are
    context.close()


def test_the_watch_sees_errors_and_requests(browser, pages, tmp_path):
    """The checks above can fail: a script the policy refuses is a console error, and
    without the policy an image on another host is a request (to a closed local port)."""
    page_text = pages["demo"].read_text()
    bad = tmp_path / "bad.html"
    bad.write_text(page_text.replace("</main>", '<script>console.log("injected")</script></main>'))
    context, page, watch = _open(browser, bad)
    assert any("Content Security Policy" in e for e in watch.errors)
    context.close()
    open_page = tmp_path / "open.html"
    start = page_text.index('<meta http-equiv="Content-Security-Policy"')
    stripped = page_text[:start] + page_text[page_text.index(">", start) + 1 :]
    open_page.write_text(stripped.replace("</main>", '<img src="http://127.0.0.1:9/x.png" alt=""></main>'))
    context, page, watch = _open(browser, open_page)
    assert watch.requests == ["http://127.0.0.1:9/x.png"]
    context.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_long_names_wrap_in_the_tables(browser, tmp_path):
    """A 600-character node name wraps inside its cell: no table grows thousands of
    pixels wide (the ranges table's Network Layer Name column did)."""
    import onnx
    from tinymodels import images, small_cnn

    import quantscope as qs

    model = small_cnn()
    for node in model.graph.node:
        if node.name == "relu_conv1":
            node.name = "a" * 600
    onnx.save(model, tmp_path / "long.onnx")
    cal = qs.calibrate(qs.prepare(tmp_path / "long.onnx"), images(8), progress=False)
    path = qs.validate(cal, images(8, seed=2), target="fpga", progress=False).report(tmp_path / "long.html", date=DATE)
    context, page, watch = _open(browser, path)
    widths = page.evaluate("[...document.querySelectorAll('table')].map(t => [t.id, t.getBoundingClientRect().width])")
    assert watch.errors == []
    assert all(width < 2000 for _, width in widths), widths
    context.close()
