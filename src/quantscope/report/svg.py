"""A small SVG writer for the report's charts: no matplotlib, no JavaScript.

Every chart is a string of SVG built here from numbers and names. Names (layers,
tensors, files) pass through :func:`esc` before they enter the markup, and numbers
are written with a fixed number of decimals, so the same data gives the same bytes.
The functions return :class:`markupsafe.Markup`, which the Jinja2 templates insert as
it is (their autoescaping would otherwise escape the markup itself).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

from markupsafe import Markup

__all__ = [
    "PALETTE",
    "Svg",
    "bar_chart",
    "channel_ranges",
    "drop_colour",
    "esc",
    "histogram_pair",
    "num",
    "sqnr_chart",
]

#: The colours of every chart (also named in the page's CSS legend).
PALETTE = {
    "in": "#2f6db5",  # values the int8 window holds
    "saturated": "#c62828",  # values beyond it: they saturate
    "flushed": "#e69a00",  # values below its last step: they flush to zero
    "float": "#7a7a7a",  # float layers, float values
    "window": "#111111",
    "conv": "#2f6db5",
    "fc": "#7b4fb0",
    "adder": "#2e8b57",
    "grid": "#d9d9d9",
}


def esc(text: object) -> str:
    """``text`` as SVG/HTML text or attribute value: ``& < > " '`` escaped."""
    return html.escape(str(text), quote=True)


def num(x: float, digits: int = 1) -> str:
    """A coordinate: ``digits`` decimals, trailing zeros dropped (``12``, ``3.5``)."""
    s = f"{x:.{digits}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


class Svg:
    """An SVG document written element by element."""

    def __init__(self, width: float, height: float, css_class: str = "chart", label: str = ""):
        self.width, self.height = width, height
        self.parts: list[str] = []
        self.css_class = css_class
        self.label = label

    def add(self, markup: str) -> None:
        """Raw markup, already escaped."""
        self.parts.append(markup)

    def rect(self, x: float, y: float, w: float, h: float, fill: str = "", cls: str = "", title: str = "", **attrs):
        a = f'<rect x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(h)}"'
        if fill:
            a += f' fill="{esc(fill)}"'
        if cls:
            a += f' class="{esc(cls)}"'
        for k, v in attrs.items():
            a += f' {k.replace("_", "-")}="{esc(v)}"'
        self.parts.append(a + (f"><title>{esc(title)}</title></rect>" if title else "/>"))

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#000", width: float = 1, **attrs):
        a = f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" stroke="{esc(stroke)}"'
        a += f' stroke-width="{num(width)}"'
        for k, v in attrs.items():
            a += f' {k.replace("_", "-")}="{esc(v)}"'
        self.parts.append(a + "/>")

    def path(self, d: str, stroke: str = "none", fill: str = "none", width: float = 1, **attrs):
        a = f'<path d="{d}" stroke="{esc(stroke)}" fill="{esc(fill)}" stroke-width="{num(width)}"'
        for k, v in attrs.items():
            a += f' {k.replace("_", "-")}="{esc(v)}"'
        self.parts.append(a + "/>")

    def text(self, x: float, y: float, text: object, anchor: str = "start", cls: str = "", size: float = 11, **attrs):
        a = f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}"'
        if anchor != "start":
            a += f' text-anchor="{anchor}"'
        if cls:
            a += f' class="{esc(cls)}"'
        for k, v in attrs.items():
            a += f' {k.replace("_", "-")}="{esc(v)}"'
        self.parts.append(f"{a}>{esc(text)}</text>")

    def open(self, tag: str, **attrs) -> None:
        a = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
        self.parts.append(f"<{tag}{a}>")

    def close(self, tag: str) -> None:
        self.parts.append(f"</{tag}>")

    def markup(self) -> Markup:
        label = f' role="img" aria-label="{esc(self.label)}"' if self.label else ""
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="{esc(self.css_class)}" width="{num(self.width)}" '
            f'height="{num(self.height)}" viewBox="0 0 {num(self.width)} {num(self.height)}"{label}>'
        )
        return Markup(head + "".join(self.parts) + "</svg>")


