"""The report: one self-contained HTML page of everything quantscope measured.

``write_report(result, "report.html")`` (also ``quantscope.report(...)`` and the
``.report(path)`` methods of a validation result, a calibration and an FPGA profile)
builds the report's data as one plain dict (:func:`build_report`), renders it with
Jinja2 into a page whose charts are SVG (:func:`render_html`), and writes the page and
the dict as JSON beside it. docs/report.md describes the panels and the data.
"""

from .build import build_report, report_date
from .render import render_html
from .write import check_report_path, json_path_of, write_report

#: ``quantscope.report(...)``: the same function as :func:`write_report`.
report = write_report

__all__ = [
    "build_report",
    "check_report_path",
    "json_path_of",
    "render_html",
    "report",
    "report_date",
    "write_report",
]
