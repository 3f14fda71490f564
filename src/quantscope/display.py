"""What the command line and the demo print: MATLAB-like tables with rich."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["format_number", "print_ranges", "print_validation"]


def format_number(value: float) -> str:
    """MATLAB-like short number: 5 significant digits; blank for NaN (not applicable)."""
    if isinstance(value, float) and math.isnan(value):
        return ""
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
        t.add_row(escape(str(row[0])), escape(str(row[1])), str(row[2]), format_number(row[3]), format_number(row[4]))
    console.print(t)


def print_validation(console: Console, result, max_layers: int = 10) -> None:
    """Print MATLAB's validation tables, the worst layers and the verdict."""
    console.print(
        f"NumSamples: {result.num_samples}"
        + ("" if result.labelled else " (no labels: int8 compared with the float network's output)")
    )
    for name, df in result.metric_results.items():
        t = Table(title=f"Metric: {name}", header_style="bold")
        for col in df.columns:
            t.add_column(col, justify="left" if col == "NetworkImplementation" else "right")
        for row in df.itertuples(index=False):
            t.add_row(str(row[0]), f"{row[1]:.6g}", f"{int(row[2]):,}", *[f"{v:.5g}" for v in row[3:]])
        console.print(t)
    t = Table(title="Layers that lose most (worst first)", header_style="bold")
    for col in ("Layer", "Precision", "SQNRDrop(dB)", "SQNR(dB)", "WeightSQNR(dB)", "Saturated", "FlushedToZero"):
        t.add_column(col, overflow="fold", justify="left" if col in ("Layer", "Precision") else "right")
    for row in result.layer_errors.head(max_layers).itertuples(index=False):
        t.add_row(
            escape(str(row[0])),
            str(row[2]),
            format_number(row[4]),
            format_number(row[3]),
            format_number(row[6]),
            f"{100 * row[7]:.2f}%",
            f"{100 * row[8]:.2f}%",
        )
    console.print(t)
    console.print(f"[bold]Verdict:[/] {escape(result.verdict)}")
