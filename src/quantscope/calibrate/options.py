"""How a calibration runs, as one frozen object: :class:`CalibrationOptions`.

The options are what every runner (one process, resumable, Dask: see
:mod:`quantscope.calibrate.run`) needs alike; they are checked once, here, and
passed down whole instead of as keyword lists. Strings are accepted where an enum
is expected (``layout="NHWC"``, ``histogram_stride="auto"``) and converted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..errors import CalibrationDataError, ConfigurationError, option
from .data import Layout

__all__ = ["CalibrationOptions", "HistogramStride"]


class HistogramStride(StrEnum):
    """The one named histogram stride (an int names a fixed one)."""

    #: every s-th value of large image tensors, s chosen per tensor
    #: (:func:`quantscope.calibrate.collector.histogram_stride`)
    AUTO = "auto"


@dataclass(frozen=True)
class CalibrationOptions:
    """What a calibration run does, whatever runs it.

    Attributes:
        batch_size: samples per onnxruntime run (>= 1). The table does not depend on it.
        use_gpu: run the float network on a GPU (MATLAB's ``UseGPU``).
        layout: the layout of array data (:class:`~quantscope.calibrate.data.Layout`).
        histogram_stride: :attr:`HistogramStride.AUTO` or an int >= 1 (1: histogram
            every value).
        progress: show a progress bar (None: only when stderr is a terminal).
    """

    batch_size: int = 32
    use_gpu: bool = False
    layout: Layout = Layout.NCHW
    histogram_stride: int | HistogramStride = HistogramStride.AUTO
    progress: bool | None = None

    def __post_init__(self) -> None:
        bs = self.batch_size
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise CalibrationDataError(f"{option('batch_size', '--batch-size')} must be a positive integer, got {bs!r}")
        object.__setattr__(self, "batch_size", int(bs))
        object.__setattr__(self, "layout", Layout.parse(self.layout))
        stride = self.histogram_stride
        if isinstance(stride, str):
            try:
                stride = HistogramStride(stride)
            except ValueError:
                stride = None
        elif isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            stride = None
        else:
            stride = int(stride)
        if stride is None:
            raise CalibrationDataError(
                f"{option('histogram_stride', '--histogram-stride')} must be 'auto' or an integer >= 1, "
                f"got {self.histogram_stride!r}"
            )
        object.__setattr__(self, "histogram_stride", stride)
        if not isinstance(self.use_gpu, bool):
            raise ConfigurationError(f"use_gpu must be True or False, got {self.use_gpu!r}")
