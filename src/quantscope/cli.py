"""The ``quantscope`` command: a thin layer over the library.

    quantscope calibrate MODEL DATA [--batch-size N] [--out ranges.json|ranges.csv]
    quantscope demo
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import QuantscopeError

__all__ = ["main"]


def _fmt(value: float) -> str:
    """MATLAB-like short number: 5 significant digits."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    return f"{value:.5g}"


def print_ranges(console: Console, table, title: str = "Calibration ranges", max_rows: int | None = None) -> None:
    """Print a calibration table (pandas) with rich."""
    t = Table(title=title, show_lines=False, header_style="bold")
    for col in ("Optimized Layer Name", "Network Layer Name", "Learnables / Activations"):
        t.add_column(col, overflow="fold")
    t.add_column("MinValue", justify="right")
    t.add_column("MaxValue", justify="right")
    rows = table.itertuples(index=False)
    for i, row in enumerate(rows):
        if max_rows is not None and i >= max_rows:
            t.add_row("...", "", "", "", "")
            break
        t.add_row(str(row[0]), str(row[1]), str(row[2]), _fmt(row[3]), _fmt(row[4]))
    console.print(t)


def _cmd_calibrate(args: argparse.Namespace, console: Console) -> int:
    from .calibrate import calibrate
    from .network import prepare

    network = prepare(args.model)
    for note in network.log.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    start = time.perf_counter()
    result = calibrate(
        network,
        args.data,
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
        layout=args.layout,
        use_gpu=args.gpu,
    )
    elapsed = time.perf_counter() - start
    print_ranges(console, result.table)
    console.print(f"{result.num_samples} samples, {len(result)} tensors, {elapsed:.2f} s")
    if args.out:
        path = result.save(args.out)
        console.print(f"wrote {path}")
    return 0


def _cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from .demo import run_demo

    run_demo(console, quiet=args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantscope",
        description="Calibrate, quantize, validate and profile networks for int8 on CPUs and FPGAs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("calibrate", help="collect every layer's ranges (MATLAB's calibrate)")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("data", help="image folder (labels from subfolders), .npy or .npz (x, optional y)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per run (default 32)")
    p.add_argument("--out", help="write the ranges to this .json (with histograms) or .csv file")
    p.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW", help="layout of array data")
    p.add_argument("--gpu", action="store_true", help="run the float network on a GPU")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("demo", help="run the whole workflow on a model and data shipped with quantscope")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except QuantscopeError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
