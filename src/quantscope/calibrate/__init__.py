"""Calibration: data sources, mergeable statistics, the streaming collector, the range table."""

from .arrays import ArraySource
from .data import Batch, DataSource, Layout
from .images import ImageDatastore
from .options import CalibrationOptions, HistogramStride
from .ranges import METHODS, RangeMethod, clipping_range, range_table
from .result import COLUMNS, Calibration, RangeEntry
from .run import Local, OnDask, Resumable, Runner, calibrate
from .source import as_source
from .stats import TensorStats

__all__ = [
    "COLUMNS",
    "ArraySource",
    "Batch",
    "Calibration",
    "CalibrationOptions",
    "DataSource",
    "HistogramStride",
    "ImageDatastore",
    "Layout",
    "Local",
    "METHODS",
    "OnDask",
    "RangeEntry",
    "RangeMethod",
    "Resumable",
    "Runner",
    "TensorStats",
    "as_source",
    "calibrate",
    "clipping_range",
    "range_table",
]
