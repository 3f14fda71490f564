"""The report's size and the time to write it, on MobileNetV2 and on the demo; with
``--screenshots DIR``, the README's two pictures of the page (headless Chromium).

    python benchmarks/report.py                                  # the table
    python benchmarks/report.py --screenshots docs/images        # and the README's pictures

MobileNetV2 (torchvision's ImageNet weights, ``quantscope.zoo``) is calibrated and
validated on the 22 photos of scikit-image (the README's MobileNetV2 run), with the
``zcu102_int8`` processor for the FPGA panel; the demo runs as ``quantscope demo``
does. "write" is ``write_report`` alone (the data, the page, both files), the median
of three runs, on results already computed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the photos and the MobileNetV2 module of the tests

DATE = "2026-01-31"


def _mobilenet() -> tuple[str, tuple, dict]:
    import torch
    from realdata import imagenet_photos, mobilenet_v2_module

    import quantscope as qs

    net = qs.prepare(mobilenet_v2_module(), example_input=torch.zeros(1, 3, 224, 224))
    x = imagenet_photos()
    cal = qs.calibrate(net, x, batch_size=11, progress=False)
    res = qs.validate(cal, x, target="fpga", processor="zcu102_int8", batch_size=11, progress=False)
    return "MobileNetV2 (22 photos, zcu102_int8)", (res,), {"command": "python benchmarks/report.py"}


def _demo() -> tuple[str, tuple, dict]:
    from rich.console import Console

    from quantscope.demo import run_demo

    done = run_demo(Console(file=open("/dev/null", "w")), quiet=True)  # noqa: SIM115
    return "demo (quantscope demo)", (done["validation"], done["profile"]), {"command": "quantscope demo"}


def measure(folder: Path) -> list[tuple[str, Path, float]]:
    from quantscope.report import write_report

    rows = []
    for build in (_mobilenet, _demo):
        name, results, options = build()
        path = folder / f"{build.__name__.strip('_')}.html"
        times = []
        for _ in range(3):
            start = time.perf_counter()
            write_report(*results, path=path, date=DATE, **options)
            times.append(time.perf_counter() - start)
        rows.append((name, path, statistics.median(times)))
    return rows


def screenshots(page: Path, folder: Path) -> list[Path]:
    """The error panel and the top of the heat map, 1280 px wide."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: bash scripts/install_test_data.sh installs it")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.goto(page.resolve().as_uri())
        for panel, height, name in (("errors", 420, "report-errors.png"), ("heatmap", 640, "report-heatmap.png")):
            box = tab.locator(f"#{panel}").bounding_box()
            clip = {"x": box["x"], "y": box["y"], "width": box["width"], "height": min(box["height"], height)}
            path = folder / name
            tab.screenshot(path=str(path), clip=clip, full_page=True)
            out.append(path)
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, help="write the README's two pictures (PNG) into this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(tmp))
        print("| report | page | report.json | write (s) |")
        print("|---|---:|---:|---:|")
        for name, path, seconds in rows:
            page, data = path.stat().st_size / 1e6, path.with_suffix(".json").stat().st_size / 1e6
            print(f"| {name} | {page:.2f} MB | {data:.2f} MB | {seconds:.2f} |")
        if args.screenshots:
            for shot in screenshots(rows[0][1], args.screenshots):
                print(f"wrote {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