def drop_colour(drop: float | None) -> str:
    """A colour for an SQNR drop in dB: green (0) through yellow (6) to red (>= 12)."""
    if drop is None or not math.isfinite(drop):
        return "#e0e0e0"
    t = min(max(drop / 12.0, 0.0), 1.0)
    # green (46,139,87) -> yellow (240,200,60) -> red (198,40,40)
    if t < 0.5:
        a, b, u = (46, 139, 87), (240, 200, 60), t / 0.5
    else:
        a, b, u = (240, 200, 60), (198, 40, 40), (t - 0.5) / 0.5
    r, g, bl = (round(a[i] + (b[i] - a[i]) * u) for i in range(3))
    return f"#{r:02x}{g:02x}{bl:02x}"


def _pastel(colour: str, amount: float = 0.45) -> str:
    """``colour`` mixed with white (dark text stays readable on it)."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks, v = [], start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def bar_chart(
    rows: Sequence[tuple[str, float, str]],
    width: int = 1180,
    value_label: str = "cycles",
    row_class: str = "bar",
    label: str = "",
) -> Markup:
    """Horizontal bars, one per ``(name, value, colour key)`` row, in the given order."""
    bar_h, gap, left, right, top = 14, 4, 300, 90, 24
    height = top + len(rows) * (bar_h + gap) + 10
    svg = Svg(width, height, "chart bars", label)
    vmax = max((v for _, v, _ in rows), default=0) or 1
    span = width - left - right
    for t in _nice_ticks(0, vmax):
        x = left + span * t / vmax
        svg.line(x, top - 4, x, height - 6, PALETTE["grid"], 1)
        svg.text(x, top - 8, f"{t:,.0f}", "middle", size=10)
    svg.text(left - 6, top - 8, value_label, "end", size=10)
    for i, (name, value, key) in enumerate(rows):
        y = top + i * (bar_h + gap)
        svg.open("g", class_=row_class)
        svg.text(left - 6, y + bar_h - 3, _clip(name, 46), "end", size=11)
        svg.rect(
            left,
            y,
            max(span * value / vmax, 1),
            bar_h,
            PALETTE.get(key, PALETTE["float"]),
            title=f"{name}: {value:,.0f}",
        )
        svg.text(left + span * value / vmax + 4, y + bar_h - 3, f"{value:,.0f}", size=10)
        svg.close("g")
    return svg.markup()


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def sqnr_chart(layers: Sequence[dict], width: int = 1180, height: int = 300) -> Markup:
    """Per layer in network order: the output SQNR (dB, line and dots) and the SQNR
    drop (bars), with the saturated and flushed shares (small bars below)."""
    left, right, top, rate_h = 50, 70, 20, 50
    plot_h = height - top - rate_h - 40
    n = max(len(layers), 1)
    step = (width - left - right) / n
    values = [v for r in layers for v in (r["sqnr_db"], r["sqnr_drop_db"]) if v is not None]
    vmax = max([60.0] + [v for v in values if v is not None])
    vmin = min([0.0] + [v for v in values if v is not None])
    svg = Svg(width, height, "chart sqnr", "SQNR along the network")

    def y_of(v: float) -> float:
        return top + plot_h * (vmax - v) / (vmax - vmin)

    for t in _nice_ticks(vmin, vmax, 6):
        y = y_of(t)
        svg.line(left, y, width - right, y, PALETTE["grid"], 1)
        svg.text(left - 4, y + 3, f"{t:g}", "end", size=10)
    svg.text(left - 4, top - 8, "dB", "end", size=10)
    zero = y_of(0)
    points = []
    for i, r in enumerate(layers):
        x = left + step * (i + 0.5)
        drop = r["sqnr_drop_db"]
        if drop is not None and drop > 0:
            svg.rect(
                x - max(step * 0.35, 0.5),
                y_of(drop),
                max(step * 0.7, 1),
                zero - y_of(drop),
                drop_colour(drop),
                title=f"{r['name']}: SQNR drop {drop:.2f} dB",
                cls="drop" + (" worst" if r.get("worst") else ""),
            )
        if r["sqnr_db"] is not None:
            points.append((x, y_of(r["sqnr_db"]), r))
    if points:
        d = "M" + " L".join(f"{num(x)} {num(y)}" for x, y, _ in points)
        svg.path(d, "#1f3f74", width=1.5)
        for x, y, r in points:
            svg.add(
                f'<circle cx="{num(x)}" cy="{num(y)}" r="2.5" fill="#1f3f74"><title>{esc(r["name"])}: SQNR '
                f"{r['sqnr_db']:.2f} dB</title></circle>"
            )
    every = max(1, math.ceil(n / 40))
    for i, r in enumerate(layers):
        if i % every == 0:
            svg.text(left + step * (i + 0.5), top + plot_h + 12, str(r["index"]), "middle", size=9)
    # saturation / flush rates
    base = top + plot_h + 30 + rate_h
    rmax = max([0.01] + [max(r["saturated"] or 0, r["flushed"] or 0) for r in layers])
    svg.text(left - 4, base - rate_h + 8, f"{100 * rmax:.2g}%", "end", size=10)
    svg.text(left - 4, base, "0%", "end", size=10)
    svg.line(left, base, width - right, base, PALETTE["grid"], 1)
    for i, r in enumerate(layers):
        x = left + step * (i + 0.5)
        w = max(step * 0.3, 0.5)
        for off, key in ((-w, "saturated"), (0, "flushed")):
            v = r[key] or 0
            if v > 0:
                h = rate_h * v / rmax
                svg.rect(x + off, base - h, w, h, PALETTE[key], title=f"{r['name']}: {100 * v:.3g}% {key}")
    svg.text(width - right + 4, base - rate_h / 2, "sat./flush", size=10)
    return svg.markup()


def histogram_pair(hist: dict, width: int = 560, height: int = 170) -> Markup:
    """One layer's activations: the float values (calibration data) and the same
    values on the int8 grid, as shares per histogram bin on a log2 |x| axis, with the
    int8 window and the shares that are exactly zero."""
    left, right, top, bottom = 40, 64, 14, 28
    lo, hi = hist["x_range"]
    span_x = max(hi - lo, 1e-9)
    plot_w, plot_h = width - left - right, height - top - bottom
    svg = Svg(width, height, "chart hist", "float and int8 activation histograms")
    ymax = max([1e-9] + [p[2] for p in hist["float"]] + [p[2] for p in hist["int8"]])

    def x_of(v: float) -> float:
        return left + plot_w * (v - lo) / span_x

    def y_of(s: float) -> float:
        return top + plot_h * (1 - s / ymax)

    if hist.get("window"):
        w_lo, w_hi = hist["window"]
        a, b = x_of(max(w_lo, lo)), x_of(min(w_hi, hi))
        if b > a:
            svg.rect(a, top, b - a, plot_h, "#eef3fb", cls="window")
    for k in range(math.ceil(lo), math.floor(hi) + 1):
        if k % 2 == 0:
            x = x_of(k)
            svg.line(x, top + plot_h, x, top + plot_h + 3, "#555", 1)
            svg.text(x, top + plot_h + 14, f"2^{k}", "middle", size=9)
    svg.line(left, top + plot_h, left + plot_w, top + plot_h, "#555", 1)
    for key, colour in (("float", PALETTE["float"]), ("int8", PALETTE["in"])):
        pts = hist[key]
        if not pts:
            continue
        base = num(top + plot_h)
        d, prev = [], None
        for a, b, s in pts:
            x0, x1 = num(x_of(max(a, lo))), num(x_of(b))
            if x0 != prev:
                d.append(("" if prev is None else f"V{base}") + f"M{x0} {base}")
            d.append(f"V{num(y_of(s))}H{x1}")
            prev = x1
        d.append(f"V{base}")
        if key == "float":
            svg.path("".join(d), "none", colour, 1, opacity="0.55")
        else:
            svg.path("".join(d), colour, "none", 1)
    # zeros: a separate column at the right
    zx = left + plot_w + 14
    svg.text(zx + 11, top + plot_h + 14, "0", "middle", size=9)
    for off, key, colour in ((0, "zero_float", PALETTE["float"]), (12, "zero_int8", PALETTE["in"])):
        s = hist.get(key) or 0
        if s > 0:
            y = y_of(min(s, ymax))
            svg.rect(zx + off, y, 10, top + plot_h - y, colour, title=f"{key.replace('_', ' ')}: {100 * s:.3g}%")
    zf, zi = hist.get("zero_float"), hist.get("zero_int8")
    zeros = " / ".join(f"{100 * v:.3g}%" for v in (zf, zi) if v is not None)
    svg.text(width - 2, height - 2, f"zeros {zeros}", "end", size=8)
    svg.text(left, top - 3, f"share (max {ymax:.3g})", size=9)
    svg.text(width - right, top - 3, "grey: float  blue: int8", "end", size=9)
    return svg.markup()


def channel_ranges(channels: dict, width: int = 560, height: int = 150) -> Markup:
    """A conv/fc layer's weights: each output channel's min..max as a vertical line,
    with the int8 range of the tensor (per-tensor scale) dashed."""
    left, right, top, bottom = 48, 10, 12, 24
    lows, highs = channels["min"], channels["max"]
    n = max(len(lows), 1)
    vmax = max([1e-12] + [abs(v) for v in lows + highs] + [abs(v) for v in channels.get("limits") or []])
    plot_w, plot_h = width - left - right, height - top - bottom
    svg = Svg(width, height, "chart channels", "per-channel weight ranges")

    def y_of(v: float) -> float:
        return top + plot_h * (vmax - v) / (2 * vmax)

    svg.line(left, y_of(0), left + plot_w, y_of(0), PALETTE["grid"], 1)
    svg.text(left - 4, y_of(vmax) + 8, f"{vmax:.3g}", "end", size=9)
    svg.text(left - 4, y_of(-vmax), f"{-vmax:.3g}", "end", size=9)
    step = plot_w / n
    d = "".join(
        f"M{num(left + step * (i + 0.5))} {num(y_of(hi_))}V{num(y_of(lo_))}"
        for i, (lo_, hi_) in enumerate(zip(lows, highs))
    )
    svg.path(d, PALETTE["in"], width=max(min(step * 0.8, 3), 0.6))
    for v in channels.get("limits") or []:
        svg.line(left, y_of(v), left + plot_w, y_of(v), PALETTE["saturated"], 1, stroke_dasharray="4 3")
    grouped = channels.get("group", 1)
    svg.text(
        left,
        height - 6,
        f"{channels['count']} output channels" + (f" (groups of {grouped})" if grouped > 1 else ""),
        size=9,
    )
    return svg.markup()


def legend(items: Iterable[tuple[str, str]]) -> Markup:
    """Coloured squares with labels, as one small SVG."""
    items = list(items)
    svg = Svg(150 * len(items), 18, "legend")
    for i, (colour, text) in enumerate(items):
        svg.rect(150 * i, 4, 10, 10, colour)
        svg.text(150 * i + 14, 13, text, size=11)
    return svg.markup()


_CLASS_FILL = {"in": "hi", "saturated": "hs", "flushed": "hf", "float": "hg"}


def heatmap(tensors: Sequence[dict], octaves: Sequence[int], width: int = 1180) -> Markup:
    """MATLAB's dynamic-range heat map: one row per tensor, one column per power-of-two
    bin of |x| (shade: the share of the tensor's values), the int8 window outlined,
    bins that saturate and bins that flush to zero in their own colours, and the
    shares in range / saturated / flushed beside each row."""
    label_w, pct_w, row_h, top = 320, 210, 13, 34
    lo, hi = octaves if octaves else (0, 0)
    cols = hi - lo + 1
    col_w = max(6.0, min(24.0, (width - label_w - pct_w - 30) / max(cols, 1)))
    zero_x = label_w
    grid_x = label_w + col_w + 6  # a column for exact zeros, then the octaves
    height = top + len(tensors) * row_h + 8
    svg = Svg(width, height, "chart heatmap", "dynamic-range heat map")
    svg.text(zero_x + col_w / 2, top - 6, "0", "middle", size=9)
    for k in range(lo, hi + 1):
        x = grid_x + (k - lo) * col_w
        if (k - lo) % 2 == 0 or col_w >= 16:
            svg.text(x + col_w / 2, top - 6, f"{k}", "middle", size=9)
    svg.text(grid_x - 2, top - 20, "log2 |x| (column k holds 2^k <= |x| < 2^(k+1))", size=10)
    pct_x = grid_x + cols * col_w + 8
    svg.text(pct_x, top - 6, "in range / saturated / flushed", size=9)
    for i, t in enumerate(tensors):
        y = top + i * row_h
        svg.open("g", class_="hm-row", data_row=str(i))
        range_text = t.get("range_text") or f"min {t['min']}, max {t['max']}"
        svg.add(f"<title>{esc(t['row'])} ({esc(t['kind'])}): {esc(range_text)}</title>")
        svg.add(f'<a href="#layer-{esc(t["layer_index"])}">' if t.get("layer_index") is not None else "<a>")
        svg.text(label_w - 6, y + row_h - 3, _clip(t["row"], 48), "end", size=10)
        svg.add("</a>")
        if i % 2 == 0:
            svg.rect(zero_x, y, grid_x - zero_x + cols * col_w, row_h, "#f6f6f6")
        if t.get("zero"):
            svg.rect(zero_x, y + 1, col_w, row_h - 2, "#555", fill_opacity=num(_shade(t["zero"]), 2))
        for k, share, cls in t["cells"]:
            if share is None or share <= 0:
                continue
            svg.rect(
                grid_x + (k - lo) * col_w,
                y + 1,
                col_w,
                row_h - 2,
                cls=_CLASS_FILL[cls],
                fill_opacity=num(_shade(share), 2),
            )
        if t["window"]:
            a = grid_x + (max(t["window"][0], lo) - lo) * col_w
            b = grid_x + (min(t["window"][1], hi + 1) - lo) * col_w
            if b > a:
                svg.rect(a, y + 0.5, b - a, row_h - 1, fill="none", cls="win")
        if t["in_range"] is not None:
            svg.text(
                pct_x,
                y + row_h - 3,
                f"{_pct(t['in_range'])} / {_pct(t['saturated'])} / {_pct(t['flushed'])}",
                size=10,
            )
        else:
            svg.text(pct_x, y + row_h - 3, "float: no int8 window" if t["kind"] != "Bias" else "", size=10)
        svg.close("g")
    return svg.markup()


def _shade(share: float) -> float:
    """Opacity of a cell: the square root of its share, at least 0.12 (visible)."""
    return min(1.0, max(0.12, math.sqrt(max(share, 0.0))))


def _pct(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0%"
    if v >= 0.9995:
        return f"{100 * v:.1f}%"
    return f"{100 * v:.2f}%" if v >= 0.0001 else "<0.01%"


def graph(layers: Sequence[dict], width: int = 1180) -> Markup:
    """The network as boxes in topological order (top to bottom, by depth), edges
    from each layer to those that read it; fill: the SQNR drop (green to red, grey
    when not validated), border: int8 solid, float dashed grey."""
    box_w, box_h, dx, dy, top = 230, 24, 250, 38, 10
    level: dict[str, int] = {}
    lanes: dict[int, int] = {}
    pos: dict[str, tuple[float, float]] = {}
    for r in layers:
        lv = 1 + max((level[i] for i in r["inputs"] if i in level), default=-1)
        level[r["name"]] = lv
        lane = lanes.get(lv, 0)
        lanes[lv] = lane + 1
        pos[r["name"]] = (lane, lv)
    max_lanes = max(lanes.values(), default=1)
    width = max(width, 20 + max_lanes * dx + 80)
    offset = max(10.0, (width - max_lanes * dx) / 2)
    height = top + (max(lanes, default=0) + 1) * dy + 10
    svg = Svg(width, height, "chart graph", "the network graph")

    def xy(name: str) -> tuple[float, float]:
        lane, lv = pos[name]
        return offset + lane * dx, top + lv * dy

    svg.open("g", class_="edges")
    for r in layers:
        x2, y2 = xy(r["name"])
        for src in r["inputs"]:
            if src not in pos:
                continue
            x1, y1 = xy(src)
            sx, sy, ex, ey = x1 + box_w / 2, y1 + box_h, x2 + box_w / 2, y2
            if pos[r["name"]][1] - pos[src][1] > 1:
                # a skip connection: from the right side of the source round to the target's
                rx1, ry1, rx2, ry2 = x1 + box_w, y1 + box_h / 2, x2 + box_w, y2 + box_h / 2
                side = max(rx1, rx2) + 24 + 4 * (pos[r["name"]][1] - pos[src][1] > 3)
                d = f"M{num(rx1)} {num(ry1)}C{num(side)} {num(ry1)} {num(side)} {num(ry2)} {num(rx2)} {num(ry2)}"
            else:
                d = f"M{num(sx)} {num(sy)}C{num(sx)} {num(sy + 10)} {num(ex)} {num(ey - 10)} {num(ex)} {num(ey)}"
            svg.path(d, "#8a8a8a", width=1)
    svg.close("g")
    for r in layers:
        x, y = xy(r["name"])
        float_layer = r["precision"] == "float"
        fill = (
            drop_colour(r["sqnr_drop_db"])
            if r["sqnr_drop_db"] is not None
            else ("#eeeeee" if float_layer else "#dce7f5")
        )
        svg.open("g", class_="node" + (" float" if float_layer else ""))
        svg.add(f'<a href="#layer-{r["index"]}">')
        tip = f"{r['name']} ({r['kind']}): {r['precision'] or 'not quantized'}"
        if r["sqnr_drop_db"] is not None:
            tip += f", SQNR drop {r['sqnr_drop_db']:.2f} dB"
        svg.rect(
            x,
            y,
            box_w,
            box_h,
            fill,
            title=tip,
            stroke="#888" if float_layer else "#1f3f74",
            stroke_dasharray="4 2" if float_layer else "none",
            rx="4",
        )
        svg.text(x + 6, y + 16, _clip(r["name"], 30), size=11)
        svg.text(x + box_w - 5, y + 16, "float" if float_layer else str(r["kind"])[:10], "end", size=9, cls="kind")
        svg.add("</a>")
        svg.close("g")
    return svg.markup()


def memory_bar(regions: Sequence[dict], total: int, width: int = 1180) -> Markup:
    """The DDR memory map as one bar, each region's share of the total."""
    h, top = 26, 4
    svg = Svg(width, h + 24, "chart memory", "DDR memory map")
    colours = ["#2f6db5", "#7b4fb0", "#2e8b57", "#e69a00", "#c62828", "#00838f", "#6d4c41", "#5c6bc0"]
    x = 0.0
    for i, r in enumerate(regions):
        w = (width - 2) * r["bytes"] / max(total, 1)
        svg.rect(x + 1, top, max(w, 1), h, colours[i % len(colours)], title=f"{r['name']}: {r['bytes']:,} bytes")
        if w > 70:
            svg.text(x + 5, top + 17, _clip(r["name"].replace("Offset", ""), int(w / 7)), size=10, fill="#fff")
        x += w
    svg.text(0, h + 20, "0x00000000", size=10)
    svg.text(width, h + 20, f"0x{total:08x} ({total:,} bytes)", "end", size=10)
    return svg.markup()
