"""Calibration: data sources, mergeable statistics, the streaming collector, the range table."""

from .data import Batch, DataSource
from .images import ImageDatastore
from .ranges import METHODS, clipping_range, range_table
from .result import COLUMNS, Calibration, RangeEntry
from .run import calibrate
from .source import as_source
from .stats import TensorStats

__all__ = [
    "COLUMNS",
    "Batch",
    "Calibration",
    "DataSource",
    "ImageDatastore",
    "METHODS",
    "RangeEntry",
    "TensorStats",
    "as_source",
    "calibrate",
    "clipping_range",
    "range_table",
]
