"""The front door: ``write_report(result, "report.html")`` writes the page and its JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._io import write_atomic
from ..calibrate.result import Calibration
from ..errors import ConfigurationError, option
from ..quantize.plan import QuantPlan
from .build import build_report
from .render import render_html

__all__ = ["check_report_path", "json_path_of", "write_report"]

_SUFFIXES = (".html", ".htm")


def json_path_of(path: str | os.PathLike) -> Path:
    """Where the JSON of the page ``path`` goes: beside it, ``report.html`` -> ``report.json``."""
    return Path(path).with_suffix(".json")


def check_report_path(path: Any) -> Path:
    """``path`` as a Path when a page can be written there, else a ConfigurationError
    that says why (wrong suffix, a folder)."""
    flag = option("path", "--report")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ConfigurationError(f"{flag}: give the file name of the page to write (report.html), got {path!r}")
    p = Path(path)
    if p.suffix.lower() not in _SUFFIXES:
        raise ConfigurationError(
            f"{flag} {path}: the report is an HTML page; give a file name ending in .html (report.html)"
        )
    if p.is_dir():
        raise ConfigurationError(f"{flag} {path} is a folder; give a file name (report.html)")
    return p


def _sort(results: tuple, into: dict) -> None:
    """Put each positional result where it belongs, by what it is."""
    for obj in results:
        if obj is None:
            continue
        if isinstance(obj, (list, tuple)):
            _sort(tuple(obj), into)
            continue
        kind = _kind(obj)
        if kind is None:
            raise ConfigurationError(
                f"write_report cannot report a {type(obj).__name__}: give a Calibration, a ValidationResult, a "
                "QuantizedNetwork, an FPGA Profile or Workflow, or a CompiledNetwork"
            )
        if kind == "workflow":
            into.setdefault("network", obj.network)
            if obj.compiled is not None:
                into.setdefault("compiled", obj.compiled)
            continue
        if kind == "quantized":
            into.setdefault("plan", obj.plan)
            continue
        into.setdefault(kind, obj)


def _kind(obj: Any) -> str | None:
    from ..fpga import CompiledNetwork, Profile, Workflow
    from ..network import Network
    from ..simulate import QuantizedNetwork
    from ..validate import ValidationResult

    for cls, kind in (
        (ValidationResult, "validation"),
        (Calibration, "calibration"),
        (QuantizedNetwork, "quantized"),
        (QuantPlan, "plan"),
        (Profile, "profile"),
        (Workflow, "workflow"),
        (CompiledNetwork, "compiled"),
        (Network, "network"),
    ):
        if isinstance(obj, cls):
            return kind
    return None


def write_report(
    *results: Any,
    path: str | os.PathLike | None = None,
    calibration: Calibration | None = None,
    validation: Any = None,
    quantized: Any = None,
    profile: Any = None,
    compiled: Any = None,
    workflow: Any = None,
    target: str = "fpga",
    command: str | None = None,
    date: Any = None,
    title: str | None = None,
) -> Path:
    """Write the report: one self-contained HTML page at ``path`` and its data as JSON
    beside it (``report.html`` -> ``report.json``), both atomically.

    ``write_report(result, "report.html")``: the results to report, in any order and
    number (a :class:`~quantscope.ValidationResult`, a :class:`~quantscope.Calibration`,
    a :class:`~quantscope.QuantizedNetwork`, an FPGA ``Profile``, ``Workflow`` or
    ``CompiledNetwork``), then the page's path; or name them with the keywords.

    Args:
        target: the scheme whose int8 windows a calibration alone is shown with
            (``"fpga"``: power-of-two, MATLAB's; ``"cpu"``).
        command: the command that reproduces the run, shown in the verdict.
        date: the date in the footer (``"2026-01-31"`` or a ``datetime.date``); by
            default ``SOURCE_DATE_EPOCH`` when set, else today. Nothing else in the
            page depends on the time: the same results and date give the same bytes.
        title: the page's title (default: from the model's name).

    Returns:
        the path of the page.

    Raises:
        ConfigurationError: ``path`` is not an ``.html`` file name, nothing to report,
            or an object of a type the report does not know.
    """
    if path is None and results and isinstance(results[-1], (str, os.PathLike)):
        results, path = results[:-1], results[-1]
    page = check_report_path(path)
    into: dict[str, Any] = {}
    for key, value in (
        ("calibration", calibration),
        ("validation", validation),
        ("profile", profile),
        ("compiled", compiled),
    ):
        if value is not None:
            into[key] = value
    _sort(tuple(r for r in (quantized, workflow) if r is not None) + tuple(results), into)
    report = build_report(
        calibration=into.get("calibration"),
        validation=into.get("validation"),
        plan=into.get("plan"),
        profile=into.get("profile"),
        compiled=into.get("compiled"),
        network=into.get("network"),
        target=target,
        command=command,
        date=date,
        title=title,
    )
    data_path = json_path_of(page)
    html = render_html(report, json_name=data_path.name)
    write_atomic(data_path, json.dumps(report, separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n")
    return write_atomic(page, html)
