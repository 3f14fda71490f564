"""Calibration: data sources, mergeable statistics, the streaming collector, the range table."""

from .collector import calibrate
from .data import Batch, DataSource, as_source
from .images import ImageDatastore
from .result import COLUMNS, Calibration, RangeEntry
from .stats import TensorStats

__all__ = [
    "COLUMNS",
    "Batch",
    "Calibration",
    "DataSource",
    "ImageDatastore",
    "RangeEntry",
    "TensorStats",
    "as_source",
    "calibrate",
]
