"""The report's page: the dict of :func:`~quantscope.report.build_report` rendered with
Jinja2 (autoescaping on) into one self-contained HTML file.

The CSS, a few KB of JavaScript (sorting the tables, expanding every layer) and every
chart (SVG from :mod:`quantscope.report.svg`) are inside the page. A Content Security
Policy in the page forbids any request (``default-src 'none'``) and lets only the
page's own script run (by its sha256), so nothing leaves the page, and a name that
slipped through as markup could not run. The page reads the same with JavaScript off:
tables stay in network order and every layer's detail is a ``<details>`` element.
"""

from __future__ import annotations

import base64
import hashlib
import math
from functools import lru_cache
from importlib.resources import files

import jinja2
from markupsafe import Markup

from . import svg

__all__ = ["render_html"]

_PANELS = [
    ("verdict", "Verdict", None),
    ("errors", "Error along the network", "has_errors"),
    ("heatmap", "Dynamic range", "tensors"),
    ("ranges", "Ranges", "tensors"),
    ("coverage", "Coverage", "layers"),
    ("layers", "Layers", "layers"),
    ("fpga", "FPGA", "fpga"),
    ("graph", "Network", "layers"),
    ("footer", "Footer", None),
]


def _fmt(v) -> str:
    """5 significant digits (MATLAB's short format); blank for None."""
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    if v == 0:
        return "0"
    return f"{v:.5g}"


def _signed(v) -> str:
    return "" if v is None else ("+" if v > 0 else "") + f"{v:.5g}"


def _pct(v) -> str:
    if v is None:
        return ""
    if v == 0:
        return "0%"
    if abs(v) < 1e-4:
        return "<0.01%"
    return f"{100 * v:.2f}%"


def _db(v) -> str:
    return "" if v is None else f"{v:.2f}"


def _raw(v) -> str:
    """A sort key for ``data-v``: the number as repr, blank for None."""
    return "" if v is None else repr(v)


def _bytes(v) -> str:
    return "" if v is None else f"{v:,} B"


def _int(v) -> str:
    return "" if v is None else f"{int(v):,}"


def _memratio(m) -> str:
    if not m or not m.get("float_bytes"):
        return ""
    return f"{m['int8_bytes'] / m['float_bytes']:.3g}x"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("quantscope.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=_fmt, signed=_signed, pct=_pct, db=_db, raw=_raw, bytes=_bytes, int_=_int, memratio=_memratio
    )
    return env


def _asset(name: str) -> str:
    return (files("quantscope.report") / "templates" / name).read_text(encoding="utf-8")


def _charts(r: dict) -> dict:
    layers = r["layers"]
    index = {layer["name"]: layer["index"] for layer in layers}
    charts: dict = {"hist": {}, "channels": {}}
    validated = [layer for layer in layers if layer["sqnr_db"] is not None]
    if validated:
        charts["sqnr"] = svg.sqnr_chart(validated)
    if r["tensors"]:
        rows = [dict(t, layer_index=index.get(t["layer"])) for t in r["tensors"]]
        charts["heatmap"] = svg.heatmap(rows, r["heatmap"]["octaves"])
    for layer in layers:
        charts["hist"][layer["index"]] = svg.histogram_pair(layer["histogram"]) if layer["histogram"] else ""
        charts["channels"][layer["index"]] = svg.channel_ranges(layer["channels"]) if layer["channels"] else ""
    if layers:
        charts["graph"] = svg.graph(layers)
    f = r["fpga"]
    if f and f.get("layers"):
        charts["cycles"] = svg.bar_chart(
            [(c["label"], c["cycles"], c["module"]) for c in f["layers"]], label="cycles per layer"
        )
    if f and f.get("memory_regions"):
        charts["memory"] = svg.memory_bar(f["memory_regions"], f["memory_total"])
    return charts


def render_html(report: dict, json_name: str = "report.json") -> str:
    """The page of a report dict (from :func:`~quantscope.report.build_report`).

    ``json_name``: the file name of the JSON written beside the page (named in the footer).
    """
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    layers = report["layers"]
    has_errors = any(layer["sqnr_db"] is not None for layer in layers)
    present = {
        "has_errors": has_errors,
        "tensors": bool(report["tensors"]),
        "layers": bool(layers),
        "fpga": bool(report["fpga"]),
    }
    panels = [(pid, label) for pid, label, need in _PANELS if need is None or present[need]]
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=report,
        css=Markup(_asset("report.css")),
        script=Markup(script),
        script_hash=f"sha256-{digest}",
        panels=panels,
        charts=_charts(report),
        has_errors=has_errors,
        error_layers=[layer for layer in layers if layer["sqnr_db"] is not None],
        worst_count=sum(1 for layer in layers if layer["worst"]),
        has_placement=any(layer["placement"] for layer in layers),
        layer_index={layer["name"]: layer["index"] for layer in layers},
        json_name=json_name,
    )
